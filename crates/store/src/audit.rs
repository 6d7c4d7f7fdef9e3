//! The audit log: who did what, from where, to which shop.

use shopkeep_domain::{ShopId, UserId};
use uuid::Uuid;

use crate::{Db, ShopScope, StoreError, on_pool};

/// One event to record.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    /// The shop, or `None` for platform events.
    pub shop: Option<ShopId>,
    /// Who acted, when known.
    pub actor: Option<UserId>,
    /// Stable action name (`login.succeeded`, `member.role_changed`, ...).
    pub action: &'static str,
    /// What it acted on (a username, key id, ...).
    pub target: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// JSON object with details; never secrets.
    pub detail: serde_json::Value,
    /// The request that caused it.
    pub request_id: Option<String>,
}

/// A stored audit event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    /// Time-ordered id.
    pub id: Uuid,
    /// Actor.
    pub actor_id: Option<Uuid>,
    /// Action name.
    pub action: String,
    /// Target.
    pub target: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// JSON text.
    pub detail: String,
    /// Request id.
    pub request_id: Option<String>,
    /// Microseconds.
    pub created_at: i64,
}

/// Inserts `$e` (an [`AuditEntry`]) through `$conn`: a pool, or a caller's open transaction.
macro_rules! insert_audit {
    ($conn:expr, $e:expr) => {{
        let e: &$crate::audit::AuditEntry = $e;
        sqlx::query(
            "INSERT INTO audit_log (id, shop_id, actor_id, action, target, ip, detail, request_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(e.shop.map(|s| s.0))
        .bind(e.actor.map(|a| a.0))
        .bind(e.action)
        .bind(&e.target)
        .bind(&e.ip)
        .bind(e.detail.to_string())
        .bind(&e.request_id)
        .bind(shopkeep_domain::Timestamp::now().0)
        .execute($conn)
        .await
        .map(|_| ())
    }};
}
pub(crate) use insert_audit;

/// Appends an event.
pub async fn record(db: &Db, e: AuditEntry) -> Result<(), StoreError> {
    on_pool!(db, pool => insert_audit!(pool, &e))?;
    Ok(())
}

/// The scoped shop's events, newest first, strictly older than `before` when given.
pub async fn list(
    db: &Db,
    scope: ShopScope,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_as(
        "SELECT id, actor_id, action, target, ip, detail, request_id, created_at FROM audit_log \
         WHERE shop_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3")
        .bind(scope.shop_id().0).bind(before).bind(limit).fetch_all(pool).await)?)
}
