//! The JSON API under `/api/v1`: one module per resource, each with its own router.

pub mod admin_orders;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod jobs;
pub mod me;
pub mod orders;
pub mod shops;
pub mod webhooks;

use shopkeep_domain::Invalid;
use shopkeep_store::audit::AuditEntry;

use crate::AppState;
use crate::problem::FieldError;

impl From<Invalid> for FieldError {
    fn from(i: Invalid) -> Self {
        FieldError::new(format!("body.{}", i.field), i.code, i.message)
    }
}

/// Collects the field errors of several validations into one 422.
#[derive(Default)]
pub struct Checks(pub Vec<FieldError>);

impl Checks {
    /// Keeps the value or records why it is bad.
    pub fn check<T>(&mut self, r: Result<T, Invalid>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e.into());
                None
            }
        }
    }

    /// 422 when anything was bad.
    pub fn finish(self) -> Result<(), crate::ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(crate::ApiError::validation(self.0))
        }
    }
}

/// Checks a list's `limit` (1-200, default 50) and `cursor` on top of the `errors` found so far;
/// answers 400 `invalid_query` naming each bad parameter.
pub fn list_params(
    limit: Option<i64>,
    cursor_text: Option<&str>,
    mut errors: Vec<FieldError>,
) -> Result<(i64, Option<uuid::Uuid>), crate::ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        errors.push(FieldError::new(
            "query.limit",
            "out_of_range",
            "limit is 1 to 200",
        ));
    }
    let before = orders::cursor_param(cursor_text, &mut errors);
    if errors.is_empty() {
        Ok((limit, before))
    } else {
        Err(
            crate::ApiError::bad_request("invalid_query", "some query parameters are invalid")
                .with_errors(errors),
        )
    }
}

/// Records a 400 field error when `value` is given and is not one of `allowed`.
pub fn check_one_of(
    field: &str,
    value: Option<&String>,
    allowed: &[&str],
    errors: &mut Vec<FieldError>,
) {
    if let Some(v) = value
        && !allowed.contains(&v.as_str())
    {
        errors.push(FieldError::new(field, "invalid", allowed.join(", ")));
    }
}

/// Cuts rows fetched with `limit + 1` down to `limit`, and gives the next page's cursor when
/// there was one more.
pub fn next_cursor<R>(
    rows: &mut Vec<R>,
    limit: i64,
    id: impl Fn(&R) -> uuid::Uuid,
) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    if more {
        rows.last().map(|r| shopkeep_domain::cursor::encode(&id(r)))
    } else {
        None
    }
}

/// Records an audit event; a failure is logged, never shown to the caller of a security event.
pub async fn audit(state: &AppState, e: AuditEntry) {
    let action = e.action;
    if let Err(err) = shopkeep_store::audit::record(&state.db, e).await {
        tracing::error!(action, error = %err, "writing the audit log failed");
    }
}
