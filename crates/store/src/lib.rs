//! shopkeep persistence: one code path over SQLite and PostgreSQL.
//!
//! Every query is written once with `$1` placeholders (valid in both dialects) and run through
//! [`on_pool!`], which compiles the same body once per engine. SQL that truly differs between the
//! engines lives in [`dialect`] and nowhere else.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod db;
pub mod dialect;
pub mod error;
pub mod group;
pub mod jobs;
pub mod migrate;
pub mod notifications;
pub mod orders;
pub mod schema;
pub mod scope;
pub mod sessions;
pub mod tokens;
pub mod webhooks;

pub use db::{Db, DbOptions, Engine, PoolStats, SqliteDb, SqliteSync, redact_url};
pub use error::StoreError;
pub use migrate::MigrationStatus;
pub use scope::ShopScope;

/// Runs `$body` with `$pool` bound to the engine's concrete pool (`SqlitePool` or `PgPool`).
///
/// The body is type-checked once per engine, so one SQL text serves both without `sqlx::Any`.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::Db::Sqlite(sqlite) => {
                let $pool = &sqlite.pool;
                $body
            }
            $crate::Db::Postgres($pool) => $body,
        }
    };
}
