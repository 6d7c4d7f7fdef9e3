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

/// Records an audit event; a failure is logged, never shown to the caller of a security event.
pub async fn audit(state: &AppState, e: AuditEntry) {
    let action = e.action;
    if let Err(err) = shopkeep_store::audit::record(&state.db, e).await {
        tracing::error!(action, error = %err, "writing the audit log failed");
    }
}
