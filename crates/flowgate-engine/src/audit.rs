//! The audit log writer: handlers hand entries over without waiting; a
//! background task writes them in batches (one transaction per batch) and
//! flushes everything on shutdown.

use flowgate_store::{AuditEntry, Store};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most entries written in one transaction.
const BATCH: usize = 500;
/// Longest an entry waits before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

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
        metrics::gauge!("flowgate_audit_pending").increment(1.0);
        if self.tx.send(Msg::Entry(Box::new(entry))).is_err() {
            tracing::error!("audit writer is gone; entry dropped");
        }
    }

    /// Writes everything queued so far and waits for it.
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
    loop {
        let msg = if batch.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(FLUSH_EVERY, rx.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    write(&store, &mut batch).await;
                    continue;
                }
            }
        };
        match msg {
            None => {
                write(&store, &mut batch).await;
                return;
            }
            Some(Msg::Entry(e)) => {
                batch.push(*e);
                if batch.len() >= BATCH {
                    write(&store, &mut batch).await;
                }
            }
            Some(Msg::Flush(w)) => {
                // Take whatever else is already queued, then write.
                while let Ok(m) = rx.try_recv() {
                    match m {
                        Msg::Entry(e) => batch.push(*e),
                        Msg::Flush(w) => waiters.push(w),
                    }
                }
                write(&store, &mut batch).await;
                let _ = w.send(());
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
            }
        }
    }
}

async fn write(store: &Store, batch: &mut Vec<AuditEntry>) {
    if batch.is_empty() {
        return;
    }
    let entries = std::mem::take(batch);
    let n = entries.len();
    let mut attempt = 0u32;
    let entries = std::sync::Arc::new(entries);
    loop {
        let es = entries.clone();
        match store.call(move |s| s.append_audit(&es)).await {
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
