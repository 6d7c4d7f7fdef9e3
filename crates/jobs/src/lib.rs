//! shopkeep's durable background jobs, over its own tables on SQLite or PostgreSQL.
//!
//! - [`Registry`]: typed handlers per kind with their [`KindPolicy`] (queue, attempts, timeout,
//!   backoff, rate limit).
//! - [`Jobs`]: the handle the rest of shopkeep enqueues through; [`Jobs::run_workers`] and
//!   [`Jobs::run_scheduler`] are the `worker` and `scheduler` roles.
//!
//! Guarantees: a job exists once its enqueue (or the caller's transaction it was enqueued in)
//! commits; it runs until it succeeds, is dead, or is cancelled; a crashed worker's attempt is
//! reclaimed when its lease expires and runs again with the next attempt number, so handlers
//! make their effects idempotent with [`JobContext::id`].

pub mod builtin;
pub mod cron;
mod handler;
mod schedule;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use shopkeep_domain::{Invalid, Timestamp};
use shopkeep_store::jobs::{self as store, Enqueued, NewJob, UniqueKey};
use shopkeep_store::{Db, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use handler::{Backoff, JobContext, JobError, JobResult, Kind, KindPolicy, Rate, Registry};
pub use schedule::{ScheduleError, ScheduleSpec, parse_timezone};

/// How this process runs jobs.
#[derive(Debug, Clone)]
pub struct JobsOptions {
    /// Concurrent jobs per queue; queues not listed get `default_concurrency`.
    pub concurrency: BTreeMap<String, usize>,
    /// Concurrency of a queue not listed.
    pub default_concurrency: usize,
    /// How often an idle worker looks for due jobs it was not told about.
    pub poll_interval: Duration,
    /// A claimed job is reclaimed by another worker when its lease is not renewed for this long.
    pub lease: Duration,
    /// Finished jobs (and their results) are kept this long.
    pub keep_finished: Duration,
    /// Time a cancelled or timed-out handler gets to stop before it is dropped.
    pub cancel_grace: Duration,
    /// Most jobs claimed in one statement.
    pub claim_batch: usize,
    /// On shutdown, running jobs get this long to finish before they are released to run
    /// elsewhere.
    pub shutdown_grace: Duration,
}

impl Default for JobsOptions {
    fn default() -> Self {
        JobsOptions {
            concurrency: BTreeMap::new(),
            default_concurrency: 10,
            poll_interval: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            keep_finished: Duration::from_secs(7 * 24 * 3600),
            cancel_grace: Duration::from_secs(5),
            claim_batch: 200,
            shutdown_grace: Duration::from_secs(25),
        }
    }
}

/// A job to enqueue; build with [`Enqueue::new`] and the setters.
#[derive(Debug, Clone)]
pub struct Enqueue {
    /// Handler name.
    pub kind: String,
    /// JSON arguments.
    pub args: serde_json::Value,
    /// Queue; the kind's by default.
    pub queue: Option<String>,
    /// 0 runs first, 9 last; the kind's by default.
    pub priority: Option<i32>,
    /// Not before this time.
    pub run_at: Option<Timestamp>,
    /// Not before this long from now (ignored when `run_at` is set).
    pub delay: Option<Duration>,
    /// Attempts; the kind's by default.
    pub max_attempts: Option<i32>,
    /// Per-attempt limit; the kind's by default.
    pub timeout: Option<Duration>,
    /// Enqueues with the same key inside `unique_for` collapse into the first job.
    pub unique_key: Option<String>,
    /// Window of the unique key (default 5 minutes).
    pub unique_for: Option<Duration>,
    /// Key of the kind's rate limit (for example a shop's provider account).
    pub rate_key: Option<String>,
    /// Free-form labels for filtering.
    pub tags: Vec<String>,
    /// The shop the job works for.
    pub shop_id: Option<Uuid>,
}

impl Enqueue {
    /// A job of `kind` with `args`.
    pub fn new(kind: &str, args: impl Serialize) -> Self {
        Enqueue {
            kind: kind.to_string(),
            args: serde_json::to_value(args).unwrap_or(serde_json::Value::Null),
            queue: None,
            priority: None,
            run_at: None,
            delay: None,
            max_attempts: None,
            timeout: None,
            unique_key: None,
            unique_for: None,
            rate_key: None,
            tags: Vec::new(),
            shop_id: None,
        }
    }

    /// Runs after `d`.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }

    /// Collapses duplicates with `key` for `window`.
    pub fn unique(mut self, key: impl Into<String>, window: Duration) -> Self {
        self.unique_key = Some(key.into());
        self.unique_for = Some(window);
        self
    }

    /// Counts against the kind's rate limit under `key`.
    pub fn rate_key(mut self, key: impl Into<String>) -> Self {
        self.rate_key = Some(key.into());
        self
    }

    /// For this shop.
    pub fn shop(mut self, shop: Uuid) -> Self {
        self.shop_id = Some(shop);
        self
    }
}

/// Why an enqueue was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The job breaks these rules.
    #[error("invalid job")]
    Invalid(Vec<Invalid>),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Largest accepted `args` (serialized JSON).
pub const MAX_ARGS_BYTES: usize = 64 * 1024;

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) registry: Registry,
    pub(crate) opts: JobsOptions,
    pub(crate) owner: Arc<str>,
    pub(crate) wakers: Mutex<HashMap<String, Arc<Notify>>>,
    pub(crate) running: Mutex<HashMap<Uuid, CancellationToken>>,
    pub(crate) stopping: AtomicBool,
    pub(crate) paused: Mutex<std::collections::HashSet<String>>,
}

/// The job system: enqueue, operate, and run workers and the scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    pub(crate) inner: Arc<Inner>,
}

impl Jobs {
    /// A job system over `db` with these handlers.
    pub fn new(db: Db, registry: Registry, opts: JobsOptions) -> Jobs {
        let mut b = [0u8; 4];
        let tag = if getrandom::fill(&mut b).is_ok() {
            u32::from_le_bytes(b)
        } else {
            0
        };
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        let owner: Arc<str> = format!("{host}:{}:{tag:08x}", std::process::id()).into();
        Jobs {
            inner: Arc::new(Inner {
                db,
                registry,
                opts,
                owner,
                wakers: Mutex::default(),
                running: Mutex::default(),
                stopping: AtomicBool::new(false),
                paused: Mutex::default(),
            }),
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The handlers.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The options.
    pub fn options(&self) -> &JobsOptions {
        &self.inner.opts
    }

    /// This process's worker name, as stored in `lease_owner`.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Checks a job against its kind and fills in the kind's defaults.
    pub fn prepare(&self, e: &Enqueue, now: Timestamp) -> Result<NewJob, Vec<Invalid>> {
        let mut errors = Vec::new();
        let kind = self.inner.registry.get(&e.kind);
        if kind.is_none() {
            let known: Vec<&str> = self.inner.registry.kinds().collect();
            errors.push(Invalid::new(
                "kind",
                "unknown_kind",
                format!(
                    "no handler for kind {:?}; known kinds: {}",
                    e.kind,
                    known.join(", ")
                ),
            ));
        }
        let default = KindPolicy::default();
        let policy = kind.map_or(&default, |k| &k.policy);
        let queue = e.queue.clone().unwrap_or_else(|| policy.queue.clone());
        if !valid_name(&queue) {
            errors.push(Invalid::new(
                "queue",
                "invalid",
                "a queue name has 1-64 letters, digits, '_', '-', '.' or ':'",
            ));
        }
        let priority = e.priority.unwrap_or(policy.priority);
        if !(0..=9).contains(&priority) {
            errors.push(Invalid::new(
                "priority",
                "out_of_range",
                "priority is 0 (first) to 9 (last)",
            ));
        }
        let max_attempts = e.max_attempts.unwrap_or(policy.max_attempts);
        if !(1..=100).contains(&max_attempts) {
            errors.push(Invalid::new(
                "max_attempts",
                "out_of_range",
                "max_attempts is 1 to 100",
            ));
        }
        let timeout = e.timeout.unwrap_or(policy.timeout);
        if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(24 * 3600) {
            errors.push(Invalid::new(
                "timeout",
                "out_of_range",
                "the timeout is 10 ms to 24 hours",
            ));
        }
        let args = e.args.to_string();
        if args.len() > MAX_ARGS_BYTES {
            errors.push(Invalid::new(
                "args",
                "too_large",
                format!("arguments are at most {MAX_ARGS_BYTES} bytes of JSON"),
            ));
        }
        if e.tags.len() > 10 || e.tags.iter().any(|t| t.is_empty() || t.len() > 64) {
            errors.push(Invalid::new(
                "tags",
                "invalid",
                "at most 10 tags of 1-64 characters",
            ));
        }
        if e.unique_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > 200)
        {
            errors.push(Invalid::new(
                "unique_key",
                "invalid",
                "a unique key has 1-200 characters",
            ));
        }
        if e.rate_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > 200)
        {
            errors.push(Invalid::new(
                "rate_key",
                "invalid",
                "a rate key has 1-200 characters",
            ));
        }
        let run_at = match (e.run_at, e.delay) {
            (Some(t), _) => t.0,
            (None, Some(d)) => now.0.saturating_add(micros(d)),
            (None, None) => now.0,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewJob {
            id: Uuid::now_v7(),
            kind: e.kind.clone(),
            queue,
            args,
            priority,
            run_at,
            max_attempts,
            timeout_ms: i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX),
            unique: e.unique_key.as_ref().map(|k| UniqueKey {
                key: k.clone(),
                until: now
                    .0
                    .saturating_add(micros(e.unique_for.unwrap_or(Duration::from_secs(300)))),
            }),
            rate_key: e.rate_key.clone(),
            tags: serde_json::to_string(&e.tags).unwrap_or_else(|_| "[]".into()),
            shop_id: e.shop_id,
        })
    }

    /// Enqueues one job in its own transaction.
    pub async fn enqueue(&self, e: Enqueue) -> Result<Enqueued, EnqueueError> {
        Ok(self.enqueue_many(vec![e]).await?[0])
    }

    /// Enqueues jobs in one transaction: all or none.
    pub async fn enqueue_many(&self, jobs: Vec<Enqueue>) -> Result<Vec<Enqueued>, EnqueueError> {
        let now = Timestamp::now();
        let mut rows = Vec::with_capacity(jobs.len());
        let mut errors = Vec::new();
        for e in &jobs {
            match self.prepare(e, now) {
                Ok(r) => rows.push(r),
                Err(mut es) => errors.append(&mut es),
            }
        }
        if !errors.is_empty() {
            return Err(EnqueueError::Invalid(errors));
        }
        let out = store::enqueue(&self.inner.db, &rows, now.0).await?;
        for (r, e) in rows.iter().zip(&out) {
            if matches!(e, Enqueued::New(_)) {
                metrics::counter!("shopkeep_jobs_enqueued_total", "kind" => r.kind.clone())
                    .increment(1);
            }
        }
        self.wake_queues(rows.iter().map(|r| r.queue.as_str()));
        Ok(out)
    }

    /// Wakes this process's workers of these queues (after a commit that enqueued into them).
    pub fn wake_queues<'a>(&self, queues: impl IntoIterator<Item = &'a str>) {
        for q in queues {
            self.waker(q).notify_one();
        }
    }

    pub(crate) fn waker(&self, queue: &str) -> Arc<Notify> {
        let mut w = self.inner.wakers.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(queue.to_string()).or_default().clone()
    }

    /// Cancels a job: a queued one at once; a running one is told through its token (at once
    /// when it runs in this process, within a second elsewhere).
    pub async fn cancel(&self, id: Uuid) -> Result<store::CancelOutcome, StoreError> {
        let now = Timestamp::now().0;
        let out = store::cancel(&self.inner.db, id, now, self.keep_until(now)).await?;
        if out == store::CancelOutcome::Requested {
            self.fire_local(id);
        }
        Ok(out)
    }

    pub(crate) fn fire_local(&self, id: Uuid) {
        let running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = running.get(&id) {
            t.cancel();
        }
    }

    /// Queues a dead or cancelled job again now. False when it is not dead or cancelled.
    pub async fn retry(&self, id: Uuid) -> Result<bool, StoreError> {
        let now = Timestamp::now().0;
        let ok = store::retry(&self.inner.db, id, now).await?;
        if ok && let Some(j) = store::get(&self.inner.db, id).await? {
            self.wake_queues([j.queue.as_str()]);
        }
        Ok(ok)
    }

    /// Gives up on a queued or dead job. False when it is in another state.
    pub async fn discard(&self, id: Uuid) -> Result<bool, StoreError> {
        let now = Timestamp::now().0;
        store::discard(&self.inner.db, id, now, self.keep_until(now)).await
    }

    /// Pauses or resumes a queue on every instance (workers notice within a poll interval).
    pub async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError> {
        store::set_queue_paused(&self.inner.db, queue, paused, Timestamp::now().0).await?;
        {
            let mut set = self.inner.paused.lock().unwrap_or_else(|p| p.into_inner());
            if paused {
                set.insert(queue.to_string());
            } else {
                set.remove(queue);
            }
        }
        if !paused {
            self.wake_queues([queue]);
        }
        Ok(())
    }

    pub(crate) fn keep_until(&self, now: i64) -> i64 {
        now.saturating_add(micros(self.inner.opts.keep_finished))
    }

    /// Queues this process works: every registered kind's queue and every configured one.
    pub fn queues(&self) -> Vec<(String, usize)> {
        let mut names = self.inner.registry.queues();
        names.extend(self.inner.opts.concurrency.keys().cloned());
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|q| {
                let c = self
                    .inner
                    .opts
                    .concurrency
                    .get(&q)
                    .copied()
                    .unwrap_or(self.inner.opts.default_concurrency);
                (q, c)
            })
            .filter(|(_, c)| *c > 0)
            .collect()
    }
}

/// Describes the job metrics, so `/metrics` carries HELP lines.
pub fn describe_metrics() {
    metrics::describe_counter!("shopkeep_jobs_enqueued_total", "Jobs enqueued, by kind");
    metrics::describe_counter!(
        "shopkeep_jobs_started_total",
        "Job attempts started, by kind"
    );
    metrics::describe_counter!("shopkeep_jobs_succeeded_total", "Jobs succeeded, by kind");
    metrics::describe_counter!(
        "shopkeep_jobs_failed_total",
        "Failed attempts, by kind and outcome (failed, timeout, panicked, lost, cancelled)"
    );
    metrics::describe_counter!(
        "shopkeep_jobs_retried_total",
        "Failed attempts scheduled to run again, by kind"
    );
    metrics::describe_counter!("shopkeep_jobs_dead_total", "Jobs out of attempts, by kind");
    metrics::describe_gauge!(
        "shopkeep_jobs_queue_depth",
        "Jobs per queue and state (queued, running, dead)"
    );
    metrics::describe_gauge!(
        "shopkeep_jobs_queue_lag_seconds",
        "Age of the oldest due job per queue"
    );
    metrics::describe_histogram!(
        "shopkeep_jobs_wait_seconds",
        metrics::Unit::Seconds,
        "Time from a job being due to its attempt starting, by queue"
    );
    metrics::describe_histogram!(
        "shopkeep_jobs_run_seconds",
        metrics::Unit::Seconds,
        "Attempt run time, by kind"
    );
}
