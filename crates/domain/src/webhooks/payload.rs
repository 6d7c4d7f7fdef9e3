//! What inbound webhook bodies say, decoded without I/O: the Shopify payload types shopkeep
//! processes, the cleaning that turns a Shopify order into lines that pass the order rules, and
//! the look-up of ids and types in any JSON event.
//!
//! The bodies come from outside (a signature proves who sent them, not that they are sane), so
//! everything here is total: odd values are dropped or replaced, never a panic.

use serde::Deserialize;

/// Longest item name kept from an import, as in [`crate::orders::parse_item_name`].
const MAX_NAME_CHARS: usize = 255;
/// The name of a line that has none worth keeping.
const FALLBACK_NAME: &str = "item";

/// The parts of a Shopify order shopkeep keeps (no customer details).
#[derive(Debug, Deserialize)]
pub struct ShopifyOrder {
    /// Shopify's order id, kept as the external id.
    pub id: i64,
    /// ISO 4217, as Shopify sends it.
    pub currency: Option<String>,
    /// Decimal text (`"19.99"`).
    pub total_price: Option<String>,
    /// The ordered lines.
    #[serde(default)]
    pub line_items: Vec<ShopifyLine>,
}

/// One line of a Shopify order.
#[derive(Debug, Deserialize)]
pub struct ShopifyLine {
    /// The product title, preferred as the item name.
    pub title: Option<String>,
    /// The line's display name, used when there is no title.
    pub name: Option<String>,
    /// As sent; cleaned by [`shopify_order`].
    pub quantity: i64,
    /// Unit price as decimal text.
    pub price: Option<String>,
    /// Shopify product id.
    pub product_id: Option<i64>,
    /// Shopify variant id.
    pub variant_id: Option<i64>,
}

/// A compliance request about a customer (`customers/data_request`, `customers/redact`).
#[derive(Debug, Deserialize)]
pub struct CustomerRequest {
    /// Whom the request is about.
    pub customer: Option<CustomerRef>,
    /// Orders whose data the customer asked for.
    #[serde(default)]
    pub orders_requested: Vec<i64>,
    /// Orders to erase.
    #[serde(default)]
    pub orders_to_redact: Vec<i64>,
}

/// A customer named in a compliance request.
#[derive(Debug, Deserialize)]
pub struct CustomerRef {
    /// Shopify customer id.
    pub id: Option<i64>,
}

/// An imported order line, cleaned to the order rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedLine {
    /// Passes [`crate::orders::parse_item_name`] unchanged.
    pub item_name: String,
    /// At least 1. Not capped at the API's 100: the shop already sold that many.
    pub quantity: i32,
    /// Shopify product id as text.
    pub product_ref: Option<String>,
    /// Shopify variant id as text.
    pub variant_ref: Option<String>,
    /// Unit price in minor units of the order's currency, when both are readable.
    pub unit_price_minor: Option<i64>,
}

/// A Shopify order as shopkeep records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedOrder {
    /// Shopify's order id as text.
    pub external_id: String,
    /// Every line of the payload, in order; empty when the payload had none.
    pub lines: Vec<ImportedLine>,
    /// The order total in minor units, when currency and total are readable.
    pub total_minor: Option<i64>,
    /// Three capital letters, or `None` when Shopify sent something else.
    pub currency: Option<String>,
}

/// Turns a decoded Shopify order into lines, total and currency that pass the order rules.
pub fn shopify_order(o: &ShopifyOrder) -> ImportedOrder {
    let currency = currency(o.currency.as_deref());
    let price = |p: Option<&str>| {
        currency
            .as_deref()
            .and_then(|c| p.and_then(|p| minor_units(p, c)))
    };
    let lines = o
        .line_items
        .iter()
        .map(|l| ImportedLine {
            item_name: line_name(l.title.as_deref().or(l.name.as_deref())),
            quantity: quantity(l.quantity),
            product_ref: l.product_id.map(|p| p.to_string()),
            variant_ref: l.variant_id.map(|v| v.to_string()),
            unit_price_minor: price(l.price.as_deref()),
        })
        .collect();
    ImportedOrder {
        external_id: o.id.to_string(),
        lines,
        total_minor: price(o.total_price.as_deref()),
        currency,
    }
}

/// The currency upper-cased, kept only when it has the shape of an ISO 4217 code.
pub fn currency(raw: Option<&str>) -> Option<String> {
    raw.map(str::to_ascii_uppercase)
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
}

/// An item name from what Shopify sent: control characters dropped, at most 255 characters,
/// trimmed; `item` when nothing is left.
pub fn line_name(raw: Option<&str>) -> String {
    let name: String = raw
        .unwrap_or(FALLBACK_NAME)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let name = name.trim();
    if name.is_empty() {
        FALLBACK_NAME.to_string()
    } else {
        name.to_string()
    }
}

/// A quantity clamped into `1..=i32::MAX`, the range the store holds.
pub fn quantity(raw: i64) -> i32 {
    i32::try_from(raw.clamp(1, i64::from(i32::MAX))).unwrap_or(1)
}

/// Digits after the decimal point of a currency's minor unit (ISO 4217).
pub fn exponent(currency: &str) -> u32 {
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

/// The text at `path` in a JSON value: a non-empty string as is, a number in its JSON form;
/// `None` for anything else or a missing step.
pub fn text_field(v: &serde_json::Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A JSON value read for its text, as [`text_field`] gives it, without building the value.
#[derive(Debug, Default)]
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, s: &str) -> Result<Text, E> {
                Ok(Text((!s.is_empty()).then(|| s.to_string())))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Text, E> {
                Ok(Text(Some(n.to_string())))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Text, E> {
                Ok(Text(Some(n.to_string())))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Text, E> {
                Ok(Text(serde_json::Number::from_f64(n).map(|n| n.to_string())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_unit<E>(self) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_none<E>(self) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Text, D::Error> {
                Text::deserialize(d)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Text, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Text, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Text(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// The object a Shopify webhook is about: the body's `id`, else `customer.id`, else `shop_id`
/// (the GDPR topics), each as [`text_field`] reads it; `None` for a body that is not a JSON
/// object. The body is scanned once without building a JSON value (an order body is several
/// kilobytes), falling back to the JSON value for bodies the scan does not take (such as a
/// repeated key, which the value resolves to its last occurrence).
pub fn shopify_resource_id(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Customer {
        #[serde(default)]
        id: Text,
    }
    #[derive(Deserialize)]
    struct Refs {
        #[serde(default)]
        id: Text,
        #[serde(default)]
        customer: Option<Customer>,
        #[serde(default)]
        shop_id: Text,
    }
    match serde_json::from_slice::<Refs>(body) {
        Ok(r) => {
            r.id.0
                .or_else(|| r.customer.and_then(|c| c.id.0))
                .or(r.shop_id.0)
        }
        Err(_) => {
            let v: serde_json::Value = serde_json::from_slice(body).ok()?;
            text_field(&v, &["id"])
                .or_else(|| text_field(&v, &["customer", "id"]))
                .or_else(|| text_field(&v, &["shop_id"]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::parse_item_name;
    use proptest::prelude::*;
    use serde_json::json;

    fn order(v: serde_json::Value) -> ImportedOrder {
        shopify_order(&serde_json::from_value(v).unwrap())
    }

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

    #[test]
    fn a_shopify_order_becomes_clean_lines_with_prices_in_its_currency() {
        let o = order(json!({
            "id": 820982911946154508_i64,
            "currency": "eur",
            "total_price": "41.00",
            "line_items": [
                { "title": "  Tea\u{7} pot ", "quantity": 2, "price": "19.50", "product_id": 7, "variant_id": 9 },
                { "name": "Spoon", "quantity": 0, "price": "2" },
                { "title": "\u{1}\u{2} ", "quantity": -5 },
                { "quantity": 9_000_000_000_i64, "price": "1.999" }
            ]
        }));
        assert_eq!(o.external_id, "820982911946154508");
        assert_eq!(o.currency.as_deref(), Some("EUR"));
        assert_eq!(o.total_minor, Some(4100));
        let names: Vec<&str> = o.lines.iter().map(|l| l.item_name.as_str()).collect();
        assert_eq!(names, ["Tea pot", "Spoon", "item", "item"]);
        let qty: Vec<i32> = o.lines.iter().map(|l| l.quantity).collect();
        assert_eq!(qty, [2, 1, 1, i32::MAX]);
        let prices: Vec<Option<i64>> = o.lines.iter().map(|l| l.unit_price_minor).collect();
        assert_eq!(prices, [Some(1950), Some(200), None, None]);
        assert_eq!(o.lines[0].product_ref.as_deref(), Some("7"));
        assert_eq!(o.lines[0].variant_ref.as_deref(), Some("9"));
    }

    #[test]
    fn without_a_readable_currency_nothing_is_priced() {
        for c in [json!(null), json!("euro"), json!("E1R"), json!("€€")] {
            let o = order(json!({
                "id": 1, "currency": c, "total_price": "5.00",
                "line_items": [{ "title": "x", "quantity": 1, "price": "5.00" }]
            }));
            assert_eq!((o.currency, o.total_minor), (None, None));
            assert_eq!(o.lines[0].unit_price_minor, None);
        }
        assert!(order(json!({ "id": 1 })).lines.is_empty());
    }

    #[test]
    fn long_names_are_cut_to_255_characters_after_dropping_control_characters() {
        let long = format!("{}\u{0}{}", "é".repeat(200), "ß".repeat(100));
        let name = line_name(Some(&long));
        assert_eq!(name.chars().count(), 255);
        assert_eq!(parse_item_name("n", &name), Ok(name.clone()));
        assert_eq!(line_name(None), "item");
        assert_eq!(line_name(Some("")), "item");
    }

    #[test]
    fn the_shopify_resource_id_reads_as_the_text_fields_do() {
        let bodies = [
            json!({"id": 820982911946154508_i64, "line_items": [{"id": 1}]}),
            json!({"id": "gid://shopify/Order/1", "customer": {"id": 5}}),
            json!({"id": "", "customer": {"id": 5}, "shop_id": 9}),
            json!({"id": null, "customer": null, "shop_id": 9}),
            json!({"id": {"nested": 1}, "customer": {"id": [1]}, "shop_id": "s"}),
            json!({"id": true, "customer": "text", "shop_id": 1.5}),
            json!({"id": -3}),
            json!({"other": 1}),
            json!([1, 2]),
            json!("text"),
        ];
        for v in bodies {
            let want = text_field(&v, &["id"])
                .or_else(|| text_field(&v, &["customer", "id"]))
                .or_else(|| text_field(&v, &["shop_id"]));
            assert_eq!(shopify_resource_id(v.to_string().as_bytes()), want, "{v}");
        }
        assert_eq!(
            shopify_resource_id(br#"{"id": 1, "id": 2}"#).as_deref(),
            Some("2"),
            "a repeated key counts as its last occurrence, as in the JSON value"
        );
        assert_eq!(shopify_resource_id(b"{not json"), None);
        assert_eq!(shopify_resource_id(b""), None);
    }

    proptest! {
        #[test]
        fn the_shopify_resource_id_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = shopify_resource_id(&bytes);
        }
    }

    #[test]
    fn text_fields_are_non_empty_strings_or_numbers() {
        let v =
            json!({ "id": 12, "type": "", "data": { "object": { "id": "ch_1" } }, "flag": true });
        assert_eq!(text_field(&v, &["id"]).as_deref(), Some("12"));
        assert_eq!(text_field(&v, &["type"]), None);
        assert_eq!(text_field(&v, &["flag"]), None);
        assert_eq!(
            text_field(&v, &["data", "object", "id"]).as_deref(),
            Some("ch_1")
        );
        assert_eq!(text_field(&v, &["data", "missing", "id"]), None);
        assert_eq!(text_field(&json!([1]), &["id"]), None);
    }

    proptest! {
        #[test]
        fn every_cleaned_name_passes_the_item_name_rule(s in "\\PC{0,300}|[\\x00-\\x20a\u{85}\u{a0}\u{2028}]{0,20}") {
            let name = line_name(Some(&s));
            prop_assert_eq!(parse_item_name("n", &name), Ok(name.clone()));
        }

        #[test]
        fn prices_never_panic_and_round_trip_through_their_digits(units in 0_i64..=i64::MAX, c in "[A-Z]{3}") {
            let e = exponent(&c);
            let scale = 10_i64.pow(e);
            let text = if e == 0 {
                units.to_string()
            } else {
                format!("{}.{:0w$}", units / scale, units % scale, w = e as usize)
            };
            prop_assert_eq!(minor_units(&text, &c), Some(units));
        }
    }
}
