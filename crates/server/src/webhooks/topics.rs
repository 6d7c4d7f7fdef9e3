//! Processing of stored receipts: one handler per (provider, topic), each decoding its own
//! payload type. A topic without a handler is stored as `unhandled` and never processed.
//!
//! Handlers are idempotent: the job may run twice (a lost worker), and an admin may replay a
//! receipt.

use serde::Deserialize;
use shopkeep_domain::webhooks::payload::{self, CustomerRequest, ShopifyOrder};
use shopkeep_domain::{ShopId, Timestamp};
use shopkeep_jobs::{JobContext, JobError, JobResult};
use shopkeep_store::audit::{self, AuditEntry};
use shopkeep_store::orders::{self, NewItem, NewOrder};
use shopkeep_store::webhooks::{self as store, Receipt};
use shopkeep_store::{Db, ShopScope, StoreError};
use uuid::Uuid;

use super::integrations::IntegrationCache;

/// The (provider, topic) pairs shopkeep processes.
pub const HANDLED: &[(&str, &str)] = &[
    ("shopify", "orders/create"),
    ("shopify", "app/uninstalled"),
    ("shopify", "customers/data_request"),
    ("shopify", "customers/redact"),
    ("shopify", "shop/redact"),
];

/// True when shopkeep has a handler for the topic.
pub fn handles(provider: &str, topic: &str) -> bool {
    HANDLED.iter().any(|(p, t)| *p == provider && *t == topic)
}

/// The job handler of [`super::PROCESS`]: runs the receipt's topic handler and records how it
/// ended on the receipt. A handler that changes an integration clears `cache`.
pub async fn process(ctx: &JobContext, cache: &IntegrationCache, receipt: Uuid) -> JobResult {
    let db = ctx.db();
    let Some(r) = store::receipt(db, receipt).await? else {
        return Ok(Some(serde_json::json!({ "skipped": "receipt gone" })));
    };
    let Some(shop) = r.shop_id else {
        store::finish_receipt(db, r.id, "orphaned", None, Timestamp::now().0).await?;
        return Ok(Some(serde_json::json!({ "skipped": "no shop" })));
    };
    let scope = ShopScope::verified(ShopId(shop));
    let outcome = run(db, cache, scope, &r).await;
    let now = Timestamp::now().0;
    match outcome {
        Ok(v) => {
            store::finish_receipt(db, r.id, "processed", None, now).await?;
            Ok(v)
        }
        Err(e) => {
            let status = if ctx.is_last_attempt() || matches!(e, JobError::Fatal(_)) {
                "failed"
            } else {
                "queued"
            };
            store::finish_receipt(db, r.id, status, Some(&e.to_string()), now).await?;
            Err(e)
        }
    }
}

fn decode<T: for<'de> Deserialize<'de>>(r: &Receipt) -> Result<T, JobError> {
    serde_json::from_slice(&r.body).map_err(|e| {
        JobError::fatal(format!(
            "the {} {} payload does not decode: {e}",
            r.provider, r.topic
        ))
    })
}

async fn run(db: &Db, cache: &IntegrationCache, scope: ShopScope, r: &Receipt) -> JobResult {
    if r.redacted_at.is_some() {
        return Ok(Some(serde_json::json!({ "skipped": "redacted" })));
    }
    match (r.provider.as_str(), r.topic.as_str()) {
        ("shopify", "orders/create") => shopify_order(db, scope, decode(r)?).await,
        ("shopify", "app/uninstalled") => {
            let done = store::mark_uninstalled(db, scope, "shopify", Timestamp::now().0).await;
            cache.clear();
            let done = done?;
            Ok(Some(serde_json::json!({ "uninstalled": done })))
        }
        ("shopify", "customers/data_request") => {
            let p: CustomerRequest = decode(r)?;
            let held = held_orders(db, scope, &p.orders_requested).await?;
            audit::record(
                db,
                AuditEntry {
                    shop: Some(scope.shop_id()),
                    action: "shopify.customer_data_requested",
                    target: p
                        .customer
                        .as_ref()
                        .and_then(|c| c.id)
                        .map(|i| i.to_string()),
                    detail: serde_json::json!({ "orders_held": held, "receipt": r.id }),
                    ..AuditEntry::default()
                },
            )
            .await?;
            Ok(Some(serde_json::json!({ "orders_held": held })))
        }
        ("shopify", "customers/redact") => {
            let p: CustomerRequest = decode(r)?;
            let mut ids: Vec<String> = p.orders_to_redact.iter().map(i64::to_string).collect();
            if let Some(c) = p.customer.as_ref().and_then(|c| c.id) {
                ids.push(c.to_string());
            }
            let n = store::redact_receipts(db, scope, "shopify", Some(&ids), Timestamp::now().0)
                .await?;
            Ok(Some(serde_json::json!({ "receipts_redacted": n })))
        }
        ("shopify", "shop/redact") => {
            let n = store::redact_receipts(db, scope, "shopify", None, Timestamp::now().0).await?;
            let unlinked = store::delete_integration(db, scope, "shopify").await;
            cache.clear();
            let unlinked = unlinked?;
            Ok(Some(
                serde_json::json!({ "receipts_redacted": n, "integration_removed": unlinked }),
            ))
        }
        (p, t) => Err(JobError::fatal(format!("no handler for {p} {t}"))),
    }
}

async fn held_orders(db: &Db, scope: ShopScope, ids: &[i64]) -> Result<usize, StoreError> {
    let mut n = 0;
    for id in ids {
        if orders::by_external_id(db, scope, "shopify", &id.to_string())
            .await?
            .is_some()
        {
            n += 1;
        }
    }
    Ok(n)
}

async fn shopify_order(db: &Db, scope: ShopScope, o: ShopifyOrder) -> JobResult {
    let imported = payload::shopify_order(&o);
    if imported.lines.is_empty() {
        return Err(JobError::fatal("the Shopify order has no line items"));
    }
    let currency = imported.currency;
    let items = imported
        .lines
        .into_iter()
        .map(|l| NewItem {
            item_name: l.item_name,
            quantity: l.quantity,
            product_ref: l.product_ref,
            variant_ref: l.variant_ref,
            unit_price_minor: l.unit_price_minor,
            currency: currency.clone(),
        })
        .collect();
    let order = NewOrder {
        customer: None,
        notes: None,
        source: "shopify",
        external_id: Some(imported.external_id),
        items,
        total_minor: imported.total_minor,
        currency,
        customer_username: None,
        actor_username: None,
    };
    match orders::create(db, scope, &order, None, None, "webhook").await {
        Ok(orders::Created::New(full)) => Ok(Some(
            serde_json::json!({ "order_id": full.order.id, "created": true }),
        )),
        Ok(_) | Err(StoreError::Conflict(_)) => Ok(Some(
            serde_json::json!({ "external_id": o.id, "created": false }),
        )),
        Err(e) => Err(e.into()),
    }
}
