//! The shopkeep binary's library: configuration, role wiring, the application and the CLI.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod keys;
pub mod telemetry;

pub use app::Application;
pub use config::Config;
