//! Inbound webhook bodies: arbitrary bytes decoded as each payload type shopkeep processes
//! (Shopify orders and compliance requests, the JSON look-ups of ids and types) and run through
//! the order conversion: never a panic; every produced line obeys the order rules.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shopkeep_domain::orders::parse_item_name;
use shopkeep_domain::webhooks::payload::{
    self, CustomerRequest, ShopifyOrder, minor_units, text_field,
};

/// The paths the inbound handlers read ids, types and shops from.
const PATHS: [&[&str]; 8] = [
    &["id"],
    &["type"],
    &["customer", "id"],
    &["shop_id"],
    &["account"],
    &["data", "object", "id"],
    &["data", "object", "metadata", "shop_id"],
    &["resource", "data", "shop_id"],
];

fuzz_target!(|data: &[u8]| {
    if let Ok(o) = serde_json::from_slice::<ShopifyOrder>(data) {
        let imported = payload::shopify_order(&o);
        assert_eq!(imported.lines.len(), o.line_items.len());
        assert_eq!(imported.external_id, o.id.to_string());
        if let Some(c) = &imported.currency {
            assert!(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
        } else {
            assert_eq!(imported.total_minor, None);
        }
        assert!(imported.total_minor.is_none_or(|t| t >= 0));
        for l in &imported.lines {
            assert_eq!(
                parse_item_name("item_name", &l.item_name).as_ref(),
                Ok(&l.item_name),
                "an imported name breaks the item name rule"
            );
            assert!(l.quantity >= 1);
            assert!(l.unit_price_minor.is_none_or(|p| p >= 0));
            if imported.currency.is_none() {
                assert_eq!(l.unit_price_minor, None);
            }
        }
    }
    let _ = serde_json::from_slice::<CustomerRequest>(data);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        for path in PATHS {
            if let Some(t) = text_field(&v, path) {
                assert!(!t.is_empty());
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let (price, currency) = s.split_once('|').unwrap_or((s, "USD"));
        if let Some(units) = minor_units(price, currency) {
            assert!(units >= 0);
        }
    }
});
