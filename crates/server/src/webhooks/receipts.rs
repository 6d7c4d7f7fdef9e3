//! Group commit of inbound receipts: every receiver hands its receipt to one writer task, which
//! stores whatever has arrived in one transaction and answers each receiver after the commit.
//! A webhook is still acknowledged only once it is durable; under load one fsync covers every
//! webhook that arrived while the previous batch was committing, instead of one each.

use shopkeep_store::jobs::NewJob;
use shopkeep_store::webhooks::{self as store, NewReceipt, Stored};
use shopkeep_store::{Db, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Most receipts in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Stored, StoreError>>;

/// The handle receivers write through; cheap to clone. The writer task ends when the last
/// handle is dropped.
#[derive(Clone)]
pub struct ReceiptWriter {
    tx: mpsc::Sender<(NewReceipt, Option<NewJob>, Reply)>,
}

impl ReceiptWriter {
    /// Starts the writer task for `db`.
    pub fn start(db: Db) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(db, rx));
        ReceiptWriter { tx }
    }

    /// Stores `receipt` with its processing `job`; returns after the commit.
    pub async fn write(
        &self,
        receipt: NewReceipt,
        job: Option<NewJob>,
    ) -> Result<Stored, StoreError> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::Other(anyhow::anyhow!("the receipt writer has stopped"));
        self.tx
            .send((receipt, job, reply))
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<(NewReceipt, Option<NewJob>, Reply)>) {
    let mut pending = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut pending, MAX_BATCH).await > 0 {
        let (batch, replies): (Vec<_>, Vec<_>) = pending
            .drain(..)
            .map(|(r, j, reply)| ((r, j), reply))
            .unzip();
        match store::insert_receipts(&db, &batch).await {
            Ok(stored) => {
                for (reply, s) in replies.into_iter().zip(stored) {
                    let _ = reply.send(Ok(s));
                }
            }
            Err(e) => {
                tracing::warn!(error = %anyhow::Error::new(e.for_each_caller()), receipts = batch.len(), "storing inbound webhooks failed");
                for reply in replies {
                    let _ = reply.send(Err(e.for_each_caller()));
                }
            }
        }
    }
}
