//! Account administration shared by start-up and the CLI: the bootstrap admin, admin creation,
//! password resets.

use anyhow::{Context, bail};
use serde_json::json;
use shopkeep_domain::accounts::{NewPassword, Role, Username};
use shopkeep_domain::{ShopId, UserId};
use shopkeep_server::auth::password::{HashPolicy, PasswordHasher};
use shopkeep_store::audit::{self, AuditEntry};
use shopkeep_store::{Db, StoreError, accounts};

use crate::config::{Config, PasswordHash};

/// The hashing policy the configuration asks for.
pub fn hash_policy(config: &Config) -> HashPolicy {
    match config.auth.password_hash {
        PasswordHash::Bcrypt => HashPolicy::Bcrypt {
            cost: config.auth.bcrypt_cost,
        },
        PasswordHash::Argon2id => HashPolicy::Argon2id,
    }
}

/// Whether an admin was made or already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new platform admin.
    Created,
    /// The username existed; nothing was changed.
    Exists,
}

/// Creates a platform admin, owner of the default shop, unless the username exists. Never
/// changes an existing account (a restart must not reset a password).
pub async fn create_admin(
    db: &Db,
    hasher: &PasswordHasher,
    username: &str,
    password: &str,
) -> anyhow::Result<Created> {
    let name =
        Username::parse("username", username).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let pw = NewPassword::parse("password", password, &[username])
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    if accounts::find_user(db, &name.folded()).await?.is_some() {
        return Ok(Created::Exists);
    }
    let shop = accounts::ensure_default_shop(db).await?;
    let new = accounts::NewUser {
        username: name.as_str().to_string(),
        username_folded: name.folded(),
        password_hash: hasher.hash(pw.expose()).await?,
        email: None,
        is_admin: true,
        locale: "en".into(),
        currency: "USD".into(),
        timezone: "UTC".into(),
    };
    match accounts::create_user(db, &new, Some((ShopId(shop.id), Role::Owner))).await {
        Ok(user) => {
            audit::record(
                db,
                AuditEntry {
                    shop: Some(ShopId(shop.id)),
                    action: "admin.created",
                    target: Some(user.username),
                    detail: json!({}),
                    ..AuditEntry::default()
                },
            )
            .await?;
            Ok(Created::Created)
        }
        // Another instance created it at the same moment.
        Err(StoreError::Conflict(_)) => Ok(Created::Exists),
        Err(e) => Err(e.into()),
    }
}

/// What a password reset ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetOutcome {
    /// The user.
    pub user_id: uuid::Uuid,
    /// Refresh tokens revoked (API logins).
    pub refresh_tokens_revoked: u64,
    /// Web sessions deleted from the database (web UI sign-ins).
    pub web_sessions_deleted: u64,
}

/// Sets a new password for an existing user and ends their logins: every refresh token is
/// revoked and every web session kept in the database is deleted.
pub async fn reset_password(
    db: &Db,
    hasher: &PasswordHasher,
    username: &str,
    password: &str,
) -> anyhow::Result<ResetOutcome> {
    let user = accounts::find_user(db, &shopkeep_domain::accounts::fold(username))
        .await?
        .with_context(|| format!("no user named {username}"))?;
    let pw = match NewPassword::parse("password", password, &[username]) {
        Ok(p) => p,
        Err(e) => bail!("{}", e.message),
    };
    accounts::set_password_hash(db, UserId(user.id), &hasher.hash(pw.expose()).await?).await?;
    let revoked = shopkeep_store::tokens::revoke_user_refresh(db, UserId(user.id)).await?;
    let sessions = shopkeep_store::sessions::delete_for_user(db, user.id).await?;
    audit::record(
        db,
        AuditEntry {
            action: "user.password_reset",
            target: Some(user.username),
            detail: json!({ "refresh_tokens_revoked": revoked, "web_sessions_deleted": sessions }),
            ..AuditEntry::default()
        },
    )
    .await?;
    Ok(ResetOutcome {
        user_id: user.id,
        refresh_tokens_revoked: revoked,
        web_sessions_deleted: sessions,
    })
}
