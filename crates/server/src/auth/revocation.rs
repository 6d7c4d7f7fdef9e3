//! The access-token deny-list, held in memory on every instance and refreshed from the database
//! twice a second, so a token revoked anywhere is refused everywhere within a second.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use shopkeep_domain::Timestamp;
use shopkeep_store::{Db, tokens};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often instances pick up revocations made elsewhere.
pub const POLL_EVERY: Duration = Duration::from_millis(400);

/// Revoked token ids with their expiry (microseconds).
#[derive(Default)]
pub struct RevocationList {
    entries: RwLock<HashMap<Uuid, i64>>,
}

impl RevocationList {
    /// Is this token id revoked?
    pub fn is_revoked(&self, jti: &Uuid) -> bool {
        self.entries
            .read()
            .expect("revocation lock")
            .contains_key(jti)
    }

    /// Records a revocation made by this instance (already stored in the database).
    pub fn insert(&self, jti: Uuid, expires_at: i64) {
        self.entries
            .write()
            .expect("revocation lock")
            .insert(jti, expires_at);
    }

    /// Loads revocations made since `since`, drops expired ones.
    async fn refresh(&self, db: &Db, since: Timestamp) -> anyhow::Result<()> {
        let rows = tokens::revoked_since(db, since).await?;
        let now = Timestamp::now().0;
        let mut e = self.entries.write().expect("revocation lock");
        e.retain(|_, exp| *exp > now);
        for (jti, exp, _) in rows {
            e.insert(jti, exp);
        }
        Ok(())
    }

    /// Loads every live revocation, then polls until `stop` fires.
    pub async fn run(self: std::sync::Arc<Self>, db: Db, stop: CancellationToken) {
        let mut since = Timestamp(0);
        loop {
            // Overlap polls by a few seconds: a row committed late with an earlier revoked_at is
            // still seen.
            let started = Timestamp::now();
            match self.refresh(&db, since).await {
                Ok(()) => since = Timestamp(started.0 - 5_000_000),
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "refreshing the revocation list failed"
                ),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    }
}
