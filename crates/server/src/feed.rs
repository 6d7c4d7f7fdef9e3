//! Live order updates for Server-Sent Events: an in-process broadcast, fed through Redis/Valkey
//! pub/sub when configured so that an update made on one instance reaches every instance.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::redis_conn::RedisConn;

/// One order's new status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrderUpdate {
    /// The shop.
    pub shop_id: Uuid,
    /// The order.
    pub order_id: Uuid,
    /// Its customer (who may see it).
    pub customer_id: Option<Uuid>,
    /// New status.
    pub status: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// Publishes and fans out order updates.
#[derive(Clone)]
pub struct OrderFeed {
    local: broadcast::Sender<Arc<OrderUpdate>>,
    redis: Option<(Arc<RedisConn>, String)>,
    /// Fires at shutdown so open streams end and the server can drain.
    stop: CancellationToken,
}

/// Updates a slow subscriber may fall behind by before it skips ahead.
const CAPACITY: usize = 1024;

impl OrderFeed {
    /// In-process only (one instance); streams end when `stop` fires.
    pub fn local(stop: CancellationToken) -> Self {
        Self {
            local: broadcast::channel(CAPACITY).0,
            redis: None,
            stop,
        }
    }

    /// Through Redis pub/sub on `{prefix}orders`; a background task relays messages to local
    /// subscribers and resubscribes after Redis restarts.
    pub async fn redis(url: &str, prefix: &str, stop: CancellationToken) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let conn = Arc::new(RedisConn::connect(url, "feed").await?);
        let channel = format!("{prefix}orders");
        let local = broadcast::channel(CAPACITY).0;
        tokio::spawn(relay(client, channel.clone(), local.clone(), stop.clone()));
        Ok(Self {
            local,
            redis: Some((conn, channel)),
            stop,
        })
    }

    /// Sends an update to every subscriber on every instance. A Redis failure (answered within
    /// the connection's bounded wait) falls back to this instance's subscribers: the change itself
    /// is already committed, and the pages reload to catch up.
    pub async fn publish(&self, update: OrderUpdate) {
        if let Some((conn, channel)) = &self.redis {
            let payload = serde_json::to_string(&update).unwrap_or_default();
            let published = conn
                .call("publish", |mut c| {
                    let payload = payload.clone();
                    async move {
                        redis::AsyncCommands::publish::<_, _, i64>(&mut c, channel, payload).await
                    }
                })
                .await;
            match published {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "order update not published to Redis; local only")
                }
            }
        }
        let _ = self.local.send(Arc::new(update));
    }

    /// A new subscription to every update; callers filter what their user may see.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<OrderUpdate>> {
        self.local.subscribe()
    }

    /// Fires when the server shuts down.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }
}

async fn relay(
    client: redis::Client,
    channel: String,
    local: broadcast::Sender<Arc<OrderUpdate>>,
    stop: CancellationToken,
) {
    loop {
        let session = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                match serde_json::from_slice::<OrderUpdate>(msg.get_payload_bytes()) {
                    Ok(u) => {
                        let _ = local.send(Arc::new(u));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring a malformed order update from Redis")
                    }
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        tokio::select! {
            () = stop.cancelled() => return,
            res = session => {
                if let Err(e) = res {
                    tracing::warn!(error = %e, "order update subscription lost; reconnecting");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
