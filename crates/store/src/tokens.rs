//! Refresh token families, the access-token deny-list and the JWT signing keys.

use shopkeep_domain::{ShopId, Timestamp, UserId};
use uuid::Uuid;

use crate::{Db, StoreError, on_pool};

/// A stored refresh token (its hash, never the token).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshRow {
    /// Row id.
    pub id: Uuid,
    /// The shop the login was into.
    pub shop_id: Uuid,
    /// The user.
    pub user_id: Uuid,
    /// One login's chain of rotated tokens.
    pub family_id: Uuid,
    /// Expiry, microseconds.
    pub expires_at: i64,
    /// Set when rotated.
    pub used_at: Option<i64>,
    /// Set when the family was revoked.
    pub revoked_at: Option<i64>,
    /// Space-separated scopes the login asked for; `None` means all of the role's.
    pub scope: Option<String>,
}

/// Stores a new refresh token of a family.
pub async fn insert_refresh(
    db: &Db,
    hash: &[u8],
    shop: ShopId,
    user: UserId,
    family: Uuid,
    expires_at: Timestamp,
    scope: Option<&str>,
) -> Result<(), StoreError> {
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO refresh_tokens (id, shop_id, user_id, family_id, token_hash, created_at, expires_at, scope) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(Uuid::now_v7()).bind(shop.0).bind(user.0).bind(family).bind(hash)
        .bind(Timestamp::now().0).bind(expires_at.0).bind(scope).execute(pool).await.map(|_| ()))?;
    Ok(())
}

/// Looks a refresh token up by hash.
pub async fn find_refresh(db: &Db, hash: &[u8]) -> Result<Option<RefreshRow>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_as(
        "SELECT id, shop_id, user_id, family_id, expires_at, used_at, revoked_at, scope FROM refresh_tokens WHERE token_hash = $1")
        .bind(hash).fetch_optional(pool).await)?)
}

/// Marks a token used, exactly once: false when another request rotated it first.
pub async fn consume_refresh(db: &Db, id: Uuid) -> Result<bool, StoreError> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL")
        .bind(Timestamp::now().0).bind(id).execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Revokes every token of a family; returns how many were still live.
pub async fn revoke_family(db: &Db, family: Uuid) -> Result<u64, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
        .bind(Timestamp::now().0).bind(family).execute(pool).await.map(|r| r.rows_affected()))?)
}

/// Puts an access token's id on the deny-list until it expires.
pub async fn revoke_access(db: &Db, jti: Uuid, expires_at: Timestamp) -> Result<(), StoreError> {
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO revoked_tokens (jti, expires_at, revoked_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(jti).bind(expires_at.0).bind(Timestamp::now().0).execute(pool).await.map(|_| ()))?;
    Ok(())
}

/// Deny-list entries revoked at or after `since` and not yet expired: (jti, expires_at, revoked_at).
pub async fn revoked_since(db: &Db, since: Timestamp) -> Result<Vec<(Uuid, i64, i64)>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_as(
        "SELECT jti, expires_at, revoked_at FROM revoked_tokens WHERE revoked_at >= $1 AND expires_at > $2")
        .bind(since.0).bind(Timestamp::now().0).fetch_all(pool).await)?)
}

/// Deletes expired deny-list entries and refresh tokens; returns rows removed.
pub async fn prune_expired(db: &Db) -> Result<u64, StoreError> {
    let now = Timestamp::now().0;
    let a = on_pool!(db, pool => sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1")
        .bind(now).execute(pool).await.map(|r| r.rows_affected()))?;
    let b = on_pool!(db, pool => sqlx::query("DELETE FROM refresh_tokens WHERE expires_at <= $1")
        .bind(now).execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(a + b)
}

/// A stored signing key; the private half is sealed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyRow {
    /// Key id (`kid`).
    pub kid: String,
    /// Sealed PKCS#8 private key.
    pub private_key: Vec<u8>,
    /// Raw 32-byte Ed25519 public key.
    pub public_key: Vec<u8>,
    /// Microseconds.
    pub created_at: i64,
    /// Microseconds; set when a newer key took over signing.
    pub retired_at: Option<i64>,
}

/// Every signing key still useful for verification (unretired, or retired after `verify_after`).
pub async fn signing_keys(
    db: &Db,
    verify_after: Timestamp,
) -> Result<Vec<SigningKeyRow>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_as(
        "SELECT kid, private_key, public_key, created_at, retired_at FROM signing_keys \
         WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at")
        .bind(verify_after.0).fetch_all(pool).await)?)
}

/// Adds a key and retires every other unretired key, in one transaction.
pub async fn rotate_signing_key(
    db: &Db,
    kid: &str,
    sealed_private: &[u8],
    public: &[u8],
) -> Result<(), StoreError> {
    let now = Timestamp::now().0;
    on_pool!(db, pool => async {
        let mut tx = pool.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(now).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO signing_keys (kid, private_key, public_key, created_at) VALUES ($1, $2, $3, $4)")
            .bind(kid).bind(sealed_private).bind(public).bind(now).execute(&mut *tx).await?;
        tx.commit().await
    }.await)?;
    Ok(())
}

/// Inserts the first key only when there is no unretired key yet (concurrent starters agree).
pub async fn insert_first_signing_key(
    db: &Db,
    kid: &str,
    sealed_private: &[u8],
    public: &[u8],
) -> Result<bool, StoreError> {
    let n = on_pool!(db, pool => sqlx::query(
        "INSERT INTO signing_keys (kid, private_key, public_key, created_at) \
         SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE retired_at IS NULL)")
        .bind(kid).bind(sealed_private).bind(public).bind(Timestamp::now().0)
        .execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Revokes every live refresh token of a user (after a password reset).
pub async fn revoke_user_refresh(db: &Db, user: UserId) -> Result<u64, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(Timestamp::now().0).bind(user.0).execute(pool).await.map(|r| r.rows_affected()))?)
}
