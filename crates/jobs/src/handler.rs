//! Typed handlers registered per kind, the context a handler runs with, and per-kind policy.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use shopkeep_store::{Db, StoreError, jobs as store};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What a handler returns: an optional small JSON result kept with the job.
pub type JobResult = Result<Option<serde_json::Value>, JobError>;

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A failure worth retrying (network, a provider's 5xx, a lock): backoff, then again.
    #[error("{0}")]
    Retry(String),
    /// A failure no retry can fix (bad arguments, a 4xx): the job is dead at once.
    #[error("{0}")]
    Fatal(String),
}

impl JobError {
    /// A retryable failure.
    pub fn retry(e: impl std::fmt::Display) -> Self {
        JobError::Retry(e.to_string())
    }

    /// A failure that no retry can fix.
    pub fn fatal(e: impl std::fmt::Display) -> Self {
        JobError::Fatal(e.to_string())
    }
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::Retry(format!("{:#}", anyhow::Error::new(e)))
    }
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        JobError::Retry(format!("{e:#}"))
    }
}

/// Exponential backoff: attempt `n` waits `base * 2^(n-1)`, capped at `max`, with each delay
/// drawn uniformly from its upper half (jitter keeps retries of a burst apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay after failed attempt `attempt` (1-based), with jitter.
    pub fn delay(&self, attempt: i32) -> Duration {
        let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let full = self
            .base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.max);
        let half = full / 2;
        let mut b = [0u8; 8];
        let r = if getrandom::fill(&mut b).is_ok() {
            u64::from_le_bytes(b)
        } else {
            u64::from(std::process::id())
        };
        let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_micros(r % spread)
    }
}

/// A per-key rate limit: `per_second` runs on average, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Average runs per second per key.
    pub per_second: f64,
    /// Runs allowed back to back.
    pub burst: u32,
}

/// How jobs of one kind are run unless the enqueue says otherwise.
#[derive(Debug, Clone)]
pub struct KindPolicy {
    /// Queue.
    pub queue: String,
    /// 0 runs first, 9 last.
    pub priority: i32,
    /// Attempts before the job is dead.
    pub max_attempts: i32,
    /// Per-attempt time limit.
    pub timeout: Duration,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// Limit per `rate_key`, when jobs of this kind carry one.
    pub rate: Option<Rate>,
}

impl Default for KindPolicy {
    fn default() -> Self {
        KindPolicy {
            queue: "default".into(),
            priority: 5,
            max_attempts: 20,
            timeout: Duration::from_secs(300),
            backoff: Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(3600),
            },
            rate: None,
        }
    }
}

/// What a running handler knows about its job.
#[derive(Clone)]
pub struct JobContext {
    /// Job id: a stable key for idempotent effects.
    pub id: Uuid,
    /// Kind.
    pub kind: Arc<str>,
    /// This attempt, from 1. A second attempt may follow a first whose effect was applied.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// The shop the job works for.
    pub shop_id: Option<Uuid>,
    /// Fires when an operator cancels the job, its time runs out, or the worker shuts down;
    /// long handlers check it between steps.
    pub cancel: CancellationToken,
    pub(crate) db: Db,
    pub(crate) owner: Arc<str>,
    pub(crate) along: Arc<std::sync::Mutex<Option<store::Along>>>,
}

impl JobContext {
    /// The database, for the handler's own work.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Reports progress, 0-100 (larger values count as 100).
    pub async fn progress(&self, percent: u8) -> Result<(), StoreError> {
        store::set_progress(&self.db, &self.owner, self.id, i32::from(percent.min(100))).await
    }

    /// Leaves `write` to the job's completion instead of committing it now: it commits in the
    /// transaction that marks the job succeeded, and on SQLite in the same turn at the one writer
    /// as the worker's next claims, so a handler whose last step is a write does not wait for a
    /// commit of its own. It is written only when the handler then returns `Ok`; a crash before
    /// the completion commits loses it with the completion, and the job runs again. A later call
    /// replaces an earlier one.
    pub fn complete_with(&self, write: store::Along) {
        *self.along.lock().unwrap_or_else(|p| p.into_inner()) = Some(write);
    }

    /// True on the last attempt the job has.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = JobResult> + Send + 'static>>;
type Erased = Arc<dyn Fn(JobContext, serde_json::Value) -> BoxFuture + Send + Sync>;

/// A registered kind.
#[derive(Clone)]
pub struct Kind {
    /// Defaults for jobs of this kind.
    pub policy: KindPolicy,
    pub(crate) run: Erased,
}

/// Handlers by kind name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<String, Kind>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `kind`. Arguments arrive as JSON and are decoded into `A`; a job
    /// whose arguments do not decode is dead at once. Registering a kind twice replaces it.
    pub fn register<A, F, Fut>(&mut self, kind: &str, policy: KindPolicy, handler: F)
    where
        A: DeserializeOwned + Send + 'static,
        F: Fn(JobContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobResult> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let run: Erased = Arc::new(move |ctx: JobContext, args: serde_json::Value| {
            let handler = handler.clone();
            Box::pin(async move {
                let args: A = serde_json::from_value(args).map_err(|e| {
                    JobError::Fatal(format!("the arguments do not fit kind {}: {e}", ctx.kind))
                })?;
                handler(ctx, args).await
            }) as BoxFuture
        });
        self.kinds.insert(kind.to_string(), Kind { policy, run });
    }

    /// The kind's handler and policy.
    pub fn get(&self, kind: &str) -> Option<&Kind> {
        self.kinds.get(kind)
    }

    /// Registered kind names, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// Queues some registered kind uses, sorted and without repeats.
    pub fn queues(&self) -> Vec<String> {
        let mut q: Vec<String> = self
            .kinds
            .values()
            .map(|k| k.policy.queue.clone())
            .collect();
        q.sort();
        q.dedup();
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_caps() {
        let b = Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        for _ in 0..200 {
            let d1 = b.delay(1);
            assert!(
                d1 >= Duration::from_secs(1) && d1 <= Duration::from_secs(2),
                "{d1:?}"
            );
            let d3 = b.delay(3);
            assert!(
                d3 >= Duration::from_secs(4) && d3 <= Duration::from_secs(8),
                "{d3:?}"
            );
            let d20 = b.delay(20);
            assert!(
                d20 >= Duration::from_secs(30) && d20 <= Duration::from_secs(60),
                "{d20:?}"
            );
        }
        let spread: std::collections::BTreeSet<_> = (0..50).map(|_| b.delay(4)).collect();
        assert!(spread.len() > 10, "jitter spreads delays: {spread:?}");
    }
}
