//! The delivery ledger of one issue, as a send uses it. In: the database path and
//! the issue's id. Out: due deliveries in batches, durable claims, and records of
//! what each delivery came to. The guarantees kept here:
//!
//! - never twice: a delivery is claimed (`pending` → `sending`, committed)
//!   before its message is handed to the server, and marked `sent` once the
//!   server accepts it; a later run sends only `pending` rows. A crash between
//!   the two leaves `sending`, which the next run turns into `uncertain` and, by
//!   `[smtp] on_uncertain`, skips (default) or sends again;
//! - never skipped: rows are read from the ledger, not from a cursor in memory;
//! - an unsubscribe committed before a claim means no message (the claim checks
//!   the subscriber is still active in the same statement);
//! - at most one uncertain delivery per connection after a crash (two where
//!   messages are pipelined one after another, of which at most one can have
//!   arrived: see `worker::work`): a worker's "sent" record is not waited for,
//!   but it is queued before that worker's next claim, and the claim's commit
//!   makes it durable too.
//!
//! Reads (the producer's batches, counts) use a connection of their own; every
//! write goes to one writer thread that commits whatever has queued up in one
//! transaction (group commit) and only then answers.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use super::SendError;
use crate::store::{DueDelivery, LedgerCounts, LedgerWrite, Store, StoreError};

/// Why a ledger write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error("the ledger writer has stopped")]
    Stopped,
    #[error("the ledger writer panicked")]
    Panicked,
    /// The batch's commit failed; every write in it shares the error.
    #[error(transparent)]
    Store(Arc<StoreError>),
}

type Reply = oneshot::Sender<Result<bool, LedgerError>>;

/// A write for the writer thread, and who waits for its commit (`None`: nobody,
/// a "sent" record made durable by the same worker's next claim).
struct Op {
    write: LedgerWrite,
    done: Option<Reply>,
}

pub(crate) struct Ledger {
    reader: Mutex<Store>,
    issue_id: i64,
    writer: Mutex<Option<mpsc::UnboundedSender<Op>>>,
    thread: Mutex<Option<std::thread::JoinHandle<Result<(), LedgerError>>>>,
}

/// The writer thread: a batch per commit, answers after the commit. `sent`
/// counts the "sent" records made durable.
fn write_loop(
    mut store: Store,
    issue_id: i64,
    mut rx: mpsc::UnboundedReceiver<Op>,
    sent: Arc<AtomicU64>,
) -> Result<(), LedgerError> {
    let mut batch: Vec<Op> = Vec::with_capacity(256);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let writes: Vec<&LedgerWrite> = batch.iter().map(|op| &op.write).collect();
        let outcome = store
            .ledger_apply(issue_id, &writes, Utc::now())
            .map_err(|e| LedgerError::Store(Arc::new(e)));
        for (i, op) in batch.drain(..).enumerate() {
            let result = match &outcome {
                Ok(took) => Ok(took[i]),
                Err(e) => Err(e.clone()),
            };
            if matches!(op.write, LedgerWrite::Sent { .. }) && result.is_ok() {
                sent.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(done) = op.done {
                let _ = done.send(result);
            }
        }
        outcome?;
    }
    Ok(())
}

impl Ledger {
    pub(crate) fn open(
        path: &Path,
        issue_id: i64,
        sent: Arc<AtomicU64>,
    ) -> Result<Ledger, SendError> {
        let reader = Store::open(path)?;
        let writer_store = Store::open(path)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("gazette-ledger".into())
            .spawn(move || write_loop(writer_store, issue_id, rx, sent))
            .map_err(SendError::Spawn)?;
        Ok(Ledger {
            reader: Mutex::new(reader),
            issue_id,
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Store> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn queue(&self, write: LedgerWrite, done: Option<Reply>) -> Result<(), SendError> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer
            .as_ref()
            .and_then(|w| w.send(Op { write, done }).ok())
            .ok_or(SendError::Ledger(LedgerError::Stopped))
    }

    /// Queues a write and waits for its commit; whether it took effect.
    async fn commit(&self, write: LedgerWrite) -> Result<bool, SendError> {
        let (done, rx) = oneshot::channel();
        self.queue(write, Some(done))?;
        rx.await
            .map_err(|_| SendError::Ledger(LedgerError::Stopped))?
            .map_err(SendError::Ledger)
    }

    /// Waits for every queued write to be committed, and stops the writer.
    pub(crate) fn finish(&self) -> Result<(), SendError> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.join()
                .map_err(|_| SendError::Ledger(LedgerError::Panicked))?
                .map_err(SendError::Ledger)?;
        }
        Ok(())
    }

    pub(crate) fn counts(&self) -> Result<LedgerCounts, SendError> {
        Ok(self.reader().ledger_counts(self.issue_id)?)
    }

    pub(crate) fn due(&self, after: i64, limit: usize) -> Result<Vec<DueDelivery>, SendError> {
        Ok(self
            .reader()
            .deliveries_due(self.issue_id, Utc::now(), after, limit)?)
    }

    pub(crate) fn next_retry_at(&self) -> Result<Option<i64>, SendError> {
        Ok(self.reader().next_retry_at(self.issue_id)?)
    }

    /// Claims a delivery, durably; false (and the row marked skipped, if the
    /// subscriber left) when it is no longer to be sent.
    pub(crate) async fn claim(&self, subscriber_id: i64) -> Result<bool, SendError> {
        self.commit(LedgerWrite::Claim { subscriber_id }).await
    }

    /// Waits until every write queued so far is committed.
    pub(crate) async fn barrier(&self) -> Result<(), SendError> {
        self.commit(LedgerWrite::Barrier).await.map(drop)
    }

    /// Records an accepted message; durable with the worker's next claim.
    pub(crate) fn sent(
        &self,
        subscriber_id: i64,
        reply: &str,
        message_id: &str,
    ) -> Result<(), SendError> {
        self.queue(
            LedgerWrite::Sent {
                subscriber_id,
                reply: reply.to_string(),
                message_id: message_id.to_string(),
            },
            None,
        )
    }

    /// A transient failure: pending again, due at `at` (Unix seconds).
    pub(crate) async fn retry(
        &self,
        subscriber_id: i64,
        error: &str,
        reply: Option<&str>,
        at: i64,
    ) -> Result<(), SendError> {
        self.commit(LedgerWrite::Retry {
            subscriber_id,
            error: error.to_string(),
            reply: reply.map(str::to_string),
            at,
        })
        .await
        .map(drop)
    }

    /// A failure for this run; `bounce` also marks the subscriber bounced,
    /// `gave_up` (deferred until the attempts ran out) lets the next run retry.
    pub(crate) async fn failed(
        &self,
        subscriber_id: i64,
        error: &str,
        reply: Option<&str>,
        bounce: bool,
        gave_up: bool,
    ) -> Result<(), SendError> {
        self.commit(LedgerWrite::Failed {
            subscriber_id,
            error: error.to_string(),
            reply: reply.map(str::to_string),
            bounce,
            gave_up,
        })
        .await
        .map(drop)
    }
}
