//! The Redis/Valkey backend: one sorted set of failure times per key, shared by every instance.

use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use anyhow::anyhow;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisResult, Script};
use tokio::time::error::Elapsed;

use super::{LimiterUnavailable, redact_url};

/// A login waits at most this long for Redis before it is refused; short because the user waits.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Upper bound on one operation, reconnect attempts included, so a dead Redis never hangs a login.
const OP_DEADLINE: Duration = Duration::from_secs(2);
/// Upper bound on the initial connection, so a bad `redis_url` fails startup promptly.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

// Both scripts read the server's clock (TIME) rather than taking a time from the caller, so
// instances with skewed clocks agree on what has expired. Scores are microseconds.
// `replicate_commands` lets a script write after TIME on Redis < 5; later versions always do.

/// ARGV: window (µs), limit. Returns 0 when allowed, else the µs until the key unblocks.
static CHECK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  return 0
end
local nth = count - limit
local oldest = redis.call('ZRANGE', KEYS[1], nth, nth, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then
  wait = 1
end
return wait
",
    )
});

/// ARGV: window (µs), limit, unique suffix, window (ms, for the key's TTL). Returns 1.
// string.format('%d') because Lua's default number-to-string keeps 14 digits and a µs
// timestamp has 16. The caller's random suffix keeps two failures in the same µs distinct.
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, string.format('%d', now) .. '-' .. ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(limit + 1))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
",
    )
});

pub(super) struct RedisLimiter {
    client: Client,
    config: ConnectionManagerConfig,
    /// Replaced when a call times out; see `settle`. The generation tells concurrent callers
    /// whether someone already replaced the connection they saw time out.
    conn: Mutex<(u64, ConnectionManager)>,
    prefix: String,
    limit: u32,
    window_us: u64,
    /// The key's TTL: once the newest failure has left the window the whole set is garbage.
    ttl_ms: u64,
}

impl RedisLimiter {
    pub(super) async fn connect(
        url: &str,
        prefix: &str,
        limit: u32,
        window: Duration,
    ) -> anyhow::Result<Self> {
        let shown = redact_url(url);
        let client = Client::open(url).map_err(|e| anyhow!("invalid redis url {shown}: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            // One quick retry rides out a blip; more would only delay the refusal.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = tokio::time::timeout(
            CONNECT_DEADLINE,
            client.get_connection_manager_with_config(config.clone()),
        )
        .await
        .map_err(|_| {
            anyhow!("cannot connect to redis at {shown}: no answer within {CONNECT_DEADLINE:?}")
        })?
        .map_err(|e| anyhow!("cannot connect to redis at {shown}: {e}"))?;
        let window_us = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        Ok(Self {
            client,
            config,
            conn: Mutex::new((0, conn)),
            prefix: prefix.to_owned(),
            limit,
            window_us,
            ttl_ms: window_us.div_ceil(1000).max(1),
        })
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) async fn check(&self, key: &str) -> Result<Option<Duration>, LimiterUnavailable> {
        let (generation, mut conn) = self.current();
        let mut call = CHECK.prepare_invoke();
        call.key(self.key(key)).arg(self.window_us).arg(self.limit);
        let result = tokio::time::timeout(OP_DEADLINE, call.invoke_async::<u64>(&mut conn)).await;
        let wait_us = self.settle(generation, "check", result)?;
        Ok((wait_us > 0).then(|| Duration::from_micros(wait_us)))
    }

    pub(super) async fn record_failure(&self, key: &str) -> Result<(), LimiterUnavailable> {
        let (generation, mut conn) = self.current();
        let mut call = RECORD.prepare_invoke();
        call.key(self.key(key))
            .arg(self.window_us)
            .arg(self.limit)
            .arg(uuid::Uuid::now_v7().simple().to_string())
            .arg(self.ttl_ms);
        let result = tokio::time::timeout(OP_DEADLINE, call.invoke_async::<()>(&mut conn)).await;
        self.settle(generation, "record_failure", result)
    }

    pub(super) async fn clear(&self, key: &str) -> Result<(), LimiterUnavailable> {
        let (generation, mut conn) = self.current();
        let mut del = redis::cmd("DEL");
        del.arg(self.key(key));
        let result = tokio::time::timeout(OP_DEADLINE, del.exec_async(&mut conn)).await;
        self.settle(generation, "clear", result)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    fn current(&self) -> (u64, ConnectionManager) {
        // The guarded pair is replaced whole, so a poisoned lock still holds a usable value.
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Turns a call's outcome into the caller's answer, replacing the connection after a timeout.
    ///
    /// The ConnectionManager reconnects by itself only when the connection reports an error;
    /// a connection that merely stops answering (a partition, a Redis host that vanished
    /// without a reset) would time out forever, so a timeout gets a fresh manager.
    fn settle<T>(
        &self,
        generation: u64,
        op: &str,
        result: Result<RedisResult<T>, Elapsed>,
    ) -> Result<T, LimiterUnavailable> {
        let reason = match result {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if e.is_timeout() => format!("redis {op} timed out: {e}"),
            Ok(Err(e)) => return Err(LimiterUnavailable(format!("redis {op} failed: {e}"))),
            Err(_) => format!("redis {op} got no answer within {OP_DEADLINE:?}"),
        };
        self.replace_connection(generation);
        Err(LimiterUnavailable(reason))
    }

    fn replace_connection(&self, generation: u64) {
        let mut slot = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.0 != generation {
            return;
        }
        // Lazy: connecting here would hold the lock across a network wait; the next call connects.
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()) {
            Ok(fresh) => *slot = (generation.wrapping_add(1), fresh),
            Err(e) => {
                tracing::warn!(error = %e, "cannot replace the stalled redis limiter connection")
            }
        }
    }
}
