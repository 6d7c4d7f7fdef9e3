//! Pure domain types and rules for shopkeep. Nothing in this crate performs I/O.

pub mod accounts;
pub mod cursor;
pub mod export;
pub mod ids;
pub mod jwt;
pub mod orders;
pub mod secret;
pub mod time;
pub mod webhooks;

pub use ids::{ShopId, UserId};
pub use secret::Secret;
pub use time::Timestamp;

/// One rule a value broke: the field and a stable code, plus a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Field name as the client sent it.
    pub field: &'static str,
    /// Stable machine code (`too_short`, `required`, ...).
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
}

impl Invalid {
    /// Builds a rule violation.
    pub fn new(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            code,
            message: message.into(),
        }
    }
}
