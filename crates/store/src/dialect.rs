//! The few statements whose SQL differs between SQLite and PostgreSQL. Keep this file short:
//! everything that can be written once belongs in the area modules.

use crate::{Db, StoreError};

/// Does a table with this name exist in the database's current schema?
pub async fn table_exists(db: &Db, name: &str) -> Result<bool, StoreError> {
    let n: i64 = match db {
        Db::Sqlite(sqlite) => {
            let pool = &sqlite.pool;
            sqlx::query_scalar(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
            )
            .bind(name)
            .fetch_one(pool)
            .await?
        }
        Db::Postgres(pool) => {
            sqlx::query_scalar(
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = $1",
            )
            .bind(name)
            .fetch_one(pool)
            .await?
        }
    };
    Ok(n > 0)
}
