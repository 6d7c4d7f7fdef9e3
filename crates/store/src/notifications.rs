//! Notices to a user (an order decided, ...), written by background jobs.

use shopkeep_domain::UserId;
use uuid::Uuid;

use crate::{Db, ShopScope, StoreError, on_pool};

/// A stored notice.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationRow {
    /// Id (the job's that wrote it).
    pub id: Uuid,
    /// `order.approved`, `order.rejected`, ...
    pub kind: String,
    /// One line.
    pub subject: String,
    /// Text.
    pub body: String,
    /// The thing it is about (an order id).
    pub resource_id: Option<String>,
    /// Microseconds.
    pub created_at: i64,
}

/// A notice to write.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// Id: the writing job's id, so a repeated attempt writes nothing new.
    pub id: Uuid,
    /// Recipient.
    pub user: UserId,
    /// Kind.
    pub kind: String,
    /// One line.
    pub subject: String,
    /// Text.
    pub body: String,
    /// The thing it is about.
    pub resource_id: Option<String>,
    /// Microseconds.
    pub created_at: i64,
}

/// Writes a notice once: a second write with the same id changes nothing. True when written.
pub async fn insert_once(
    db: &Db,
    scope: ShopScope,
    n: &NewNotification,
) -> Result<bool, StoreError> {
    let _write = db.write_lock().await;
    Ok(on_pool!(db, pool => sqlx::query(
        "INSERT INTO notifications (shop_id, id, user_id, kind, subject, body, resource_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (shop_id, id) DO NOTHING")
        .bind(scope.shop_id().0).bind(n.id).bind(n.user.0).bind(&n.kind).bind(&n.subject).bind(&n.body)
        .bind(&n.resource_id).bind(n.created_at).execute(pool).await?.rows_affected())
        == 1)
}

/// A user's notices in a shop, newest first, older than `before` when given.
pub async fn for_user(
    db: &Db,
    scope: ShopScope,
    user: UserId,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<NotificationRow>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_as(
        "SELECT id, kind, subject, body, resource_id, created_at FROM notifications \
         WHERE shop_id = $1 AND user_id = $2 AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4")
        .bind(scope.shop_id().0).bind(user.0).bind(before).bind(limit).fetch_all(pool).await?))
}
