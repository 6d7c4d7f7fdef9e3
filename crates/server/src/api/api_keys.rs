//! Per-shop API keys: the secret is shown once, stored as a SHA-256 hash.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shopkeep_domain::Timestamp;
use shopkeep_domain::accounts::Scope;
use shopkeep_store::api_keys::{self as store, ApiKeyRow};
use shopkeep_store::audit::AuditEntry;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::audit;
use crate::auth::Principal;
use crate::auth::principal::API_KEY_PREFIX;
use crate::crypto::{random_token, sha256};
use crate::extract::ApiJson;
use crate::observe::RequestId;
use crate::{ApiError, AppState, FieldError, Problem};

/// Routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}

/// A key as listed (never the secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyOut {
    /// Id.
    pub id: Uuid,
    /// Label.
    pub name: String,
    /// The secret's first characters, to recognise it.
    pub prefix: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// RFC 3339.
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// RFC 3339.
    #[schema(value_type = Option<String>)]
    pub last_used_at: Option<Timestamp>,
    /// RFC 3339.
    #[schema(value_type = Option<String>)]
    pub revoked_at: Option<Timestamp>,
}

fn out(k: &ApiKeyRow) -> ApiKeyOut {
    ApiKeyOut {
        id: k.id,
        name: k.name.clone(),
        prefix: k.prefix.clone(),
        scopes: k.scopes.split_whitespace().map(str::to_string).collect(),
        created_at: Timestamp(k.created_at),
        last_used_at: k.last_used_at.map(Timestamp),
        revoked_at: k.revoked_at.map(Timestamp),
    }
}

/// A new key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIn {
    /// 1-100 characters.
    pub name: String,
    /// Scopes, each one the creator holds.
    pub scopes: Vec<String>,
}

/// The created key with its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    /// The key.
    #[serde(flatten)]
    pub key: ApiKeyOut,
    /// Send as `Authorization: Bearer <secret>`. Not retrievable later.
    pub secret: String,
}

/// The shop's API keys, newest first (`shop:admin`).
#[utoipa::path(get, path = "/api/v1/api-keys", operation_id = "list_api_keys", tag = "api-keys", security(("bearer" = [])), responses((status = 200, description = "Keys", body = Vec<ApiKeyOut>)))]
pub async fn list(
    State(state): State<AppState>,
    p: Principal,
) -> Result<Json<Vec<ApiKeyOut>>, ApiError> {
    p.require(Scope::ShopAdmin)?;
    Ok(Json(
        store::list(&state.db, p.scope)
            .await?
            .iter()
            .map(out)
            .collect(),
    ))
}

/// Creates a key with chosen scopes (`shop:admin`); the secret is in this response only.
#[utoipa::path(post, path = "/api/v1/api-keys", operation_id = "create_api_key", tag = "api-keys", security(("bearer" = [])), request_body = ApiKeyIn,
    responses((status = 201, description = "Created", body = ApiKeyCreated), (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    Extension(rid): Extension<RequestId>,
    ApiJson(body): ApiJson<ApiKeyIn>,
) -> Result<(StatusCode, Json<ApiKeyCreated>), ApiError> {
    p.require(Scope::ShopAdmin)?;
    let mut errors = Vec::new();
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "body.name",
            "invalid",
            "1-100 characters, no control characters",
        ));
    }
    let mut scopes = Vec::new();
    for (i, s) in body.scopes.iter().enumerate() {
        match s.parse::<Scope>() {
            Ok(scope) if p.scopes.contains(&scope) && scope != Scope::PlatformAdmin => {
                scopes.push(scope)
            }
            Ok(_) => errors.push(FieldError::new(
                format!("body.scopes[{i}]"),
                "not_held",
                format!("you cannot grant {s}"),
            )),
            Err(()) => errors.push(FieldError::new(
                format!("body.scopes[{i}]"),
                "unknown",
                format!("{s} is not a scope"),
            )),
        }
    }
    if body.scopes.is_empty() {
        errors.push(FieldError::new(
            "body.scopes",
            "required",
            "give at least one scope",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    scopes.sort();
    scopes.dedup();
    let secret = format!("{API_KEY_PREFIX}{}", random_token(32));
    let prefix: String = secret.chars().take(API_KEY_PREFIX.len() + 6).collect();
    let scope_text = scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let row = store::create(
        &state.db,
        p.scope,
        name,
        &prefix,
        &sha256(secret.as_bytes()),
        &scope_text,
        p.user,
    )
    .await?;
    audit(
        &state,
        AuditEntry {
            shop: Some(p.shop()),
            actor: p.user,
            action: "api_key.created",
            target: Some(row.id.to_string()),
            detail: json!({ "name": row.name, "scopes": scope_text }),
            request_id: Some(rid.0),
            ..AuditEntry::default()
        },
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyCreated {
            key: out(&row),
            secret,
        }),
    ))
}

/// Revokes a key at once (`shop:admin`).
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Key id")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json")))]
pub async fn revoke(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<Uuid>,
    Extension(rid): Extension<RequestId>,
) -> Result<StatusCode, ApiError> {
    p.require(Scope::ShopAdmin)?;
    store::revoke(&state.db, p.scope, id).await?;
    audit(
        &state,
        AuditEntry {
            shop: Some(p.shop()),
            actor: p.user,
            action: "api_key.revoked",
            target: Some(id.to_string()),
            detail: json!({}),
            request_id: Some(rid.0),
            ..AuditEntry::default()
        },
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
