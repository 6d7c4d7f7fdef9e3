//! Failure counting for login brute-force protection: a sliding window of failures per key.
//!
//! The limiter knows nothing about HTTP or about what a key means; callers decide which keys
//! to count (username, client IP) and turn a block into a 429 with `Retry-After`.
//! State lives in-process by default, or in Redis/Valkey so several instances share it.

mod memory;
mod redis_store;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use memory::MemoryLimiter;
use redis_store::RedisLimiter;

/// Counts failures per key in a sliding window of `window`; a key with `limit` failures inside
/// the window is blocked until the oldest of them leaves the window.
#[derive(Clone)]
pub struct FailureLimiter {
    backend: Backend,
}

/// Both backends sit behind an `Arc` so clones share one count, as callers expect of a limiter.
#[derive(Clone)]
enum Backend {
    Memory(Arc<MemoryLimiter>),
    Redis(Arc<RedisLimiter>),
}

/// The limiter could not be consulted (Redis down). Callers fail closed.
#[derive(Debug)]
pub struct LimiterUnavailable(pub String);

impl fmt::Display for LimiterUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failure limiter unavailable: {}", self.0)
    }
}

impl std::error::Error for LimiterUnavailable {}

impl FailureLimiter {
    /// An in-process limiter; a `limit` of 0 is raised to 1 (zero would block with nothing to wait for).
    pub fn memory(limit: u32, window: Duration) -> Self {
        Self {
            backend: Backend::Memory(Arc::new(MemoryLimiter::new(effective_limit(limit), window))),
        }
    }

    /// Connects with redis::aio::ConnectionManager; keys are `{prefix}{key}`.
    pub async fn redis(
        url: &str,
        prefix: &str,
        limit: u32,
        window: Duration,
    ) -> anyhow::Result<Self> {
        let store = RedisLimiter::connect(url, prefix, effective_limit(limit), window).await?;
        Ok(Self {
            backend: Backend::Redis(Arc::new(store)),
        })
    }

    /// Ok(None) when allowed; Ok(Some(retry_after)) when blocked (retry_after > 0, rounded up to whole ms).
    pub async fn check(&self, key: &str) -> Result<Option<Duration>, LimiterUnavailable> {
        let wait = match &self.backend {
            Backend::Memory(m) => m.check(key),
            Backend::Redis(r) => r.check(key).await?,
        };
        Ok(wait.map(round_up_to_ms))
    }

    /// Records one failure at the current time.
    pub async fn record_failure(&self, key: &str) -> Result<(), LimiterUnavailable> {
        match &self.backend {
            Backend::Memory(m) => {
                m.record_failure(key);
                Ok(())
            }
            Backend::Redis(r) => r.record_failure(key).await,
        }
    }

    /// Forgets a key (used by an admin password reset).
    pub async fn clear(&self, key: &str) -> Result<(), LimiterUnavailable> {
        match &self.backend {
            Backend::Memory(m) => {
                m.clear(key);
                Ok(())
            }
            Backend::Redis(r) => r.clear(key).await,
        }
    }

    /// Number of keys the memory backend holds, so tests can see the sweep work.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        match &self.backend {
            Backend::Memory(m) => m.len(),
            Backend::Redis(_) => 0,
        }
    }
}

impl fmt::Debug for FailureLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Backend::Memory(m) => f
                .debug_struct("FailureLimiter")
                .field("backend", &"memory")
                .field("limit", &m.limit())
                .field("window", &m.window())
                .finish(),
            Backend::Redis(r) => f
                .debug_struct("FailureLimiter")
                .field("backend", &"redis")
                .field("prefix", &r.prefix())
                .finish(),
        }
    }
}

fn effective_limit(limit: u32) -> u32 {
    limit.max(1)
}

/// `Retry-After` is sent in whole units; rounding down could tell a client to come back
/// while it is still blocked, and a zero would read as "not blocked".
fn round_up_to_ms(wait: Duration) -> Duration {
    let ms = wait.as_nanos().div_ceil(1_000_000).max(1);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Hides credentials in a Redis URL so it can appear in errors and logs.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Without a scheme we cannot tell a password from a host name: show nothing.
        return "<unparsable redis url>".to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    // A query string may carry a password too (`?password=`), so it is dropped as a whole.
    let path = match tail.split_once('?') {
        Some((path, _)) => format!("{path}?***"),
        None => tail.to_owned(),
    };
    format!("{scheme}://{host}{path}")
}
