//! The shop's audit log for its admins.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use shopkeep_domain::accounts::Scope;
use shopkeep_domain::{Timestamp, cursor};
use shopkeep_store::audit as store;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::extract::ApiQuery;
use crate::{ApiError, AppState, FieldError, Problem};

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Page parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageIn {
    /// 1-100, default 20.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// An audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditOut {
    /// Id (time-ordered).
    pub id: Uuid,
    /// Who acted.
    pub actor_id: Option<Uuid>,
    /// Action name.
    pub action: String,
    /// What it acted on.
    pub target: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// Details.
    pub detail: serde_json::Value,
    /// The request.
    pub request_id: Option<String>,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub created_at: Timestamp,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub items: Vec<AuditOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The shop's audit log, newest first (`shop:admin`).
#[utoipa::path(get, path = "/api/v1/audit", operation_id = "list_audit_entries", tag = "audit", security(("bearer" = [])), params(PageIn),
    responses((status = 200, description = "A page", body = AuditPage), (status = 400, description = "Bad cursor or limit", body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<PageIn>,
) -> Result<Json<AuditPage>, ApiError> {
    p.require(Scope::ShopAdmin)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(
            ApiError::bad_request("invalid_query", "limit is 1 to 100").with_errors(vec![
                FieldError::new("query.limit", "out_of_range", "limit is 1 to 100"),
            ]),
        );
    }
    let before: Option<Uuid> = match q.cursor.as_deref() {
        Some(c) => Some(cursor::decode(c).ok_or_else(|| {
            ApiError::bad_request("invalid_cursor", "the cursor is not one this server issued")
                .with_errors(vec![FieldError::new(
                    "query.cursor",
                    "invalid",
                    "not a cursor from this list",
                )])
        })?),
        None => None,
    };
    let mut rows = store::list(&state.db, p.scope, before, limit + 1).await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = if more {
        rows.last().map(|r| cursor::encode(&r.id))
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(|r| AuditOut {
            id: r.id,
            actor_id: r.actor_id,
            action: r.action,
            target: r.target,
            ip: r.ip,
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
            request_id: r.request_id,
            created_at: Timestamp(r.created_at),
        })
        .collect();
    Ok(Json(AuditPage { items, next_cursor }))
}
