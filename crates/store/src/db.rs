//! Connecting to the configured engine and the pool handle every store function takes.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use shopkeep_domain::Secret;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// The database engine behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// An embedded SQLite file (the default).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Engine {
    /// Lower-case name used in logs, metrics and test output.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// SQLite `synchronous` setting in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSync {
    /// Every commit is fsynced before it is acknowledged: survives power loss (default).
    Full,
    /// Commits survive a process crash but the last ones may be lost on power loss; faster.
    Normal,
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// `sqlite://path`, `postgres://...`, or `None` for `sqlite_path`.
    pub url: Option<Secret<String>>,
    /// The SQLite file used when `url` is `None`.
    pub sqlite_path: PathBuf,
    /// Maximum pooled connections.
    pub max_connections: u32,
    /// How long a caller waits for a pooled connection before the store reports unavailable.
    pub acquire_timeout: Duration,
    /// PostgreSQL `statement_timeout`; SQLite has none.
    pub statement_timeout: Duration,
    /// SQLite: how long a writer waits for the write lock.
    pub busy_timeout: Duration,
    /// SQLite durability of commits.
    pub sqlite_sync: SqliteSync,
}

/// Turns SQLite's memory statistics off, once per process and before this process opens its
/// first SQLite connection (which initialises the library). With them on, as the build sqlx
/// uses has them, every allocation and free of every connection takes one process-wide mutex to
/// keep the totals; with a pool of connection threads that mutex was contended on every query
/// (`pthread_mutex_lock` and its wake-ups were about 15% of the server's samples in a username
/// search run). shopkeep reads no SQLite memory statistics and sets no SQLite heap limit, which
/// are all the setting serves.
fn configure_sqlite_library() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` may run only while no other thread is inside SQLite and before
        // the library is initialised. Every SQLite connection of this process is opened through
        // `Db::connect`, after this `call_once`, so none is open yet. Were the library already
        // initialised, the call would change nothing and answer SQLITE_MISUSE.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_config(
                libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
                std::ffi::c_int::from(0u8),
            )
        };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::debug!(
                rc,
                "SQLite memory statistics stay on: the library was already initialised"
            );
        }
    });
}

/// A pooled PostgreSQL connection idle this long is pinged before it is handed out.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// SQLite: the pool, and an in-process lock that lets one write transaction run at a time.
///
/// SQLite allows one writer; without the lock, concurrent writers poll the file lock in the
/// busy handler with growing sleeps, which collapses throughput under load. Queued on a fair
/// async lock instead, writers run back to back.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    /// The connection pool.
    pub pool: SqlitePool,
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Held while a write transaction runs (SQLite only; PostgreSQL needs none). How long writers
/// waited for it and held it goes to `/metrics` (`shopkeep_sqlite_writer_wait_seconds`,
/// `shopkeep_sqlite_writer_held_seconds`): the held sum over wall time is how busy the one
/// SQLite writer is.
#[derive(Debug)]
pub struct WriteGuard(Option<(tokio::sync::OwnedMutexGuard<()>, std::time::Instant)>);

impl Drop for WriteGuard {
    fn drop(&mut self) {
        if let Some((_, since)) = &self.0 {
            metrics::histogram!("shopkeep_sqlite_writer_held_seconds")
                .record(since.elapsed().as_secs_f64());
        }
    }
}

/// Current pool occupancy, for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    /// Open connections.
    pub size: u32,
    /// Open connections not in use.
    pub idle: u32,
}

/// A connection pool on one of the two engines. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Db {
    /// SQLite pool and its writer lock.
    Sqlite(SqliteDb),
    /// PostgreSQL pool.
    Postgres(PgPool),
}

impl Db {
    /// Opens a pool and checks that one connection can be made.
    pub async fn connect(opts: &DbOptions) -> anyhow::Result<Db> {
        match opts.url.as_ref().map(|u| u.expose().as_str()) {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let connect = PgConnectOptions::from_str(url)
                    .with_context(|| {
                        format!(
                            "database_url is not a valid PostgreSQL URL ({})",
                            redact_url(url)
                        )
                    })?
                    .application_name("shopkeep")
                    .options([(
                        "statement_timeout",
                        format!("{}", opts.statement_timeout.as_millis()),
                    )]);
                let pool = PgPoolOptions::new()
                    .max_connections(opts.max_connections)
                    .acquire_timeout(opts.acquire_timeout)
                    // A ping on every checkout is a round trip per query. Only a connection that
                    // sat idle for a while is checked; under load, a connection broken by a
                    // server restart fails its query (503) and is closed.
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= PING_IDLE_AFTER {
                                conn.ping().await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_with(connect)
                    .await
                    .with_context(|| {
                        format!("cannot connect to PostgreSQL at {}", redact_url(url))
                    })?;
                Ok(Db::Postgres(pool))
            }
            Some(url) if url.starts_with("sqlite:") => {
                let connect = SqliteConnectOptions::from_str(url)
                    .with_context(|| format!("database_url is not a valid SQLite URL ({url})"))?;
                Self::connect_sqlite(connect, opts, url).await
            }
            Some(url) => anyhow::bail!(
                "database_url must start with sqlite:, postgres:// or postgresql:// (got {})",
                redact_url(url)
            ),
            None => {
                let connect = SqliteConnectOptions::new().filename(&opts.sqlite_path);
                Self::connect_sqlite(connect, opts, &opts.sqlite_path.display().to_string()).await
            }
        }
    }

    async fn connect_sqlite(
        connect: SqliteConnectOptions,
        opts: &DbOptions,
        shown: &str,
    ) -> anyhow::Result<Db> {
        configure_sqlite_library();
        let connect = connect
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match opts.sqlite_sync {
                SqliteSync::Full => SqliteSynchronous::Full,
                SqliteSync::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(opts.busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout)
            // The database is in this process: there is no peer to lose, and a ping per checkout
            // would be one more trip to the connection's worker thread for every query.
            .test_before_acquire(false)
            .after_release(|conn, _| {
                Box::pin(async move {
                    // A connection still inside a transaction when it comes back (its ROLLBACK
                    // failed, as on a full disk) must not serve again: the next caller's BEGIN
                    // would become a savepoint of that open transaction, its writes acknowledged
                    // but never committed, and the write lock held meanwhile. Closing it rolls
                    // the transaction back.
                    let open = conn.is_in_transaction();
                    if open {
                        tracing::debug!("closing an SQLite connection left inside a transaction");
                    }
                    Ok(!open)
                })
            })
            .connect_with(connect)
            .await
            .with_context(|| format!("cannot open the SQLite database {shown}"))?;
        // A file that is not a database opens lazily; touch the schema so it fails here.
        sqlx::query("SELECT count(*) FROM sqlite_master")
            .execute(&pool)
            .await
            .with_context(|| format!("{shown} is not a readable SQLite database"))?;
        Ok(Db::Sqlite(SqliteDb {
            pool,
            writer: std::sync::Arc::new(tokio::sync::Mutex::new(())),
        }))
    }

    /// Waits for the write slot (SQLite) before a write transaction; take it before the
    /// connection so waiting writers do not hold pooled connections.
    pub async fn write_lock(&self) -> WriteGuard {
        match self {
            Db::Sqlite(s) => {
                let asked = std::time::Instant::now();
                let guard = s.writer.clone().lock_owned().await;
                let now = std::time::Instant::now();
                metrics::histogram!("shopkeep_sqlite_writer_wait_seconds")
                    .record((now - asked).as_secs_f64());
                WriteGuard(Some((guard, now)))
            }
            Db::Postgres(_) => WriteGuard(None),
        }
    }

    /// Which engine this pool talks to.
    pub fn engine(&self) -> Engine {
        match self {
            Db::Sqlite(_) => Engine::Sqlite,
            Db::Postgres(_) => Engine::Postgres,
        }
    }

    /// Runs a trivial query: is the database answering?
    pub async fn ping(&self) -> Result<(), crate::StoreError> {
        crate::on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Pool occupancy right now.
    pub fn pool_stats(&self) -> PoolStats {
        crate::on_pool!(self, pool => PoolStats {
            size: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
        })
    }

    /// Waits for checked-out connections to return, then closes them all.
    pub async fn close(&self) {
        crate::on_pool!(self, pool => pool.close().await)
    }
}

/// A database URL with its password replaced by `***`, safe for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Db, DbOptions, SqliteSync, redact_url};

    #[tokio::test]
    async fn sqlite_connections_keep_no_process_wide_memory_statistics() {
        let dir = std::env::temp_dir().join(format!("shopkeep-memstatus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::connect(&DbOptions {
            url: None,
            sqlite_path: dir.join("shopkeep.db"),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            sqlite_sync: SqliteSync::Full,
        })
        .await
        .unwrap();
        let Db::Sqlite(s) = &db else {
            panic!("not SQLite")
        };
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM json_each('[1,2,3]')")
            .fetch_one(&s.pool)
            .await
            .unwrap();
        assert_eq!(n, 3);
        // SAFETY: reads a counter; it takes SQLite's own locks when statistics are kept.
        let (used, highwater) = unsafe {
            (
                libsqlite3_sys::sqlite3_memory_used(),
                libsqlite3_sys::sqlite3_memory_highwater(0),
            )
        };
        // With statistics on, open connections and a query leave both well above zero.
        assert_eq!((used, highwater), (0, 0));
        db.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_database_url_loses_its_password_when_shown() {
        assert_eq!(
            redact_url("postgres://shop:s3cret@db.example:5432/shop?sslmode=require"),
            "postgres://shop:***@db.example:5432/shop?sslmode=require"
        );
        assert_eq!(redact_url("postgres://shop@db/x"), "postgres://shop@db/x");
        assert_eq!(
            redact_url("sqlite://data/shopkeep.db"),
            "sqlite://data/shopkeep.db"
        );
    }
}
