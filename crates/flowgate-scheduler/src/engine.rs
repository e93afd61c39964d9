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
use std::collections::{BinaryHeap, HashMap};
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

    /// The latest recorded due time of `flow`, any state.
    fn latest_tick(&self, flow: &str) -> flowgate_core::Result<Option<i64>>;

    /// Sets the run id of a dispatched tick (after [`Dispatcher::dispatch`]).
    fn attach_run(&self, flow: &str, due_at_ms: i64, run_id: &str) -> flowgate_core::Result<()>;
}

/// Starts runs. Blocking; called from `spawn_blocking`.
pub trait Dispatcher: Send + Sync {
    /// Whether a run of `flow` is queued or running (for `overlap = "skip"`).
    fn is_running(&self, flow: &str) -> flowgate_core::Result<bool>;

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
        let run = tokio::task::spawn_blocking(move || {
            let mut failed = Vec::new();
            for job in batch {
                if let Outcome::StoreFailed = execute_one(&*store, &*dispatcher, &job) {
                    failed.push((job.slot, job.due_ms));
                }
            }
            failed
        });
        match run.await {
            Ok(failed) => failed,
            Err(err) => {
                tracing::error!(error = %err, "schedule batch panicked");
                Vec::new()
            }
        }
    }
}

fn execute_one<S: TickStore + ?Sized, D: Dispatcher + ?Sized>(
    store: &S,
    dispatcher: &D,
    job: &Job,
) -> Outcome {
    let mut state = job.state;
    if state == TickState::Dispatched && job.overlap == Overlap::Skip {
        match dispatcher.is_running(&job.flow) {
            Ok(true) => state = TickState::SkippedOverlap,
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(flow.name = %job.flow, error = %err, "cannot tell whether the flow runs; dispatching")
            }
        }
    }
    match store.insert_tick(&job.flow, job.due_ms, state, None) {
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
