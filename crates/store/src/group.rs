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
