//! Server-side web sessions kept in the database (the default store; Valkey/Redis replaces it
//! when configured). Rows are found by the SHA-256 hash of the cookie token, never the token.

use uuid::Uuid;

use crate::{Db, StoreError, on_pool};

/// A session ends after this long without a request (sliding), in microseconds: 1 hour.
pub const IDLE_US: i64 = 3_600_000_000;
/// A session ends this long after it was created, however active, in microseconds: 24 hours.
pub const ABSOLUTE_US: i64 = 86_400_000_000;

/// A stored web session.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    /// SHA-256 of the cookie token.
    pub token_hash: Vec<u8>,
    /// The signed-in user; `None` for a visitor who has not signed in.
    pub user_id: Option<Uuid>,
    /// The shop the user signed in to.
    pub shop_id: Option<Uuid>,
    /// The session's CSRF token.
    pub csrf: String,
    /// A one-time message for the next page.
    pub flash: Option<String>,
    /// Microseconds.
    pub created_at: i64,
    /// Microseconds; the last request that refreshed it.
    pub last_seen_at: i64,
}

/// `last_seen_at` is written at most this often per session (µs), so reading pages does not
/// write on every request.
pub const TOUCH_AFTER_US: i64 = 60_000_000;

impl SessionRow {
    /// Idle longer than [`IDLE_US`] or older than [`ABSOLUTE_US`] at `now`.
    pub fn expired(&self, now: i64) -> bool {
        now - self.last_seen_at > IDLE_US || now - self.created_at > ABSOLUTE_US
    }

    /// Due for a sliding refresh of `last_seen_at`.
    pub fn stale(&self, now: i64) -> bool {
        now - self.last_seen_at > TOUCH_AFTER_US
    }

    /// Milliseconds until the session ends at `now` (idle or absolute, whichever is first); ≥ 1.
    pub fn ttl_ms(&self, now: i64) -> i64 {
        let left = (self.last_seen_at + IDLE_US).min(self.created_at + ABSOLUTE_US) - now;
        (left / 1000).max(1)
    }
}

const COLUMNS: &str = "token_hash, user_id, shop_id, csrf, flash, created_at, last_seen_at";
const INSERT: &str = "INSERT INTO web_sessions \
     (token_hash, user_id, shop_id, csrf, flash, created_at, last_seen_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Stores a new session.
#[tracing::instrument(skip_all)]
pub async fn insert(db: &Db, row: &SessionRow) -> Result<(), StoreError> {
    let _write = db.write_lock().await;
    on_pool!(db, pool => sqlx::query(INSERT)
        .bind(&row.token_hash).bind(row.user_id).bind(row.shop_id).bind(&row.csrf)
        .bind(&row.flash).bind(row.created_at).bind(row.last_seen_at)
        .execute(pool).await.map(|_| ()))?;
    Ok(())
}

/// Deletes `old` (when given) and stores `new`, in one transaction: a sign-in replaces the
/// visitor's session.
#[tracing::instrument(skip_all)]
pub async fn replace(db: &Db, old: Option<&[u8]>, new: &SessionRow) -> Result<(), StoreError> {
    let _write = db.write_lock().await;
    on_pool!(db, pool => async {
        let mut tx = pool.begin().await?;
        if let Some(old) = old {
            sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
                .bind(old).execute(&mut *tx).await?;
        }
        sqlx::query(INSERT)
            .bind(&new.token_hash).bind(new.user_id).bind(new.shop_id).bind(&new.csrf)
            .bind(&new.flash).bind(new.created_at).bind(new.last_seen_at)
            .execute(&mut *tx).await?;
        tx.commit().await
    }.await)?;
    Ok(())
}

/// The session with this token hash, expired or not.
#[tracing::instrument(skip_all)]
pub async fn get(db: &Db, token_hash: &[u8]) -> Result<Option<SessionRow>, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM web_sessions WHERE token_hash = $1"
    ));
    Ok(on_pool!(db, pool => sqlx::query_as(sql).bind(token_hash).fetch_optional(pool).await)?)
}

/// Moves `last_seen_at` forward to `now` (never back); false when the session is gone.
#[tracing::instrument(skip_all)]
pub async fn touch(db: &Db, token_hash: &[u8], now: i64) -> Result<bool, StoreError> {
    let _write = db.write_lock().await;
    let n = on_pool!(db, pool => sqlx::query(
        "UPDATE web_sessions SET last_seen_at = CASE WHEN last_seen_at < $1 THEN $1 ELSE last_seen_at END \
         WHERE token_hash = $2")
        .bind(now).bind(token_hash).execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Sets or clears the flash message; false when the session is gone.
#[tracing::instrument(skip_all)]
pub async fn set_flash(
    db: &Db,
    token_hash: &[u8],
    flash: Option<&str>,
) -> Result<bool, StoreError> {
    let _write = db.write_lock().await;
    let n = on_pool!(db, pool => sqlx::query("UPDATE web_sessions SET flash = $1 WHERE token_hash = $2")
        .bind(flash).bind(token_hash).execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Deletes one session; false when it was already gone.
#[tracing::instrument(skip_all)]
pub async fn delete(db: &Db, token_hash: &[u8]) -> Result<bool, StoreError> {
    let _write = db.write_lock().await;
    let n = on_pool!(db, pool => sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
        .bind(token_hash).execute(pool).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Deletes every session of a user (signing them out everywhere); returns how many.
#[tracing::instrument(skip_all, fields(user = %user_id))]
pub async fn delete_for_user(db: &Db, user_id: Uuid) -> Result<u64, StoreError> {
    let _write = db.write_lock().await;
    Ok(
        on_pool!(db, pool => sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
        .bind(user_id).execute(pool).await.map(|r| r.rows_affected()))?,
    )
}

/// Deletes sessions idle longer than [`IDLE_US`] or older than [`ABSOLUTE_US`] at `now`;
/// returns how many.
#[tracing::instrument(skip_all)]
pub async fn prune(db: &Db, now: i64) -> Result<u64, StoreError> {
    let _write = db.write_lock().await;
    Ok(on_pool!(db, pool => sqlx::query(
        "DELETE FROM web_sessions WHERE last_seen_at < $1 OR created_at < $2")
        .bind(now - IDLE_US).bind(now - ABSOLUTE_US).execute(pool).await.map(|r| r.rows_affected()))?)
}
