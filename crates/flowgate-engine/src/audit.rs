//! The audit log writer: handlers hand entries over without waiting; a
//! background task takes whatever has queued, hands it to the store's
//! group-committing writer as one multi-row insert, and waits for that
//! commit before taking the next batch (retrying a failed batch). An entry
//! is not durable when the request is answered: a crash can lose the entries
//! of the last moments, never a run or an acknowledged write.

use flowgate_store::{AuditEntry, Store};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most entries written in one transaction.
const BATCH: usize = 500;

enum Msg {
    Entry(Box<AuditEntry>),
    Flush(oneshot::Sender<()>),
}

/// Hands audit entries to the background writer.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::UnboundedSender<Msg>,
}

impl AuditWriter {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        Self { tx }
    }

    /// Queues one entry (never blocks).
    pub fn record(&self, entry: AuditEntry) {
        thread_local! {
            // One per request: a handle per thread, not a registry lookup each.
            static PENDING: metrics::Gauge = metrics::gauge!("flowgate_audit_pending");
        }
        PENDING.with(|g| g.increment(1.0));
        if self.tx.send(Msg::Entry(Box::new(entry))).is_err() {
            tracing::error!("audit writer is gone; entry dropped");
        }
    }

    /// Writes everything queued so far and waits for its commit.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut batch: Vec<AuditEntry> = Vec::with_capacity(BATCH);
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    // No timer: take everything queued, commit it, repeat. While one batch
    // commits the next one collects.
    while let Some(first) = rx.recv().await {
        let mut msg = Some(first);
        while let Some(m) = msg.take() {
            match m {
                Msg::Entry(e) => batch.push(*e),
                Msg::Flush(w) => waiters.push(w),
            }
            if batch.len() >= BATCH {
                break;
            }
            msg = rx.try_recv().ok();
        }
        write(&store, &mut batch).await;
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
    write(&store, &mut batch).await;
}

async fn write(store: &Store, batch: &mut Vec<AuditEntry>) {
    if batch.is_empty() {
        return;
    }
    let entries = std::mem::take(batch);
    let n = entries.len();
    let mut attempt = 0u32;
    loop {
        match store.submit_audit(&entries).await {
            Ok(()) => {
                metrics::gauge!("flowgate_audit_pending").decrement(n as f64);
                metrics::counter!("flowgate_audit_written_total").increment(n as u64);
                return;
            }
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "audit batch write failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(e) => {
                tracing::error!(error = %e, entries = n, "audit batch could not be written");
                metrics::gauge!("flowgate_audit_pending").decrement(n as f64);
                return;
            }
        }
    }
}
