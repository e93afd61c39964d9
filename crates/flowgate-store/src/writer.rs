//! The database's one writer: a dedicated thread that group-commits.
//!
//! Run records, run logs, queue transitions, idempotency records, audit
//! entries and outbox events are not written by the thread that produced
//! them. They are handed to the writer, which takes everything queued so far
//! (up to [`MAX_BATCH`] writes, in arrival order) and applies it in one
//! transaction, each write in its own savepoint, so one refused write does not
//! undo the others. A write's [`Committed`] resolves only after the commit
//! that holds its rows (or with the error that kept them out); a caller that
//! needs durability awaits it, one that needs none calls
//! [`Committed::detach`].
//!
//! An urgent write ([`Writer::submit`]) is never delayed: while one batch
//! commits, the next collects, so a lone write commits at once and a busy node
//! commits many writes per transaction. Lazy writes, which nobody waits for or
//! whose waiter does not mind a delay ([`Writer::record_run`]: a sync run's
//! record, whose loss in a crash acknowledges nothing; audit entries; a queue
//! run's outcome, whose slot is already free), may linger up to [`LINGER`] to
//! share a transaction with the writes that follow; the first urgent write, a
//! barrier or a full batch ends the linger. Because writes are
//! taken strictly in arrival order, queue claims and async acknowledgements
//! share the writer fairly: neither can starve the other.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::r2d2::Pool;

use crate::conn::{AnyConnection, Manager};
use crate::error::{Result, StoreError};
use crate::wake::Hub;

/// Most writes committed in one transaction.
pub const MAX_BATCH: usize = 512;

/// Longest a batch of writes nobody waits for is held open for more writes.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// Longest a write somebody waits for is held for company while the node is
/// busy (the last batch held more than one such write). A commit rewrites the last
/// page of every table and index it touched, so a busy node that committed
/// each urgent write at once would spend most of its writer on those pages;
/// an idle node commits a lone urgent write at once.
pub const URGENT_LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// A lingering batch commits once it holds this many writes. Every commit
/// rewrites the last page of each table and index it touched, so the larger
/// the batch, the fewer bytes each write costs (a sync call's two writes: about
/// 4.7 KB at 64, 3.9 KB at 256).
const LINGER_BATCH: usize = 256;

/// What a write reports once its batch has committed or failed.
type Done = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// A write: runs inside the batch's transaction (or is told why it cannot),
/// and returns its completion.
type WriteFn = Box<dyn FnOnce(std::result::Result<&mut AnyConnection, &StoreError>) -> Done + Send>;

/// A finished run nobody waits for (see [`Writer::record_run`]), kept as data:
/// the records of a batch share one multi-row insert. The rows are built by
/// the thread that ran the flow, so the writer neither serialises the run's
/// JSON nor frees the parsed documents another thread allocated.
pub(crate) struct RunRecord {
    pub row: crate::models::runs::RunRow,
    pub logs: Vec<crate::models::run_logs::RunLogRow>,
    /// Told once the commit that holds the record is done (or why the record
    /// is not in it), when somebody waits for it ([`Writer::record_run_committed`]).
    pub done: Option<Done>,
}

enum Job {
    /// A write; `lazy` when nobody waits for its commit.
    Write(WriteFn, bool),
    /// A run record (lazy).
    Record(Box<RunRecord>),
    /// Resolves once every write queued before it has committed.
    Barrier(Done),
}

/// Where a write's result waits for its caller: a future's waker, or a
/// thread blocked in [`Committed::wait`].
struct Waiting<T> {
    value: Option<Result<T>>,
    waker: Option<Waker>,
    /// The hub of the thread `waker` waits on, when one runs there: the
    /// wake-up goes through it (see [`crate::wake`]).
    hub: Option<Arc<Hub>>,
    /// A thread waits on `Slot::ready` (a notification nobody waits for
    /// would still be a system call).
    blocked: bool,
}

struct Slot<T> {
    state: Mutex<Waiting<T>>,
    ready: Condvar,
}

impl<T> Slot<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, value: Result<T>) {
        let (waker, hub, blocked) = {
            let mut s = self.lock();
            s.value = Some(value);
            (s.waker.take(), s.hub.take(), s.blocked)
        };
        if blocked {
            self.ready.notify_all();
        }
        match (waker, hub) {
            (Some(w), Some(hub)) => hub.wake(w),
            (Some(w), None) => w.wake(),
            (None, _) => {}
        }
    }
}

/// A write handed to the writer: resolves with the write's result after the
/// transaction holding its rows has committed, or with the error that kept
/// them out. Until then nothing of it is durable, and other connections may
/// not see it yet.
#[must_use = "a write is only durable once its `Committed` resolves; call `.detach()` when nobody needs to wait"]
pub struct Committed<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Committed<T> {
    /// A write refused before it reached the writer.
    pub(crate) fn failed(e: StoreError) -> Self {
        let c = Self::pending();
        c.slot.put(Err(e));
        c
    }

    fn pending() -> Self {
        Self {
            slot: Arc::new(Slot {
                state: Mutex::new(Waiting {
                    value: None,
                    waker: None,
                    hub: None,
                    blocked: false,
                }),
                ready: Condvar::new(),
            }),
        }
    }

    /// Lets the write commit without anybody waiting for it (records whose
    /// loss in a crash acknowledges nothing: a sync run's record, an audit entry).
    pub fn detach(self) {}

    /// Blocks the calling thread until the write committed (blocking code only).
    pub fn wait(self) -> Result<T> {
        let mut s = self.slot.lock();
        loop {
            if let Some(v) = s.value.take() {
                return v;
            }
            s.blocked = true;
            s = self.slot.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl<T> Future for Committed<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut s = self.slot.lock();
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                    s.hub = Hub::current();
                }
                Poll::Pending
            }
        }
    }
}

/// Writes waiting for the writer thread.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// How many of `jobs` somebody waits for (they end a linger).
    urgent: usize,
    /// The writer is holding a batch of lazy writes open: lazy writes join
    /// it without waking the thread.
    lingering: bool,
    /// The writer waits for a first write. While it commits it is neither
    /// idle nor lingering and needs no wake-up: it looks at the queue again
    /// once the commit is done (a wake-up is a system call, paid per write).
    idle: bool,
    /// The store is gone: drain what is queued, then stop.
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side, held by the store.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    /// Writes submitted and not yet reported (for cheap read barriers).
    pending: Arc<AtomicUsize>,
}

impl Writer {
    /// Starts the writer thread on `pool` (it takes one connection per batch).
    pub(crate) fn start(pool: Pool<Manager>) -> Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
        });
        let pending = Arc::new(AtomicUsize::new(0));
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("flowgate-db-writer".into())
            .spawn({
                let pending = Arc::clone(&pending);
                move || run(pool, &thread_shared, &pending)
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Self { shared, pending })
    }

    /// Queues `job`. The thread is woken for the first write of an idle
    /// writer, and while it lingers for a write somebody waits for and for a
    /// full batch; a writer busy committing takes the queue as it is once it
    /// is done, so writes that arrive meanwhile cost no wake-up.
    fn send(&self, job: Job) -> std::result::Result<(), Job> {
        let mut q = self.shared.lock();
        if q.closed {
            return Err(job);
        }
        let lazy = job.is_lazy();
        q.urgent += usize::from(!lazy);
        q.jobs.push_back(job);
        let wake =
            q.idle || (q.lingering && ((!lazy && q.urgent == 1) || q.jobs.len() >= LINGER_BATCH));
        drop(q);
        if wake {
            self.shared.ready.notify_one();
        }
        Ok(())
    }

    /// Hands `op` to the writer; it runs in a savepoint of the next batch.
    pub(crate) fn submit<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    ) -> Committed<T> {
        self.enqueue(op, false)
    }

    /// Hands `op` to the writer for a waiter that does not mind a delay: it may
    /// linger up to [`LINGER`] before its batch commits.
    pub(crate) fn submit_lazy<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    ) -> Committed<T> {
        self.enqueue(op, true)
    }

    /// Hands a finished run's record to the writer with nobody waiting for it:
    /// it may linger up to [`LINGER`] before its batch commits, and is lost if
    /// the process dies first (a failure is logged; reads that must see it use
    /// [`Self::barrier`]). The records of one batch are inserted together
    /// (one statement per table); should that fail, each is inserted on its
    /// own, so one refused record does not take the others with it.
    pub(crate) fn record_run(&self, record: RunRecord) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.send(Job::Record(Box::new(record))).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("a run record was not written: the database writer has stopped");
        }
    }

    /// Hands a finished run's record to the writer for a caller that waits
    /// for its commit: it shares the batch's multi-row insert like
    /// [`Self::record_run`]'s records, but is urgent (see [`URGENT_LINGER`]).
    pub(crate) fn record_run_committed(&self, mut record: RunRecord) -> Committed<()> {
        let committed = Committed::pending();
        let slot = Arc::clone(&committed.slot);
        record.done = Some(Box::new(move |err: Option<&StoreError>| {
            slot.put(match err {
                None => Ok(()),
                Some(e) => Err(StoreError::Unavailable(format!(
                    "the run record was not committed: {e}"
                ))),
            });
        }));
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.send(Job::Record(Box::new(record))).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            return Committed::failed(StoreError::Unavailable(
                "the database writer has stopped".into(),
            ));
        }
        committed
    }

    fn enqueue<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
        lazy: bool,
    ) -> Committed<T> {
        let committed = Committed::pending();
        let slot = Arc::clone(&committed.slot);
        let pending = Arc::clone(&self.pending);
        pending.fetch_add(1, Ordering::SeqCst);
        let job = Job::Write(
            Box::new(
                move |c: std::result::Result<&mut AnyConnection, &StoreError>| -> Done {
                    let out = match c {
                        Ok(c) => crate::conn::in_savepoint(c, op),
                        Err(e) => Err(StoreError::Unavailable(format!(
                            "the write was not run: {e}"
                        ))),
                    };
                    Box::new(move |commit_err: Option<&StoreError>| {
                        let out = match (out, commit_err) {
                            (Ok(_), Some(e)) => Err(StoreError::Unavailable(format!(
                                "the write was not committed: {e}"
                            ))),
                            (out, _) => out,
                        };
                        slot.put(out);
                        pending.fetch_sub(1, Ordering::SeqCst);
                    })
                },
            ),
            lazy,
        );
        if self.send(job).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            return Committed::failed(StoreError::Unavailable(
                "the database writer has stopped".into(),
            ));
        }
        committed
    }

    /// Waits until every write submitted before this call has been committed
    /// or refused, so a read that follows sees them. Free when none is pending.
    pub(crate) fn barrier(&self) {
        if self.pending.load(Ordering::SeqCst) == 0 {
            return;
        }
        let committed = Committed::<()>::pending();
        let slot = Arc::clone(&committed.slot);
        let job = Job::Barrier(Box::new(move |_| slot.put(Ok(()))));
        if self.send(job).is_ok() {
            let _ = committed.wait();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
    }
}

fn run(pool: Pool<Manager>, shared: &Shared, pending: &AtomicUsize) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    // The last batch held more than one urgent write: they linger too.
    let mut busy = false;
    loop {
        let mut q = shared.lock();
        while q.jobs.is_empty() {
            if q.closed {
                return;
            }
            q.idle = true;
            q = shared.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            q.idle = false;
        }
        // Hold the batch open for company: up to `LINGER` while only lazy
        // writes wait, up to `URGENT_LINGER` once one is urgent on a busy
        // node; an urgent write on a quiet node commits at once.
        if (q.urgent == 0 || busy) && q.jobs.len() < LINGER_BATCH && !q.closed {
            q.lingering = true;
            let mut until =
                std::time::Instant::now() + if q.urgent == 0 { LINGER } else { URGENT_LINGER };
            let mut urgent_seen = q.urgent > 0;
            while q.jobs.len() < LINGER_BATCH && !q.closed {
                if q.urgent > 0 && !urgent_seen {
                    if !busy {
                        break;
                    }
                    urgent_seen = true;
                    until = until.min(std::time::Instant::now() + URGENT_LINGER);
                }
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                q = shared
                    .ready
                    .wait_timeout(q, left)
                    .map_or_else(|p| p.into_inner().0, |(g, _)| g);
            }
            q.lingering = false;
        }
        let n = q.jobs.len().min(MAX_BATCH);
        jobs.extend(q.jobs.drain(..n));
        let urgent = jobs.iter().filter(|j| !j.is_lazy()).count();
        q.urgent -= urgent;
        busy = urgent > 1;
        drop(q);
        commit_batch(&pool, &mut jobs, pending);
        jobs.clear();
    }
}

impl Job {
    fn is_lazy(&self) -> bool {
        match self {
            Job::Write(_, lazy) => *lazy,
            Job::Record(r) => r.done.is_none(),
            Job::Barrier(_) => false,
        }
    }
}

fn fail_all(jobs: &mut Vec<Job>, e: &StoreError, pending: &AtomicUsize) {
    let mut lost = 0;
    for job in jobs.drain(..) {
        match job {
            Job::Write(w, _) => w(Err(e))(None),
            Job::Record(r) => {
                lost += 1;
                if let Some(d) = r.done {
                    d(Some(e));
                }
            }
            Job::Barrier(d) => d(None),
        }
    }
    records_done(lost, Some(e), pending);
}

/// Reports `n` run records as written (or lost with `err`).
fn records_done(n: usize, err: Option<&StoreError>, pending: &AtomicUsize) {
    if n == 0 {
        return;
    }
    if let Some(e) = err {
        tracing::warn!(error = %e, records = n, "run records were not written");
    }
    pending.fetch_sub(n, Ordering::SeqCst);
}

/// Inserts the run records collected so far, together, in a savepoint; when
/// that fails, one by one, each in its own.
fn flush_records(conn: &mut AnyConnection, records: &mut Vec<RunRecord>, done: &mut Vec<Done>) {
    if records.is_empty() {
        return;
    }
    // Moved into one slice per table: a multi-row insert takes them as they are.
    let mut counts = Vec::with_capacity(records.len());
    let mut rows = Vec::with_capacity(records.len());
    let mut waiters = Vec::with_capacity(records.len());
    let mut logs = Vec::new();
    for r in records.drain(..) {
        counts.push(r.logs.len());
        rows.push(r.row);
        logs.extend(r.logs);
        waiters.push(r.done);
    }
    let together =
        crate::conn::in_savepoint(conn, |c| crate::repo::runs::insert_runs_tx(c, &rows, &logs));
    if together.is_ok() {
        done.extend(waiters.into_iter().flatten());
        return;
    }
    let mut rest = logs.as_slice();
    for ((row, n), waiter) in rows.iter().zip(counts).zip(waiters) {
        let (own, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        let alone = crate::conn::in_savepoint(conn, |c| {
            crate::repo::runs::insert_runs_tx(c, std::slice::from_ref(row), own)
        });
        match (alone, waiter) {
            (Ok(()), Some(w)) => done.push(w),
            (Ok(()), None) => {}
            (Err(e), waiter) => {
                tracing::warn!(error = %e, run.id = %row.id, "a run record was not written");
                if let Some(w) = waiter {
                    done.push(Box::new(move |_| w(Some(&e))));
                }
            }
        }
    }
}

fn commit_batch(pool: &Pool<Manager>, jobs: &mut Vec<Job>, pending: &AtomicUsize) {
    if jobs.iter().all(|j| matches!(j, Job::Barrier(_))) {
        for j in jobs.drain(..) {
            if let Job::Barrier(d) = j {
                d(None);
            }
        }
        return;
    }
    let n = jobs.len();
    let started = std::time::Instant::now();
    let mut conn = match pool.get() {
        Ok(c) => c,
        Err(e) => {
            fail_all(jobs, &StoreError::from(e), pending);
            return;
        }
    };
    if let Err(e) = begin(&mut conn) {
        tracing::warn!(error = %e, writes = n, "cannot begin a group commit; its writes are refused");
        fail_all(jobs, &e, pending);
        return;
    }
    let mut done: Vec<Done> = Vec::with_capacity(n);
    // Run records wait here until the next other write (or the batch's end),
    // so writes still apply in arrival order.
    let mut records: Vec<RunRecord> = Vec::new();
    let mut n_records = 0;
    for job in jobs.drain(..) {
        match job {
            Job::Record(r) => {
                records.push(*r);
                n_records += 1;
            }
            Job::Write(w, _) => {
                flush_records(&mut conn, &mut records, &mut done);
                done.push(w(Ok(&mut *conn)));
            }
            Job::Barrier(d) => {
                flush_records(&mut conn, &mut records, &mut done);
                done.push(d);
            }
        }
    }
    flush_records(&mut conn, &mut records, &mut done);
    let committed = AnyConnection::commit_transaction(&mut *conn).map_err(StoreError::from);
    if let Err(e) = &committed {
        tracing::error!(error = %e, writes = n, "group commit failed; its writes are refused");
        let _ = AnyConnection::rollback_transaction(&mut *conn);
    }
    drop(conn);
    let err = committed.err();
    for d in done {
        d(err.as_ref());
    }
    records_done(n_records, err.as_ref(), pending);
    tracing::trace!(
        writes = n,
        elapsed_us = started.elapsed().as_micros() as u64,
        "group commit"
    );
}

/// `BEGIN IMMEDIATE` on SQLite (the write lock up front), `BEGIN` on PostgreSQL.
fn begin(conn: &mut AnyConnection) -> Result<()> {
    match conn {
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
        AnyConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Count {
        fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn poll<F: Future + Unpin>(f: &mut F, w: &Arc<Count>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::clone(w));
        Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    /// Puts `v` into the write's slot from another thread, as the writer does.
    fn commit_elsewhere(c: &Committed<u32>, v: u32) {
        let slot = Arc::clone(&c.slot);
        std::thread::spawn(move || slot.put(Ok(v)))
            .join()
            .expect("writer thread");
    }

    #[test]
    fn commits_wake_the_waiters_of_a_hub_thread_through_one_hub_wake_up() {
        let mut hub = crate::wake_hub().expect("no hub runs on this thread yet");
        assert!(crate::wake_hub().is_none(), "one hub per thread");
        let hub_task = Arc::new(Count::default());
        assert!(poll(&mut hub, &hub_task).is_pending());

        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (mut first, mut second) = (Committed::<u32>::pending(), Committed::<u32>::pending());
        assert!(poll(&mut first, &a).is_pending());
        assert!(poll(&mut second, &b).is_pending());
        commit_elsewhere(&first, 1);
        commit_elsewhere(&second, 2);
        // The writer woke the hub once for both; the waiters wait for it.
        assert_eq!(hub_task.get(), 1);
        assert_eq!((a.get(), b.get()), (0, 0));
        assert!(poll(&mut hub, &hub_task).is_pending());
        assert_eq!((a.get(), b.get()), (1, 1));
        assert!(matches!(poll(&mut first, &a), Poll::Ready(Ok(1))));
        assert!(matches!(poll(&mut second, &b), Poll::Ready(Ok(2))));

        // A write still waited for when the hub ends is woken all the same,
        // and so is one awaited after; the thread may start a hub again.
        let (c, d) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let mut third = Committed::<u32>::pending();
        assert!(poll(&mut third, &c).is_pending());
        commit_elsewhere(&third, 3);
        assert_eq!(hub_task.get(), 2);
        drop(hub);
        assert_eq!(
            c.get(),
            1,
            "the hub's held wake-ups are delivered when it ends"
        );
        let mut fourth = Committed::<u32>::pending();
        assert!(poll(&mut fourth, &d).is_pending());
        commit_elsewhere(&fourth, 4);
        assert_eq!(
            d.get(),
            1,
            "without a hub the writer wakes the waiter itself"
        );
        assert!(crate::wake_hub().is_some());
    }

    #[test]
    fn waiters_on_threads_without_a_hub_are_woken_by_the_writer() {
        let w = Arc::new(Count::default());
        let mut c = Committed::<u32>::pending();
        assert!(poll(&mut c, &w).is_pending());
        commit_elsewhere(&c, 7);
        assert_eq!(w.get(), 1);
        assert!(matches!(poll(&mut c, &w), Poll::Ready(Ok(7))));
    }
}
