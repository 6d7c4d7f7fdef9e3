//! Durable background jobs: enqueue (alone or inside the caller's transaction), claim with a
//! lease, finish, retry, cancel, reclaim expired leases, schedules, per-key rate limits and the
//! operator's lists and counters.
//!
//! A job row moves `queued -> running -> succeeded | queued (retry) | dead | cancelled`; an
//! operator may also `discard` it. `run_at` holds the next due time, so a backoff written on
//! failure survives restarts. Every claim sets `lease_owner` and `lease_until`; a job whose lease
//! expires is reclaimed by any instance and runs again with the next attempt number.

use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::{Db, StoreError, on_pool};

/// Microseconds kept per minute bucket in `job_stats`.
pub const MICROS_PER_MINUTE: i64 = 60_000_000;

/// A unique key and the end of its window.
#[derive(Debug, Clone)]
pub struct UniqueKey {
    /// The key; enqueues with the same key inside the window collapse into the first job.
    pub key: String,
    /// End of the window, microseconds.
    pub until: i64,
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The job's id, chosen by the caller so rows written in the same transaction can name the
    /// job (a unique key that collapses the enqueue returns the existing job's id instead).
    pub id: Uuid,
    /// Handler name.
    pub kind: String,
    /// Queue the job waits in.
    pub queue: String,
    /// JSON arguments.
    pub args: String,
    /// 0 runs first, 9 last.
    pub priority: i32,
    /// Not before this time, microseconds.
    pub run_at: i64,
    /// Attempts before the job is dead.
    pub max_attempts: i32,
    /// Per-attempt time limit.
    pub timeout_ms: i64,
    /// Collapse duplicates.
    pub unique: Option<UniqueKey>,
    /// Key of the rate limit this job counts against.
    pub rate_key: Option<String>,
    /// JSON array of tags.
    pub tags: String,
    /// The shop the job works for, if any.
    pub shop_id: Option<Uuid>,
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job with this id.
    New(Uuid),
    /// A job with the same unique key exists in its window; this is its id.
    Duplicate(Uuid),
}

impl Enqueued {
    /// The job's id either way.
    pub fn id(self) -> Uuid {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// A connection inside the caller's open transaction, on either engine.
pub enum Conn<'a> {
    /// SQLite.
    Sqlite(&'a mut sqlx::SqliteConnection),
    /// PostgreSQL.
    Postgres(&'a mut sqlx::PgConnection),
}

impl<'a> From<&'a mut sqlx::SqliteConnection> for Conn<'a> {
    fn from(c: &'a mut sqlx::SqliteConnection) -> Self {
        Conn::Sqlite(c)
    }
}

impl<'a> From<&'a mut sqlx::PgConnection> for Conn<'a> {
    fn from(c: &'a mut sqlx::PgConnection) -> Self {
        Conn::Postgres(c)
    }
}

/// PostgreSQL channel told (on commit) that a queue has new work.
pub const NOTIFY_CHANNEL: &str = "shopkeep_jobs";

/// Adds to the per-minute counters of `kind` on a connection inside a transaction.
macro_rules! count_minute {
    ($conn:expr, $minute:expr, $kind:expr, $succeeded:expr, $failed:expr) => {
        sqlx::query(
            "INSERT INTO job_stats (minute, kind, succeeded, failed) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (minute, kind) DO UPDATE SET succeeded = job_stats.succeeded + excluded.succeeded, \
             failed = job_stats.failed + excluded.failed",
        )
        .bind($minute)
        .bind($kind)
        .bind($succeeded)
        .bind($failed)
        .execute($conn)
        .await
        .map(|_| ())
    };
}

/// How many times each kind occurs, in order of first appearance (a batch has few kinds).
fn count_by_kind<'a>(kinds: impl Iterator<Item = &'a str>) -> Vec<(&'a str, i64)> {
    let mut per_kind: Vec<(&str, i64)> = Vec::new();
    for kind in kinds {
        match per_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => per_kind.push((kind, 1)),
        }
    }
    per_kind
}

/// Inserts `$jobs` on `$conn` (a `&mut` connection of engine `$db`), honouring unique keys.
macro_rules! insert_jobs {
    ($conn:expr, $jobs:expr, $now:expr, $db:ty) => {{
        let conn = $conn;
        let mut out = Vec::with_capacity($jobs.len());
        let mut fresh: Vec<(Uuid, &NewJob)> = Vec::with_capacity($jobs.len());
        for j in $jobs.iter() {
            let id = j.id;
            if let Some(u) = &j.unique {
                let owned: Option<Uuid> = sqlx::query_scalar(
                    "INSERT INTO job_unique (unique_key, job_id, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (unique_key) DO UPDATE SET job_id = excluded.job_id, expires_at = excluded.expires_at \
                     WHERE job_unique.expires_at <= $4 RETURNING job_id",
                )
                .bind(&u.key)
                .bind(id)
                .bind(u.until)
                .bind($now)
                .fetch_optional(&mut *conn)
                .await?;
                if owned.is_none() {
                    let existing: Uuid =
                        sqlx::query_scalar("SELECT job_id FROM job_unique WHERE unique_key = $1")
                            .bind(&u.key)
                            .fetch_one(&mut *conn)
                            .await?;
                    out.push(Enqueued::Duplicate(existing));
                    continue;
                }
            }
            out.push(Enqueued::New(id));
            fresh.push((id, j));
        }
        // 14 binds a row; 100 rows stay far below both engines' parameter limits.
        for chunk in fresh.chunks(100) {
            let mut q: QueryBuilder<$db> = QueryBuilder::new(
                "INSERT INTO jobs (id, kind, queue, args, priority, run_at, max_attempts, timeout_ms, \
                 unique_key, rate_key, tags, shop_id, created_at, state, attempt, cancel_requested, progress) ",
            );
            q.push_values(chunk, |mut b, (id, j)| {
                b.push_bind(*id)
                    .push_bind(&j.kind)
                    .push_bind(&j.queue)
                    .push_bind(&j.args)
                    .push_bind(j.priority)
                    .push_bind(j.run_at)
                    .push_bind(j.max_attempts)
                    .push_bind(j.timeout_ms)
                    .push_bind(j.unique.as_ref().map(|u| &u.key))
                    .push_bind(&j.rate_key)
                    .push_bind(&j.tags)
                    .push_bind(j.shop_id)
                    .push_bind($now)
                    .push("'queued', 0, 0, 0");
            });
            q.build().execute(&mut *conn).await?;
        }
        out
    }};
}

/// Enqueues jobs inside the caller's open transaction: they exist if and only if it commits.
/// On PostgreSQL, listeners on [`NOTIFY_CHANNEL`] hear about them at commit; on SQLite the
/// caller wakes local workers after committing.
pub async fn enqueue_in<'a>(
    conn: impl Into<Conn<'a>>,
    jobs: &[NewJob],
    now: i64,
) -> Result<Vec<Enqueued>, StoreError> {
    Ok(match conn.into() {
        Conn::Sqlite(c) => insert_jobs!(c, jobs, now, sqlx::Sqlite),
        Conn::Postgres(c) => {
            let out = insert_jobs!(&mut *c, jobs, now, sqlx::Postgres);
            let mut queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
            queues.sort_unstable();
            queues.dedup();
            for q in queues {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(NOTIFY_CHANNEL)
                    .bind(q)
                    .execute(&mut *c)
                    .await?;
            }
            out
        }
    })
}

/// Enqueues jobs in a transaction of their own.
pub async fn enqueue(db: &Db, jobs: &[NewJob], now: i64) -> Result<Vec<Enqueued>, StoreError> {
    let _write = db.write_lock().await;
    on_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let out = enqueue_in(&mut *tx, jobs, now).await?;
        tx.commit().await?;
        Ok(out)
    })
}

/// A job a worker claimed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    /// Id.
    pub id: Uuid,
    /// Handler name.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// JSON arguments.
    pub args: String,
    /// This attempt's number, from 1.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Time limit of this attempt.
    pub timeout_ms: i64,
    /// When it was due, microseconds.
    pub run_at: i64,
    /// When it was enqueued, microseconds.
    pub created_at: i64,
    /// The shop it works for.
    pub shop_id: Option<Uuid>,
    /// Rate-limit key.
    pub rate_key: Option<String>,
}

/// The claim statement, taking rows by `$key` and locking them with `$lock`.
macro_rules! claim_sql {
    ($key:literal, $lock:literal) => {
        concat!(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_owner = $1, \
             lease_until = $2, started_at = $3 WHERE ", $key, " IN (SELECT ", $key, " FROM jobs \
             WHERE state = 'queued' AND queue = $4 AND run_at <= $3 ORDER BY priority, run_at, id \
             LIMIT $5", $lock, ") RETURNING id, kind, queue, args, attempt, max_attempts, timeout_ms, \
             run_at, created_at, shop_id, rate_key"
        )
    };
}
/// PostgreSQL skips rows other claimers hold.
const CLAIM_POSTGRES: &str = claim_sql!("id", " FOR UPDATE SKIP LOCKED");
/// SQLite takes rows by rowid: the ready index holds it, so no look-up in the primary key's index.
const CLAIM_SQLITE: &str = claim_sql!("rowid", "");

/// Claims up to `limit` due jobs of `queue` for `owner`, leased until `lease_until`.
/// PostgreSQL skips rows other claimers hold; SQLite claims under its single writer.
pub async fn claim(
    db: &Db,
    queue: &str,
    owner: &str,
    limit: i64,
    now: i64,
    lease_until: i64,
) -> Result<Vec<Claimed>, StoreError> {
    let _write = db.write_lock().await;
    Ok(match db {
        Db::Sqlite(s) => {
            let mut conn = s.pool.acquire().await?;
            claim_sqlite(&mut conn, queue, owner, limit, now, lease_until).await?
        }
        Db::Postgres(pool) => {
            sqlx::query_as(CLAIM_POSTGRES)
                .bind(owner)
                .bind(lease_until)
                .bind(now)
                .bind(queue)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }
    })
}

async fn claim_sqlite(
    conn: &mut sqlx::SqliteConnection,
    queue: &str,
    owner: &str,
    limit: i64,
    now: i64,
    lease_until: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(CLAIM_SQLITE)
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(queue)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// A successfully finished job.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Id.
    pub id: Uuid,
    /// Kind, for the per-minute counters.
    pub kind: String,
    /// Small JSON result, when the handler returned one.
    pub result: Option<String>,
    /// A write the handler left to this completion, committed in the same transaction.
    pub along: Option<Along>,
}

/// A write a handler leaves to its job's completion instead of committing it on its own: it
/// commits in the transaction that marks the job succeeded, which on SQLite is also the turn at
/// the writer that claims the next jobs.
#[derive(Debug, Clone)]
pub enum Along {
    /// A webhook delivery attempt, as [`crate::webhooks::record_attempts`] writes it.
    WebhookAttempt(Box<crate::webhooks::AttemptWrite>),
}

/// Writes the [`Along`]s of `done` inside the completion's open transaction.
async fn write_alongs<'a>(conn: impl Into<Conn<'a>>, done: &[Finished]) -> Result<(), StoreError> {
    let attempts: Vec<&crate::webhooks::AttemptWrite> = done
        .iter()
        .filter_map(|f| f.along.as_ref().map(|Along::WebhookAttempt(w)| &**w))
        .collect();
    crate::webhooks::record_attempts_in(conn, &attempts)
        .await
        .map(|_| ())
}

/// Times a completion writes.
#[derive(Debug, Clone, Copy)]
struct Finish {
    now: i64,
    keep_until: i64,
}

/// Counts every job of `$done` (`&[Finished]`) per minute and kind, on `$conn` (a `&mut`
/// connection inside a transaction).
macro_rules! count_successes {
    ($conn:expr, $done:expr, $t:expr) => {{
        let conn = $conn;
        let per_kind = count_by_kind($done.iter().map(|f| f.kind.as_str()));
        let minute = $t.now - $t.now.rem_euclid(MICROS_PER_MINUTE);
        for (kind, n) in &per_kind {
            count_minute!(&mut *conn, minute, *kind, *n, 0_i64)?;
        }
    }};
}

/// The start of the statement that marks jobs without a result succeeded.
const SUCCEED_PLAIN: &str =
    "UPDATE jobs SET state = 'succeeded', progress = 100, lease_until = NULL, finished_at = ";

async fn succeed_sqlite(
    conn: &mut sqlx::SqliteConnection,
    owner: &str,
    done: &[Finished],
    t: Finish,
) -> Result<u64, sqlx::Error> {
    let mut changed = 0;
    let plain: Vec<Uuid> = done
        .iter()
        .filter(|f| f.result.is_none())
        .map(|f| f.id)
        .collect();
    for chunk in plain.chunks(500) {
        let mut q: QueryBuilder<sqlx::Sqlite> = QueryBuilder::new(SUCCEED_PLAIN);
        q.push_bind(t.now)
            .push(", expires_at = ")
            .push_bind(t.keep_until)
            .push(" WHERE state = 'running' AND lease_owner = ")
            .push_bind(owner)
            .push(" AND id IN (");
        let mut ids = q.separated(", ");
        for id in chunk {
            ids.push_bind(*id);
        }
        q.push(")");
        changed += q.build().execute(&mut *conn).await?.rows_affected();
    }
    // Jobs with a result: one statement per chunk, each row's result from the VALUES list, found
    // by primary key (`|| ''` keeps jobs_leased out of the plan, as in pg_succeed_by_id).
    let with_result: Vec<(Uuid, &str)> = done
        .iter()
        .filter_map(|f| f.result.as_deref().map(|r| (f.id, r)))
        .collect();
    for chunk in with_result.chunks(500) {
        let mut q: QueryBuilder<sqlx::Sqlite> = QueryBuilder::new(SUCCEED_PLAIN);
        q.push_bind(t.now)
            .push(", expires_at = ")
            .push_bind(t.keep_until)
            .push(", result = v.column2 FROM (");
        q.push_values(chunk, |mut row, (id, result)| {
            row.push_bind(*id).push_bind(*result);
        });
        q.push(
            ") AS v WHERE jobs.id = v.column1 AND jobs.state = 'running' AND jobs.lease_owner || '' = ",
        )
        .push_bind(owner);
        changed += q.build().execute(&mut *conn).await?.rows_affected();
    }
    count_successes!(conn, done, t);
    Ok(changed)
}

/// Marks the jobs `$3` (`uuid[]`) of owner `$4` succeeded at `$1`, kept until `$2`.
///
/// By primary key. Given `lease_owner = $4`, the planner reads the owner's entries in
/// jobs_leased instead: it expects a few, but the index keeps an entry for every job the owner
/// ever ran until VACUUM (the row versions those entries point to are dead), and the walk grows
/// with every job. `|| ''` keeps that index out of the plan.
fn pg_succeed_by_id() -> String {
    format!(
        "{SUCCEED_PLAIN}$1, expires_at = $2 FROM unnest($3::uuid[]) AS done_ids (id) \
         WHERE jobs.id = done_ids.id AND jobs.state = 'running' AND jobs.lease_owner || '' = $4"
    )
}

async fn succeed_postgres(
    conn: &mut sqlx::PgConnection,
    owner: &str,
    done: &[Finished],
    t: Finish,
) -> Result<u64, sqlx::Error> {
    let plain: Vec<Uuid> = done
        .iter()
        .filter(|f| f.result.is_none())
        .map(|f| f.id)
        .collect();
    let mut changed = 0;
    if !plain.is_empty() {
        let sql = pg_succeed_by_id();
        changed = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(t.now)
            .bind(t.keep_until)
            .bind(&plain)
            .bind(owner)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    let (ids, results): (Vec<Uuid>, Vec<&str>) = done
        .iter()
        .filter_map(|f| f.result.as_deref().map(|r| (f.id, r)))
        .unzip();
    if !ids.is_empty() {
        changed += sqlx::query(
            "UPDATE jobs SET state = 'succeeded', progress = 100, lease_until = NULL, finished_at = $1, \
             expires_at = $2, result = done.result FROM unnest($3::uuid[], $4::text[]) AS done (id, result) \
             WHERE jobs.id = done.id AND jobs.state = 'running' AND jobs.lease_owner || '' = $5",
        )
        .bind(t.now)
        .bind(t.keep_until)
        .bind(&ids)
        .bind(&results)
        .bind(owner)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    count_successes!(conn, done, t);
    Ok(changed)
}

/// Marks finished jobs of `owner` succeeded in one transaction, with the writes they carry
/// along, and counts them. Jobs whose lease `owner` lost in the meantime are left alone, but
/// their writes along are made: each records work that was done. Returns the rows changed.
pub async fn complete(
    db: &Db,
    owner: &str,
    done: &[Finished],
    now: i64,
    keep_until: i64,
) -> Result<u64, StoreError> {
    if done.is_empty() {
        return Ok(0);
    }
    let t = Finish { now, keep_until };
    let _write = db.write_lock().await;
    Ok(match db {
        Db::Sqlite(s) => {
            let mut tx = s.pool.begin().await?;
            write_alongs(&mut *tx, done).await?;
            let n = succeed_sqlite(&mut tx, owner, done, t).await?;
            tx.commit().await?;
            n
        }
        // Without results or writes along, one statement (one round trip instead of four:
        // BEGIN, UPDATE, the counters, COMMIT); it counts the jobs it changed.
        Db::Postgres(pool) if done.iter().all(|f| f.result.is_none() && f.along.is_none()) => {
            let ids: Vec<Uuid> = done.iter().map(|f| f.id).collect();
            let sql = format!(
                "WITH done AS ({} RETURNING jobs.kind), \
                 counted AS (INSERT INTO job_stats (minute, kind, succeeded, failed) \
                 SELECT $5, kind, count(*), 0 FROM done GROUP BY kind \
                 ON CONFLICT (minute, kind) DO UPDATE SET succeeded = job_stats.succeeded + excluded.succeeded) \
                 SELECT count(*) FROM done",
                pg_succeed_by_id()
            );
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(keep_until)
                .bind(&ids)
                .bind(owner)
                .bind(now - now.rem_euclid(MICROS_PER_MINUTE))
                .fetch_one(pool)
                .await?;
            u64::try_from(n).unwrap_or(0)
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            write_alongs(&mut *tx, done).await?;
            let n = succeed_postgres(&mut tx, owner, done, t).await?;
            tx.commit().await?;
            n
        }
    })
}

/// What one queue asks of [`complete_and_claim`].
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The queue.
    pub queue: String,
    /// At most this many jobs.
    pub limit: i64,
}

/// [`complete`] and then [`claim`] for every request, in one transaction on SQLite, where each
/// write transaction waits for the one writer and ends with a sync to disk: one commit instead
/// of one per step. PostgreSQL, which runs them in parallel, runs them one after the other.
/// Returns the rows completed and the jobs claimed per request.
pub async fn complete_and_claim(
    db: &Db,
    owner: &str,
    done: &[Finished],
    requests: &[ClaimRequest],
    now: i64,
    keep_until: i64,
    lease_until: i64,
) -> Result<(u64, Vec<Vec<Claimed>>), StoreError> {
    let Db::Sqlite(s) = db else {
        let n = complete(db, owner, done, now, keep_until).await?;
        let mut claimed = Vec::with_capacity(requests.len());
        for r in requests {
            claimed.push(claim(db, &r.queue, owner, r.limit, now, lease_until).await?);
        }
        return Ok((n, claimed));
    };
    let _write = db.write_lock().await;
    let mut tx = s.pool.begin().await?;
    let n = if done.is_empty() {
        0
    } else {
        write_alongs(&mut *tx, done).await?;
        succeed_sqlite(&mut tx, owner, done, Finish { now, keep_until }).await?
    };
    let mut claimed = Vec::with_capacity(requests.len());
    for r in requests {
        claimed.push(claim_sqlite(&mut tx, &r.queue, owner, r.limit, now, lease_until).await?);
    }
    tx.commit().await?;
    Ok((n, claimed))
}

/// Where a failed attempt leaves its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Queued again, due at this time (microseconds).
    Retry(i64),
    /// Out of attempts, or not retryable.
    Dead,
    /// Cancelled by an operator.
    Cancelled,
}

impl AfterFailure {
    /// The job state this leads to.
    pub fn state(self) -> &'static str {
        match self {
            AfterFailure::Retry(_) => "queued",
            AfterFailure::Dead => "dead",
            AfterFailure::Cancelled => "cancelled",
        }
    }
}

/// A failed attempt.
#[derive(Debug, Clone)]
pub struct Failure<'a> {
    /// Job id.
    pub id: Uuid,
    /// Kind, for the counters.
    pub kind: &'a str,
    /// The attempt that failed.
    pub attempt: i32,
    /// `failed`, `timeout`, `panicked`, `cancelled`.
    pub outcome: &'a str,
    /// The error text kept with the attempt.
    pub error: &'a str,
    /// When the attempt started.
    pub started_at: i64,
    /// What happens next.
    pub next: AfterFailure,
}

/// Records a failed attempt and moves the job on; false when `owner` no longer holds the job.
pub async fn fail(
    db: &Db,
    owner: &str,
    f: &Failure<'_>,
    now: i64,
    keep_until: i64,
) -> Result<bool, StoreError> {
    let (run_at, finished, expires) = match f.next {
        AfterFailure::Retry(at) => (Some(at), None, None),
        _ => (None, Some(now), Some(keep_until)),
    };
    let minute = now - now.rem_euclid(MICROS_PER_MINUTE);
    let _write = db.write_lock().await;
    on_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE jobs SET state = $1, run_at = COALESCE($2, run_at), finished_at = $3, expires_at = $4, \
             last_error = $5, lease_until = NULL WHERE id = $6 AND state = 'running' AND lease_owner = $7",
        )
        .bind(f.next.state()).bind(run_at).bind(finished).bind(expires).bind(f.error)
        .bind(f.id).bind(owner)
        .execute(&mut *tx).await?.rows_affected();
        if moved == 1 {
            sqlx::query(
                "INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (job_id, attempt) DO NOTHING",
            )
            .bind(f.id).bind(f.attempt).bind(owner).bind(f.started_at).bind(now).bind(f.outcome).bind(f.error)
            .execute(&mut *tx).await?;
            count_minute!(&mut *tx, minute, f.kind, 0_i64, 1_i64)?;
        }
        tx.commit().await?;
        Ok(moved == 1)
    })
}

/// Gives running jobs of `owner` back to the queue without counting the attempt (shutdown, or a
/// rate limit that says "not yet"), due at `run_at`.
pub async fn release(db: &Db, owner: &str, ids: &[Uuid], run_at: i64) -> Result<u64, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let _write = db.write_lock().await;
    macro_rules! body {
        ($pool:expr, $db:ty) => {{
            let mut q: QueryBuilder<$db> = QueryBuilder::new(
                "UPDATE jobs SET state = 'queued', attempt = attempt - 1, lease_until = NULL, run_at = ",
            );
            q.push_bind(run_at)
                .push(" WHERE state = 'running' AND lease_owner = ")
                .push_bind(owner)
                .push(" AND id IN (");
            let mut sep = q.separated(", ");
            for id in ids {
                sep.push_bind(*id);
            }
            q.push(")");
            Ok(q.build().execute($pool).await?.rows_affected())
        }};
    }
    match db {
        Db::Sqlite(s) => body!(&s.pool, sqlx::Sqlite),
        Db::Postgres(pool) => body!(pool, sqlx::Postgres),
    }
}

/// Extends the leases of every job `owner` runs.
pub async fn heartbeat(db: &Db, owner: &str, lease_until: i64) -> Result<u64, StoreError> {
    let _write = db.write_lock().await;
    Ok(on_pool!(db, pool => sqlx::query(
        "UPDATE jobs SET lease_until = $1 WHERE state = 'running' AND lease_owner = $2")
        .bind(lease_until).bind(owner).execute(pool).await?.rows_affected()))
}

/// Jobs `owner` runs that an operator asked to cancel.
pub async fn cancel_requested(db: &Db, owner: &str) -> Result<Vec<Uuid>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_scalar(
        "SELECT id FROM jobs WHERE state = 'running' AND lease_owner = $1 AND cancel_requested = 1")
        .bind(owner).fetch_all(pool).await?))
}

/// A job whose lease expired, put back in the queue or declared dead.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Reclaimed {
    /// Id.
    pub id: Uuid,
    /// Kind.
    pub kind: String,
    /// The attempt that was lost.
    pub attempt: i32,
    /// `queued` or `dead`.
    pub state: String,
}

/// id, kind, attempt, new state, lease owner, attempt start.
type LostRow = (Uuid, String, i32, String, Option<String>, Option<i64>);

/// The error kept for an attempt whose worker stopped renewing its lease.
pub const LOST: &str =
    "the worker stopped renewing its lease (it crashed, was killed or lost the database)";

/// Reclaims jobs whose lease expired before `now`: each lost attempt is recorded, and the job runs
/// again at once, or is dead when it has no attempts left.
pub async fn reclaim_expired(
    db: &Db,
    now: i64,
    keep_until: i64,
) -> Result<Vec<Reclaimed>, StoreError> {
    let any: Option<i32> = on_pool!(db, pool => sqlx::query_scalar(
        "SELECT 1 FROM jobs WHERE state = 'running' AND lease_until < $1 LIMIT 1")
        .bind(now).fetch_optional(pool).await?);
    if any.is_none() {
        return Ok(Vec::new());
    }
    let minute = now - now.rem_euclid(MICROS_PER_MINUTE);
    let _write = db.write_lock().await;
    on_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let rows: Vec<LostRow> = sqlx::query_as(
            "UPDATE jobs SET state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'queued' END, \
             run_at = $1, lease_until = NULL, last_error = $2, \
             finished_at = CASE WHEN attempt >= max_attempts THEN $1 ELSE NULL END, \
             expires_at = CASE WHEN attempt >= max_attempts THEN $3 ELSE NULL END \
             WHERE state = 'running' AND lease_until < $1 \
             RETURNING id, kind, attempt, state, lease_owner, started_at")
            .bind(now).bind(LOST).bind(keep_until).fetch_all(&mut *tx).await?;
        for (id, _, attempt, _, owner, started) in &rows {
            sqlx::query(
                "INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error) \
                 VALUES ($1, $2, $3, $4, $5, 'lost', $6) ON CONFLICT (job_id, attempt) DO NOTHING")
                .bind(id).bind(attempt).bind(owner).bind(started.unwrap_or(now)).bind(now).bind(LOST)
                .execute(&mut *tx).await?;
        }
        let per_kind = count_by_kind(rows.iter().map(|(_, kind, ..)| kind.as_str()));
        for (kind, n) in per_kind {
            count_minute!(&mut *tx, minute, kind, 0_i64, n)?;
        }
        tx.commit().await?;
        Ok(rows.into_iter().map(|(id, kind, attempt, state, ..)| Reclaimed { id, kind, attempt, state }).collect())
    })
}

/// Records progress (0-100) of a job `owner` runs.
pub async fn set_progress(db: &Db, owner: &str, id: Uuid, progress: i32) -> Result<(), StoreError> {
    let _write = db.write_lock().await;
    on_pool!(db, pool => sqlx::query(
        "UPDATE jobs SET progress = $1 WHERE id = $2 AND state = 'running' AND lease_owner = $3")
        .bind(progress).bind(id).bind(owner).execute(pool).await.map(|_| ()))?;
    Ok(())
}

/// Deletes finished jobs, uniqueness windows, rate-limit state and counters past their time.
pub async fn prune(db: &Db, now: i64, stats_before: i64) -> Result<u64, StoreError> {
    let mut removed = 0;
    loop {
        let _write = db.write_lock().await;
        let n = on_pool!(db, pool => sqlx::query(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE expires_at <= $1 LIMIT 5000)")
            .bind(now).execute(pool).await?.rows_affected());
        removed += n;
        if n < 5000 {
            break;
        }
    }
    let _write = db.write_lock().await;
    on_pool!(db, pool => {
        sqlx::query("DELETE FROM job_unique WHERE expires_at <= $1").bind(now).execute(pool).await?;
        sqlx::query("DELETE FROM job_rate WHERE tat <= $1").bind(now).execute(pool).await?;
        sqlx::query("DELETE FROM job_stats WHERE minute < $1").bind(stats_before).execute(pool).await?;
        Ok::<_, StoreError>(())
    })?;
    Ok(removed)
}

/// Takes one slot of the rate limit `key` (GCRA: one run per `emission` microseconds, bursts of
/// up to `burst` runs). `Ok(None)` means go; `Ok(Some(t))` means not before `t`.
pub async fn rate_acquire(
    db: &Db,
    key: &str,
    emission: i64,
    burst: i64,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let tolerance = emission * burst;
    let _write = db.write_lock().await;
    on_pool!(db, pool => {
        let ok: Option<i64> = sqlx::query_scalar(
            "INSERT INTO job_rate (rate_key, tat) VALUES ($1, $2 + $3) ON CONFLICT (rate_key) DO UPDATE \
             SET tat = (CASE WHEN job_rate.tat > $2 THEN job_rate.tat ELSE $2 END) + $3 \
             WHERE (CASE WHEN job_rate.tat > $2 THEN job_rate.tat ELSE $2 END) + $3 - $4 <= $2 RETURNING tat")
            .bind(key).bind(now).bind(emission).bind(tolerance).fetch_optional(pool).await?;
        if ok.is_some() {
            return Ok(None);
        }
        let tat: i64 = sqlx::query_scalar("SELECT tat FROM job_rate WHERE rate_key = $1")
            .bind(key).fetch_one(pool).await?;
        Ok(Some((tat + emission - tolerance).max(now + 1)))
    })
}

/// A job as the operator sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    /// Id.
    pub id: Uuid,
    /// Handler name.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// JSON arguments.
    pub args: String,
    /// 0 first, 9 last.
    pub priority: i32,
    /// State.
    pub state: String,
    /// Due time.
    pub run_at: i64,
    /// Attempts made (the current one included while running).
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Per-attempt limit.
    pub timeout_ms: i64,
    /// Unique key.
    pub unique_key: Option<String>,
    /// Rate-limit key.
    pub rate_key: Option<String>,
    /// JSON array.
    pub tags: String,
    /// Shop.
    pub shop_id: Option<Uuid>,
    /// The worker holding (or that last held) it.
    pub lease_owner: Option<String>,
    /// Lease end while running.
    pub lease_until: Option<i64>,
    /// 1 once an operator asked to cancel it.
    pub cancel_requested: i32,
    /// 0-100.
    pub progress: i32,
    /// JSON result.
    pub result: Option<String>,
    /// Last attempt's error.
    pub last_error: Option<String>,
    /// Enqueued.
    pub created_at: i64,
    /// Last attempt started.
    pub started_at: Option<i64>,
    /// Finished.
    pub finished_at: Option<i64>,
    /// Pruned after.
    pub expires_at: Option<i64>,
}

const JOB_COLUMNS: &str = "id, kind, queue, args, priority, state, run_at, attempt, max_attempts, timeout_ms, \
     unique_key, rate_key, tags, shop_id, lease_owner, lease_until, cancel_requested, progress, result, \
     last_error, created_at, started_at, finished_at, expires_at";

/// One job.
pub async fn get(db: &Db, id: Uuid) -> Result<Option<JobRow>, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
    Ok(
        on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?),
    )
}

/// A failed attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    /// Number, from 1.
    pub attempt: i32,
    /// Worker that ran it.
    pub worker: Option<String>,
    /// Start.
    pub started_at: i64,
    /// End.
    pub finished_at: i64,
    /// `failed`, `timeout`, `panicked`, `lost`, `cancelled`.
    pub outcome: String,
    /// Error text.
    pub error: String,
}

/// Every failed attempt of a job, first first.
pub async fn attempts(db: &Db, id: Uuid) -> Result<Vec<AttemptRow>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_as(
        "SELECT attempt, worker, started_at, finished_at, outcome, error FROM job_attempts \
         WHERE job_id = $1 ORDER BY attempt")
        .bind(id).fetch_all(pool).await?))
}

/// Filters for the operator's job list.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// State.
    pub state: Option<String>,
    /// Kind.
    pub kind: Option<String>,
    /// Queue.
    pub queue: Option<String>,
    /// Only jobs older than this id (the cursor).
    pub before: Option<Uuid>,
    /// Page size.
    pub limit: i64,
}

/// The states a job ends in when it did not succeed, which `jobs_unsuccessful` indexes.
const UNSUCCESSFUL_STATES: [&str; 3] = ["dead", "cancelled", "discarded"];
/// The condition of `jobs_unsuccessful`, in the words of its migration (a macro, so that
/// statement literals can `concat!` it).
macro_rules! unsuccessful {
    () => {
        "state IN ('dead', 'cancelled', 'discarded')"
    };
}
const UNSUCCESSFUL: &str = unsuccessful!();

/// Jobs newest first.
pub async fn list(db: &Db, f: &JobFilter) -> Result<Vec<JobRow>, StoreError> {
    macro_rules! body {
        ($pool:expr, $db:ty) => {{
            let mut q: QueryBuilder<$db> =
                QueryBuilder::new(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE 1 = 1"));
            if let Some(s) = &f.state {
                q.push(" AND state = ").push_bind(s);
                // SQLite reads a partial index only when the query repeats its condition.
                if UNSUCCESSFUL_STATES.contains(&s.as_str()) {
                    q.push(" AND ").push(UNSUCCESSFUL);
                }
            }
            if let Some(k) = &f.kind {
                q.push(" AND kind = ").push_bind(k);
            }
            if let Some(qu) = &f.queue {
                q.push(" AND queue = ").push_bind(qu);
            }
            if let Some(b) = f.before {
                q.push(" AND id < ").push_bind(b);
            }
            q.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit);
            Ok(q.build_query_as().fetch_all($pool).await?)
        }};
    }
    match db {
        Db::Sqlite(s) => body!(&s.pool, sqlx::Sqlite),
        Db::Postgres(pool) => body!(pool, sqlx::Postgres),
    }
}

/// Jobs per queue and state, for the states that matter to an operator (finished successes are
/// counted per minute in [`throughput`] instead). One branch per state, so that each one reads
/// that state's partial index.
pub async fn depths(db: &Db) -> Result<Vec<(String, String, i64)>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_as(concat!(
        "SELECT queue, state, n FROM (\
         SELECT queue, 'queued' AS state, count(*) AS n FROM jobs WHERE state = 'queued' GROUP BY queue \
         UNION ALL SELECT queue, 'running', count(*) FROM jobs WHERE state = 'running' GROUP BY queue \
         UNION ALL SELECT queue, 'dead', count(*) FROM jobs WHERE state = 'dead' AND ", unsuccessful!(),
         " GROUP BY queue) d ORDER BY queue, state"))
        .fetch_all(pool).await?))
}

/// Ready jobs per queue whose due time has come, and the oldest due time, for queue-lag gauges.
pub async fn ready(db: &Db, now: i64) -> Result<Vec<(String, i64, i64)>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_as(
        "SELECT queue, count(*), min(run_at) FROM jobs WHERE state = 'queued' AND run_at <= $1 GROUP BY queue")
        .bind(now).fetch_all(pool).await?))
}

/// Succeeded and failed attempts per minute since `since`.
pub async fn throughput(db: &Db, since: i64) -> Result<Vec<(i64, i64, i64)>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_as(
        "SELECT minute, CAST(sum(succeeded) AS BIGINT), CAST(sum(failed) AS BIGINT) FROM job_stats \
         WHERE minute >= $1 GROUP BY minute ORDER BY minute")
        .bind(since).fetch_all(pool).await?))
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was waiting; it is cancelled now.
    Cancelled,
    /// It is running; its worker is told.
    Requested,
    /// It had already finished, in this state.
    Finished,
    /// No such job.
    NotFound,
}

/// Cancels a queued job at once, or asks the worker of a running one to stop.
pub async fn cancel(
    db: &Db,
    id: Uuid,
    now: i64,
    keep_until: i64,
) -> Result<CancelOutcome, StoreError> {
    let _write = db.write_lock().await;
    on_pool!(db, pool => {
        let n = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1, expires_at = $2 WHERE id = $3 AND state = 'queued'")
            .bind(now).bind(keep_until).bind(id).execute(pool).await?.rows_affected();
        if n == 1 {
            return Ok(CancelOutcome::Cancelled);
        }
        let n = sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = $1 AND state = 'running'")
            .bind(id).execute(pool).await?.rows_affected();
        if n == 1 {
            return Ok(CancelOutcome::Requested);
        }
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM jobs WHERE id = $1")
            .bind(id).fetch_optional(pool).await?;
        Ok(if exists.is_some() { CancelOutcome::Finished } else { CancelOutcome::NotFound })
    })
}

/// Queues a dead, cancelled or discarded job again now, with one more attempt allowed.
/// Returns false when the job is not in one of those states.
pub async fn retry(db: &Db, id: Uuid, now: i64) -> Result<bool, StoreError> {
    let _write = db.write_lock().await;
    Ok(on_pool!(db, pool => sqlx::query(concat!(
        "UPDATE jobs SET state = 'queued', run_at = $1, cancel_requested = 0, finished_at = NULL, expires_at = NULL, \
         max_attempts = CASE WHEN max_attempts > attempt THEN max_attempts ELSE attempt + 1 END \
         WHERE id = $2 AND ", unsuccessful!()))
        .bind(now).bind(id).execute(pool).await?.rows_affected())
        == 1)
}

/// Gives up on a queued or dead job: it will not run again. False when not in those states.
pub async fn discard(db: &Db, id: Uuid, now: i64, keep_until: i64) -> Result<bool, StoreError> {
    let _write = db.write_lock().await;
    Ok(on_pool!(db, pool => sqlx::query(
        "UPDATE jobs SET state = 'discarded', finished_at = $1, expires_at = $2 WHERE id = $3 AND state IN ('queued', 'dead')")
        .bind(now).bind(keep_until).bind(id).execute(pool).await?.rows_affected())
        == 1)
}

/// Pauses or resumes a queue.
pub async fn set_queue_paused(
    db: &Db,
    queue: &str,
    paused: bool,
    now: i64,
) -> Result<(), StoreError> {
    let _write = db.write_lock().await;
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO job_queues (name, paused, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at")
        .bind(queue).bind(i32::from(paused)).bind(now).execute(pool).await.map(|_| ()))?;
    Ok(())
}

/// Names of paused queues.
pub async fn paused_queues(db: &Db) -> Result<Vec<String>, StoreError> {
    Ok(
        on_pool!(db, pool => sqlx::query_scalar("SELECT name FROM job_queues WHERE paused = 1 ORDER BY name")
        .fetch_all(pool).await?),
    )
}

/// A cron schedule.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleRow {
    /// Unique name.
    pub name: String,
    /// Cron expression.
    pub cron: String,
    /// IANA time zone the expression is read in.
    pub timezone: String,
    /// Job kind it enqueues.
    pub kind: String,
    /// JSON arguments of each job.
    pub args: String,
    /// Queue of each job.
    pub queue: String,
    /// 1 when paused.
    pub paused: i32,
    /// The next tick, microseconds.
    pub next_run_at: i64,
    /// The last tick that enqueued.
    pub last_run_at: Option<i64>,
    /// The job of the last tick.
    pub last_job_id: Option<Uuid>,
}

/// A schedule's definition.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// Unique name.
    pub name: String,
    /// Cron expression.
    pub cron: String,
    /// IANA time zone.
    pub timezone: String,
    /// Job kind.
    pub kind: String,
    /// JSON arguments.
    pub args: String,
    /// Queue.
    pub queue: String,
}

/// Creates a schedule or updates its definition; a changed expression or zone takes
/// `next_run_at`, otherwise the stored next tick (and the paused flag) stay.
pub async fn upsert_schedule(
    db: &Db,
    s: &NewSchedule,
    next_run_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    let _write = db.write_lock().await;
    on_pool!(db, pool => sqlx::query(
        "INSERT INTO job_schedules (name, cron, timezone, kind, args, queue, paused, next_run_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $8) ON CONFLICT (name) DO UPDATE SET \
         next_run_at = CASE WHEN job_schedules.cron <> excluded.cron OR job_schedules.timezone <> excluded.timezone \
             THEN excluded.next_run_at ELSE job_schedules.next_run_at END, \
         cron = excluded.cron, timezone = excluded.timezone, kind = excluded.kind, args = excluded.args, \
         queue = excluded.queue, updated_at = excluded.updated_at")
        .bind(&s.name).bind(&s.cron).bind(&s.timezone).bind(&s.kind).bind(&s.args).bind(&s.queue)
        .bind(next_run_at).bind(now).execute(pool).await.map(|_| ()))?;
    Ok(())
}

const SCHEDULE_COLUMNS: &str =
    "name, cron, timezone, kind, args, queue, paused, next_run_at, last_run_at, last_job_id";

/// Every schedule, by name.
pub async fn schedules(db: &Db) -> Result<Vec<ScheduleRow>, StoreError> {
    let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM job_schedules ORDER BY name");
    Ok(on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?))
}

/// One schedule.
pub async fn schedule(db: &Db, name: &str) -> Result<Option<ScheduleRow>, StoreError> {
    let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM job_schedules WHERE name = $1");
    Ok(
        on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(pool).await?),
    )
}

/// Running schedules whose tick has come.
pub async fn due_schedules(db: &Db, now: i64) -> Result<Vec<ScheduleRow>, StoreError> {
    let sql = format!(
        "SELECT {SCHEDULE_COLUMNS} FROM job_schedules WHERE paused = 0 AND next_run_at <= $1 ORDER BY next_run_at"
    );
    Ok(
        on_pool!(db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(now).fetch_all(pool).await?),
    )
}

/// The earliest next tick of a running schedule.
pub async fn next_tick(db: &Db) -> Result<Option<i64>, StoreError> {
    Ok(on_pool!(db, pool => sqlx::query_scalar::<_, Option<i64>>(
        "SELECT min(next_run_at) FROM job_schedules WHERE paused = 0").fetch_one(pool).await?))
}

/// Moves a schedule from `tick` to `next` and enqueues its job, in one transaction; only the
/// instance whose compare-and-set wins enqueues. Returns the job id when this call fired.
pub async fn fire_schedule(
    db: &Db,
    name: &str,
    tick: i64,
    next: i64,
    job: &NewJob,
    now: i64,
) -> Result<Option<Uuid>, StoreError> {
    let _write = db.write_lock().await;
    on_pool!(db, pool => {
        let mut tx = pool.begin().await?;
        let won = sqlx::query(
            "UPDATE job_schedules SET next_run_at = $1, last_run_at = $2, updated_at = $3 \
             WHERE name = $4 AND next_run_at = $2 AND paused = 0")
            .bind(next).bind(tick).bind(now).bind(name).execute(&mut *tx).await?.rows_affected();
        if won != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        let id = enqueue_in(&mut *tx, std::slice::from_ref(job), now).await?[0].id();
        sqlx::query("UPDATE job_schedules SET last_job_id = $1 WHERE name = $2")
            .bind(id).bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(id))
    })
}

/// Pauses or resumes a schedule; resuming sets the next tick. False when there is no such schedule.
pub async fn set_schedule_paused(
    db: &Db,
    name: &str,
    paused: bool,
    next_run_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let _write = db.write_lock().await;
    Ok(on_pool!(db, pool => sqlx::query(
        "UPDATE job_schedules SET paused = $1, next_run_at = CASE WHEN $1 = 0 THEN $2 ELSE next_run_at END, \
         updated_at = $3 WHERE name = $4")
        .bind(i32::from(paused)).bind(next_run_at).bind(now).bind(name)
        .execute(pool).await?.rows_affected())
        == 1)
}

/// Deletes a schedule. False when there was none.
pub async fn delete_schedule(db: &Db, name: &str) -> Result<bool, StoreError> {
    let _write = db.write_lock().await;
    Ok(
        on_pool!(db, pool => sqlx::query("DELETE FROM job_schedules WHERE name = $1")
        .bind(name).execute(pool).await?.rows_affected())
            == 1,
    )
}
