//! Orders: the status machine, line-item rules and money in integer minor units.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Invalid;

/// Where an order came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The web UI.
    Web,
    /// The JSON API.
    Api,
    /// Synced from Shopify.
    Shopify,
    /// An Instagram conversation.
    Instagram,
    /// A WhatsApp conversation.
    Whatsapp,
}

impl Source {
    /// Every source.
    pub const ALL: [Source; 5] = [
        Source::Web,
        Source::Api,
        Source::Shopify,
        Source::Instagram,
        Source::Whatsapp,
    ];

    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Web => "web",
            Source::Api => "api",
            Source::Shopify => "shopify",
            Source::Instagram => "instagram",
            Source::Whatsapp => "whatsapp",
        }
    }
}

impl FromStr for Source {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Source::ALL.into_iter().find(|x| x.as_str() == s).ok_or(())
    }
}

/// An order's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Waiting for a decision.
    Pending,
    /// Approved by a shop admin.
    Approved,
    /// Rejected by a shop admin.
    Rejected,
    /// Withdrawn by the customer.
    Cancelled,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Approved,
        Status::Rejected,
        Status::Cancelled,
    ];

    /// Name as stored and shown (`PENDING`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Approved => "APPROVED",
            Status::Rejected => "REJECTED",
            Status::Cancelled => "CANCELLED",
        }
    }

    /// Lower-case filter name (`pending`).
    pub fn filter_name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Status::ALL
            .into_iter()
            .find(|x| x.as_str() == s || x.filter_name() == s)
            .ok_or(())
    }
}

/// A change someone asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// An admin approves.
    Approve,
    /// An admin rejects.
    Reject,
    /// The customer cancels.
    Cancel,
}

impl Action {
    /// The only status each action starts from, and where it leads.
    pub fn transition(self) -> (Status, Status) {
        match self {
            Action::Approve => (Status::Pending, Status::Approved),
            Action::Reject => (Status::Pending, Status::Rejected),
            Action::Cancel => (Status::Pending, Status::Cancelled),
        }
    }

    /// The target status if allowed from `current`.
    pub fn apply(self, current: Status) -> Option<Status> {
        let (from, to) = self.transition();
        (current == from).then_some(to)
    }

    /// Name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Cancel => "cancel",
        }
    }
}

/// Trims and checks an item name: 1-255 characters, no control characters.
pub fn parse_item_name(field: &'static str, s: &str) -> Result<String, Invalid> {
    let t = s.trim();
    if t.is_empty() {
        return Err(Invalid::new(field, "required", "give the item a name"));
    }
    if t.chars().count() > 255 {
        return Err(Invalid::new(
            field,
            "too_long",
            "an item name has at most 255 characters",
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(Invalid::new(
            field,
            "control_characters",
            "an item name cannot contain control characters",
        ));
    }
    Ok(t.to_string())
}

/// Checks a quantity: 1 to 100.
pub fn parse_quantity(field: &'static str, q: i64) -> Result<i32, Invalid> {
    if (1..=100).contains(&q) {
        Ok(i32::try_from(q).unwrap_or(1))
    } else {
        Err(Invalid::new(field, "out_of_range", "quantity is 1 to 100"))
    }
}

/// Checks optional free text with a length limit (notes: 1000, reason: 500).
pub fn parse_text(field: &'static str, s: &str, max: usize) -> Result<Option<String>, Invalid> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t.chars().count() > max {
        return Err(Invalid::new(
            field,
            "too_long",
            format!("at most {max} characters"),
        ));
    }
    if t.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(Invalid::new(
            field,
            "control_characters",
            "no control characters",
        ));
    }
    Ok(Some(t.to_string()))
}

/// An order line with optional price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Quantity.
    pub quantity: i64,
    /// Unit price in minor units (cents), when known.
    pub unit_price_minor: Option<i64>,
}

/// Sum of `quantity × unit price` in minor units; `None` when any line has no price or the sum
/// overflows.
pub fn total_minor(lines: &[Line]) -> Option<i64> {
    lines.iter().try_fold(0_i64, |acc, l| {
        acc.checked_add(l.quantity.checked_mul(l.unit_price_minor?)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_pending_orders_move_and_each_action_has_one_target() {
        assert_eq!(
            Action::Approve.apply(Status::Pending),
            Some(Status::Approved)
        );
        assert_eq!(
            Action::Reject.apply(Status::Pending),
            Some(Status::Rejected)
        );
        assert_eq!(
            Action::Cancel.apply(Status::Pending),
            Some(Status::Cancelled)
        );
        for s in [Status::Approved, Status::Rejected, Status::Cancelled] {
            for a in [Action::Approve, Action::Reject, Action::Cancel] {
                assert_eq!(a.apply(s), None, "{a:?} from {s:?}");
            }
        }
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
            assert_eq!(s.filter_name().parse::<Status>(), Ok(s));
        }
    }

    #[test]
    fn item_names_are_trimmed_and_bounded() {
        assert_eq!(parse_item_name("n", "  tea  ").unwrap(), "tea");
        assert_eq!(parse_item_name("n", "   ").unwrap_err().code, "required");
        assert_eq!(
            parse_item_name("n", &"é".repeat(256)).unwrap_err().code,
            "too_long"
        );
        assert!(parse_item_name("n", &"é".repeat(255)).is_ok());
        assert_eq!(
            parse_item_name("n", "a\u{0007}b").unwrap_err().code,
            "control_characters"
        );
        assert_eq!(parse_quantity("q", 0).unwrap_err().code, "out_of_range");
        assert_eq!(parse_quantity("q", 101).unwrap_err().code, "out_of_range");
        assert_eq!(parse_quantity("q", 100).unwrap(), 100);
    }

    #[test]
    fn totals_are_exact_in_minor_units() {
        let lines = [
            Line {
                quantity: 3,
                unit_price_minor: Some(1999),
            },
            Line {
                quantity: 1,
                unit_price_minor: Some(1),
            },
        ];
        assert_eq!(total_minor(&lines), Some(5998));
        assert_eq!(
            total_minor(&[Line {
                quantity: 1,
                unit_price_minor: None
            }]),
            None
        );
        assert_eq!(
            total_minor(&[Line {
                quantity: 2,
                unit_price_minor: Some(i64::MAX)
            }]),
            None
        );
    }

    proptest! {
        #[test]
        fn item_name_validation_never_panics(s in "\\PC{0,300}") {
            let _ = parse_item_name("n", &s);
            let _ = parse_text("t", &s, 1000);
        }

        #[test]
        fn accepted_item_names_are_trimmed_bounded_and_printable(s in "\\PC{0,300}|[ \t\na-z\u{7}]{0,10}") {
            match parse_item_name("item_name", &s) {
                Ok(n) => {
                    prop_assert_eq!(n.as_str(), s.trim());
                    prop_assert!((1..=255).contains(&n.chars().count()));
                    prop_assert!(!n.chars().any(char::is_control));
                }
                Err(e) => prop_assert_eq!(e.field, "item_name"),
            }
        }

        #[test]
        fn item_names_over_255_characters_are_refused_naming_the_field(s in "\\PC{256,300}") {
            prop_assume!(s.trim().chars().count() > 255);
            let e = parse_item_name("item_name", &s).unwrap_err();
            prop_assert_eq!((e.field, e.code), ("item_name", "too_long"));
        }

        #[test]
        fn quantities_are_accepted_exactly_from_1_to_100(q in any::<i64>(), small in -5_i64..110) {
            for q in [q, small] {
                match parse_quantity("quantity", q) {
                    Ok(n) => prop_assert!((1..=100).contains(&n) && i64::from(n) == q),
                    Err(e) => {
                        prop_assert!(!(1..=100).contains(&q));
                        prop_assert_eq!((e.field, e.code), ("quantity", "out_of_range"));
                    }
                }
            }
        }

        #[test]
        fn accepted_text_is_trimmed_within_its_limit_and_over_it_is_refused(s in "\\PC{0,60}|[ \t\r\na\u{0}]{0,10}", max in 0_usize..40) {
            match parse_text("notes", &s, max) {
                Ok(None) => prop_assert!(s.trim().is_empty()),
                Ok(Some(t)) => {
                    prop_assert_eq!(t.as_str(), s.trim());
                    prop_assert!(t.chars().count() <= max);
                    prop_assert!(!t.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')));
                }
                Err(e) => {
                    prop_assert_eq!(e.field, "notes");
                    if s.trim().chars().count() > max {
                        prop_assert_eq!(e.code, "too_long");
                    }
                }
            }
        }
    }
}
