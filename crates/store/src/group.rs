//! Group commit: callers hand their writes to one task, which writes whatever has arrived in one
//! transaction and answers each caller after the commit. A caller still hears back only once its
//! write is durable; under load one fsync (and, on SQLite, one turn at the writer lock) serves
//! every write that arrived while the previous batch was committing.
//!
//! Reads batch the same way: many callers asking for one row each share one query
//! ([`GroupCommit::read`]).

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};

use crate::{Db, StoreError};

/// Most writes in one transaction.
pub const MAX_BATCH: usize = 256;

type Reply<O> = oneshot::Sender<Result<O, StoreError>>;
type BatchFuture<O> = Pin<Box<dyn Future<Output = Result<Vec<O>, StoreError>> + Send>>;

/// The handle callers write through; cheap to clone. The task ends when the last handle drops.
pub struct GroupCommit<I, O> {
    tx: mpsc::Sender<(I, Reply<O>)>,
}

impl<I, O> Clone for GroupCommit<I, O> {
    fn clone(&self) -> Self {
        GroupCommit {
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> GroupCommit<I, O> {
    /// Starts the task. `write` stores one batch in one transaction and returns one result per
    /// item, in order; when it fails, every caller of the batch gets the error.
    pub fn start(db: Db, write: fn(Db, Vec<I>) -> BatchFuture<O>) -> Self {
        let (tx, mut rx) = mpsc::channel::<(I, Reply<O>)>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut pending = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut pending, MAX_BATCH).await > 0 {
                let (items, replies): (Vec<I>, Vec<Reply<O>>) = pending.drain(..).unzip();
                let n = items.len();
                match write(db.clone(), items).await {
                    Ok(out) => {
                        for (reply, o) in replies.into_iter().zip(out) {
                            let _ = reply.send(Ok(o));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %anyhow::Error::new(e.for_each_caller()), writes = n, "a group commit failed");
                        for reply in replies {
                            let _ = reply.send(Err(e.for_each_caller()));
                        }
                        // The database could not be reached: what queued meanwhile fails with
                        // the batch instead of waiting out another timeout behind it, so a
                        // caller waits at most about one acquire timeout, as it would alone.
                        if matches!(e, StoreError::Unavailable(_)) {
                            while let Ok((_, reply)) = rx.try_recv() {
                                let _ = reply.send(Err(e.for_each_caller()));
                            }
                        }
                    }
                }
            }
        });
        GroupCommit { tx }
    }

    /// Writes `item` with whatever else is waiting; returns after the commit.
    pub async fn write(&self, item: I) -> Result<O, StoreError> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::Other(anyhow::anyhow!("the group-commit writer has stopped"));
        self.tx.send((item, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// [`Self::write`] for a batch function that only reads: `item` is asked with whatever else
    /// is waiting, in one query.
    pub async fn read(&self, item: I) -> Result<O, StoreError> {
        self.write(item).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use sqlx::postgres::PgPoolOptions;

    use super::{BatchFuture, GroupCommit};
    use crate::{Db, StoreError};

    /// A pool that is never used: the batch functions below do not touch the database.
    fn unused_db() -> Db {
        Db::Postgres(
            PgPoolOptions::new()
                .connect_lazy("postgres://127.0.0.1:1/unused")
                .unwrap(),
        )
    }

    /// The first batch is under way for 100 ms before `queue` more callers write, then it fails
    /// after `BATCH`; gives every caller's result and how long the last one waited.
    async fn callers_behind_a_failing_batch(
        write: fn(Db, Vec<u32>) -> BatchFuture<u32>,
        queue: u32,
    ) -> (Vec<Result<u32, StoreError>>, Duration) {
        let w = GroupCommit::start(unused_db(), write);
        let first = tokio::spawn({
            let w = w.clone();
            async move { w.write(0).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Instant::now();
        let mut rest = Vec::new();
        for i in 1..=queue {
            let w = w.clone();
            rest.push(tokio::spawn(async move { w.write(i).await }));
        }
        let mut out = vec![first.await.unwrap()];
        for r in rest {
            out.push(r.await.unwrap());
        }
        (out, t.elapsed())
    }

    const BATCH: Duration = Duration::from_millis(300);

    static UNREACHABLE_BATCHES: AtomicUsize = AtomicUsize::new(0);

    fn unreachable(_db: Db, _items: Vec<u32>) -> BatchFuture<u32> {
        Box::pin(async {
            UNREACHABLE_BATCHES.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(BATCH).await;
            Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut))
        })
    }

    #[tokio::test]
    async fn callers_queued_behind_a_batch_that_found_the_database_unreachable_fail_with_it() {
        let (out, waited) = callers_behind_a_failing_batch(unreachable, 5).await;
        assert_eq!(out.len(), 6);
        for r in &out {
            assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        }
        // No second batch waited out another timeout for them.
        assert_eq!(UNREACHABLE_BATCHES.load(Ordering::SeqCst), 1);
        assert!(waited < BATCH, "{waited:?}");
    }

    static REFUSED_BATCHES: AtomicUsize = AtomicUsize::new(0);

    fn refusing(_db: Db, items: Vec<u32>) -> BatchFuture<u32> {
        Box::pin(async move {
            if REFUSED_BATCHES.fetch_add(1, Ordering::SeqCst) == 0 {
                tokio::time::sleep(BATCH).await;
                return Err(StoreError::Other(anyhow::anyhow!("refused")));
            }
            Ok(items)
        })
    }

    #[tokio::test]
    async fn callers_queued_behind_a_batch_refused_for_what_it_held_get_their_own_batch() {
        let (out, _) = callers_behind_a_failing_batch(refusing, 5).await;
        assert!(matches!(out[0], Err(StoreError::Other(_))), "{:?}", out[0]);
        let rest: Vec<u32> = out[1..].iter().map(|r| *r.as_ref().unwrap()).collect();
        assert_eq!(rest, vec![1, 2, 3, 4, 5]);
        assert_eq!(REFUSED_BATCHES.load(Ordering::SeqCst), 2);
    }
}
