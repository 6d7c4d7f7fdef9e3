//! Authentication: password hashing, access tokens (EdDSA JWT), refresh token families, the
//! revocation deny-list, login failure limits, and the [`Principal`] extractor every protected
//! handler takes.

pub mod ip;
pub mod keys;
pub mod password;
pub mod principal;
pub mod revocation;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

/// How often every instance re-reads the signing keys (a rotation takes effect within this).
pub const KEY_RELOAD_EVERY: Duration = Duration::from_secs(2);

pub use ip::IpRange;
pub use principal::{Credential, Principal};

use crate::ratelimit::FailureLimiter;
use keys::KeyRing;
use password::PasswordHasher;
use revocation::RevocationList;

/// Settings for token issue and login limits.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// `iss` claim.
    pub issuer: String,
    /// `aud` claim.
    pub audience: String,
    /// Access token lifetime (15 minutes by default).
    pub access_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_ttl: Duration,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpRange>,
}

/// Everything authentication needs, shared by handlers.
pub struct AuthService {
    /// The database.
    pub db: shopkeep_store::Db,
    /// Settings.
    pub opts: AuthOptions,
    /// Signing keys.
    pub keys: Arc<KeyRing>,
    /// Password hashing.
    pub hasher: PasswordHasher,
    /// Failed-login counter.
    pub limiter: FailureLimiter,
    /// Revoked access tokens.
    pub revoked: Arc<RevocationList>,
    /// Access tokens whose signature already verified.
    pub verified: tokens::VerifiedCache,
}
