//! Orders, their items, status changes with their audit trail, idempotent creation, the outbox.

use shopkeep_domain::time::MICROS_PER_DAY;
use shopkeep_domain::{Timestamp, UserId};
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::{Db, ShopScope, StoreError, on_pool};

/// A stored order with its customer's username.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    /// Id (time-ordered).
    pub id: Uuid,
    /// The customer, when the order has one.
    pub customer_id: Option<Uuid>,
    /// Their username.
    pub customer_username: Option<String>,
    /// `PENDING`, `APPROVED`, `REJECTED`, `CANCELLED`.
    pub status: String,
    /// Customer's notes.
    pub notes: Option<String>,
    /// `web`, `api`, `shopify`, ...
    pub source: String,
    /// The id in the source system.
    pub external_id: Option<String>,
    /// ISO 4217, when priced.
    pub currency: Option<String>,
    /// Total in minor units, when every line is priced.
    pub total_minor: Option<i64>,
    /// Microseconds.
    pub created_at: i64,
    /// Microseconds.
    pub updated_at: i64,
    /// Microseconds.
    pub decided_at: Option<i64>,
    /// Who decided.
    pub decided_by: Option<Uuid>,
    /// Decision or cancellation reason.
    pub reason: Option<String>,
}

/// A stored line item.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ItemRow {
    /// Order of the line.
    pub position: i32,
    /// Item name.
    pub item_name: String,
    /// Quantity.
    pub quantity: i32,
    /// Catalog product.
    pub product_ref: Option<String>,
    /// Catalog variant.
    pub variant_ref: Option<String>,
    /// Unit price in minor units.
    pub unit_price_minor: Option<i64>,
    /// ISO 4217.
    pub currency: Option<String>,
}

/// A status change.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    /// Id (time-ordered).
    pub id: Uuid,
    /// Before (none for creation).
    pub from_status: Option<String>,
    /// After.
    pub to_status: String,
    /// Who.
    pub actor_id: Option<Uuid>,
    /// Their username.
    pub actor_username: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// The request that made it.
    pub request_id: Option<String>,
    /// Microseconds.
    pub created_at: i64,
}

/// A new line item.
#[derive(Debug, Clone)]
pub struct NewItem {
    /// Name.
    pub item_name: String,
    /// Quantity.
    pub quantity: i32,
    /// Catalog product.
    pub product_ref: Option<String>,
    /// Catalog variant.
    pub variant_ref: Option<String>,
    /// Unit price in minor units.
    pub unit_price_minor: Option<i64>,
    /// ISO 4217.
    pub currency: Option<String>,
}

/// A new order.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// The customer.
    pub customer: Option<UserId>,
    /// Notes.
    pub notes: Option<String>,
    /// Source name.
    pub source: &'static str,
    /// Id in the source system.
    pub external_id: Option<String>,
    /// Lines.
    pub items: Vec<NewItem>,
    /// Currency of the total.
    pub currency: Option<String>,
    /// Total in minor units.
    pub total_minor: Option<i64>,
    /// The customer's username, echoed in the result without another query.
    pub customer_username: Option<String>,
    /// The actor's username, for the first timeline entry.
    pub actor_username: Option<String>,
}

/// An order with its lines and timeline.
#[derive(Debug, Clone)]
pub struct FullOrder {
    /// The order.
    pub order: OrderRow,
    /// Its lines.
    pub items: Vec<ItemRow>,
    /// Its timeline.
    pub events: Vec<EventRow>,
}

/// An `Idempotency-Key` with the hash of the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyKey<'a> {
    /// Whose key.
    pub user: UserId,
    /// The key.
    pub key: &'a str,
    /// SHA-256 of the canonical request body.
    pub request_hash: &'a [u8],
}

/// What a create did.
#[derive(Debug, Clone)]
pub enum Created {
    /// A new order, built from what was written (no read-back).
    New(Box<FullOrder>),
    /// The key was seen with the same request: the first order.
    Replayed(Box<OrderRow>),
    /// The key was seen with another request.
    KeyReused,
}

macro_rules! order_columns {
    () => {
        "SELECT o.id, o.customer_id, u.username AS customer_username, o.status, o.notes, o.source, \
         o.external_id, o.currency, o.total_minor, o.created_at, o.updated_at, o.decided_at, o.decided_by, o.reason"
    };
}
const ORDER_COLUMNS: &str = order_columns!();
const ORDER_SELECT: &str = concat!(
    order_columns!(),
    " FROM orders o LEFT JOIN users u ON u.id = o.customer_id"
);

/// The tables a filtered count reads. A username filter starts from the matching users and
/// reaches their orders through the `(shop_id, customer_id, ...)` indexes; `CROSS JOIN` makes
/// SQLite keep that order (PostgreSQL plans it as an inner join either way). Without it,
/// planners may scan every order of the shop and test each against the user list.
fn from_tables(f: &Filter) -> &'static str {
    if has_username(f) {
        " FROM users f CROSS JOIN orders o"
    } else {
        " FROM orders o"
    }
}

/// How a clause reaches the users a username filter matches.
#[derive(Clone, Copy)]
enum Users {
    /// `users f` is in the `FROM` list, joined on the customer.
    Joined,
    /// A subquery on `users`. On SQLite the customer column is kept out of index choice (`+`),
    /// so the planner walks the shop's newest orders and stops at the page size instead of
    /// collecting and sorting every order of every matching customer.
    Subquery(crate::Engine),
}

fn outbox_payload(
    event: &str,
    shop: Uuid,
    order: Uuid,
    status: &str,
    customer: Option<Uuid>,
    at: i64,
) -> String {
    serde_json::json!({
        "type": event,
        "shop_id": shop,
        "order_id": order,
        "status": status,
        "customer_id": customer,
        "at": Timestamp(at).to_rfc3339(),
    })
    .to_string()
}

/// One order to create with [`create_many`]. It owns its parts, so it can wait in a group
/// commit queue.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// The shop.
    pub scope: ShopScope,
    /// The order.
    pub order: NewOrder,
    /// The `Idempotency-Key`: whose, the key, and the SHA-256 of the request body.
    pub idempotency: Option<(UserId, String, Vec<u8>)>,
    /// Who placed it, for the first timeline entry.
    pub actor: Option<UserId>,
    /// The request that placed it.
    pub request_id: String,
}

/// What [`create_many`] wrote for one request.
#[derive(Debug, Clone)]
pub enum Written {
    /// A new order, built from what was written (no read-back).
    New(Box<FullOrder>),
    /// The idempotency key was already taken: its order and the hash of its first request.
    KeyTaken {
        /// The first order.
        order_id: Uuid,
        /// SHA-256 of the first request's body.
        request_hash: Vec<u8>,
    },
}

/// Creates an order with its items, its first event and an outbox event, in one transaction.
/// With an idempotency key, a retry returns the first order.
pub async fn create(
    db: &Db,
    scope: ShopScope,
    o: &NewOrder,
    idem: Option<IdempotencyKey<'_>>,
    actor: Option<UserId>,
    request_id: &str,
) -> Result<Created, StoreError> {
    let request = CreateRequest {
        scope,
        order: o.clone(),
        idempotency: idem.map(|k| (k.user, k.key.to_string(), k.request_hash.to_vec())),
        actor,
        request_id: request_id.to_string(),
    };
    let written = create_one(db, request).await?;
    resolve(db, scope, written, idem.map(|k| k.request_hash)).await
}

/// [`create_many`] with one request, in its own transaction.
pub async fn create_one(db: &Db, request: CreateRequest) -> Result<Written, StoreError> {
    create_many(db, vec![request])
        .await?
        .pop()
        .ok_or_else(|| StoreError::Other(anyhow::anyhow!("create_many answered nothing")))?
}

/// Turns what [`create_many`] wrote into the caller's answer: a taken key with the same request
/// hash replays the first order, with another hash it is refused.
pub async fn resolve(
    db: &Db,
    scope: ShopScope,
    written: Written,
    request_hash: Option<&[u8]>,
) -> Result<Created, StoreError> {
    match written {
        Written::New(full) => Ok(Created::New(full)),
        Written::KeyTaken {
            order_id,
            request_hash: first,
        } if Some(first.as_slice()) == request_hash => Ok(Created::Replayed(Box::new(
            get(db, scope, order_id)
                .await?
                .ok_or(StoreError::NotFound)?,
        ))),
        Written::KeyTaken { .. } => Ok(Created::KeyReused),
    }
}

/// Creates orders in one transaction, each with its items, first event and outbox event: on
/// SQLite one commit (one fsync) serves a whole batch. The batch is first written together; if
/// that fails, it is written again with each request in a savepoint, so one that fails is undone
/// alone and gets its own error. A failed commit fails them all. Results come back in request
/// order.
pub async fn create_many(
    db: &Db,
    batch: Vec<CreateRequest>,
) -> Result<Vec<Result<Written, StoreError>>, StoreError> {
    let write = db.write_lock().await;
    let stamps: Vec<Stamp> = batch
        .iter()
        .map(|_| Stamp {
            id: Uuid::now_v7(),
            event_id: Uuid::now_v7(),
            now: Timestamp::now().0,
        })
        .collect();
    let claims = match write_batch(db, &batch, &stamps, false).await {
        Ok(claims) => claims,
        // One of several failed (or the database did): each goes alone, in a savepoint.
        Err(e) if batch.len() > 1 => {
            tracing::debug!(error = %e, orders = batch.len(), "a batch of orders failed together; writing them one by one");
            write_batch(db, &batch, &stamps, true).await?
        }
        Err(e) => return Err(e),
    };
    drop(write);
    Ok(batch
        .into_iter()
        .zip(stamps)
        .zip(claims)
        .map(|((r, st), claim)| {
            claim.map(|taken| match taken {
                None => Written::New(Box::new(written(r, st.id, st.event_id, st.now))),
                Some((order_id, request_hash)) => Written::KeyTaken {
                    order_id,
                    request_hash,
                },
            })
        })
        .collect())
}

/// Ids and time of one order being created.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    id: Uuid,
    event_id: Uuid,
    now: i64,
}

/// Rows per multi-row `INSERT`, well inside both engines' limits on bound parameters.
const ROWS_PER_INSERT: usize = 400;

/// Claims the idempotency keys of `batch`, then writes every order whose key was free with one
/// multi-row `INSERT` per table, in the transaction `$tx` (of engine `$db`). Gives, per request,
/// the first order and request hash of a key already taken.
macro_rules! insert_rows {
    ($tx:expr, $db:ty, $batch:expr, $stamps:expr) => {
        async {
            let tx = $tx;
            let (batch, stamps): (&[CreateRequest], &[Stamp]) = ($batch, $stamps);
            let mut claims = Vec::with_capacity(batch.len());
            for (r, st) in batch.iter().zip(stamps) {
                let Some((user, key, hash)) = &r.idempotency else {
                    claims.push(None);
                    continue;
                };
                let shop = r.scope.shop_id().0;
                let claimed = sqlx::query(
                    "INSERT INTO idempotency_keys (shop_id, user_id, key, request_hash, order_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")
                    .bind(shop).bind(user.0).bind(key).bind(hash).bind(st.id).bind(st.now)
                    .execute(&mut **tx).await?.rows_affected();
                claims.push(if claimed == 0 {
                    Some(sqlx::query_as::<_, (Uuid, Vec<u8>)>(
                        "SELECT order_id, request_hash FROM idempotency_keys WHERE shop_id = $1 AND user_id = $2 AND key = $3")
                        .bind(shop).bind(user.0).bind(key).fetch_one(&mut **tx).await?)
                } else {
                    None
                });
            }
            let new: Vec<(&CreateRequest, &Stamp)> = batch
                .iter()
                .zip(stamps)
                .zip(&claims)
                .filter(|(_, claim)| claim.is_none())
                .map(|(pair, _)| pair)
                .collect();
            for chunk in new.chunks(ROWS_PER_INSERT) {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO orders (shop_id, id, customer_id, status, notes, source, external_id, currency, total_minor, created_at, updated_at) ");
                q.push_values(chunk, |mut row, (r, st)| {
                    let o = &r.order;
                    row.push_bind(r.scope.shop_id().0).push_bind(st.id).push_bind(o.customer.map(|c| c.0))
                        .push_bind("PENDING").push_bind(o.notes.clone()).push_bind(o.source)
                        .push_bind(o.external_id.clone()).push_bind(o.currency.clone()).push_bind(o.total_minor)
                        .push_bind(st.now).push_bind(st.now);
                });
                q.build().execute(&mut **tx).await?;
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO order_events (shop_id, id, order_id, from_status, to_status, actor_id, reason, request_id, created_at) ");
                q.push_values(chunk, |mut row, (r, st)| {
                    row.push_bind(r.scope.shop_id().0).push_bind(st.event_id).push_bind(st.id)
                        .push_bind(None::<String>).push_bind("PENDING").push_bind(r.actor.map(|a| a.0))
                        .push_bind(None::<String>).push_bind(r.request_id.clone()).push_bind(st.now);
                });
                q.build().execute(&mut **tx).await?;
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO outbox (id, shop_id, event_type, resource_id, payload, created_at) ");
                q.push_values(chunk, |mut row, (r, st)| {
                    let shop = r.scope.shop_id().0;
                    row.push_bind(Uuid::now_v7()).push_bind(shop).push_bind("order.created")
                        .push_bind(st.id.to_string())
                        .push_bind(outbox_payload("order.created", shop, st.id, "PENDING", r.order.customer.map(|c| c.0), st.now))
                        .push_bind(st.now);
                });
                q.build().execute(&mut **tx).await?;
            }
            let lines: Vec<(&CreateRequest, &Stamp, usize, &NewItem)> = new
                .iter()
                .flat_map(|(r, st)| r.order.items.iter().enumerate().map(move |(i, item)| (*r, *st, i, item)))
                .collect();
            for chunk in lines.chunks(ROWS_PER_INSERT) {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO order_items (shop_id, order_id, position, item_name, quantity, product_ref, variant_ref, unit_price_minor, currency) ");
                q.push_values(chunk, |mut row, (r, st, i, item)| {
                    row.push_bind(r.scope.shop_id().0).push_bind(st.id).push_bind(i32::try_from(*i).unwrap_or(i32::MAX))
                        .push_bind(item.item_name.clone()).push_bind(item.quantity).push_bind(item.product_ref.clone())
                        .push_bind(item.variant_ref.clone()).push_bind(item.unit_price_minor).push_bind(item.currency.clone());
                });
                q.build().execute(&mut **tx).await?;
            }
            Ok::<_, sqlx::Error>(claims)
        }
        .await
    };
}

/// Writes `batch` in one transaction: all together, where any failure fails the whole batch, or
/// `alone`, each request in a savepoint, so one that fails is undone alone and gets its own error.
/// A failed commit fails them all. Results come back in request order.
async fn write_batch(
    db: &Db,
    batch: &[CreateRequest],
    stamps: &[Stamp],
    alone: bool,
) -> Result<Vec<Result<Option<(Uuid, Vec<u8>)>, StoreError>>, StoreError> {
    macro_rules! body {
        ($pool:expr, $db:ty) => {{
            let mut tx = $pool.begin().await?;
            let out = if alone {
                let mut out = Vec::with_capacity(batch.len());
                for i in 0..batch.len() {
                    sqlx::query("SAVEPOINT order_create")
                        .execute(&mut *tx)
                        .await?;
                    match insert_rows!(&mut tx, $db, &batch[i..=i], &stamps[i..=i]) {
                        Ok(mut claim) => {
                            sqlx::query("RELEASE SAVEPOINT order_create")
                                .execute(&mut *tx)
                                .await?;
                            out.push(Ok(claim.pop().flatten()));
                        }
                        Err(e) => {
                            sqlx::query("ROLLBACK TO SAVEPOINT order_create")
                                .execute(&mut *tx)
                                .await?;
                            sqlx::query("RELEASE SAVEPOINT order_create")
                                .execute(&mut *tx)
                                .await?;
                            out.push(Err(StoreError::from(e)));
                        }
                    }
                }
                out
            } else {
                insert_rows!(&mut tx, $db, batch, stamps)?
                    .into_iter()
                    .map(Ok)
                    .collect()
            };
            tx.commit().await?;
            Ok(out)
        }};
    }
    match db {
        Db::Sqlite(s) => body!(s.pool, sqlx::Sqlite),
        Db::Postgres(pool) => body!(pool, sqlx::Postgres),
    }
}

/// The order a request created, from what was written.
fn written(r: CreateRequest, id: Uuid, event_id: Uuid, now: i64) -> FullOrder {
    let o = r.order;
    FullOrder {
        order: OrderRow {
            id,
            customer_id: o.customer.map(|c| c.0),
            customer_username: o.customer_username,
            status: "PENDING".into(),
            notes: o.notes,
            source: o.source.to_string(),
            external_id: o.external_id,
            currency: o.currency,
            total_minor: o.total_minor,
            created_at: now,
            updated_at: now,
            decided_at: None,
            decided_by: None,
            reason: None,
        },
        items: o
            .items
            .into_iter()
            .enumerate()
            .map(|(i, it)| ItemRow {
                position: i32::try_from(i).unwrap_or(i32::MAX),
                item_name: it.item_name,
                quantity: it.quantity,
                product_ref: it.product_ref,
                variant_ref: it.variant_ref,
                unit_price_minor: it.unit_price_minor,
                currency: it.currency,
            })
            .collect(),
        events: vec![EventRow {
            id: event_id,
            from_status: None,
            to_status: "PENDING".into(),
            actor_id: r.actor.map(|a| a.0),
            actor_username: o.actor_username,
            reason: None,
            request_id: Some(r.request_id),
            created_at: now,
        }],
    }
}

/// One order of the scoped shop.
pub async fn get(db: &Db, scope: ShopScope, id: Uuid) -> Result<Option<OrderRow>, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!("{ORDER_SELECT} WHERE o.shop_id = $1 AND o.id = $2"));
    Ok(
        on_pool!(db, pool => sqlx::query_as(sql).bind(scope.shop_id().0).bind(id).fetch_optional(pool).await)?,
    )
}

/// The order that came from `source` with the source system's id `external_id`.
pub async fn by_external_id(
    db: &Db,
    scope: ShopScope,
    source: &str,
    external_id: &str,
) -> Result<Option<OrderRow>, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!(
        "{ORDER_SELECT} WHERE o.shop_id = $1 AND o.source = $2 AND o.external_id = $3"
    ));
    Ok(
        on_pool!(db, pool => sqlx::query_as(sql).bind(scope.shop_id().0).bind(source).bind(external_id).fetch_optional(pool).await)?,
    )
}

/// An order's lines in order.
pub async fn items(db: &Db, scope: ShopScope, id: Uuid) -> Result<Vec<ItemRow>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_as(
        "SELECT position, item_name, quantity, product_ref, variant_ref, unit_price_minor, currency \
         FROM order_items WHERE shop_id = $1 AND order_id = $2 ORDER BY position")
        .bind(scope.shop_id().0).bind(id).fetch_all(pool).await)?)
}

/// An order's status changes, oldest first.
pub async fn events(db: &Db, scope: ShopScope, id: Uuid) -> Result<Vec<EventRow>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_as(
        "SELECT e.id, e.from_status, e.to_status, e.actor_id, u.username AS actor_username, e.reason, e.request_id, e.created_at \
         FROM order_events e LEFT JOIN users u ON u.id = e.actor_id \
         WHERE e.shop_id = $1 AND e.order_id = $2 ORDER BY e.id")
        .bind(scope.shop_id().0).bind(id).fetch_all(pool).await)?)
}

/// What a transition did.
#[derive(Debug, Clone)]
pub enum Transition {
    /// Applied; the order as it is now.
    Done(Box<OrderRow>),
    /// The order was not in `from`; its current status.
    Invalid(String),
}

/// A status change to make.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// Required current status.
    pub from: &'a str,
    /// New status.
    pub to: &'a str,
    /// A decision (sets decided_at and decided_by) rather than a cancellation.
    pub decision: bool,
    /// Who.
    pub actor: UserId,
    /// Why.
    pub reason: Option<&'a str>,
    /// The request.
    pub request_id: &'a str,
    /// Outbox event type (`order.approved`).
    pub event_type: &'a str,
    /// Jobs enqueued in the same transaction (the decision hook): they exist if and only if the
    /// change commits.
    pub jobs: &'a [crate::jobs::NewJob],
}

/// Moves an order from `from` to `to` if, and only if, it is still in `from`: of two admins
/// deciding at once, exactly one wins. Writes the event and the outbox row in the same
/// transaction.
pub async fn transition(
    db: &Db,
    scope: ShopScope,
    id: Uuid,
    c: &Change<'_>,
) -> Result<Transition, StoreError> {
    let shop = scope.shop_id().0;
    let write = db.write_lock().await;
    let now = Timestamp::now().0;
    let applied: Option<Option<Uuid>> = on_pool!(db, pool => async {
        let mut tx = pool.begin().await?;
        let customer: Option<Option<Uuid>> = sqlx::query_scalar(
            "UPDATE orders SET status = $1, updated_at = $2, reason = $3, \
               decided_at = CASE WHEN $4 THEN $2 ELSE decided_at END, \
               decided_by = CASE WHEN $4 THEN $5 ELSE decided_by END \
             WHERE shop_id = $6 AND id = $7 AND status = $8 RETURNING customer_id")
            .bind(c.to).bind(now).bind(c.reason).bind(c.decision).bind(c.actor.0).bind(shop).bind(id).bind(c.from)
            .fetch_optional(&mut *tx).await?;
        let Some(customer) = customer else {
            tx.rollback().await?;
            return Ok::<_, StoreError>(None);
        };
        sqlx::query(
            "INSERT INTO order_events (shop_id, id, order_id, from_status, to_status, actor_id, reason, request_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(shop).bind(Uuid::now_v7()).bind(id).bind(c.from).bind(c.to).bind(c.actor.0).bind(c.reason)
            .bind(c.request_id).bind(now).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO outbox (id, shop_id, event_type, resource_id, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(Uuid::now_v7()).bind(shop).bind(c.event_type).bind(id.to_string())
            .bind(outbox_payload(c.event_type, shop, id, c.to, customer, now)).bind(now)
            .execute(&mut *tx).await?;
        if !c.jobs.is_empty() {
            crate::jobs::enqueue_in(&mut *tx, c.jobs, now).await?;
        }
        tx.commit().await?;
        Ok(Some(customer))
    }.await)?;
    drop(write);
    match applied {
        Some(_) => Ok(Transition::Done(Box::new(
            get(db, scope, id).await?.ok_or(StoreError::NotFound)?,
        ))),
        None => match get(db, scope, id).await? {
            Some(o) => Ok(Transition::Invalid(o.status)),
            None => Err(StoreError::NotFound),
        },
    }
}

/// Filters for order lists; every one optional.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this customer's orders.
    pub customer: Option<UserId>,
    /// Only this status (stored form, `PENDING`).
    pub status: Option<String>,
    /// Username: exact (case-folded) match.
    pub username_exact: Option<String>,
    /// Username: case-folded substring.
    pub username_contains: Option<String>,
    /// Created at or after (microseconds).
    pub from: Option<i64>,
    /// Created before (microseconds).
    pub to: Option<i64>,
}

enum Arg {
    Id(Uuid),
    Text(String),
    Int(i64),
}

/// Builds `WHERE ...` from static fragments; values are always bound, never spliced. Placeholders
/// continue after the arguments already in `args`, so clauses can be combined in one statement.
fn where_clause(
    scope: ShopScope,
    f: &Filter,
    with_status: bool,
    users: Users,
    args: &mut Vec<Arg>,
) -> String {
    let mut sql = String::new();
    let mut push = |sql: &mut String, fragment: &str, arg: Arg| {
        args.push(arg);
        sql.push_str(&fragment.replace('?', &format!("${}", args.len())));
    };
    push(&mut sql, " WHERE o.shop_id = ?", Arg::Id(scope.shop_id().0));
    if let Some(c) = f.customer {
        push(&mut sql, " AND o.customer_id = ?", Arg::Id(c.0));
    }
    if with_status && let Some(s) = &f.status {
        push(&mut sql, " AND o.status = ?", Arg::Text(s.clone()));
    }
    if let Some((condition, arg)) = username_condition(f) {
        let fragment = match users {
            Users::Joined => format!(" AND o.customer_id = f.id AND {condition}"),
            Users::Subquery(crate::Engine::Sqlite) => {
                format!(" AND +o.customer_id IN (SELECT f.id FROM users f WHERE {condition})")
            }
            Users::Subquery(crate::Engine::Postgres) => {
                format!(" AND o.customer_id IN (SELECT f.id FROM users f WHERE {condition})")
            }
        };
        push(&mut sql, &fragment, arg);
    }
    if let Some(t) = f.from {
        push(&mut sql, " AND o.created_at >= ?", Arg::Int(t));
    }
    if let Some(t) = f.to {
        push(&mut sql, " AND o.created_at < ?", Arg::Int(t));
    }
    sql
}

/// Does the filter name a username (exact or partial)?
fn has_username(f: &Filter) -> bool {
    f.username_exact.is_some() || f.username_contains.is_some()
}

/// The username filter as a condition on `users f`, with its one argument.
fn username_condition(f: &Filter) -> Option<(&'static str, Arg)> {
    if let Some(u) = &f.username_exact {
        return Some(("f.username_folded = ?", Arg::Text(u.clone())));
    }
    let u = f.username_contains.as_ref()?;
    let escaped = u
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    Some((
        "f.username_folded LIKE ? ESCAPE '\\'",
        Arg::Text(format!("%{escaped}%")),
    ))
}

macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Id(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.clone()),
                Arg::Int(v) => q.bind(*v),
            };
        }
        q
    }};
}

/// Up to this many customers matching a username filter, a page is merged from each one's newest
/// orders; with more, their orders are many and the shop's newest orders are scanned instead.
const MERGE_CUSTOMERS: usize = 64;

/// A page of orders, newest first, strictly older than `before` when given.
pub async fn list(
    db: &Db,
    scope: ShopScope,
    f: &Filter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<OrderRow>, StoreError> {
    if f.customer.is_none()
        && let Some(users) = username_condition(f)
    {
        match db {
            Db::Sqlite(sqlite) => {
                let mut args = Vec::new();
                let sql = sqlx::AssertSqlSafe(format!(
                    "SELECT ({})",
                    merged_page_json_sql(scope, f, users, before, limit, &mut args)
                ));
                let page: Option<String> = bind_all!(sqlx::query_scalar(sql), &args)
                    .fetch_one(&sqlite.pool)
                    .await?;
                if let Some(json) = page {
                    return decode_json_rows(&json);
                }
            }
            Db::Postgres(pool) => {
                if let Some(customers) = few_matching_customers(pool, users).await? {
                    return merged_page(pool, scope, f, &customers, before, limit).await;
                }
            }
        }
    }
    scanned_page(db, scope, f, before, limit).await
}

/// The page of [`list`] read by walking the shop's newest orders, for filters without a username
/// or with more matching customers than are merged.
async fn scanned_page(
    db: &Db,
    scope: ShopScope,
    f: &Filter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<OrderRow>, StoreError> {
    let mut args = Vec::new();
    let sql = list_sql(db, scope, f, before, limit, &mut args);
    fetch_newest_first(db, sql, &args).await
}

/// A page as [`list`] gives it and the counts as [`counts`] gives them, for one filter. On
/// SQLite both are read by one statement, a username search included (see
/// [`merged_page_json_sql`]); on PostgreSQL by two, run together.
pub async fn list_with_counts(
    db: &Db,
    scope: ShopScope,
    f: &Filter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<(Vec<OrderRow>, Vec<(String, i64)>), StoreError> {
    let Db::Sqlite(sqlite) = db else {
        return tokio::try_join!(list(db, scope, f, before, limit), counts(db, scope, f));
    };
    let mut args = Vec::new();
    let page = match username_condition(f) {
        Some(users) if f.customer.is_none() => {
            merged_page_json_sql(scope, f, users, before, limit, &mut args)
        }
        _ => json_orders(&list_sql(db, scope, f, before, limit, &mut args)),
    };
    let counts = counts_sql(scope, f, &mut args);
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT ({page}), (SELECT json_group_array(json_array(status, n)) FROM ({counts}))"
    ));
    let (page, counts): (Option<String>, String) = bind_all!(sqlx::query_as(sql), &args)
        .fetch_one(&sqlite.pool)
        .await?;
    let counts = serde_json::from_str(&counts).map_err(json_rows_error)?;
    let rows = match page {
        Some(json) => decode_json_rows(&json)?,
        // More customers match than are merged: the shop's newest orders are scanned.
        None => scanned_page(db, scope, f, before, limit).await?,
    };
    Ok((rows, counts))
}

/// SQLite: a subquery giving, as [`json_orders`] does, a username search's page merged from
/// each matching customer's newest orders (what [`merged_page`] reads on PostgreSQL), with the
/// customers looked up in the same statement; NULL when more than [`MERGE_CUSTOMERS`] match. SQLite has no lateral join, so each customer's newest `limit`
/// ids are a correlated subquery per customer, collected as a JSON array through the
/// `(shop_id, customer_id, ...)` indexes; the arrays are flattened and cut to the page before
/// any row is read.
fn merged_page_json_sql(
    scope: ShopScope,
    f: &Filter,
    (users, user_arg): (&'static str, Arg),
    before: Option<Uuid>,
    limit: i64,
    args: &mut Vec<Arg>,
) -> String {
    // The clause binds the shop first.
    let shop_at = args.len() + 1;
    let (clause, limit_at) = per_customer_clause(scope, f, before, limit, args);
    args.push(user_arg);
    let users = users.replace('?', &format!("${}", args.len()));
    let page = json_orders(&format!(
        "{ORDER_SELECT} WHERE o.shop_id = ${shop_at} AND o.id IN (SELECT id FROM top)"
    ));
    format!(
        "WITH c (id) AS (SELECT f.id FROM users f WHERE {users} LIMIT {over}), \
         per (ids) AS (SELECT (SELECT json_group_array(hex(x.id)) FROM \
         (SELECT o.id FROM orders o{clause} ORDER BY o.id DESC LIMIT ${limit_at}) AS x) FROM c), \
         top (id) AS (SELECT unhex(j.value) FROM per, json_each(per.ids) AS j \
         ORDER BY j.value DESC LIMIT ${limit_at}) \
         SELECT CASE WHEN (SELECT count(*) FROM c) <= {MERGE_CUSTOMERS} THEN ({page}) END",
        over = MERGE_CUSTOMERS + 1
    )
}

/// The statement of [`list`] without a merged page, its arguments pushed to `args`.
fn list_sql(
    db: &Db,
    scope: ShopScope,
    f: &Filter,
    before: Option<Uuid>,
    limit: i64,
    args: &mut Vec<Arg>,
) -> String {
    let mut clause = where_clause(scope, f, true, Users::Subquery(db.engine()), args);
    if let Some(b) = before {
        args.push(Arg::Id(b));
        clause.push_str(&format!(" AND o.id < ${}", args.len()));
    }
    args.push(Arg::Int(limit));
    format!(
        "{ORDER_SELECT}{clause} ORDER BY o.id DESC LIMIT ${}",
        args.len()
    )
}

/// The orders a statement over [`ORDER_SELECT`] selects, newest first. On SQLite they come back
/// as one JSON array in one row: sqlx's SQLite driver sends each row from its connection thread
/// across a channel and copies every value, which cost more than the query itself for a page of
/// 20 to 1,000 orders (docs/ARCHITECTURE.md, Orders). PostgreSQL rows arrive on the wire as they
/// are and are read directly.
async fn fetch_newest_first(
    db: &Db,
    sql: String,
    args: &[Arg],
) -> Result<Vec<OrderRow>, StoreError> {
    match db {
        Db::Postgres(pool) => {
            let sql = sqlx::AssertSqlSafe(sql);
            Ok(bind_all!(sqlx::query_as(sql), args).fetch_all(pool).await?)
        }
        Db::Sqlite(sqlite) => {
            let sql = sqlx::AssertSqlSafe(json_orders(&sql));
            let json: String = bind_all!(sqlx::query_scalar(sql), args)
                .fetch_one(&sqlite.pool)
                .await?;
            decode_json_rows(&json)
        }
    }
}

/// SQLite: the orders `sql` (a statement over [`ORDER_SELECT`]) selects, as one JSON array of
/// [`JsonOrder`]s. `hex` because JSON holds no blobs; it turns NULL into `''`.
fn json_orders(sql: &str) -> String {
    format!(
        "SELECT json_group_array(json_array(hex(id), hex(customer_id), customer_username, status, \
         notes, source, external_id, currency, total_minor, created_at, updated_at, decided_at, \
         hex(decided_by), reason)) FROM ({sql})"
    )
}

/// One order as `fetch_newest_first` aggregates it on SQLite, in [`ORDER_COLUMNS`] order.
type JsonOrder = (
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
    i64,
    Option<i64>,
    String,
    Option<String>,
);

/// The orders of a [`json_orders`] array, newest first.
fn decode_json_rows(json: &str) -> Result<Vec<OrderRow>, StoreError> {
    let rows: Vec<JsonOrder> = serde_json::from_str(json).map_err(json_rows_error)?;
    let mut rows = rows
        .into_iter()
        .map(|r| {
            Ok(OrderRow {
                id: hex_uuid(&r.0)?,
                customer_id: hex_uuid_opt(&r.1)?,
                customer_username: r.2,
                status: r.3,
                notes: r.4,
                source: r.5,
                external_id: r.6,
                currency: r.7,
                total_minor: r.8,
                created_at: r.9,
                updated_at: r.10,
                decided_at: r.11,
                decided_by: hex_uuid_opt(&r.12)?,
                reason: r.13,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    // An aggregate's input order is not promised, so the page is put in order here.
    rows.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
    Ok(rows)
}

/// PostgreSQL: the users a username filter matches, when there are at most [`MERGE_CUSTOMERS`]
/// of them.
async fn few_matching_customers(
    pool: &sqlx::PgPool,
    (condition, arg): (&'static str, Arg),
) -> Result<Option<Vec<Uuid>>, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT f.id FROM users f WHERE {} LIMIT {}",
        condition.replace('?', "$1"),
        MERGE_CUSTOMERS + 1
    ));
    let ids: Vec<Uuid> = bind_all!(sqlx::query_scalar(sql), [&arg])
        .fetch_all(pool)
        .await?;
    Ok((ids.len() <= MERGE_CUSTOMERS).then_some(ids))
}

/// The `WHERE` of one customer's page in a merged username search, the customer being `c.id`:
/// the filter without its customer and username, older than `before`, with `limit` bound last.
/// Gives the clause and the placeholder number of the limit.
fn per_customer_clause(
    scope: ShopScope,
    f: &Filter,
    before: Option<Uuid>,
    limit: i64,
    args: &mut Vec<Arg>,
) -> (String, usize) {
    let rest = Filter {
        customer: None,
        username_exact: None,
        username_contains: None,
        ..f.clone()
    };
    let mut clause = where_clause(scope, &rest, true, Users::Joined, args);
    clause.push_str(" AND o.customer_id = c.id");
    if let Some(b) = before {
        args.push(Arg::Id(b));
        clause.push_str(&format!(" AND o.id < ${}", args.len()));
    }
    args.push(Arg::Int(limit));
    (clause, args.len())
}

/// PostgreSQL: a page over a few customers' orders, each customer's newest `limit` through the
/// `(shop_id, customer_id, ...)` indexes, merged, so the cost follows the page size and not how
/// many orders the customers have. One statement whatever the number of customers, so its plan
/// is prepared once: a lateral subquery over the array of their ids. (SQLite, which has no
/// lateral join, does the same in [`merged_page_json_sql`].)
async fn merged_page(
    pool: &sqlx::PgPool,
    scope: ShopScope,
    f: &Filter,
    customers: &[Uuid],
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<OrderRow>, StoreError> {
    if customers.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = Vec::new();
    let (clause, limit_at) = per_customer_clause(scope, f, before, limit, &mut args);
    // The page's ids first, then only their rows.
    let sql = sqlx::AssertSqlSafe(format!(
        "{ORDER_COLUMNS} FROM (SELECT page.id FROM unnest(${}::uuid[]) AS c (id) \
         CROSS JOIN LATERAL (SELECT o.id FROM orders o{clause} ORDER BY o.id DESC LIMIT ${limit_at}) AS page \
         ORDER BY page.id DESC LIMIT ${limit_at}) AS top \
         JOIN orders o ON o.shop_id = $1 AND o.id = top.id LEFT JOIN users u ON u.id = o.customer_id \
         ORDER BY o.id DESC",
        args.len() + 1
    ));
    Ok(bind_all!(sqlx::query_as(sql), &args)
        .bind(customers)
        .fetch_all(pool)
        .await?)
}

/// Orders per status under the filter (its status ignored), for tab counts. Without a date range
/// they are read from `order_counts`, which triggers keep per customer, so a customer's tabs and
/// a username search cost a few rows whatever the number of orders.
pub async fn counts(
    db: &Db,
    scope: ShopScope,
    f: &Filter,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut args = Vec::new();
    let sql = sqlx::AssertSqlSafe(counts_sql(scope, f, &mut args));
    Ok(on_pool!(db, pool => bind_all!(sqlx::query_as(sql), &args).fetch_all(pool).await)?)
}

/// The statement of [`counts`], columns `status` and `n`, its arguments pushed to `args`.
fn counts_sql(scope: ShopScope, f: &Filter, args: &mut Vec<Arg>) -> String {
    let clause = where_clause(scope, f, false, Users::Joined, args);
    if f.from.is_some() || f.to.is_some() {
        format!(
            "SELECT o.status AS status, count(*) AS n{}{clause} GROUP BY o.status",
            from_tables(f)
        )
    } else if f.customer.is_some() || has_username(f) {
        let from = if has_username(f) {
            " FROM users f CROSS JOIN order_counts o"
        } else {
            " FROM order_counts o"
        };
        format!(
            "SELECT o.status AS status, CAST(sum(o.n) AS BIGINT) AS n{from}{clause} GROUP BY o.status"
        )
    } else {
        // Every customer's counts, and the orders without a customer counted directly.
        format!(
            "SELECT status, CAST(sum(n) AS BIGINT) AS n FROM (\
             SELECT o.status, o.n FROM order_counts o{clause} \
             UNION ALL SELECT o.status, count(*) AS n FROM orders o{clause} AND o.customer_id IS NULL GROUP BY o.status\
             ) AS c GROUP BY status"
        )
    }
}

/// Shop statistics.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Orders per status.
    pub by_status: Vec<(String, i64)>,
    /// (UTC day index since the epoch, orders created that day), for days at or after `since`.
    pub per_day: Vec<(i64, i64)>,
    /// Median of `decided_at - created_at` over decided orders, microseconds.
    pub median_decision_micros: Option<i64>,
}

/// Totals, orders per day since `since`, and the median time to decision.
pub async fn stats(db: &Db, scope: ShopScope, since: Timestamp) -> Result<Stats, StoreError> {
    let shop = scope.shop_id().0;
    // Three independent reads, run together: the dashboard waits for the slowest, not the sum.
    let per_day = async {
        let rows: Vec<(i64, i64)> = on_pool!(db, pool => sqlx::query_as(
            "SELECT created_at / $1 AS day, count(*) FROM orders WHERE shop_id = $2 AND created_at >= $3 GROUP BY created_at / $1 ORDER BY day")
            .bind(MICROS_PER_DAY).bind(shop).bind(since.0).fetch_all(pool).await)?;
        Ok::<_, StoreError>(rows)
    };
    let median = async {
        let decided: i64 = on_pool!(db, pool => sqlx::query_scalar(
            "SELECT count(*) FROM orders WHERE shop_id = $1 AND decided_at IS NOT NULL")
            .bind(shop).fetch_one(pool).await)?;
        if decided == 0 {
            return Ok::<_, StoreError>(None);
        }
        // The middle one (odd count) or the two middle ones (even count), portably.
        let (offset, take) = if decided % 2 == 1 {
            (decided / 2, 1)
        } else {
            (decided / 2 - 1, 2)
        };
        let mid: Vec<i64> = on_pool!(db, pool => sqlx::query_scalar(
            "SELECT decided_at - created_at AS d FROM orders WHERE shop_id = $1 AND decided_at IS NOT NULL \
             ORDER BY d LIMIT $2 OFFSET $3")
            .bind(shop).bind(take).bind(offset).fetch_all(pool).await)?;
        Ok(Some(
            mid.iter().sum::<i64>() / i64::try_from(mid.len().max(1)).unwrap_or(1),
        ))
    };
    let all = Filter::default();
    let (by_status, per_day, median_decision_micros) =
        tokio::try_join!(counts(db, scope, &all), per_day, median)?;
    Ok(Stats {
        by_status,
        per_day,
        median_decision_micros,
    })
}

/// Lines of many orders at once (for exports), keyed by order id, in position order.
pub async fn items_for(
    db: &Db,
    scope: ShopScope,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, ItemRow)>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(sqlx::FromRow)]
    struct Row {
        order_id: Uuid,
        #[sqlx(flatten)]
        item: ItemRow,
    }
    const COLUMNS: &str = "SELECT i.order_id, i.position, i.item_name, i.quantity, i.product_ref, \
         i.variant_ref, i.unit_price_minor, i.currency";
    let rows: Vec<Row> = match db {
        // One array parameter, joined: a lookup per order. A list of bound ids would be tested
        // against every line in the range one by one under a prepared statement's generic plan
        // (only constant lists are hashed), and planned as a scan of every line of the shop.
        Db::Postgres(pool) => {
            let sql = sqlx::AssertSqlSafe(format!(
                "{COLUMNS} FROM unnest($2::uuid[]) AS p (id) \
                 JOIN order_items i ON i.shop_id = $1 AND i.order_id = p.id ORDER BY i.order_id, i.position"
            ));
            sqlx::query_as(sql)
                .bind(scope.shop_id().0)
                .bind(ids)
                .fetch_all(pool)
                .await?
        }
        // SQLite looks each listed id up in the primary key and answers one JSON array, as
        // `fetch_newest_first` does for orders.
        Db::Sqlite(s) => {
            let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT json_group_array(json_array(hex(i.order_id), i.position, i.item_name, \
                 i.quantity, i.product_ref, i.variant_ref, i.unit_price_minor, i.currency)) \
                 FROM order_items i WHERE i.shop_id = $1 AND i.order_id IN ({})",
                placeholders.join(", ")
            ));
            let mut q = sqlx::query_scalar(sql).bind(scope.shop_id().0);
            for id in ids {
                q = q.bind(*id);
            }
            let json: String = q.fetch_one(&s.pool).await?;
            return decode_json_items(&json);
        }
    };
    Ok(rows.into_iter().map(|r| (r.order_id, r.item)).collect())
}

/// One line as `items_for` aggregates it on SQLite.
type JsonItem = (
    String,
    i32,
    String,
    i32,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

/// The lines of a [`JsonItem`] array, by order and position (the aggregate's input order is not
/// promised).
fn decode_json_items(json: &str) -> Result<Vec<(Uuid, ItemRow)>, StoreError> {
    let rows: Vec<JsonItem> = serde_json::from_str(json).map_err(json_rows_error)?;
    let mut items = rows
        .into_iter()
        .map(|r| {
            let item = ItemRow {
                position: r.1,
                item_name: r.2,
                quantity: r.3,
                product_ref: r.4,
                variant_ref: r.5,
                unit_price_minor: r.6,
                currency: r.7,
            };
            Ok((hex_uuid(&r.0)?, item))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    items.sort_unstable_by_key(|(order, item)| (*order, item.position));
    Ok(items)
}

/// A UUID from SQLite's `hex()` of its 16 bytes; `hex(NULL)` is `''`, which is none.
fn hex_uuid_opt(h: &str) -> Result<Option<Uuid>, StoreError> {
    (!h.is_empty()).then(|| hex_uuid(h)).transpose()
}

fn hex_uuid(h: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(h).map_err(json_rows_error)
}

fn json_rows_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(anyhow::anyhow!("rows aggregated as JSON: {e}"))
}
