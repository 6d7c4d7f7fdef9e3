//! The authenticated caller, resolved from `Authorization: Bearer` (an access token or an API
//! key) before any handler that needs it runs.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use shopkeep_domain::accounts::Scope;
use shopkeep_domain::{ShopId, UserId};
use shopkeep_store::{ShopScope, api_keys};
use uuid::Uuid;

use super::tokens::TokenError;
use crate::AppState;
use crate::crypto::sha256;
use crate::problem::ApiError;

/// API keys start with this, so they are told apart from JWTs and recognised when leaked.
pub const API_KEY_PREFIX: &str = "shk_";

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An access token.
    Token {
        /// Token id.
        jti: Uuid,
        /// Login family.
        sid: Uuid,
        /// Expiry (Unix seconds).
        exp: i64,
    },
    /// A shop API key.
    ApiKey {
        /// Key id.
        id: Uuid,
    },
    /// A signed-in session of the web pages (cookie plus CSRF token).
    Session,
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user, for tokens; `None` for API keys.
    pub user: Option<UserId>,
    /// Username, for tokens.
    pub username: Option<String>,
    /// The shop every tenant query is scoped to.
    pub scope: ShopScope,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// Platform administrator.
    pub is_admin: bool,
    /// Token or key.
    pub credential: Credential,
}

impl Principal {
    /// 403 naming the scope when the caller lacks it.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "missing_scope",
                format!("this needs the scope {scope}"),
            ))
        }
    }

    /// The user, or 403 for API keys on user-only endpoints.
    pub fn user(&self) -> Result<UserId, ApiError> {
        self.user.ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "user_required",
                "this needs a user's access token, not an API key",
            )
        })
    }

    /// The shop id.
    pub fn shop(&self) -> ShopId {
        self.scope.shop_id()
    }
}

fn unauthorized(code: &'static str, detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, detail).www_authenticate()
}

/// The bearer credential of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let token = bearer(parts).ok_or_else(|| {
            unauthorized(
                "unauthorized",
                "send Authorization: Bearer <token or API key>",
            )
        })?;
        let principal = if token.starts_with(API_KEY_PREFIX) {
            from_api_key(state, token).await?
        } else {
            let claims = state.auth.verify_access(token).await.map_err(|e| match e {
                TokenError::Expired => {
                    unauthorized("token_expired", "the access token has expired; refresh it")
                }
                TokenError::Revoked => {
                    unauthorized("token_revoked", "the access token was revoked")
                }
                TokenError::Invalid => {
                    unauthorized("invalid_token", "the access token is not valid")
                }
            })?;
            Principal {
                user: Some(UserId(claims.sub)),
                username: Some(claims.username),
                scope: ShopScope::verified(ShopId(claims.shop)),
                scopes: claims
                    .scopes
                    .iter()
                    .filter_map(|s| s.parse().ok())
                    .collect(),
                is_admin: claims.is_admin,
                credential: Credential::Token {
                    jti: claims.jti,
                    sid: claims.sid,
                    exp: claims.exp,
                },
            }
        };
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

async fn from_api_key(state: &AppState, secret: &str) -> Result<Principal, ApiError> {
    let row = api_keys::find_by_hash(&state.db, &sha256(secret.as_bytes()))
        .await?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(|| {
            unauthorized("invalid_api_key", "the API key is not valid or was revoked")
        })?;
    let (db, shop, id) = (state.db.clone(), row.shop_id, row.id);
    tokio::spawn(async move {
        if let Err(e) = api_keys::touch(&db, shop, id).await {
            tracing::warn!(error = %e, "recording API key use failed");
        }
    });
    Ok(Principal {
        user: None,
        username: None,
        scope: ShopScope::verified(ShopId(row.shop_id)),
        scopes: row
            .scopes
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect(),
        is_admin: false,
        credential: Credential::ApiKey { id: row.id },
    })
}
