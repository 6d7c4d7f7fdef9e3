//! One Redis/Valkey connection with short, bounded waits, shared by the login limiter and the web
//! sessions: a request that needs Redis gets an answer or an error within [`OP_DEADLINE`], never a
//! hang, and a connection that stopped answering is replaced.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::anyhow;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisResult};

/// One Redis answer is awaited at most this long; short because a user waits.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Upper bound on one operation, reconnect attempts included.
pub const OP_DEADLINE: Duration = Duration::from_secs(2);
/// Upper bound on the initial connection, so a bad `redis_url` fails startup promptly.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

/// A connection manager that is replaced when a call times out.
pub struct RedisConn {
    client: Client,
    config: ConnectionManagerConfig,
    /// Replaced whole when a call times out; the generation tells concurrent callers whether
    /// someone already replaced the connection they saw time out.
    conn: Mutex<(u64, ConnectionManager)>,
    /// What uses it, for messages (`limiter`, `session`).
    what: &'static str,
}

impl RedisConn {
    /// Connects within [`CONNECT_DEADLINE`]; the error names the URL without its password.
    pub async fn connect(url: &str, what: &'static str) -> anyhow::Result<Self> {
        let shown = crate::ratelimit::redact_url(url);
        let client = Client::open(url).map_err(|e| anyhow!("invalid redis url {shown}: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            // One quick retry rides out a blip; more would only delay the answer.
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
        Ok(Self {
            client,
            config,
            conn: Mutex::new((0, conn)),
            what,
        })
    }

    /// Runs one call on the current connection within [`OP_DEADLINE`]. `Err` carries a sentence
    /// for logs; after a timeout the connection is replaced for the next call.
    ///
    /// A call that finds the connection broken (Redis restarted, or came back after an outage)
    /// is made once more: the ConnectionManager reconnects on that error, so the first request
    /// after Redis returns succeeds instead of failing once per connection. `f` may therefore
    /// run twice; every caller's command is safe to repeat.
    ///
    /// The ConnectionManager reconnects by itself only when the connection reports an error; a
    /// connection that merely stops answering (a partition, a host that vanished without a
    /// reset) would time out forever, hence the replacement.
    pub async fn call<T, F, Fut>(&self, op: &str, f: F) -> Result<T, String>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (generation, conn) = self.current();
        let what = self.what;
        let attempts = async {
            match f(conn.clone()).await {
                Err(e) if e.is_connection_dropped() || e.is_io_error() => f(conn).await,
                other => other,
            }
        };
        let reason = match tokio::time::timeout(OP_DEADLINE, attempts).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if e.is_timeout() => format!("redis {what} {op} timed out: {e}"),
            Ok(Err(e)) => return Err(format!("redis {what} {op} failed: {e}")),
            Err(_) => format!("redis {what} {op} got no answer within {OP_DEADLINE:?}"),
        };
        self.replace_connection(generation);
        Err(reason)
    }

    fn current(&self) -> (u64, ConnectionManager) {
        // The guarded pair is replaced whole, so a poisoned lock still holds a usable value.
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
                tracing::warn!(error = %e, what = self.what, "cannot replace a stalled redis connection")
            }
        }
    }
}
