//! Embedded migrations, one folder per engine, and the status `/readyz` and `migrate --check` read.

use anyhow::Context;
use sqlx::migrate::{MigrateError, Migrator};

use crate::{Db, Engine, StoreError, dialect, on_pool};

static SQLITE: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("../../migrations/postgres");

const TABLE: &str = "_sqlx_migrations";

/// Where the database schema stands against the migrations built into this binary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Versions applied successfully.
    pub applied: Vec<i64>,
    /// Versions this binary has that the database has not applied, with their descriptions.
    pub pending: Vec<(i64, String)>,
    /// Versions the database has applied that this binary does not know (a newer shopkeep wrote them).
    pub unknown: Vec<i64>,
    /// Versions recorded as failed (a migration that broke half-way).
    pub failed: Vec<i64>,
}

impl MigrationStatus {
    /// True when the schema is exactly what this binary expects.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty() && self.failed.is_empty()
    }

    /// One human sentence about what is wrong, or `None` when current.
    pub fn problem(&self) -> Option<String> {
        if let Some(v) = self.unknown.first() {
            return Some(format!(
                "the database schema has migration {v}, which this shopkeep binary does not know: \
                 it was written by a newer shopkeep; run that version or newer"
            ));
        }
        if let Some(v) = self.failed.first() {
            return Some(format!(
                "migration {v} failed part-way; restore from a backup or fix it by hand"
            ));
        }
        if !self.pending.is_empty() {
            let list: Vec<String> = self
                .pending
                .iter()
                .map(|(v, d)| format!("{v} {d}"))
                .collect();
            return Some(format!(
                "{} migration(s) pending: {}; run `shopkeep migrate`",
                self.pending.len(),
                list.join(", ")
            ));
        }
        None
    }
}

impl Db {
    fn migrator(&self) -> &'static Migrator {
        match self.engine() {
            Engine::Sqlite => &SQLITE,
            Engine::Postgres => &POSTGRES,
        }
    }

    /// Compares applied migrations with the embedded ones.
    pub async fn migration_status(&self) -> Result<MigrationStatus, StoreError> {
        let known: Vec<(i64, String)> = self
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| (m.version, m.description.to_string()))
            .collect();
        let recorded: Vec<(i64, bool)> = if dialect::table_exists(self, TABLE).await? {
            on_pool!(self, pool => sqlx::query_as(
                "SELECT version, success FROM _sqlx_migrations ORDER BY version"
            )
            .fetch_all(pool)
            .await)?
        } else {
            Vec::new()
        };
        let mut status = MigrationStatus::default();
        for (version, success) in &recorded {
            if !known.iter().any(|(v, _)| v == version) {
                status.unknown.push(*version);
            } else if *success {
                status.applied.push(*version);
            } else {
                status.failed.push(*version);
            }
        }
        status.pending = known
            .into_iter()
            .filter(|(v, _)| !recorded.iter().any(|(r, _)| r == v))
            .collect();
        Ok(status)
    }

    /// Applies pending migrations. Refuses, with a clear message, a schema newer than this binary.
    pub async fn migrate(&self) -> anyhow::Result<MigrationStatus> {
        let before = self
            .migration_status()
            .await
            .context("reading the migration status")?;
        if !before.unknown.is_empty() || !before.failed.is_empty() {
            anyhow::bail!(before.problem().unwrap_or_default());
        }
        let migrator = self.migrator();
        on_pool!(self, pool => migrator.run(pool).await).map_err(|e| match e {
            MigrateError::VersionMismatch(v) => anyhow::anyhow!(
                "migration {v} was changed after it was applied; this binary does not match the database"
            ),
            other => anyhow::Error::new(other).context("applying migrations"),
        })?;
        Ok(before)
    }

    /// The latest migration version this binary carries for its engine.
    pub fn latest_known_migration(&self) -> Option<i64> {
        self.migrator().iter().map(|m| m.version).max()
    }
}
