//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::problem::{ApiError, Problem};

/// The process is up.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// The server can do useful work: the database answers and its schema is current.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub engine: &'static str,
    /// The latest migration applied.
    pub schema_version: Option<i64>,
}

/// Liveness: answers 200 while the process runs; touches nothing else.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: 200 when the database answers and no migration is pending, else 503 with the reason.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = Ready),
        (status = 503, description = "Not ready; `detail` says why", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let not_ready = |detail: String| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", detail).retry_after(1)
    };
    if let Err(e) = state.db.ping().await {
        tracing::warn!(error = format!("{e:#}"), "readiness: database unreachable");
        return Err(not_ready("the database is unreachable".into()));
    }
    let status = state.db.migration_status().await.map_err(|e| {
        tracing::warn!(
            error = format!("{e:#}"),
            "readiness: cannot read migration status"
        );
        not_ready("cannot read the migration status".into())
    })?;
    if let Some(problem) = status.problem() {
        return Err(not_ready(problem));
    }
    Ok(Json(Ready {
        status: "ready",
        engine: state.db.engine().as_str(),
        schema_version: status.applied.last().copied(),
    }))
}
