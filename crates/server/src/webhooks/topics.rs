//! Processing of stored receipts: one handler per (provider, topic), each decoding its own
//! payload type. A topic without a handler is stored as `unhandled` and never processed.
//!
//! Handlers are idempotent: the job may run twice (a lost worker), and an admin may replay a
//! receipt.

use serde::Deserialize;
use shopkeep_domain::{ShopId, Timestamp};
use shopkeep_jobs::{JobContext, JobError, JobResult};
use shopkeep_store::audit::{self, AuditEntry};
use shopkeep_store::orders::{self, NewItem, NewOrder};
use shopkeep_store::webhooks::{self as store, Receipt};
use shopkeep_store::{Db, ShopScope, StoreError};
use uuid::Uuid;

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
/// ended on the receipt.
pub async fn process(ctx: &JobContext, receipt: Uuid) -> JobResult {
    let db = ctx.db();
    let Some(r) = store::receipt(db, receipt).await? else {
        return Ok(Some(serde_json::json!({ "skipped": "receipt gone" })));
    };
    let Some(shop) = r.shop_id else {
        store::finish_receipt(db, r.id, "orphaned", None, Timestamp::now().0).await?;
        return Ok(Some(serde_json::json!({ "skipped": "no shop" })));
    };
    let scope = ShopScope::verified(ShopId(shop));
    let outcome = run(db, scope, &r).await;
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

async fn run(db: &Db, scope: ShopScope, r: &Receipt) -> JobResult {
    if r.redacted_at.is_some() {
        return Ok(Some(serde_json::json!({ "skipped": "redacted" })));
    }
    match (r.provider.as_str(), r.topic.as_str()) {
        ("shopify", "orders/create") => shopify_order(db, scope, decode(r)?).await,
        ("shopify", "app/uninstalled") => {
            let done = store::mark_uninstalled(db, scope, "shopify", Timestamp::now().0).await?;
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
            let unlinked = store::delete_integration(db, scope, "shopify").await?;
            Ok(Some(
                serde_json::json!({ "receipts_redacted": n, "integration_removed": unlinked }),
            ))
        }
        (p, t) => Err(JobError::fatal(format!("no handler for {p} {t}"))),
    }
}

/// The parts of a Shopify order shopkeep keeps (no customer details).
#[derive(Debug, Deserialize)]
struct ShopifyOrder {
    id: i64,
    currency: Option<String>,
    total_price: Option<String>,
    #[serde(default)]
    line_items: Vec<ShopifyLine>,
}

#[derive(Debug, Deserialize)]
struct ShopifyLine {
    title: Option<String>,
    name: Option<String>,
    quantity: i64,
    price: Option<String>,
    product_id: Option<i64>,
    variant_id: Option<i64>,
}

/// A compliance request about a customer.
#[derive(Debug, Deserialize)]
struct CustomerRequest {
    customer: Option<CustomerRef>,
    #[serde(default)]
    orders_requested: Vec<i64>,
    #[serde(default)]
    orders_to_redact: Vec<i64>,
}

#[derive(Debug, Deserialize)]
struct CustomerRef {
    id: Option<i64>,
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
    let currency = o
        .currency
        .as_deref()
        .map(str::to_ascii_uppercase)
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
    let mut items = Vec::new();
    for l in &o.line_items {
        let name: String = l
            .title
            .as_deref()
            .or(l.name.as_deref())
            .unwrap_or("item")
            .chars()
            .filter(|c| !c.is_control())
            .take(255)
            .collect();
        let name = if name.trim().is_empty() {
            "item".to_string()
        } else {
            name.trim().to_string()
        };
        items.push(NewItem {
            item_name: name,
            quantity: i32::try_from(l.quantity.clamp(1, i64::from(i32::MAX))).unwrap_or(1),
            product_ref: l.product_id.map(|p| p.to_string()),
            variant_ref: l.variant_id.map(|v| v.to_string()),
            unit_price_minor: currency
                .as_deref()
                .and_then(|c| l.price.as_deref().and_then(|p| minor_units(p, c))),
            currency: currency.clone(),
        });
    }
    if items.is_empty() {
        return Err(JobError::fatal("the Shopify order has no line items"));
    }
    let order = NewOrder {
        customer: None,
        notes: None,
        source: "shopify",
        external_id: Some(o.id.to_string()),
        items,
        total_minor: currency
            .as_deref()
            .and_then(|c| o.total_price.as_deref().and_then(|p| minor_units(p, c))),
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

/// Digits after the decimal point of a currency's minor unit (ISO 4217).
fn exponent(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// `"19.99"` in `USD` -> 1999; `None` for anything that is not a plain non-negative decimal with
/// at most the currency's digits.
pub fn minor_units(price: &str, currency: &str) -> Option<i64> {
    let e = exponent(currency);
    let (whole, frac) = price.trim().split_once('.').unwrap_or((price.trim(), ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > e as usize {
        return None;
    }
    let scale = 10_i64.checked_pow(e)?;
    let w: i64 = whole.parse().ok()?;
    let f: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<width$}", width = e as usize)
            .parse()
            .ok()?
    };
    w.checked_mul(scale)?.checked_add(f)
}

#[cfg(test)]
mod tests {
    use super::minor_units;

    #[test]
    fn prices_become_minor_units_by_the_currency_exponent() {
        assert_eq!(minor_units("19.99", "USD"), Some(1999));
        assert_eq!(minor_units("19.9", "USD"), Some(1990));
        assert_eq!(minor_units("20", "USD"), Some(2000));
        assert_eq!(minor_units("20.00", "EUR"), Some(2000));
        assert_eq!(minor_units("1500", "JPY"), Some(1500));
        assert_eq!(minor_units("1.234", "KWD"), Some(1234));
        assert_eq!(minor_units("1.234", "USD"), None);
        assert_eq!(minor_units("-1.00", "USD"), None);
        assert_eq!(minor_units("abc", "USD"), None);
        assert_eq!(minor_units("", "USD"), None);
        assert_eq!(minor_units("99999999999999999999", "USD"), None);
    }
}
