//! Webhooks: shops' accounts at providers (`integrations`), inbound receipts, and the outbound
//! side: endpoints, messages taken from the orders outbox, one delivery per message and
//! endpoint, and every delivery attempt.
//!
//! Inbound: a verified receipt is inserted with its processing job in one transaction, and
//! `(provider, event_id)` turns a redelivery into a duplicate that enqueues nothing.
//! Outbound: [`dispatch_outbox`] turns unpublished outbox rows into messages and deliveries and
//! enqueues each delivery's first attempt in the same transaction; [`record_attempts`] stores an
//! attempt, moves the delivery on and enqueues the next attempt, also in one transaction.

use shopkeep_domain::ShopId;
use shopkeep_domain::webhooks::filter_matches;
use uuid::Uuid;

use crate::audit::{AuditEntry, insert_audit};
use crate::jobs::{Conn, NewJob, enqueue_in};
use crate::{Db, ShopScope, StoreError, on_pool};

/// A shop's account at a provider.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Integration {
    /// Shop.
    pub shop_id: Uuid,
    /// `shopify`, `printify`, `stripe`, `standard`.
    pub provider: String,
    /// The provider's name for the account (`acme.myshopify.com`, a Printify shop id).
    pub account: String,
    /// Sealed per-shop webhook secret, base64.
    pub secret: Option<String>,
    /// The secret before the last rotation, still accepted.
    pub previous_secret: Option<String>,
    /// When the provider told us the app was removed.
    pub uninstalled_at: Option<i64>,
    /// Microseconds.
    pub created_at: i64,
    /// Microseconds.
    pub updated_at: i64,
}

const INTEGRATION_COLS: &str =
    "shop_id, provider, account, secret, previous_secret, uninstalled_at, created_at, updated_at";

/// Links the scoped shop to its account at `provider`. A new `secret` (sealed) moves the old one
/// to `previous_secret`; `None` keeps the stored secrets.
pub async fn upsert_integration(
    db: &Db,
    scope: ShopScope,
    provider: &str,
    account: &str,
    secret: Option<&str>,
    now: i64,
) -> Result<Integration, StoreError> {
    let shop = scope.shop_id().0;
    let _write = db.write_lock().await;
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO integrations (shop_id, provider, account, secret, previous_secret, uninstalled_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, NULL, NULL, $5, $5) \
         ON CONFLICT (shop_id, provider) DO UPDATE SET account = excluded.account, uninstalled_at = NULL, updated_at = excluded.updated_at, \
           previous_secret = CASE WHEN excluded.secret IS NULL THEN integrations.previous_secret ELSE integrations.secret END, \
           secret = COALESCE(excluded.secret, integrations.secret)")
        .bind(shop).bind(provider).bind(account).bind(secret).bind(now)
        .execute(pool).await.map(|_| ()))?;
    integration(db, scope, provider)
        .await?
        .ok_or(StoreError::NotFound)
}

/// The scoped shop's account at `provider`.
pub async fn integration(
    db: &Db,
    scope: ShopScope,
    provider: &str,
) -> Result<Option<Integration>, StoreError> {
    let sql =
        format!("SELECT {INTEGRATION_COLS} FROM integrations WHERE shop_id = $1 AND provider = $2");
    Ok(
        on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(scope.shop_id().0).bind(provider).fetch_optional(pool).await?),
    )
}

/// The scoped shop's accounts.
pub async fn integrations(db: &Db, scope: ShopScope) -> Result<Vec<Integration>, StoreError> {
    let sql =
        format!("SELECT {INTEGRATION_COLS} FROM integrations WHERE shop_id = $1 ORDER BY provider");
    Ok(
        on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(scope.shop_id().0).fetch_all(pool).await?),
    )
}

/// The shop behind a provider's account name: how an inbound webhook finds its shop.
pub async fn integration_by_account(
    db: &Db,
    provider: &str,
    account: &str,
) -> Result<Option<Integration>, StoreError> {
    let sql =
        format!("SELECT {INTEGRATION_COLS} FROM integrations WHERE provider = $1 AND account = $2");
    Ok(
        on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(provider).bind(account).fetch_optional(pool).await?),
    )
}

/// Removes the scoped shop's link to `provider`; false when there was none.
pub async fn delete_integration(
    db: &Db,
    scope: ShopScope,
    provider: &str,
) -> Result<bool, StoreError> {
    let _write = db.write_lock().await;
    Ok(
        on_pool!(db, pool => sqlx::query("DELETE FROM integrations WHERE shop_id = $1 AND provider = $2")
        .bind(scope.shop_id().0).bind(provider).execute(pool).await?.rows_affected())
            == 1,
    )
}

/// Records that the provider removed shopkeep from the shop (Shopify `app/uninstalled`); the
/// per-shop secrets are dropped.
pub async fn mark_uninstalled(
    db: &Db,
    scope: ShopScope,
    provider: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let _write = db.write_lock().await;
    Ok(on_pool!(db, pool => sqlx::query(
        "UPDATE integrations SET uninstalled_at = $1, updated_at = $1, secret = NULL, previous_secret = NULL \
         WHERE shop_id = $2 AND provider = $3")
        .bind(now).bind(scope.shop_id().0).bind(provider).execute(pool).await?.rows_affected())
        == 1)
}

/// A verified inbound webhook to store.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    /// Its id (chosen by the caller, so the processing job can carry it).
    pub id: Uuid,
    /// Provider.
    pub provider: String,
    /// The provider's event id: the de-duplication key.
    pub event_id: String,
    /// Topic or event type.
    pub topic: String,
    /// The resolved shop, if any.
    pub shop_id: Option<Uuid>,
    /// The provider's name for the shop, as received.
    pub shop_ref: Option<String>,
    /// The object the event is about.
    pub resource_id: Option<String>,
    /// `queued`, `unhandled` or `orphaned`.
    pub status: String,
    /// JSON object of the selected headers.
    pub headers: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// Microseconds.
    pub received_at: i64,
}

/// What storing a receipt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored; its processing job (when one was given) was enqueued with it.
    New,
    /// The provider sent this event before; this is the first receipt's id.
    Duplicate(Uuid),
}

/// Stores receipts, each with its processing job when it has one, in one transaction (group
/// commit: one fsync for every webhook that arrived while the previous batch was committing). A
/// receipt whose `(provider, event_id)` exists, already or earlier in the same batch, stores and
/// enqueues nothing and comes back as that first receipt's duplicate.
pub async fn insert_receipts(
    db: &Db,
    batch: &[(NewReceipt, Option<NewJob>)],
) -> Result<Vec<Stored>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let _write = db.write_lock().await;
    // One multi-row insert for the batch; the rows it returns are the new receipts, and every
    // other one repeats an event id already stored (or earlier in the same batch).
    macro_rules! body {
        ($pool:expr, $db:ty) => {{
            let mut tx = $pool.begin().await?;
            let mut q: sqlx::QueryBuilder<$db> = sqlx::QueryBuilder::new(
                "INSERT INTO webhook_receipts (id, provider, event_id, topic, shop_id, shop_ref, resource_id, \
                 status, headers, body, received_at, attempts, job_id) ",
            );
            q.push_values(batch, |mut row, (r, job)| {
                row.push_bind(r.id)
                    .push_bind(&r.provider)
                    .push_bind(&r.event_id)
                    .push_bind(&r.topic)
                    .push_bind(r.shop_id)
                    .push_bind(&r.shop_ref)
                    .push_bind(&r.resource_id)
                    .push_bind(&r.status)
                    .push_bind(&r.headers)
                    .push_bind(&r.body)
                    .push_bind(r.received_at)
                    .push("0")
                    .push_bind(job.as_ref().map(|j| j.id));
            });
            q.push(" ON CONFLICT (provider, event_id) DO NOTHING RETURNING id");
            let inserted: std::collections::HashSet<Uuid> = q
                .build_query_scalar::<Uuid>()
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
            let mut out = Vec::with_capacity(batch.len());
            let mut jobs = Vec::new();
            for (r, job) in batch {
                if inserted.contains(&r.id) {
                    out.push(Stored::New);
                    jobs.extend(job.iter().cloned());
                    continue;
                }
                let first: Uuid = sqlx::query_scalar(
                    "SELECT id FROM webhook_receipts WHERE provider = $1 AND event_id = $2",
                )
                .bind(&r.provider)
                .bind(&r.event_id)
                .fetch_one(&mut *tx)
                .await?;
                out.push(Stored::Duplicate(first));
            }
            if !jobs.is_empty() {
                enqueue_in(&mut *tx, &jobs, batch[0].0.received_at).await?;
            }
            tx.commit().await?;
            Ok(out)
        }};
    }
    match db {
        Db::Sqlite(s) => body!(s.pool, sqlx::Sqlite),
        Db::Postgres(pool) => body!(pool, sqlx::Postgres),
    }
}

/// A stored receipt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Receipt {
    /// Id.
    pub id: Uuid,
    /// Provider.
    pub provider: String,
    /// The provider's event id.
    pub event_id: String,
    /// Topic.
    pub topic: String,
    /// Resolved shop.
    pub shop_id: Option<Uuid>,
    /// The provider's name for the shop.
    pub shop_ref: Option<String>,
    /// The object the event is about.
    pub resource_id: Option<String>,
    /// `queued`, `processed`, `failed`, `unhandled`, `orphaned`.
    pub status: String,
    /// JSON object of selected headers.
    pub headers: String,
    /// Raw body (empty once redacted).
    pub body: Vec<u8>,
    /// Microseconds.
    pub received_at: i64,
    /// Microseconds.
    pub processed_at: Option<i64>,
    /// Processing attempts that finished.
    pub attempts: i32,
    /// The last processing error.
    pub last_error: Option<String>,
    /// When the body was erased.
    pub redacted_at: Option<i64>,
    /// The latest processing job.
    pub job_id: Option<Uuid>,
}

const RECEIPT_COLS: &str = "id, provider, event_id, topic, shop_id, shop_ref, resource_id, status, headers, body, \
     received_at, processed_at, attempts, last_error, redacted_at, job_id";

/// A receipt by id, whatever its shop (for the processing job and platform admins).
pub async fn receipt(db: &Db, id: Uuid) -> Result<Option<Receipt>, StoreError> {
    let sql = format!("SELECT {RECEIPT_COLS} FROM webhook_receipts WHERE id = $1");
    Ok(
        on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?),
    )
}

/// Filters of the receipt list.
#[derive(Debug, Clone, Default)]
pub struct ReceiptFilter {
    /// Only this shop's receipts; `None` lists every shop's and the orphaned ones.
    pub shop: Option<ShopScope>,
    /// Only orphaned receipts (no shop).
    pub orphaned_only: bool,
    /// Provider.
    pub provider: Option<String>,
    /// Status.
    pub status: Option<String>,
    /// Topic.
    pub topic: Option<String>,
    /// Strictly older than this id.
    pub before: Option<Uuid>,
    /// Page size.
    pub limit: i64,
}

/// Receipts, newest first.
pub async fn receipts(db: &Db, f: &ReceiptFilter) -> Result<Vec<Receipt>, StoreError> {
    let sql = format!(
        "SELECT {RECEIPT_COLS} FROM webhook_receipts WHERE ($1 IS NULL OR shop_id = $1) AND ($2 = 0 OR shop_id IS NULL) \
         AND ($3 IS NULL OR provider = $3) AND ($4 IS NULL OR status = $4) AND ($5 IS NULL OR topic = $5) \
         AND ($6 IS NULL OR id < $6) ORDER BY id DESC LIMIT $7"
    );
    Ok(
        on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(f.shop.map(|s| s.shop_id().0)).bind(i32::from(f.orphaned_only)).bind(&f.provider).bind(&f.status)
        .bind(&f.topic).bind(f.before).bind(f.limit).fetch_all(pool).await?),
    )
}

/// Records how processing a receipt ended (`processed`, `failed`, `unhandled`).
pub async fn finish_receipt(
    db: &Db,
    id: Uuid,
    status: &str,
    error: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let _write = db.write_lock().await;
    on_pool!(db, pool => sqlx::query(
        "UPDATE webhook_receipts SET status = $1, last_error = $2, processed_at = $3, attempts = attempts + 1 WHERE id = $4")
        .bind(status).bind(error).bind(now).bind(id).execute(pool).await.map(|_| ()))?;
    Ok(())
}

/// Queues a receipt's processing again (an admin's replay); false when it does not exist.
pub async fn requeue_receipt(
    db: &Db,
    id: Uuid,
    shop_id: Option<Uuid>,
    job: &NewJob,
    now: i64,
) -> Result<bool, StoreError> {
    let _write = db.write_lock().await;
    on_pool!(db, pool => async {
        let mut tx = pool.begin().await?;
        let n = sqlx::query(
            "UPDATE webhook_receipts SET status = 'queued', job_id = $1, shop_id = COALESCE($2, shop_id), last_error = NULL WHERE id = $3")
            .bind(job.id).bind(shop_id).bind(id).execute(&mut *tx).await?.rows_affected();
        if n == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        enqueue_in(&mut *tx, std::slice::from_ref(job), now).await?;
        tx.commit().await?;
        Ok(true)
    }.await)
}

/// Erases the stored bodies of the scoped shop's receipts from `provider` about any of
/// `resources` (`None`: every receipt of the shop from `provider`). Returns the receipts erased.
pub async fn redact_receipts(
    db: &Db,
    scope: ShopScope,
    provider: &str,
    resources: Option<&[String]>,
    now: i64,
) -> Result<u64, StoreError> {
    let _write = db.write_lock().await;
    let shop = scope.shop_id().0;
    macro_rules! body {
        ($pool:expr, $db:ty) => {{
            let mut q: sqlx::QueryBuilder<$db> =
                sqlx::QueryBuilder::new("UPDATE webhook_receipts SET body = ");
            q.push_bind(Vec::<u8>::new())
                .push(", headers = '{}', redacted_at = ")
                .push_bind(now)
                .push(" WHERE shop_id = ")
                .push_bind(shop)
                .push(" AND provider = ")
                .push_bind(provider.to_string());
            if let Some(rs) = resources {
                if rs.is_empty() {
                    return Ok(0);
                }
                q.push(" AND resource_id IN (");
                let mut sep = q.separated(", ");
                for r in rs {
                    sep.push_bind(r.clone());
                }
                q.push(")");
            }
            Ok(q.build().execute($pool).await?.rows_affected())
        }};
    }
    match db {
        Db::Sqlite(s) => body!(&s.pool, sqlx::Sqlite),
        Db::Postgres(pool) => body!(pool, sqlx::Postgres),
    }
}

/// An outbound destination.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Endpoint {
    /// Shop.
    pub shop_id: Uuid,
    /// Id.
    pub id: Uuid,
    /// Where deliveries go.
    pub url: String,
    /// The owner's note.
    pub description: String,
    /// JSON array of event type filters; empty = every event.
    pub event_types: String,
    /// 1 when deliveries go out.
    pub enabled: i32,
    /// Sealed `whsec_` secret, base64.
    pub secret: String,
    /// The secret before the last rotation, still signing until `previous_until`.
    pub previous_secret: Option<String>,
    /// Microseconds.
    pub previous_until: Option<i64>,
    /// JSON object of extra headers.
    pub headers: String,
    /// At most this many deliveries per second.
    pub rate_per_second: Option<i32>,
    /// Start of the current run of failures.
    pub failing_since: Option<i64>,
    /// Why shopkeep disabled it.
    pub disabled_reason: Option<String>,
    /// Microseconds.
    pub created_at: i64,
    /// Microseconds.
    pub updated_at: i64,
}

const ENDPOINT_COLS: &str = "shop_id, id, url, description, event_types, enabled, secret, previous_secret, previous_until, \
     headers, rate_per_second, failing_since, disabled_reason, created_at, updated_at";

/// The settable part of an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointFields {
    /// URL.
    pub url: String,
    /// Note.
    pub description: String,
    /// JSON array of filters.
    pub event_types: String,
    /// Deliver or not.
    pub enabled: bool,
    /// JSON object of headers.
    pub headers: String,
    /// Deliveries per second.
    pub rate_per_second: Option<i32>,
}

/// Creates endpoint `id` (chosen by the caller, whose sealed `secret` is bound to it).
pub async fn create_endpoint(
    db: &Db,
    scope: ShopScope,
    id: Uuid,
    f: &EndpointFields,
    secret: &str,
    now: i64,
) -> Result<Endpoint, StoreError> {
    {
        let _write = db.write_lock().await;
        on_pool!(db, pool => sqlx::query(
            "INSERT INTO webhook_endpoints (shop_id, id, url, description, event_types, enabled, secret, headers, rate_per_second, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)")
            .bind(scope.shop_id().0).bind(id).bind(&f.url).bind(&f.description).bind(&f.event_types)
            .bind(i32::from(f.enabled)).bind(secret).bind(&f.headers).bind(f.rate_per_second).bind(now)
            .execute(pool).await.map(|_| ()))?;
    }
    endpoint(db, scope, id).await?.ok_or(StoreError::NotFound)
}

/// One endpoint of the scoped shop.
pub async fn endpoint(db: &Db, scope: ShopScope, id: Uuid) -> Result<Option<Endpoint>, StoreError> {
    let sql =
        format!("SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE shop_id = $1 AND id = $2");
    Ok(
        on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(scope.shop_id().0).bind(id).fetch_optional(pool).await?),
    )
}

/// The scoped shop's endpoints, oldest first.
pub async fn endpoints(db: &Db, scope: ShopScope) -> Result<Vec<Endpoint>, StoreError> {
    let sql =
        format!("SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE shop_id = $1 ORDER BY id");
    Ok(
        on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(scope.shop_id().0).fetch_all(pool).await?),
    )
}

/// Replaces an endpoint's settable fields. Enabling it clears the failure run and the reason it
/// was disabled.
pub async fn update_endpoint(
    db: &Db,
    scope: ShopScope,
    id: Uuid,
    f: &EndpointFields,
    now: i64,
) -> Result<Option<Endpoint>, StoreError> {
    let n = {
        let _write = db.write_lock().await;
        on_pool!(db, pool => sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, description = $2, event_types = $3, \
               failing_since = CASE WHEN $4 = 1 AND enabled = 0 THEN NULL ELSE failing_since END, \
               disabled_reason = CASE WHEN $4 = 1 THEN NULL ELSE disabled_reason END, \
               enabled = $4, headers = $5, rate_per_second = $6, updated_at = $7 \
             WHERE shop_id = $8 AND id = $9")
            .bind(&f.url).bind(&f.description).bind(&f.event_types).bind(i32::from(f.enabled)).bind(&f.headers)
            .bind(f.rate_per_second).bind(now).bind(scope.shop_id().0).bind(id)
            .execute(pool).await?.rows_affected())
    };
    if n == 0 {
        return Ok(None);
    }
    endpoint(db, scope, id).await
}

/// Deletes an endpoint; its pending deliveries are skipped when they come up.
pub async fn delete_endpoint(db: &Db, scope: ShopScope, id: Uuid) -> Result<bool, StoreError> {
    let _write = db.write_lock().await;
    Ok(
        on_pool!(db, pool => sqlx::query("DELETE FROM webhook_endpoints WHERE shop_id = $1 AND id = $2")
        .bind(scope.shop_id().0).bind(id).execute(pool).await?.rows_affected())
            == 1,
    )
}

/// Puts a new sealed secret in place; the old one keeps signing until `previous_until`.
pub async fn rotate_secret(
    db: &Db,
    scope: ShopScope,
    id: Uuid,
    secret: &str,
    previous_until: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let _write = db.write_lock().await;
    Ok(on_pool!(db, pool => sqlx::query(
        "UPDATE webhook_endpoints SET previous_secret = secret, previous_until = $1, secret = $2, updated_at = $3 \
         WHERE shop_id = $4 AND id = $5")
        .bind(previous_until).bind(secret).bind(now).bind(scope.shop_id().0).bind(id)
        .execute(pool).await?.rows_affected())
        == 1)
}

/// Builds the job of a delivery's next attempt: (shop, delivery id, due time) -> job. The
/// delivery row names the job (`next_job`) in the same transaction.
pub type JobMaker<'a> = &'a (dyn Fn(Uuid, Uuid, i64) -> NewJob + Sync);

/// A shop's enabled endpoints with their filters.
type ShopEndpoints = (Uuid, Vec<(Uuid, Vec<String>)>);

/// An outbox row.
#[derive(Debug, Clone, sqlx::FromRow)]
struct OutboxRow {
    id: Uuid,
    shop_id: Uuid,
    event_type: String,
}

/// Turns up to `limit` unpublished outbox events, oldest first, into messages and one delivery
/// per enabled endpoint whose filter matches, enqueues each delivery's first attempt, and marks
/// the events published: all in one transaction. One dispatcher runs at a time (the SQLite writer,
/// a PostgreSQL advisory lock), so deliveries are created in event order. Returns the events
/// published, or `None` when another instance is dispatching.
pub async fn dispatch_outbox(
    db: &Db,
    limit: i64,
    now: i64,
    job: JobMaker<'_>,
) -> Result<Option<usize>, StoreError> {
    // A look before the write lock: an idle outbox costs one indexed read.
    let any: Option<i32> = on_pool!(db, pool => sqlx::query_scalar(
        "SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT 1").fetch_optional(pool).await?);
    if any.is_none() {
        return Ok(Some(0));
    }
    let _write = db.write_lock().await;
    // Each step is one statement for the whole round (chunked to stay under the engines' limits
    // on bound values): the messages, the deliveries, their first jobs, the published marks.
    macro_rules! body {
        ($pool:expr, $db:ty, $is_pg:expr) => {{
            let mut tx = $pool.begin().await?;
            if $is_pg {
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(7316540211)")
                    .fetch_one(&mut *tx)
                    .await?;
                if !got {
                    tx.rollback().await?;
                    return Ok(None);
                }
            }
            let rows: Vec<OutboxRow> = sqlx::query_as(
                "SELECT id, shop_id, event_type FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                tx.rollback().await?;
                return Ok(Some(0));
            }
            let mut shops: Vec<ShopEndpoints> = Vec::new();
            let mut messages: Vec<&OutboxRow> = Vec::new();
            // (shop, delivery, message, endpoint, first attempt's job)
            let mut deliveries: Vec<(Uuid, Uuid, Uuid, Uuid, NewJob)> = Vec::new();
            for r in &rows {
                if !shops.iter().any(|(s, _)| *s == r.shop_id) {
                    let eps: Vec<(Uuid, String)> = sqlx::query_as(
                        "SELECT id, event_types FROM webhook_endpoints WHERE shop_id = $1 AND enabled = 1 ORDER BY id",
                    )
                    .bind(r.shop_id)
                    .fetch_all(&mut *tx)
                    .await?;
                    let eps = eps
                        .into_iter()
                        .map(|(id, f)| (id, serde_json::from_str::<Vec<String>>(&f).unwrap_or_default()))
                        .collect();
                    shops.push((r.shop_id, eps));
                }
                let eps = &shops.iter().find(|(s, _)| *s == r.shop_id).expect("just added").1;
                let before = deliveries.len();
                for (ep, filter) in eps {
                    if filter_matches(filter, &r.event_type) {
                        let delivery = Uuid::now_v7();
                        deliveries.push((r.shop_id, delivery, r.id, *ep, job(r.shop_id, delivery, now)));
                    }
                }
                if deliveries.len() > before {
                    messages.push(r);
                }
            }
            // The messages are copied inside the database: the payloads never leave it.
            for chunk in messages.chunks(500) {
                let mut q: sqlx::QueryBuilder<$db> = sqlx::QueryBuilder::new(
                    "INSERT INTO webhook_messages (shop_id, id, event_type, resource_id, payload, created_at) \
                     SELECT shop_id, id, event_type, resource_id, payload, created_at FROM outbox WHERE id IN (",
                );
                let mut ids = q.separated(", ");
                for r in chunk {
                    ids.push_bind(r.id);
                }
                q.push(") ON CONFLICT DO NOTHING");
                q.build().execute(&mut *tx).await?;
            }
            let mut jobs = Vec::new();
            for chunk in deliveries.chunks(1000) {
                let mut q: sqlx::QueryBuilder<$db> = sqlx::QueryBuilder::new(
                    "INSERT INTO webhook_deliveries (shop_id, id, message_id, endpoint_id, status, attempts, retry_base, \
                     next_attempt_at, next_job, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut row, (shop, delivery, message, ep, first)| {
                    row.push_bind(*shop)
                        .push_bind(*delivery)
                        .push_bind(*message)
                        .push_bind(*ep)
                        .push("'pending', 0, 0")
                        .push_bind(now)
                        .push_bind(first.id)
                        .push_bind(now)
                        .push_bind(now);
                });
                // A delivery that exists already (same message and endpoint) gets no second job.
                q.push(" ON CONFLICT DO NOTHING RETURNING id");
                let inserted: std::collections::HashSet<Uuid> = q
                    .build_query_scalar::<Uuid>()
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .collect();
                jobs.extend(
                    chunk
                        .iter()
                        .filter(|d| inserted.contains(&d.1))
                        .map(|d| d.4.clone()),
                );
            }
            if !jobs.is_empty() {
                enqueue_in(&mut *tx, &jobs, now).await?;
            }
            let mut q: sqlx::QueryBuilder<$db> = sqlx::QueryBuilder::new("UPDATE outbox SET published_at = ");
            q.push_bind(now).push(" WHERE id IN (");
            let mut ids = q.separated(", ");
            for r in &rows {
                ids.push_bind(r.id);
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Some(rows.len()))
        }};
    }
    match db {
        Db::Sqlite(s) => body!(s.pool, sqlx::Sqlite, false),
        Db::Postgres(pool) => body!(pool, sqlx::Postgres, true),
    }
}

/// A message for one endpoint only (a test send).
#[derive(Debug, Clone)]
pub struct DirectMessage<'a> {
    /// Endpoint.
    pub endpoint_id: Uuid,
    /// Event type.
    pub event_type: &'a str,
    /// The resource it is about.
    pub resource_id: &'a str,
    /// JSON body.
    pub payload: &'a str,
}

/// Sends a message to one endpoint only (a test send): the message, its delivery and the first
/// attempt's job, in one transaction. Returns the delivery id.
pub async fn send_direct(
    db: &Db,
    scope: ShopScope,
    m: &DirectMessage<'_>,
    now: i64,
    job: JobMaker<'_>,
) -> Result<Uuid, StoreError> {
    let shop = scope.shop_id().0;
    let (endpoint_id, event_type, resource_id, payload) =
        (m.endpoint_id, m.event_type, m.resource_id, m.payload);
    let (message, delivery) = (Uuid::now_v7(), Uuid::now_v7());
    let first = job(shop, delivery, now);
    let _write = db.write_lock().await;
    on_pool!(db, pool => async {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_messages (shop_id, id, event_type, resource_id, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(shop).bind(message).bind(event_type).bind(resource_id).bind(payload).bind(now)
            .execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO webhook_deliveries (shop_id, id, message_id, endpoint_id, status, attempts, retry_base, next_attempt_at, next_job, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'pending', 0, 0, $5, $6, $5, $5)")
            .bind(shop).bind(delivery).bind(message).bind(endpoint_id).bind(now).bind(first.id)
            .execute(&mut *tx).await?;
        enqueue_in(&mut *tx, std::slice::from_ref(&first), now).await?;
        tx.commit().await?;
        Ok::<_, StoreError>(())
    }.await)?;
    Ok(delivery)
}

/// A delivery with its message's type.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    /// Shop.
    pub shop_id: Uuid,
    /// Id.
    pub id: Uuid,
    /// Message (the `webhook-id`).
    pub message_id: Uuid,
    /// Endpoint.
    pub endpoint_id: Uuid,
    /// The message's event type.
    pub event_type: String,
    /// The message's resource.
    pub resource_id: String,
    /// `pending`, `delivered`, `failed`, `skipped`.
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// Attempts before the current round.
    pub retry_base: i32,
    /// When the next attempt is due.
    pub next_attempt_at: Option<i64>,
    /// The job that makes the next attempt.
    pub next_job: Option<Uuid>,
    /// The last HTTP status received.
    pub last_status: Option<i32>,
    /// The last error.
    pub last_error: Option<String>,
    /// Microseconds.
    pub created_at: i64,
    /// Microseconds.
    pub updated_at: i64,
}

const DELIVERY_SELECT: &str = "SELECT d.shop_id, d.id, d.message_id, d.endpoint_id, m.event_type, m.resource_id, d.status, d.attempts, \
     d.retry_base, d.next_attempt_at, d.next_job, d.last_status, d.last_error, d.created_at, d.updated_at \
     FROM webhook_deliveries d JOIN webhook_messages m ON m.shop_id = d.shop_id AND m.id = d.message_id";

/// One delivery of the scoped shop.
pub async fn delivery(db: &Db, scope: ShopScope, id: Uuid) -> Result<Option<Delivery>, StoreError> {
    let sql = format!("{DELIVERY_SELECT} WHERE d.shop_id = $1 AND d.id = $2");
    Ok(
        on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(scope.shop_id().0).bind(id).fetch_optional(pool).await?),
    )
}

/// A delivery with what its next attempt needs, read in one statement.
#[derive(Debug, Clone)]
pub struct AttemptContext {
    /// The delivery.
    pub delivery: Delivery,
    /// Its endpoint, unless it was deleted.
    pub endpoint: Option<Endpoint>,
    /// The message's payload.
    pub payload: String,
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    #[sqlx(flatten)]
    delivery: Delivery,
    payload: String,
    e_url: Option<String>,
    e_description: Option<String>,
    e_event_types: Option<String>,
    e_enabled: Option<i32>,
    e_secret: Option<String>,
    e_previous_secret: Option<String>,
    e_previous_until: Option<i64>,
    e_headers: Option<String>,
    e_rate_per_second: Option<i32>,
    e_failing_since: Option<i64>,
    e_disabled_reason: Option<String>,
    e_created_at: Option<i64>,
    e_updated_at: Option<i64>,
}

impl From<AttemptRow> for AttemptContext {
    fn from(r: AttemptRow) -> Self {
        let d = &r.delivery;
        // Every NOT NULL column of the endpoint is there exactly when the LEFT JOIN found it.
        let endpoint = match (
            r.e_url,
            r.e_description,
            r.e_event_types,
            r.e_enabled,
            r.e_secret,
            r.e_headers,
            r.e_created_at,
            r.e_updated_at,
        ) {
            (
                Some(url),
                Some(description),
                Some(event_types),
                Some(enabled),
                Some(secret),
                Some(headers),
                Some(created_at),
                Some(updated_at),
            ) => Some(Endpoint {
                shop_id: d.shop_id,
                id: d.endpoint_id,
                url,
                description,
                event_types,
                enabled,
                secret,
                previous_secret: r.e_previous_secret,
                previous_until: r.e_previous_until,
                headers,
                rate_per_second: r.e_rate_per_second,
                failing_since: r.e_failing_since,
                disabled_reason: r.e_disabled_reason,
                created_at,
                updated_at,
            }),
            _ => None,
        };
        AttemptContext {
            delivery: r.delivery,
            endpoint,
            payload: r.payload,
        }
    }
}

/// Deliveries with their endpoints and payloads: what [`delivery`], [`endpoint`] and
/// [`message_payload`] give, for many deliveries in one read. The answer has one entry per
/// asked `(scope, id)`, in order; `None` where that shop has no such delivery.
pub async fn attempt_contexts(
    db: &Db,
    asked: &[(ShopScope, Uuid)],
) -> Result<Vec<Option<AttemptContext>>, StoreError> {
    if asked.is_empty() {
        return Ok(Vec::new());
    }
    const SELECT: &str = "SELECT d.shop_id, d.id, d.message_id, d.endpoint_id, m.event_type, m.resource_id, d.status, d.attempts, \
         d.retry_base, d.next_attempt_at, d.next_job, d.last_status, d.last_error, d.created_at, d.updated_at, m.payload, \
         e.url AS e_url, e.description AS e_description, e.event_types AS e_event_types, e.enabled AS e_enabled, \
         e.secret AS e_secret, e.previous_secret AS e_previous_secret, e.previous_until AS e_previous_until, \
         e.headers AS e_headers, e.rate_per_second AS e_rate_per_second, e.failing_since AS e_failing_since, \
         e.disabled_reason AS e_disabled_reason, e.created_at AS e_created_at, e.updated_at AS e_updated_at \
         FROM (";
    const JOINS: &str = ") AS v JOIN webhook_deliveries d ON d.shop_id = v.column1 AND d.id = v.column2 \
         JOIN webhook_messages m ON m.shop_id = d.shop_id AND m.id = d.message_id \
         LEFT JOIN webhook_endpoints e ON e.shop_id = d.shop_id AND e.id = d.endpoint_id";
    macro_rules! read {
        ($pool:expr, $db:ty) => {{
            let mut q: sqlx::QueryBuilder<$db> = sqlx::QueryBuilder::new(SELECT);
            q.push_values(asked, |mut row, (scope, id)| {
                row.push_bind(scope.shop_id().0).push_bind(*id);
            });
            q.push(JOINS);
            q.build_query_as::<AttemptRow>().fetch_all($pool).await?
        }};
    }
    let rows = match db {
        Db::Sqlite(s) => read!(&s.pool, sqlx::Sqlite),
        Db::Postgres(p) => read!(p, sqlx::Postgres),
    };
    // The join keeps one row per asked pair, so a delivery asked twice comes back twice.
    let mut found: std::collections::HashMap<(Uuid, Uuid), Vec<AttemptContext>> =
        std::collections::HashMap::new();
    for r in rows {
        let key = (r.delivery.shop_id, r.delivery.id);
        found.entry(key).or_default().push(AttemptContext::from(r));
    }
    Ok(asked
        .iter()
        .map(|(scope, id)| found.get_mut(&(scope.shop_id().0, *id)).and_then(Vec::pop))
        .collect())
}

/// The message a delivery carries: its payload.
pub async fn message_payload(
    db: &Db,
    scope: ShopScope,
    message: Uuid,
) -> Result<Option<String>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_scalar(
        "SELECT payload FROM webhook_messages WHERE shop_id = $1 AND id = $2")
        .bind(scope.shop_id().0).bind(message).fetch_optional(pool).await?))
}

/// Filters of the delivery log.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Endpoint.
    pub endpoint: Option<Uuid>,
    /// Status.
    pub status: Option<String>,
    /// Event type.
    pub event_type: Option<String>,
    /// Strictly older than this id.
    pub before: Option<Uuid>,
    /// Page size.
    pub limit: i64,
}

/// The scoped shop's deliveries, newest first.
pub async fn deliveries(
    db: &Db,
    scope: ShopScope,
    f: &DeliveryFilter,
) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!(
        "{DELIVERY_SELECT} WHERE d.shop_id = $1 AND ($2 IS NULL OR d.endpoint_id = $2) AND ($3 IS NULL OR d.status = $3) \
         AND ($4 IS NULL OR m.event_type = $4) AND ($5 IS NULL OR d.id < $5) ORDER BY d.id DESC LIMIT $6"
    );
    Ok(
        on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(scope.shop_id().0).bind(f.endpoint).bind(&f.status).bind(&f.event_type).bind(f.before).bind(f.limit)
        .fetch_all(pool).await?),
    )
}

/// One attempt of a delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Attempt {
    /// Attempt number, from 1.
    pub attempt: i32,
    /// Microseconds.
    pub started_at: i64,
    /// How long the endpoint took.
    pub latency_us: i64,
    /// HTTP status, when one came back.
    pub status_code: Option<i32>,
    /// Why it failed without a status (timeout, refused address, ...).
    pub error: Option<String>,
    /// The first 4 KB of the response body.
    pub response_body: String,
}

/// The attempts of a delivery, first first.
pub async fn attempts(
    db: &Db,
    scope: ShopScope,
    delivery: Uuid,
) -> Result<Vec<Attempt>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_as(
        "SELECT attempt, started_at, latency_us, status_code, error, response_body FROM webhook_attempts \
         WHERE shop_id = $1 AND delivery_id = $2 ORDER BY attempt")
        .bind(scope.shop_id().0).bind(delivery).fetch_all(pool).await?))
}

/// Where an attempt leaves its delivery.
#[derive(Debug, Clone)]
pub enum Next {
    /// A 2xx: delivered; the endpoint's failure run ends.
    Delivered,
    /// Failed; the next attempt is this job, due at its `run_at`.
    Retry(Box<NewJob>),
    /// Failed, and the schedule is exhausted.
    Failed,
}

/// An attempt to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Attempt number.
    pub attempt: i32,
    /// Microseconds.
    pub started_at: i64,
    /// Microseconds.
    pub latency_us: i64,
    /// HTTP status.
    pub status_code: Option<i32>,
    /// Error without a status.
    pub error: Option<String>,
    /// First 4 KB of the body.
    pub response_body: String,
}

/// What recording an attempt did to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointHealth {
    /// Nothing changed, or the endpoint recovered.
    Ok,
    /// The endpoint had been failing for `disable_after` and is now disabled.
    Disabled,
}

/// An attempt to record with what follows from it.
#[derive(Debug, Clone)]
pub struct AttemptWrite {
    /// The delivery's shop.
    pub scope: ShopScope,
    /// The delivery as it was before the attempt.
    pub delivery: Delivery,
    /// The attempt.
    pub attempt: AttemptRecord,
    /// Where it leaves the delivery.
    pub next: Next,
    /// Microseconds.
    pub now: i64,
    /// An endpoint failing for this long (microseconds) is disabled.
    pub disable_after: i64,
}

/// Records attempts in one transaction. For each: stores the attempt, moves the
/// delivery on, enqueues the next attempt, and tracks the endpoint's failure run, disabling the
/// endpoint once failures have lasted `disable_after` (with an audit event). A second record of
/// the same attempt (a job that ran twice) changes nothing. Returns one [`EndpointHealth`] per
/// attempt, in order.
pub async fn record_attempts(
    db: &Db,
    batch: &[AttemptWrite],
) -> Result<Vec<EndpointHealth>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let batch: Vec<&AttemptWrite> = batch.iter().collect();
    let _write = db.write_lock().await;
    on_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let out = record_attempts_in(&mut *tx, &batch).await?;
        tx.commit().await?;
        Ok(out)
    })
}

/// [`record_attempts`] inside the caller's open write transaction (a job completion's).
pub(crate) async fn record_attempts_in<'a>(
    conn: impl Into<Conn<'a>>,
    batch: &[&AttemptWrite],
) -> Result<Vec<EndpointHealth>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    // The attempts are one multi-row insert and the deliveries they move on one multi-row update;
    // only the endpoints' failure runs are followed attempt by attempt, in order.
    macro_rules! body {
        ($conn:expr, $db:ty) => {{
            let tx = $conn;
            let mut q: sqlx::QueryBuilder<$db> = sqlx::QueryBuilder::new(
                "INSERT INTO webhook_attempts (shop_id, delivery_id, attempt, started_at, latency_us, status_code, error, response_body) ",
            );
            q.push_values(batch, |mut row, w| {
                let a = &w.attempt;
                row.push_bind(w.scope.shop_id().0)
                    .push_bind(w.delivery.id)
                    .push_bind(a.attempt)
                    .push_bind(a.started_at)
                    .push_bind(a.latency_us)
                    .push_bind(a.status_code)
                    .push_bind(&a.error)
                    .push_bind(&a.response_body);
            });
            q.push(" ON CONFLICT DO NOTHING RETURNING delivery_id, attempt");
            let mut inserted: std::collections::HashSet<(Uuid, i32)> = q
                .build_query_as::<(Uuid, i32)>()
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
            // An attempt recorded before (a job that ran twice), or twice in this batch, counts
            // once: the first time it is seen.
            let fresh: Vec<usize> = (0..batch.len())
                .filter(|&i| inserted.remove(&(batch[i].delivery.id, batch[i].attempt.attempt)))
                .collect();
            let next_of = |w: &AttemptWrite| match &w.next {
                Next::Delivered => ("delivered", None, None),
                Next::Retry(j) => ("pending", Some(j.run_at), Some(j.id)),
                Next::Failed => ("failed", None, None),
            };
            let mut seen = std::collections::HashSet::new();
            let unique = fresh
                .iter()
                .all(|&i| seen.insert((batch[i].scope.shop_id().0, batch[i].delivery.id)));
            if unique && !fresh.is_empty() {
                let mut q: sqlx::QueryBuilder<$db> = sqlx::QueryBuilder::new(
                    "UPDATE webhook_deliveries SET status = v.column3, attempts = v.column4, next_attempt_at = v.column5, \
                     next_job = v.column6, last_status = v.column7, last_error = v.column8, updated_at = v.column9 FROM (",
                );
                q.push_values(fresh.iter().map(|&i| &batch[i]), |mut row, w| {
                    let (status, next_at, next_job) = next_of(w);
                    row.push_bind(w.scope.shop_id().0)
                        .push_bind(w.delivery.id)
                        .push_bind(status)
                        .push_bind(w.attempt.attempt)
                        .push_bind(next_at)
                        .push_bind(next_job)
                        .push_bind(w.attempt.status_code)
                        .push_bind(&w.attempt.error)
                        .push_bind(w.now);
                });
                q.push(
                    ") AS v WHERE webhook_deliveries.shop_id = v.column1 AND webhook_deliveries.id = v.column2",
                );
                q.build().execute(&mut *tx).await?;
            } else {
                // One delivery twice in a batch: its updates apply one after the other.
                for &i in &fresh {
                    let w = &batch[i];
                    let (status, next_at, next_job) = next_of(w);
                    let a = &w.attempt;
                    sqlx::query(
                        "UPDATE webhook_deliveries SET status = $1, attempts = $2, next_attempt_at = $3, next_job = $4, last_status = $5, \
                         last_error = $6, updated_at = $7 WHERE shop_id = $8 AND id = $9",
                    )
                    .bind(status)
                    .bind(a.attempt)
                    .bind(next_at)
                    .bind(next_job)
                    .bind(a.status_code)
                    .bind(&a.error)
                    .bind(w.now)
                    .bind(w.scope.shop_id().0)
                    .bind(w.delivery.id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            let mut out = vec![EndpointHealth::Ok; batch.len()];
            let mut jobs = Vec::new();
            let mut cleared: Vec<(Uuid, Uuid)> = Vec::new();
            for &i in &fresh {
                let w = &batch[i];
                let (shop, d, a, now) = (w.scope.shop_id().0, &w.delivery, &w.attempt, w.now);
                if let Next::Retry(j) = &w.next {
                    jobs.push((**j).clone());
                }
                let h = if matches!(w.next, Next::Delivered) {
                    // One success per endpoint and batch ends its failure run; the later ones in
                    // the same batch have nothing left to end.
                    if !cleared.contains(&(shop, d.endpoint_id)) {
                        sqlx::query(
                            "UPDATE webhook_endpoints SET failing_since = NULL WHERE shop_id = $1 AND id = $2 AND failing_since IS NOT NULL",
                        )
                        .bind(shop)
                        .bind(d.endpoint_id)
                        .execute(&mut *tx)
                        .await?;
                        cleared.push((shop, d.endpoint_id));
                    }
                    EndpointHealth::Ok
                } else {
                    cleared.retain(|c| *c != (shop, d.endpoint_id));
                    let since: Option<Option<i64>> = sqlx::query_scalar(
                        "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1) WHERE shop_id = $2 AND id = $3 AND enabled = 1 \
                         RETURNING failing_since",
                    )
                    .bind(a.started_at)
                    .bind(shop)
                    .bind(d.endpoint_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match since.flatten() {
                        Some(s) if now - s >= w.disable_after => {
                            let url: String = sqlx::query_scalar(
                                "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = $1, updated_at = $2 WHERE shop_id = $3 AND id = $4 \
                                 RETURNING url",
                            )
                            .bind(format!("every delivery failed for {} hours", (now - s) / 3_600_000_000))
                            .bind(now)
                            .bind(shop)
                            .bind(d.endpoint_id)
                            .fetch_one(&mut *tx)
                            .await?;
                            tracing::warn!(endpoint = %d.endpoint_id, shop = %shop, "webhook endpoint disabled after failing continuously");
                            let entry = AuditEntry {
                                shop: Some(ShopId(shop)),
                                action: "webhook_endpoint.disabled",
                                target: Some(d.endpoint_id.to_string()),
                                detail: serde_json::json!({ "url": url, "last_error": a.error }),
                                ..AuditEntry::default()
                            };
                            insert_audit!(&mut *tx, &entry)?;
                            EndpointHealth::Disabled
                        }
                        _ => EndpointHealth::Ok,
                    }
                };
                out[i] = h;
            }
            if !jobs.is_empty() {
                enqueue_in(&mut *tx, &jobs, batch[0].now).await?;
            }
            Ok(out)
        }};
    }
    match conn.into() {
        Conn::Sqlite(c) => body!(c, sqlx::Sqlite),
        Conn::Postgres(c) => body!(c, sqlx::Postgres),
    }
}

/// Marks a delivery skipped (its endpoint is disabled or gone).
pub async fn skip_delivery(
    db: &Db,
    scope: ShopScope,
    id: Uuid,
    why: &str,
    now: i64,
) -> Result<(), StoreError> {
    let _write = db.write_lock().await;
    on_pool!(db, pool => sqlx::query(
        "UPDATE webhook_deliveries SET status = 'skipped', next_attempt_at = NULL, last_error = $1, updated_at = $2 \
         WHERE shop_id = $3 AND id = $4 AND status = 'pending'")
        .bind(why).bind(now).bind(scope.shop_id().0).bind(id).execute(pool).await.map(|_| ()))?;
    Ok(())
}

/// Moves a delivery's next attempt to `job.run_at` without counting an attempt (a rate limit).
pub async fn postpone(
    db: &Db,
    scope: ShopScope,
    id: Uuid,
    job: &NewJob,
    now: i64,
) -> Result<(), StoreError> {
    let _write = db.write_lock().await;
    on_pool!(db, pool => async {
        let mut tx = pool.begin().await?;
        sqlx::query("UPDATE webhook_deliveries SET next_attempt_at = $1, next_job = $2, updated_at = $3 WHERE shop_id = $4 AND id = $5")
            .bind(job.run_at).bind(job.id).bind(now).bind(scope.shop_id().0).bind(id).execute(&mut *tx).await?;
        enqueue_in(&mut *tx, std::slice::from_ref(job), now).await?;
        tx.commit().await?;
        Ok::<_, StoreError>(())
    }.await)?;
    Ok(())
}

/// Sends deliveries again from the start of the retry schedule: the given one, or every
/// `failed` or `skipped` delivery of `endpoint` created since `since`. Each gets a new first
/// attempt now, made by a new job; a job that was still waiting for the delivery becomes stale
/// and skips. Returns how many were queued.
pub async fn resend(
    db: &Db,
    scope: ShopScope,
    target: Resend,
    now: i64,
    job: JobMaker<'_>,
) -> Result<u64, StoreError> {
    let shop = scope.shop_id().0;
    let _write = db.write_lock().await;
    on_pool!(db, pool => async {
        let mut tx = pool.begin().await?;
        let ids: Vec<Uuid> = match target {
            Resend::One(id) => sqlx::query_scalar(
                "SELECT id FROM webhook_deliveries WHERE shop_id = $1 AND id = $2")
                .bind(shop).bind(id).fetch_all(&mut *tx).await?,
            Resend::FailedSince { endpoint, since } => sqlx::query_scalar(
                "SELECT id FROM webhook_deliveries WHERE shop_id = $1 AND endpoint_id = $2 \
                 AND status IN ('failed', 'skipped') AND created_at >= $3 ORDER BY id")
                .bind(shop).bind(endpoint).bind(since).fetch_all(&mut *tx).await?,
        };
        let mut jobs = Vec::with_capacity(ids.len());
        for d in &ids {
            let first = job(shop, *d, now);
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'pending', retry_base = attempts, next_attempt_at = $1, next_job = $2, \
                 updated_at = $1 WHERE shop_id = $3 AND id = $4")
                .bind(now).bind(first.id).bind(shop).bind(*d).execute(&mut *tx).await?;
            jobs.push(first);
        }
        if !jobs.is_empty() {
            enqueue_in(&mut *tx, &jobs, now).await?;
        }
        tx.commit().await?;
        Ok(u64::try_from(ids.len()).unwrap_or(u64::MAX))
    }.await)
}

/// What [`resend`] sends again.
#[derive(Debug, Clone, Copy)]
pub enum Resend {
    /// One delivery, whatever its state.
    One(Uuid),
    /// Every failed or skipped delivery of an endpoint created at or after `since`.
    FailedSince {
        /// Endpoint.
        endpoint: Uuid,
        /// Microseconds.
        since: i64,
    },
}

/// Endpoint counts by state, for the metrics gauges: (enabled, disabled, failing).
pub async fn endpoint_states(db: &Db) -> Result<(i64, i64, i64), StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN enabled = 1 THEN 1 ELSE 0 END), 0), \
                COALESCE(SUM(CASE WHEN enabled = 0 THEN 1 ELSE 0 END), 0), \
                COALESCE(SUM(CASE WHEN enabled = 1 AND failing_since IS NOT NULL THEN 1 ELSE 0 END), 0) \
         FROM webhook_endpoints").fetch_one(pool).await?))
}

/// Every shop's endpoints, the failing and disabled ones first (the operator pages; platform
/// admins only, so no tenant scope).
pub async fn all_endpoints(db: &Db, limit: i64) -> Result<Vec<Endpoint>, StoreError> {
    let sql = format!(
        "SELECT {ENDPOINT_COLS} FROM webhook_endpoints \
         ORDER BY enabled, CASE WHEN failing_since IS NULL THEN 1 ELSE 0 END, id DESC LIMIT $1"
    );
    Ok(
        on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(pool).await?),
    )
}

/// Every shop's failed deliveries, newest first (the operator pages; no tenant scope).
pub async fn failed_deliveries(db: &Db, limit: i64) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!("{DELIVERY_SELECT} WHERE d.status = 'failed' ORDER BY d.id DESC LIMIT $1");
    Ok(
        on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(pool).await?),
    )
}
