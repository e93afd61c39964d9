//! The scheduler loop: storage and run dispatch are traits the engine implements.
//!
//! Each wake-up: every entry whose next due time has come is [`plan`](crate::plan)ned
//! from its cursor (the last due time this node handled), and each planned tick is
//! executed on a blocking thread: `overlap = "skip"` turns a dispatch into
//! `skipped_overlap` when [`Dispatcher::is_running`]; [`TickStore::insert_tick`]
//! records it, and only when that insert wins (`true`) does this node dispatch and
//! then [`TickStore::attach_run`]. Two nodes sharing one database therefore fire
//! each `(flow, due_at)` once.
//!
//! Entries come through a `watch` channel. On the first snapshot each entry's
//! cursor is read from the store (so downtime is handled by the misfire policy);
//! entries added later start at "now". Entries are kept in a binary heap by next
//! due time, so a wake-up costs O(due · log n), not a scan of all entries; the
//! sleep is capped (default 1 s) so shutdown and changes are seen promptly.
//!
//! A failed insert (store down) rewinds the entry's cursor and retries after a
//! second; once the due time is older than the misfire grace it follows the
//! misfire policy. A failed dispatch is logged; its tick stays recorded as
//! dispatched without a run id.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flowgate_core::manifest::Overlap;
use tokio::sync::watch;

use crate::tick::{plan_with, PlanLimits, ScheduleEntry, TickState};

/// Where ticks are recorded. Blocking; called from `spawn_blocking`.
pub trait TickStore: Send + Sync {
    /// Records a tick. Returns `false` when `(flow, due_at_ms)` is already recorded
    /// (another node won), `true` when this call inserted it.
    fn insert_tick(
        &self,
        flow: &str,
        due_at_ms: i64,
        state: TickState,
        run_id: Option<String>,
    ) -> flowgate_core::Result<bool>;

    /// Records many ticks, as [`Self::insert_tick`] does each, and returns
    /// their results in order. A store may commit them together: one due time
    /// of hundreds of schedules is then one transaction, not hundreds.
    fn insert_ticks(&self, ticks: &[TickRequest<'_>]) -> Vec<flowgate_core::Result<bool>> {
        ticks
            .iter()
            .map(|t| self.insert_tick(t.flow, t.due_at_ms, t.state, None))
            .collect()
    }

    /// The latest recorded due time of `flow`, any state.
    fn latest_tick(&self, flow: &str) -> flowgate_core::Result<Option<i64>>;

    /// Sets the run id of a dispatched tick (after [`Dispatcher::dispatch`]).
    fn attach_run(&self, flow: &str, due_at_ms: i64, run_id: &str) -> flowgate_core::Result<()>;
}

/// One tick to record (see [`TickStore::insert_ticks`]).
#[derive(Debug, Clone, Copy)]
pub struct TickRequest<'a> {
    /// The flow.
    pub flow: &'a str,
    /// Its due time.
    pub due_at_ms: i64,
    /// Dispatched, or skipped (overlap, misfire).
    pub state: TickState,
}

/// Starts runs. Blocking; called from `spawn_blocking`.
pub trait Dispatcher: Send + Sync {
    /// Whether a run of `flow` is queued or running (for `overlap = "skip"`).
    fn is_running(&self, flow: &str) -> flowgate_core::Result<bool>;

    /// Which of `flows` have a run queued or running, as [`Self::is_running`]
    /// tells each. A store answers it with one read for a whole due time.
    fn running_of(&self, flows: &[&str]) -> flowgate_core::Result<HashSet<String>> {
        let mut out = HashSet::new();
        for f in flows {
            if self.is_running(f)? {
                out.insert((*f).to_owned());
            }
        }
        Ok(out)
    }

    /// Durably queues a schedule run of `flow` at `version` for `due_at_ms`
    /// (`trigger.scheduled_at`); returns the run id. With `overlap = "queue"` it
    /// is called while a run may still be running; the queue orders them.
    fn dispatch(&self, flow: &str, version: i64, due_at_ms: i64) -> flowgate_core::Result<String>;
}

/// Source of "now" for the loop.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Tuning of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Longest sleep between wake-ups (default 1 s).
    pub max_sleep: Duration,
    /// Retry delay after a store error (default 1 s).
    pub retry_after: Duration,
    /// Misfire grace and record bound.
    pub limits: PlanLimits,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_sleep: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
            limits: PlanLimits::default(),
        }
    }
}

/// The schedule loop of one node.
pub struct Scheduler<S, D> {
    store: Arc<S>,
    dispatcher: Arc<D>,
    clock: Arc<dyn Clock>,
    config: SchedulerConfig,
}

/// Per-entry state.
struct Slot {
    entry: ScheduleEntry,
    /// Every due time `<= cursor_ms` has been handled by this node (or lost to another).
    cursor_ms: i64,
    /// The wake-up registered in the heap for this slot; other heap items are stale.
    wake_ms: Option<i64>,
}

/// One tick to execute.
struct Job {
    slot: usize,
    flow: String,
    version: i64,
    due_ms: i64,
    state: TickState,
    overlap: Overlap,
}

/// What happened to a job.
enum Outcome {
    Recorded,
    Lost,
    StoreFailed,
}

type Key = (String, String, chrono_tz::Tz);

fn key_of(e: &ScheduleEntry) -> Key {
    (e.flow.clone(), e.spec.expr().to_string(), e.spec.timezone())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl<S: TickStore + 'static, D: Dispatcher + 'static> Scheduler<S, D> {
    /// A scheduler with the system clock and default config.
    pub fn new(store: Arc<S>, dispatcher: Arc<D>) -> Self {
        Scheduler {
            store,
            dispatcher,
            clock: Arc::new(SystemClock),
            config: SchedulerConfig::default(),
        }
    }

    /// Replaces the config.
    pub fn with_config(mut self, config: SchedulerConfig) -> Self {
        self.config = config;
        self
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Runs until `shutdown` becomes `true` (or its sender is dropped). A new value
    /// on `entries` replaces the set of schedules (publish, rollback, disable).
    pub async fn run(
        self,
        mut entries: watch::Receiver<Arc<Vec<ScheduleEntry>>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut slots: Vec<Slot> = Vec::new();
        let mut heap: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
        let initial = entries.borrow_and_update().clone();
        self.load_initial(&initial, &mut slots, &mut heap).await;
        let mut entries_open = true;
        tracing::info!(schedules = slots.len(), "scheduler started");

        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = self.clock.now();
            let now_ms = ms(now);
            let mut batch = Vec::new();
            while let Some(&Reverse((wake_ms, idx))) = heap.peek() {
                if wake_ms > now_ms {
                    break;
                }
                heap.pop();
                let Some(slot) = slots.get_mut(idx) else {
                    continue;
                };
                if slot.wake_ms != Some(wake_ms) {
                    continue;
                }
                let (ticks, older) =
                    plan_with(&slot.entry, Some(slot.cursor_ms), now, &self.config.limits);
                if older {
                    tracing::warn!(
                        flow.name = %slot.entry.flow,
                        max = self.config.limits.max_misfire_records,
                        "older missed schedule ticks not recorded"
                    );
                }
                for t in ticks {
                    batch.push(Job {
                        slot: idx,
                        flow: slot.entry.flow.clone(),
                        version: slot.entry.version,
                        due_ms: t.due_at_ms(),
                        state: t.state,
                        overlap: slot.entry.overlap,
                    });
                }
                slot.cursor_ms = slot.cursor_ms.max(now_ms);
                slot.wake_ms = slot.entry.spec.next_after(now).map(ms);
                if let Some(w) = slot.wake_ms {
                    heap.push(Reverse((w, idx)));
                }
            }
            if !batch.is_empty() {
                let failed = self.execute(batch).await;
                let retry =
                    now_ms + i64::try_from(self.config.retry_after.as_millis()).unwrap_or(1000);
                for (idx, due_ms) in failed {
                    if let Some(slot) = slots.get_mut(idx) {
                        slot.cursor_ms = slot.cursor_ms.min(due_ms - 1);
                        if slot.wake_ms.is_none_or(|w| w > retry) {
                            slot.wake_ms = Some(retry);
                            heap.push(Reverse((retry, idx)));
                        }
                    }
                }
            }

            let now_ms = ms(self.clock.now());
            let until_next = heap
                .peek()
                .map(|Reverse((w, _))| u64::try_from(w - now_ms).unwrap_or(0))
                .map(Duration::from_millis);
            let sleep = until_next
                .unwrap_or(self.config.max_sleep)
                .min(self.config.max_sleep);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                changed = entries.changed(), if entries_open => {
                    match changed {
                        Ok(()) => {
                            let next = entries.borrow_and_update().clone();
                            self.reload(&next, &mut slots, &mut heap);
                            tracing::info!(schedules = slots.len(), "schedules reloaded");
                        }
                        Err(_) => entries_open = false,
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        tracing::info!("scheduler stopped");
    }

    /// First snapshot: cursors come from the store.
    async fn load_initial(
        &self,
        entries: &Arc<Vec<ScheduleEntry>>,
        slots: &mut Vec<Slot>,
        heap: &mut BinaryHeap<Reverse<(i64, usize)>>,
    ) {
        let store = Arc::clone(&self.store);
        let list = Arc::clone(entries);
        let latest: Vec<Option<i64>> = tokio::task::spawn_blocking(move || {
            list.iter()
                .map(|e| match store.latest_tick(&e.flow) {
                    Ok(v) => v,
                    Err(err) => {
                        tracing::warn!(flow.name = %e.flow, error = %err, "cannot read last tick");
                        None
                    }
                })
                .collect()
        })
        .await
        .unwrap_or_else(|err| {
            tracing::error!(error = %err, "reading last ticks failed");
            Vec::new()
        });
        let now = self.clock.now();
        slots.clear();
        heap.clear();
        for (i, e) in entries.iter().enumerate() {
            let last = latest.get(i).copied().flatten();
            let (cursor_ms, wake_ms) = match last {
                // Plan immediately: catches up missed ticks per the misfire policy.
                Some(l) => (l, Some(ms(now))),
                None => (ms(now), e.spec.next_after(now).map(ms)),
            };
            if let Some(w) = wake_ms {
                heap.push(Reverse((w, slots.len())));
            }
            slots.push(Slot {
                entry: e.clone(),
                cursor_ms,
                wake_ms,
            });
        }
    }

    /// Later snapshots: unchanged schedules keep their cursor; new ones start now.
    fn reload(
        &self,
        entries: &[ScheduleEntry],
        slots: &mut Vec<Slot>,
        heap: &mut BinaryHeap<Reverse<(i64, usize)>>,
    ) {
        let mut old: HashMap<Key, Slot> = slots.drain(..).map(|s| (key_of(&s.entry), s)).collect();
        heap.clear();
        let now = self.clock.now();
        for e in entries {
            let (cursor_ms, wake_ms) = match old.remove(&key_of(e)) {
                Some(s) => (s.cursor_ms, s.wake_ms),
                None => (ms(now), e.spec.next_after(now).map(ms)),
            };
            if let Some(w) = wake_ms {
                heap.push(Reverse((w, slots.len())));
            }
            slots.push(Slot {
                entry: e.clone(),
                cursor_ms,
                wake_ms,
            });
        }
    }

    /// Executes jobs on a blocking thread; returns the `(slot, due_ms)` whose
    /// insert failed.
    async fn execute(&self, batch: Vec<Job>) -> Vec<(usize, i64)> {
        let store = Arc::clone(&self.store);
        let dispatcher = Arc::clone(&self.dispatcher);
        let run = tokio::task::spawn_blocking(move || execute_all(&*store, &*dispatcher, &batch));
        match run.await {
            Ok(failed) => failed,
            Err(err) => {
                tracing::error!(error = %err, "schedule batch panicked");
                Vec::new()
            }
        }
    }
}

/// Records the ticks of a batch together, then starts the runs of those this
/// node won; returns the `(slot, due_ms)` whose insert failed.
fn execute_all<S: TickStore + ?Sized, D: Dispatcher + ?Sized>(
    store: &S,
    dispatcher: &D,
    batch: &[Job],
) -> Vec<(usize, i64)> {
    let asks: Vec<&str> = batch
        .iter()
        .filter(|j| j.state == TickState::Dispatched && j.overlap == Overlap::Skip)
        .map(|j| j.flow.as_str())
        .collect();
    let running = if asks.is_empty() {
        Ok(HashSet::new())
    } else {
        dispatcher.running_of(&asks)
    };
    if let Err(err) = &running {
        tracing::warn!(error = %err, "cannot tell which flows run; dispatching");
    }
    let requests: Vec<TickRequest<'_>> = batch
        .iter()
        .map(|job| TickRequest {
            flow: &job.flow,
            due_at_ms: job.due_ms,
            state: state_of(running.as_ref().ok(), job),
        })
        .collect();
    let results = store.insert_ticks(&requests);
    let mut failed = Vec::new();
    for ((job, req), result) in batch.iter().zip(&requests).zip(results) {
        if let Outcome::StoreFailed = finish_one(store, dispatcher, job, req.state, result) {
            failed.push((job.slot, job.due_ms));
        }
    }
    failed
}

/// The state a due tick is recorded in: skipped when the flow's last run still
/// runs and the schedule says `overlap = "skip"`.
fn state_of(running: Option<&HashSet<String>>, job: &Job) -> TickState {
    if job.state == TickState::Dispatched
        && job.overlap == Overlap::Skip
        && running.is_some_and(|r| r.contains(&job.flow))
    {
        return TickState::SkippedOverlap;
    }
    job.state
}

/// After a tick's insert: starts its run when this node recorded it.
fn finish_one<S: TickStore + ?Sized, D: Dispatcher + ?Sized>(
    store: &S,
    dispatcher: &D,
    job: &Job,
    state: TickState,
    inserted: flowgate_core::Result<bool>,
) -> Outcome {
    match inserted {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(flow.name = %job.flow, due_at_ms = job.due_ms, "tick taken by another node");
            return Outcome::Lost;
        }
        Err(err) => {
            tracing::warn!(flow.name = %job.flow, due_at_ms = job.due_ms, error = %err, "cannot record tick; will retry");
            return Outcome::StoreFailed;
        }
    }
    tracing::debug!(flow.name = %job.flow, due_at_ms = job.due_ms, state = state.as_str(), "tick recorded");
    if state == TickState::Dispatched {
        match dispatcher.dispatch(&job.flow, job.version, job.due_ms) {
            Ok(run_id) => {
                if let Err(err) = store.attach_run(&job.flow, job.due_ms, &run_id) {
                    tracing::warn!(flow.name = %job.flow, run.id = %run_id, error = %err, "cannot attach run to tick");
                }
            }
            Err(err) => {
                tracing::error!(flow.name = %job.flow, due_at_ms = job.due_ms, error = %err, "schedule dispatch failed")
            }
        }
    }
    Outcome::Recorded
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::CronSpec;
    use flowgate_core::manifest::Misfire;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    type TickRows = BTreeMap<(String, i64), (TickState, Option<String>)>;

    /// A tick table with the `(flow, due_at)` unique key, shareable between nodes.
    #[derive(Default)]
    struct MemStore {
        ticks: Mutex<TickRows>,
        fail_inserts: AtomicUsize,
    }

    impl TickStore for MemStore {
        fn insert_tick(
            &self,
            flow: &str,
            due_at_ms: i64,
            state: TickState,
            run_id: Option<String>,
        ) -> flowgate_core::Result<bool> {
            if self
                .fail_inserts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(flowgate_core::Error::Unavailable("db down".into()));
            }
            let mut t = self.ticks.lock().unwrap();
            let key = (flow.to_string(), due_at_ms);
            if t.contains_key(&key) {
                return Ok(false);
            }
            t.insert(key, (state, run_id));
            Ok(true)
        }

        fn latest_tick(&self, flow: &str) -> flowgate_core::Result<Option<i64>> {
            let t = self.ticks.lock().unwrap();
            Ok(t.keys().filter(|(f, _)| f == flow).map(|(_, d)| *d).max())
        }

        fn attach_run(
            &self,
            flow: &str,
            due_at_ms: i64,
            run_id: &str,
        ) -> flowgate_core::Result<()> {
            let mut t = self.ticks.lock().unwrap();
            match t.get_mut(&(flow.to_string(), due_at_ms)) {
                Some(row) => {
                    row.1 = Some(run_id.to_string());
                    Ok(())
                }
                None => Err(flowgate_core::Error::NotFound("tick".into())),
            }
        }
    }

    impl MemStore {
        fn rows(&self) -> Vec<(String, i64, TickState, Option<String>)> {
            let t = self.ticks.lock().unwrap();
            t.iter()
                .map(|((f, d), (s, r))| (f.clone(), *d, *s, r.clone()))
                .collect()
        }

        fn with_state(&self, state: TickState) -> Vec<i64> {
            self.rows()
                .into_iter()
                .filter(|r| r.2 == state)
                .map(|r| r.1)
                .collect()
        }
    }

    #[derive(Default)]
    struct RecordingDispatcher {
        calls: Mutex<Vec<(String, i64, i64)>>,
        running: AtomicBool,
    }

    impl Dispatcher for RecordingDispatcher {
        fn is_running(&self, _flow: &str) -> flowgate_core::Result<bool> {
            Ok(self.running.load(Ordering::SeqCst))
        }

        fn dispatch(
            &self,
            flow: &str,
            version: i64,
            due_at_ms: i64,
        ) -> flowgate_core::Result<String> {
            let mut c = self.calls.lock().unwrap();
            c.push((flow.to_string(), version, due_at_ms));
            Ok(format!("run-{}", c.len()))
        }
    }

    impl RecordingDispatcher {
        fn dues(&self) -> Vec<i64> {
            self.calls.lock().unwrap().iter().map(|c| c.2).collect()
        }
    }

    /// A clock the test moves by hand.
    struct ManualClock(Mutex<DateTime<Utc>>);

    impl ManualClock {
        fn at(s: &str) -> Arc<ManualClock> {
            Arc::new(ManualClock(Mutex::new(utc(s))))
        }
        fn set(&self, s: &str) {
            *self.0.lock().unwrap() = utc(s);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn entry(flow: &str, cron: &str, overlap: Overlap, misfire: Misfire) -> ScheduleEntry {
        ScheduleEntry {
            flow: flow.into(),
            version: 7,
            spec: CronSpec::parse(cron, "UTC").unwrap(),
            overlap,
            misfire,
        }
    }

    fn fast() -> SchedulerConfig {
        SchedulerConfig {
            max_sleep: Duration::from_millis(20),
            ..SchedulerConfig::default()
        }
    }

    async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    type Channels = (
        watch::Sender<Arc<Vec<ScheduleEntry>>>,
        watch::Receiver<Arc<Vec<ScheduleEntry>>>,
        watch::Sender<bool>,
        watch::Receiver<bool>,
    );

    fn channels(entries: Vec<ScheduleEntry>) -> Channels {
        let (etx, erx) = watch::channel(Arc::new(entries));
        let (stx, srx) = watch::channel(false);
        (etx, erx, stx, srx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_fire_each_second_once() {
        let store = Arc::new(MemStore::default());
        let disp = Arc::new(RecordingDispatcher::default());
        let (_etx, erx, stx, srx) = channels(vec![entry(
            "tick",
            "* * * * * *",
            Overlap::Queue,
            Misfire::Skip,
        )]);
        let start = Utc::now();
        let a = tokio::spawn(
            Scheduler::new(Arc::clone(&store), Arc::clone(&disp)).run(erx.clone(), srx.clone()),
        );
        let b = tokio::spawn(Scheduler::new(Arc::clone(&store), Arc::clone(&disp)).run(erx, srx));
        tokio::time::sleep(Duration::from_millis(3200)).await;
        stx.send(true).unwrap();
        a.await.unwrap();
        b.await.unwrap();
        let end = Utc::now();

        let mut dues = disp.dues();
        let n = dues.len();
        dues.sort();
        dues.dedup();
        assert_eq!(
            dues.len(),
            n,
            "a due time was dispatched twice: {:?}",
            disp.dues()
        );
        assert!((3..=4).contains(&n), "expected 3 or 4 dispatches, got {n}");
        for w in dues.windows(2) {
            assert_eq!(w[1] - w[0], 1000, "not one per second: {dues:?}");
        }
        for d in &dues {
            assert!(*d > start.timestamp_millis() && *d <= end.timestamp_millis());
            assert_eq!(d % 1000, 0);
        }
        let rows = store.rows();
        assert_eq!(rows.len(), n);
        for r in rows {
            assert_eq!(r.2, TickState::Dispatched);
            assert!(r.3.is_some(), "run id attached");
        }
        assert!(disp.calls.lock().unwrap().iter().all(|c| c.1 == 7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overlap_skip_records_skipped_ticks_and_queue_dispatches() {
        let store = Arc::new(MemStore::default());
        let disp = Arc::new(RecordingDispatcher::default());
        disp.running.store(true, Ordering::SeqCst);
        let clock = ManualClock::at("2026-05-01T10:00:00.500Z");
        let (_etx, erx, stx, srx) = channels(vec![
            entry("skipper", "* * * * * *", Overlap::Skip, Misfire::Skip),
            entry("queuer", "* * * * * *", Overlap::Queue, Misfire::Skip),
        ]);
        let task = tokio::spawn(
            Scheduler::new(Arc::clone(&store), Arc::clone(&disp))
                .with_config(fast())
                .with_clock(clock.clone())
                .run(erx, srx),
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        clock.set("2026-05-01T10:00:01.100Z");
        wait_until("first ticks", || store.rows().len() == 2).await;
        clock.set("2026-05-01T10:00:02.100Z");
        wait_until("second ticks", || store.rows().len() == 4).await;
        stx.send(true).unwrap();
        task.await.unwrap();

        let rows = store.rows();
        let skipped: Vec<_> = rows
            .iter()
            .filter(|r| r.0 == "skipper")
            .map(|r| (r.1, r.2))
            .collect();
        assert_eq!(
            skipped,
            [
                (
                    utc("2026-05-01T10:00:01Z").timestamp_millis(),
                    TickState::SkippedOverlap
                ),
                (
                    utc("2026-05-01T10:00:02Z").timestamp_millis(),
                    TickState::SkippedOverlap
                ),
            ]
        );
        let calls = disp.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2);
        assert!(calls.iter().all(|c| c.0 == "queuer"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn startup_after_downtime_follows_misfire_policy() {
        let store = Arc::new(MemStore::default());
        let last = utc("2026-05-01T10:00:00Z").timestamp_millis();
        store
            .insert_tick("once", last, TickState::Dispatched, None)
            .unwrap();
        store
            .insert_tick("skip", last, TickState::Dispatched, None)
            .unwrap();
        let disp = Arc::new(RecordingDispatcher::default());
        let clock = ManualClock::at("2026-05-01T10:04:30Z");
        let (_etx, erx, stx, srx) = channels(vec![
            entry("once", "0 * * * * *", Overlap::Skip, Misfire::RunOnce),
            entry("skip", "0 * * * * *", Overlap::Skip, Misfire::Skip),
        ]);
        let task = tokio::spawn(
            Scheduler::new(Arc::clone(&store), Arc::clone(&disp))
                .with_config(fast())
                .with_clock(clock)
                .run(erx, srx),
        );
        wait_until("catch-up", || store.rows().len() == 10).await;
        stx.send(true).unwrap();
        task.await.unwrap();
        let m = |s: &str| utc(s).timestamp_millis();
        assert_eq!(
            disp.calls.lock().unwrap().clone(),
            [("once".to_string(), 7, m("2026-05-01T10:04:00Z"))]
        );
        let rows = store.rows();
        let states = |flow: &str| -> Vec<TickState> {
            rows.iter()
                .filter(|r| r.0 == flow && r.1 > last)
                .map(|r| r.2)
                .collect()
        };
        use TickState::*;
        assert_eq!(
            states("once"),
            [SkippedMisfire, SkippedMisfire, SkippedMisfire, Dispatched]
        );
        assert_eq!(states("skip"), [SkippedMisfire; 4]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn store_errors_are_retried_then_become_misfires() {
        let store = Arc::new(MemStore::default());
        let disp = Arc::new(RecordingDispatcher::default());
        let clock = ManualClock::at("2026-05-01T10:00:00.200Z");
        let (_etx, erx, stx, srx) = channels(vec![entry(
            "retry",
            "0 * * * * *",
            Overlap::Skip,
            Misfire::Skip,
        )]);
        let task = tokio::spawn(
            Scheduler::new(Arc::clone(&store), Arc::clone(&disp))
                .with_config(fast())
                .with_clock(clock.clone())
                .run(erx, srx),
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        // 10:01 is due; the store is down for the first attempt only.
        store.fail_inserts.store(1, Ordering::SeqCst);
        clock.set("2026-05-01T10:01:00.100Z");
        wait_until("failed attempt", || {
            store.fail_inserts.load(Ordering::SeqCst) == 0
        })
        .await;
        assert!(store.rows().is_empty());
        clock.set("2026-05-01T10:01:01.300Z");
        wait_until("retried tick", || store.rows().len() == 1).await;
        assert_eq!(
            disp.dues(),
            [utc("2026-05-01T10:01:00Z").timestamp_millis()]
        );

        // 10:02 is due and the store stays down past the grace: recorded as a misfire.
        store.fail_inserts.store(usize::MAX, Ordering::SeqCst);
        clock.set("2026-05-01T10:02:00.100Z");
        tokio::time::sleep(Duration::from_millis(100)).await;
        store.fail_inserts.store(0, Ordering::SeqCst);
        clock.set("2026-05-01T10:02:09Z");
        wait_until("misfire record", || store.rows().len() == 2).await;
        stx.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(
            store.with_state(TickState::SkippedMisfire),
            [utc("2026-05-01T10:02:00Z").timestamp_millis()]
        );
        assert_eq!(disp.dues().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_entries_start_now_and_removed_ones_stop() {
        let store = Arc::new(MemStore::default());
        // An old tick must not make a newly added schedule catch up.
        store
            .insert_tick(
                "later",
                utc("2026-05-01T09:00:00Z").timestamp_millis(),
                TickState::Dispatched,
                None,
            )
            .unwrap();
        let disp = Arc::new(RecordingDispatcher::default());
        let clock = ManualClock::at("2026-05-01T10:00:30Z");
        let (etx, erx, stx, srx) = channels(vec![entry(
            "first",
            "0 * * * * *",
            Overlap::Skip,
            Misfire::Skip,
        )]);
        let task = tokio::spawn(
            Scheduler::new(Arc::clone(&store), Arc::clone(&disp))
                .with_config(fast())
                .with_clock(clock.clone())
                .run(erx, srx),
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        etx.send(Arc::new(vec![entry(
            "later",
            "0 * * * * *",
            Overlap::Skip,
            Misfire::RunOnce,
        )]))
        .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        clock.set("2026-05-01T10:01:00.050Z");
        wait_until("new schedule fires", || !disp.dues().is_empty()).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        stx.send(true).unwrap();
        task.await.unwrap();
        let calls = disp.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            [(
                "later".to_string(),
                7,
                utc("2026-05-01T10:01:00Z").timestamp_millis()
            )]
        );
        assert_eq!(store.rows().len(), 2, "{:?}", store.rows());
    }

    #[tokio::test]
    async fn dropped_shutdown_sender_stops_the_loop() {
        let store = Arc::new(MemStore::default());
        let disp = Arc::new(RecordingDispatcher::default());
        let (_etx, erx, stx, srx) = channels(Vec::new());
        let task = tokio::spawn(
            Scheduler::new(store, disp)
                .with_config(fast())
                .run(erx, srx),
        );
        drop(stx);
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("loop stopped")
            .unwrap();
    }
}
