//! The Redis/Valkey backend: one sorted set of failure times per key, shared by every instance.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::LimiterUnavailable;
use crate::redis_conn::RedisConn;

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
    conn: RedisConn,
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
        let window_us = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        Ok(Self {
            conn: RedisConn::connect(url, "limiter").await?,
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
        let mut call = CHECK.prepare_invoke();
        call.key(self.key(key)).arg(self.window_us).arg(self.limit);
        let call = &call;
        let wait_us = self
            .conn
            .call("check", |mut c| async move {
                call.invoke_async::<u64>(&mut c).await
            })
            .await
            .map_err(LimiterUnavailable)?;
        Ok((wait_us > 0).then(|| Duration::from_micros(wait_us)))
    }

    pub(super) async fn record_failure(&self, key: &str) -> Result<(), LimiterUnavailable> {
        let mut call = RECORD.prepare_invoke();
        call.key(self.key(key))
            .arg(self.window_us)
            .arg(self.limit)
            .arg(uuid::Uuid::now_v7().simple().to_string())
            .arg(self.ttl_ms);
        let call = &call;
        self.conn
            .call("record_failure", |mut c| async move {
                call.invoke_async::<()>(&mut c).await
            })
            .await
            .map_err(LimiterUnavailable)
    }

    pub(super) async fn clear(&self, key: &str) -> Result<(), LimiterUnavailable> {
        let mut del = redis::cmd("DEL");
        del.arg(self.key(key));
        let del = &del;
        self.conn
            .call("clear", |mut c| async move { del.exec_async(&mut c).await })
            .await
            .map_err(LimiterUnavailable)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }
}
