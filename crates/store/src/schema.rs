//! A portable description of the tables, columns and indexes a database holds, so a test can
//! prove that both engines' migrations end in the same shape.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Db, StoreError};

/// Tables by name, without the migration bookkeeping table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    /// Each table's shape.
    pub tables: BTreeMap<String, TableShape>,
}

/// A table's columns (name -> nullable) and explicitly created indexes (name -> unique).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableShape {
    /// Column name to whether it accepts NULL.
    pub columns: BTreeMap<String, bool>,
    /// Index name (created by `CREATE INDEX`) to whether it is unique.
    pub indexes: BTreeMap<String, bool>,
}

impl Db {
    /// Reads the current schema from the engine's catalog.
    pub async fn schema(&self) -> Result<Schema, StoreError> {
        let mut schema = Schema::default();
        match self {
            Db::Sqlite(sqlite) => {
                let pool = &sqlite.pool;
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
                )
                .fetch_all(pool)
                .await?;
                for t in tables {
                    let cols: Vec<(String, bool)> =
                        sqlx::query_as("SELECT name, \"notnull\" = 0 FROM pragma_table_info($1)")
                            .bind(&t)
                            .fetch_all(pool)
                            .await?;
                    let idx: Vec<(String, bool)> = sqlx::query_as(
                        "SELECT name, \"unique\" = 1 FROM pragma_index_list($1) WHERE origin = 'c'",
                    )
                    .bind(&t)
                    .fetch_all(pool)
                    .await?;
                    schema.tables.insert(t, shape(cols, idx));
                }
            }
            Db::Postgres(pool) => {
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                     AND table_name <> '_sqlx_migrations'",
                )
                .fetch_all(pool)
                .await?;
                for t in tables {
                    let cols: Vec<(String, bool)> = sqlx::query_as(
                        "SELECT column_name::text, is_nullable = 'YES' FROM information_schema.columns \
                         WHERE table_schema = current_schema() AND table_name = $1",
                    )
                    .bind(&t)
                    .fetch_all(pool)
                    .await?;
                    // Indexes that back a PRIMARY KEY or UNIQUE constraint are implied by the
                    // table definition on both engines; compare only explicitly created ones.
                    let idx: Vec<(String, bool)> = sqlx::query_as(
                        "SELECT i.relname::text, x.indisunique FROM pg_index x \
                         JOIN pg_class i ON i.oid = x.indexrelid \
                         JOIN pg_class c ON c.oid = x.indrelid \
                         JOIN pg_namespace n ON n.oid = c.relnamespace \
                         LEFT JOIN pg_constraint k ON k.conindid = x.indexrelid \
                         WHERE n.nspname = current_schema() AND c.relname = $1 AND k.oid IS NULL",
                    )
                    .bind(&t)
                    .fetch_all(pool)
                    .await?;
                    schema.tables.insert(t, shape(cols, idx));
                }
            }
        }
        Ok(schema)
    }
}

fn shape(cols: Vec<(String, bool)>, idx: Vec<(String, bool)>) -> TableShape {
    TableShape {
        columns: cols.into_iter().collect(),
        indexes: idx.into_iter().collect(),
    }
}

/// Names of tables present in one schema and not the other (for a readable test failure).
pub fn table_difference(a: &Schema, b: &Schema) -> BTreeSet<String> {
    let a_names: BTreeSet<_> = a.tables.keys().cloned().collect();
    let b_names: BTreeSet<_> = b.tables.keys().cloned().collect();
    a_names.symmetric_difference(&b_names).cloned().collect()
}
