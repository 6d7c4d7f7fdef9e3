//! Access tokens (EdDSA JWT with `kid`) and opaque refresh tokens.

use jsonwebtoken::Header;
use serde::{Deserialize, Serialize};
use shopkeep_domain::accounts::Scope;
use shopkeep_domain::jwt;
pub use shopkeep_domain::jwt::TokenError;
use shopkeep_domain::{ShopId, Timestamp, UserId};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AuthService;
use crate::crypto;

/// Access token claims.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// User id.
    pub sub: Uuid,
    /// Username as typed.
    pub username: String,
    /// Platform administrator.
    pub is_admin: bool,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The shop this token acts in.
    pub shop: Uuid,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Expires (Unix seconds).
    pub exp: i64,
    /// Token id (deny-list key).
    pub jti: Uuid,
    /// The login (refresh family) this token belongs to; logout revokes it.
    pub sid: Uuid,
}

/// A token pair as issued to a client.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The JWT.
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The opaque refresh token.
    pub refresh_token: String,
    /// Space-separated scopes granted.
    pub scope: String,
}

/// Who a token is for.
#[derive(Debug, Clone)]
pub struct Subject {
    /// User.
    pub user: UserId,
    /// Username as typed.
    pub username: String,
    /// Platform admin.
    pub is_admin: bool,
    /// The shop.
    pub shop: ShopId,
    /// Scopes to grant.
    pub scopes: Vec<Scope>,
}

/// Refresh tokens carry this prefix so leaked ones are recognisable.
pub const REFRESH_PREFIX: &str = "skr_";

impl AuthService {
    /// Signs an access token for `subject` in login family `sid`.
    pub fn access_token(&self, s: &Subject, sid: Uuid) -> anyhow::Result<(String, Claims)> {
        let now = Timestamp::now().unix_seconds();
        let ttl = i64::try_from(self.opts.access_ttl.as_secs()).unwrap_or(900);
        let claims = Claims {
            iss: self.opts.issuer.clone(),
            aud: self.opts.audience.clone(),
            sub: s.user.0,
            username: s.username.clone(),
            is_admin: s.is_admin,
            scopes: s.scopes.iter().map(|x| x.as_str().to_string()).collect(),
            shop: s.shop.0,
            iat: now,
            nbf: now,
            exp: now + ttl,
            jti: Uuid::now_v7(),
            sid,
        };
        let (kid, key) = self.keys.signing_key();
        let header = Header {
            kid: Some(kid),
            ..Header::new(jwt::ALGORITHM)
        };
        Ok((jsonwebtoken::encode(&header, &claims, &key)?, claims))
    }

    /// Issues an access token and a refresh token in family `family` (a new login when `None`).
    pub async fn issue(
        &self,
        s: &Subject,
        family: Option<Uuid>,
        asked_scope: Option<&str>,
    ) -> anyhow::Result<Issued> {
        let family = family.unwrap_or_else(Uuid::now_v7);
        let (access_token, _) = self.access_token(s, family)?;
        let refresh_token = format!("{REFRESH_PREFIX}{}", crypto::random_token(32));
        let expires = Timestamp::now().plus(self.opts.refresh_ttl);
        shopkeep_store::tokens::insert_refresh(
            &self.db,
            &crypto::sha256(refresh_token.as_bytes()),
            s.shop,
            s.user,
            family,
            expires,
            asked_scope,
        )
        .await?;
        Ok(Issued {
            access_token,
            expires_in: self.opts.access_ttl.as_secs(),
            refresh_token,
            scope: s
                .scopes
                .iter()
                .map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    /// Verifies signature, issuer, audience, time window and the deny-list.
    ///
    /// A token whose signature was already checked is served from a small in-memory cache until
    /// it expires (the signature check is most of the cost of an authenticated request); the
    /// deny-list and the expiry are still checked on every call.
    pub async fn verify_access(&self, token: &str) -> Result<Claims, TokenError> {
        let now = Timestamp::now().unix_seconds();
        if let Some(claims) = self.verified.get(token) {
            if claims.exp + (jwt::LEEWAY_SECS as i64) < now {
                return Err(TokenError::Expired);
            }
            if self.revoked.is_revoked(&claims.jti) {
                return Err(TokenError::Revoked);
            }
            return Ok(claims);
        }
        let claims = self.verify_signature(token).await?;
        if self.revoked.is_revoked(&claims.jti) {
            return Err(TokenError::Revoked);
        }
        self.verified.insert(token, &claims, now);
        Ok(claims)
    }

    async fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let kid = jwt::key_id(token)?;
        let key = self
            .keys
            .verifying_key(&kid)
            .await
            .ok_or(TokenError::Invalid)?;
        jwt::decode(token, &key, &self.opts.issuer, &self.opts.audience)
    }
}

/// Access tokens whose signature verified, by their exact text, until they expire.
#[derive(Default)]
pub struct VerifiedCache {
    entries: std::sync::RwLock<std::collections::HashMap<String, Claims>>,
}

/// Tokens remembered at most; past it, expired ones are dropped, then everything if needed.
const VERIFIED_CAP: usize = 20_000;

impl VerifiedCache {
    fn get(&self, token: &str) -> Option<Claims> {
        self.entries
            .read()
            .expect("verified cache lock")
            .get(token)
            .cloned()
    }

    fn insert(&self, token: &str, claims: &Claims, now: i64) {
        let mut e = self.entries.write().expect("verified cache lock");
        if e.len() >= VERIFIED_CAP {
            e.retain(|_, c| c.exp >= now);
            if e.len() >= VERIFIED_CAP {
                e.clear();
            }
        }
        e.insert(token.to_string(), claims.clone());
    }
}
