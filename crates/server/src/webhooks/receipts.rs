//! Group commit of inbound receipts: every receiver hands its receipt to one writer task per
//! process ([`shopkeep_store::group::GroupCommit`]), which stores whatever has arrived in one
//! transaction and answers each receiver after the commit.

use shopkeep_store::Db;
use shopkeep_store::group::GroupCommit;
use shopkeep_store::jobs::NewJob;
use shopkeep_store::webhooks::{self as store, NewReceipt, Stored};

/// The handle receivers store their receipts (with their processing jobs) through.
pub type ReceiptWriter = GroupCommit<(NewReceipt, Option<NewJob>), Stored>;

/// Starts the receipt writer for `db`.
pub fn start(db: Db) -> ReceiptWriter {
    GroupCommit::start(db, |db, batch| {
        Box::pin(async move { store::insert_receipts(&db, &batch).await })
    })
}
