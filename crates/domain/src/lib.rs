//! Pure domain types and rules for shopkeep. Nothing in this crate performs I/O.

pub mod secret;

pub use secret::Secret;
