//! Per-shop API keys, stored as SHA-256 hashes of the secret.

use shopkeep_domain::{Timestamp, UserId};
use uuid::Uuid;

use crate::{Db, ShopScope, StoreError, on_pool};

/// A stored API key (never the secret).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    /// Owning shop.
    pub shop_id: Uuid,
    /// Key id.
    pub id: Uuid,
    /// Label.
    pub name: String,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    /// Space-separated scopes.
    pub scopes: String,
    /// Who created it.
    pub created_by: Option<Uuid>,
    /// Microseconds.
    pub created_at: i64,
    /// Microseconds.
    pub last_used_at: Option<i64>,
    /// Microseconds.
    pub revoked_at: Option<i64>,
}

const COLUMNS: &str =
    "shop_id, id, name, prefix, scopes, created_by, created_at, last_used_at, revoked_at";

/// Stores a new key for the scoped shop.
pub async fn create(
    db: &Db,
    scope: ShopScope,
    name: &str,
    prefix: &str,
    secret_hash: &[u8],
    scopes: &str,
    created_by: Option<UserId>,
) -> Result<ApiKeyRow, StoreError> {
    let id = Uuid::now_v7();
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO api_keys (shop_id, id, name, prefix, secret_hash, scopes, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(scope.shop_id().0).bind(id).bind(name).bind(prefix).bind(secret_hash).bind(scopes)
        .bind(created_by.map(|u| u.0)).bind(Timestamp::now().0).execute(pool).await.map(|_| ()))?;
    get(db, scope, id).await
}

/// One key of the scoped shop.
pub async fn get(db: &Db, scope: ShopScope, id: Uuid) -> Result<ApiKeyRow, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_keys WHERE shop_id = $1 AND id = $2"
    ));
    Ok(
        on_pool!(db, pool => sqlx::query_as(sql).bind(scope.shop_id().0).bind(id).fetch_one(pool).await)?,
    )
}

/// Every key of the scoped shop, newest first.
pub async fn list(db: &Db, scope: ShopScope) -> Result<Vec<ApiKeyRow>, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_keys WHERE shop_id = $1 ORDER BY id DESC"
    ));
    Ok(on_pool!(db, pool => sqlx::query_as(sql).bind(scope.shop_id().0).fetch_all(pool).await)?)
}

/// Revokes a key of the scoped shop; `NotFound` if it is not theirs or already revoked.
pub async fn revoke(db: &Db, scope: ShopScope, id: Uuid) -> Result<(), StoreError> {
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE api_keys SET revoked_at = $1 WHERE shop_id = $2 AND id = $3 AND revoked_at IS NULL")
        .bind(Timestamp::now().0).bind(scope.shop_id().0).bind(id).execute(pool).await.map(|r| r.rows_affected()))?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}

/// The key with this secret hash, across shops (authentication produces the scope from it).
pub async fn find_by_hash(db: &Db, hash: &[u8]) -> Result<Option<ApiKeyRow>, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_keys WHERE secret_hash = $1"
    ));
    Ok(on_pool!(db, pool => sqlx::query_as(sql).bind(hash).fetch_optional(pool).await)?)
}

/// Records use, at most once a minute per key to keep authentication read-mostly.
pub async fn touch(db: &Db, shop: Uuid, id: Uuid) -> Result<(), StoreError> {
    let now = Timestamp::now().0;
    on_pool!(db, pool => sqlx::query(
        "UPDATE api_keys SET last_used_at = $1 WHERE shop_id = $2 AND id = $3 \
         AND (last_used_at IS NULL OR last_used_at < $4)")
        .bind(now).bind(shop).bind(id).bind(now - 60_000_000).execute(pool).await.map(|_| ()))?;
    Ok(())
}
