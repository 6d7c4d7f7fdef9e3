//! Event types (`order.created`) and the filters endpoints subscribe with (`order.*`, `*`).

use std::fmt;

use crate::Invalid;

/// Longest event type or filter entry.
const MAX_LEN: usize = 64;
/// Most filter entries one endpoint may hold.
const MAX_FILTERS: usize = 50;

/// Event types: `order.created` style, 3..=64 chars, segments of [a-z0-9_], separated by '.',
/// at least two segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(String);

impl EventType {
    /// Checks an event type; errors name the field `event_type`.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        check_type("event_type", s)?;
        Ok(Self(s.to_string()))
    }

    /// The type as sent and stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether every dot-separated segment is a non-empty run of `[a-z0-9_]`.
fn segments_ok(s: &str) -> bool {
    s.split('.').all(|seg| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    })
}

/// The event type rule, reporting against `field`.
fn check_type(field: &'static str, s: &str) -> Result<(), Invalid> {
    if s.is_empty() {
        return Err(Invalid::new(field, "required", "give an event type"));
    }
    if s.len() < 3 {
        return Err(Invalid::new(
            field,
            "too_short",
            "an event type has at least 3 characters",
        ));
    }
    if s.len() > MAX_LEN {
        return Err(Invalid::new(
            field,
            "too_long",
            "an event type has at most 64 characters",
        ));
    }
    if !s.contains('.') || !segments_ok(s) {
        return Err(Invalid::new(
            field,
            "invalid_format",
            "an event type is lower-case words joined by dots, such as order.created",
        ));
    }
    Ok(())
}

/// Whether `s` is an event type, a prefix wildcard (`order.*`) or `*`.
fn valid_filter(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    if s.len() > MAX_LEN {
        return false;
    }
    match s.strip_suffix(".*") {
        Some(prefix) => segments_ok(prefix),
        None => check_type("", s).is_ok(),
    }
}

/// An endpoint's filter entry: an exact event type, or a prefix wildcard `order.*`, or `*`
/// for all. An empty list means every event.
pub fn filter_matches(filters: &[String], event_type: &str) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| {
            f == "*"
                || f == event_type
                || f.strip_suffix('*').is_some_and(|prefix| {
                    prefix.ends_with('.')
                        && event_type.len() > prefix.len()
                        && event_type.starts_with(prefix)
                })
        })
}

/// Checks an endpoint's filter list (at most 50 entries) and drops repeats, keeping order.
pub fn parse_filters(field: &'static str, v: &[String]) -> Result<Vec<String>, Invalid> {
    if v.len() > MAX_FILTERS {
        return Err(Invalid::new(field, "too_many", "at most 50 event filters"));
    }
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for entry in v {
        if !valid_filter(entry) {
            // Debug quoting keeps control characters out of the message.
            let shown: String = entry.chars().take(MAX_LEN).collect();
            return Err(Invalid::new(
                field,
                "invalid_filter",
                format!(
                    "{shown:?} is not an event type such as order.created or a wildcard such as order.*"
                ),
            ));
        }
        if !out.contains(entry) {
            out.push(entry.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn event_types_are_dotted_lower_case_words() {
        for good in [
            "order.created",
            "a.b",
            "order.line_item.added",
            "shop.v2",
            &format!("a.{}", "b".repeat(62)),
        ] {
            assert_eq!(EventType::parse(good).unwrap().as_str(), good);
        }
        let cases = [
            ("", "required"),
            ("a.", "too_short"),
            (&format!("a.{}", "b".repeat(63)), "too_long"),
            ("order", "invalid_format"),
            ("Order.created", "invalid_format"),
            ("order..created", "invalid_format"),
            (".order.created", "invalid_format"),
            ("order.created.", "invalid_format"),
            ("order.cre ated", "invalid_format"),
            ("order-created.x", "invalid_format"),
            ("order.*", "invalid_format"),
            ("ordér.created", "invalid_format"),
        ];
        for (bad, code) in cases {
            let e = EventType::parse(bad).unwrap_err();
            assert_eq!((e.field, e.code), ("event_type", code), "{bad:?}");
        }
        assert_eq!(
            EventType::parse("order.created").unwrap().to_string(),
            "order.created"
        );
    }

    #[test]
    fn filters_match_exactly_by_prefix_or_everything() {
        assert!(filter_matches(&[], "order.created"));
        assert!(filter_matches(&list(&["*"]), "order.created"));
        assert!(filter_matches(&list(&["order.created"]), "order.created"));
        assert!(!filter_matches(&list(&["order.created"]), "order.updated"));
        assert!(filter_matches(&list(&["order.*"]), "order.created"));
        assert!(filter_matches(&list(&["order.*"]), "order.line.added"));
        assert!(!filter_matches(&list(&["order.*"]), "orders.created"));
        assert!(!filter_matches(&list(&["order.*"]), "order."));
        assert!(!filter_matches(&list(&["order.*"]), "shop.updated"));
        assert!(filter_matches(
            &list(&["shop.*", "order.created"]),
            "order.created"
        ));
        assert!(!filter_matches(&list(&["order*"]), "order.created"));
    }

    #[test]
    fn filter_lists_are_checked_bounded_and_deduplicated() {
        assert_eq!(
            parse_filters(
                "filters",
                &list(&["order.*", "*", "shop.updated", "order.*", "a.b.*"])
            )
            .unwrap(),
            list(&["order.*", "*", "shop.updated", "a.b.*"])
        );
        assert_eq!(parse_filters("filters", &[]).unwrap(), Vec::<String>::new());
        for bad in [
            "",
            "order",
            "*.created",
            "order*",
            "order.**",
            ".*",
            "Order.*",
            "order.*.x",
            " order.created",
            "a\u{7}.b",
        ] {
            let e = parse_filters("filters", &list(&["order.created", bad])).unwrap_err();
            assert_eq!((e.field, e.code), ("filters", "invalid_filter"), "{bad:?}");
        }
        let long = format!("a.{}.*", "b".repeat(61));
        assert_eq!(
            parse_filters("filters", &[long]).unwrap_err().code,
            "invalid_filter"
        );
        let many: Vec<String> = (0..51).map(|i| format!("order.e{i}")).collect();
        let e = parse_filters("filters", &many).unwrap_err();
        assert_eq!((e.field, e.code), ("filters", "too_many"));
        assert!(parse_filters("filters", &many[..50]).is_ok());
    }

    proptest! {
        #[test]
        fn event_and_filter_checks_never_panic(s in "\\PC{0,80}") {
            let _ = EventType::parse(&s);
            let _ = parse_filters("filters", std::slice::from_ref(&s));
            let _ = filter_matches(std::slice::from_ref(&s), "order.created");
        }

        #[test]
        fn a_valid_type_matches_its_own_filter_and_its_prefix_wildcard(a in "[a-z0-9_]{1,20}", b in "[a-z0-9_]{1,20}") {
            let t = format!("{a}.{b}");
            prop_assert!(EventType::parse(&t).is_ok() || t.len() < 3);
            prop_assert!(filter_matches(std::slice::from_ref(&t), &t));
            let wildcard = format!("{a}.*");
            prop_assert!(filter_matches(std::slice::from_ref(&wildcard), &t));
        }

        #[test]
        fn accepted_event_types_keep_the_rule_and_long_ones_are_refused(s in "[a-z._*]{0,80}") {
            match EventType::parse(&s) {
                Ok(t) => {
                    prop_assert!((3..=MAX_LEN).contains(&t.as_str().len()));
                    prop_assert!(s.contains('.') && segments_ok(&s));
                }
                Err(e) => {
                    prop_assert_eq!(e.field, "event_type");
                    if s.len() > MAX_LEN {
                        prop_assert_eq!(e.code, "too_long");
                    }
                }
            }
        }

        #[test]
        fn accepted_filter_lists_are_valid_entries_without_repeats(v in proptest::collection::vec("[a-c]{1,2}(\\.[a-c]{1,2}){0,2}(\\.\\*)?|\\*|\\PC{0,6}", 0..60)) {
            match parse_filters("filters", &v) {
                Ok(kept) => {
                    prop_assert!(v.len() <= MAX_FILTERS);
                    for (i, f) in kept.iter().enumerate() {
                        prop_assert!(valid_filter(f) && v.contains(f));
                        prop_assert!(!kept[..i].contains(f));
                    }
                    prop_assert!(v.iter().all(|f| kept.contains(f)));
                }
                Err(e) => {
                    prop_assert_eq!(e.field, "filters");
                    if v.len() > MAX_FILTERS {
                        prop_assert_eq!(e.code, "too_many");
                    }
                }
            }
        }
    }
}
