//! Cron schedules on the running server: the scheduler loop of
//! `flowgate-scheduler` over the store and the durable run queue.
//!
//! * Entries are the schedule triggers of the live versions of enabled flows.
//!   They are rebuilt every second (and right away after a publish, rollback,
//!   retire or disable on this node, see [`Engine::schedules_changed`]), so a new
//!   live version fires from the next tick and a retired or disabled flow stops.
//! * A due tick is recorded together with its queued run in one transaction
//!   ([`Store::insert_tick`]): the `(flow, due_at)` unique key lets exactly one
//!   node win, and only the winner's run exists. The scheduler's
//!   [`Dispatcher::dispatch`] then only hands over the id of the run queued with
//!   the tick and wakes the queue workers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate_core::run::TriggerKind;
use flowgate_core::{FlowName, RunId};
use flowgate_scheduler::{Dispatcher, ScheduleEntry, Scheduler, TickRequest, TickState, TickStore};
use flowgate_store::{Run, Store, Tick};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Engine;

/// How often the set of schedules is rebuilt from the store.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// What a live version's schedule needs to queue a run.
#[derive(Debug, Clone)]
struct LiveSchedule {
    version: u32,
    max_attempts: u32,
}

/// The scheduler's [`TickStore`] and [`Dispatcher`] over the store and the queue.
pub struct StoreBackend {
    store: Store,
    engine: Option<Engine>,
    /// Flow → its live schedule, as of the last refresh.
    live: Mutex<HashMap<String, LiveSchedule>>,
    /// Runs queued with a won tick, handed to `dispatch` right after.
    pending: Mutex<HashMap<(String, i64), RunId>>,
}

fn internal(msg: impl Into<String>) -> flowgate_core::Error {
    flowgate_core::Error::Internal(msg.into())
}

fn flow_name(flow: &str) -> flowgate_core::Result<FlowName> {
    FlowName::parse(flow).map_err(|e| flowgate_core::Error::Invalid(e.to_string()))
}

fn store_state(s: TickState) -> flowgate_store::TickState {
    match s {
        TickState::Dispatched => flowgate_store::TickState::Dispatched,
        TickState::SkippedOverlap => flowgate_store::TickState::SkippedOverlap,
        TickState::SkippedMisfire => flowgate_store::TickState::SkippedMisfire,
    }
}

impl StoreBackend {
    /// A backend on `store`; `engine` (when given) is woken after each dispatch.
    pub fn new(store: Store, engine: Option<Engine>) -> Self {
        Self {
            store,
            engine,
            live: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn set_live(&self, live: HashMap<String, LiveSchedule>) {
        if let Ok(mut l) = self.live.lock() {
            *l = live;
        }
    }

    fn live_of(&self, flow: &str) -> Option<LiveSchedule> {
        self.live.lock().ok().and_then(|l| l.get(flow).cloned())
    }

    /// The queued run of a schedule tick: `request` null, `caller` and
    /// `trigger` of kind `schedule`, `trigger.scheduled_at` the due time.
    fn schedule_run(flow: &FlowName, live: &LiveSchedule, due_at_ms: i64) -> Run {
        let mut run = Run::queued(
            flow.clone(),
            live.version,
            TriggerKind::Schedule,
            serde_json::Value::Null,
            live.max_attempts,
            flowgate_core::now_ms(),
        );
        run.input = json!({
            "request": null,
            "caller": {"kind": "schedule", "id": flow.as_str(), "scopes": []},
            "trigger": {"kind": "schedule", "scheduled_at": flowgate_core::rfc3339(due_at_ms)},
            "request_id": run.id.to_string(),
        });
        run.scheduled_at = Some(due_at_ms);
        run
    }
}

/// A tick ready to store, with the run it queues (`None`: a skipped tick).
struct PreparedTick {
    tick: Tick,
    run: Option<Run>,
}

impl StoreBackend {
    fn prepare_tick(
        &self,
        flow: &str,
        due_at_ms: i64,
        state: TickState,
    ) -> flowgate_core::Result<PreparedTick> {
        let name = flow_name(flow)?;
        let run = if state == TickState::Dispatched {
            let Some(live) = self.live_of(flow) else {
                // Disabled or unpublished since planning: record nothing, the
                // next refresh drops the entry.
                return Err(flowgate_core::Error::NotFound(format!(
                    "no live schedule for flow `{flow}`"
                )));
            };
            Some(Self::schedule_run(&name, &live, due_at_ms))
        } else {
            None
        };
        let tick = Tick {
            flow: name,
            due_at: due_at_ms,
            state: store_state(state),
            run_id: run.as_ref().map(|r| r.id),
            created_at: flowgate_core::now_ms(),
            node: self.engine.as_ref().map(|e| e.node_id().to_owned()),
        };
        Ok(PreparedTick { tick, run })
    }

    /// Notes a recorded tick: the run it queued waits for `dispatch`.
    fn recorded(&self, p: PreparedTick, state: TickState, won: bool) -> bool {
        if won {
            if let Some(r) = p.run {
                if let Ok(mut pending) = self.pending.lock() {
                    pending.insert((p.tick.flow.to_string(), p.tick.due_at), r.id);
                }
                metrics::counter!("flowgate_runs_enqueued_total", "flow" => p.tick.flow.to_string())
                    .increment(1);
            }
        }
        metrics::counter!("flowgate_schedule_ticks_total", "state" => state.as_str(), "won" => if won { "true" } else { "false" })
            .increment(1);
        won
    }
}

impl TickStore for StoreBackend {
    fn insert_tick(
        &self,
        flow: &str,
        due_at_ms: i64,
        state: TickState,
        _run_id: Option<String>,
    ) -> flowgate_core::Result<bool> {
        let p = self.prepare_tick(flow, due_at_ms, state)?;
        let won = self.store.insert_tick(&p.tick, p.run.as_ref())?;
        Ok(self.recorded(p, state, won))
    }

    /// Hands every tick (and its run) to the writer before waiting for any,
    /// so one due time of many schedules shares one group commit.
    fn insert_ticks(&self, ticks: &[TickRequest<'_>]) -> Vec<flowgate_core::Result<bool>> {
        let submitted: Vec<_> = ticks
            .iter()
            .map(|t| {
                self.prepare_tick(t.flow, t.due_at_ms, t.state).map(|p| {
                    let committed = self.store.submit_tick(&p.tick, p.run.as_ref());
                    (p, committed)
                })
            })
            .collect();
        submitted
            .into_iter()
            .zip(ticks)
            .map(|(s, t)| {
                let (p, committed) = s?;
                let won = committed.wait()?;
                Ok(self.recorded(p, t.state, won))
            })
            .collect()
    }

    fn latest_tick(&self, flow: &str) -> flowgate_core::Result<Option<i64>> {
        let name = flow_name(flow)?;
        Ok(self.store.latest_tick(&name)?.map(|t| t.due_at))
    }

    fn attach_run(&self, _flow: &str, _due_at_ms: i64, _run_id: &str) -> flowgate_core::Result<()> {
        // The run id was stored with the tick, in the same transaction.
        Ok(())
    }
}

impl Dispatcher for StoreBackend {
    fn is_running(&self, flow: &str) -> flowgate_core::Result<bool> {
        let name = flow_name(flow)?;
        Ok(self.store.active_runs(&name)? > 0)
    }

    fn running_of(&self, flows: &[&str]) -> flowgate_core::Result<HashSet<String>> {
        let mut active = self.store.active_flows()?;
        active.retain(|f| flows.contains(&f.as_str()));
        Ok(active)
    }

    fn dispatch(&self, flow: &str, _version: i64, due_at_ms: i64) -> flowgate_core::Result<String> {
        let id = self
            .pending
            .lock()
            .map_err(|_| internal("pending schedule runs lock poisoned"))?
            .remove(&(flow.to_owned(), due_at_ms))
            .ok_or_else(|| internal(format!("no run was queued with tick {flow}@{due_at_ms}")))?;
        if let Some(e) = &self.engine {
            e.wake_workers();
        }
        Ok(id.to_string())
    }
}

/// Cache of the schedule part of immutable versions: `(flow, version)` →
/// its parsed schedule entry and retry budget (`None`: no schedule trigger,
/// or one that does not parse). Parsed once per version, not every refresh.
type VersionCache = HashMap<(FlowName, u32), Option<(ScheduleEntry, u32)>>;

/// The live versions the last refresh built its entries from, when every one
/// of them was resolved (none left for the next refresh to look at again).
type LastSnapshot = Option<Vec<(FlowName, u32)>>;

/// The schedule entries of the live versions of enabled flows, and what
/// [`StoreBackend`] needs to queue their runs; `None` when the live versions
/// are those of `last`, so the entries are unchanged. Each refresh reads the
/// live versions; it builds the entries (thousands of them with as many
/// scheduled flows) only when those changed.
async fn live_schedules(
    engine: &Engine,
    cache: &mut VersionCache,
    last: &mut LastSnapshot,
) -> crate::Result<Option<(Vec<ScheduleEntry>, HashMap<String, LiveSchedule>)>> {
    let flows = engine
        .store()
        .call(|s| {
            let mut out = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = s.list_flows(cursor.as_deref(), 1000)?;
                out.extend(
                    page.items
                        .into_iter()
                        .filter(|f| !f.disabled)
                        .filter_map(|f| f.live_version.map(|v| (f.name, v))),
                );
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            Ok(out)
        })
        .await?;
    if last.as_ref() == Some(&flows) {
        return Ok(None);
    }
    let mut entries = Vec::new();
    let mut live = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut complete = true;
    for (flow, version) in &flows {
        let (flow, version) = (flow.clone(), *version);
        let key = (flow.clone(), version);
        seen.insert(key.clone());
        if !cache.contains_key(&key) {
            let info = match engine.registry().version(&flow, i64::from(version)).await {
                Ok(Some(v)) if v.status == crate::VersionStatus::Published => {
                    v.manifest().schedule().and_then(|t| {
                        match ScheduleEntry::from_trigger(flow.as_str(), i64::from(version), t) {
                            Ok(e) => Some((e, v.manifest().retry.max_attempts)),
                            Err(e) => {
                                tracing::warn!(flow.name = %flow, flow.version = version, error = %e, "schedule does not parse");
                                None
                            }
                        }
                    })
                }
                // The registry's copy may predate the publish (it caches
                // versions for a few seconds): look again next refresh.
                Ok(_) => {
                    complete = false;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(flow.name = %flow, flow.version = version, error = %e, "cannot load the live version's schedule");
                    complete = false;
                    continue;
                }
            };
            cache.insert(key.clone(), info);
        }
        let Some(Some((entry, max_attempts))) = cache.get(&key) else {
            continue;
        };
        entries.push(entry.clone());
        live.insert(
            flow.to_string(),
            LiveSchedule {
                version,
                max_attempts: *max_attempts,
            },
        );
    }
    cache.retain(|k, _| seen.contains(k));
    entries.sort_by(|a, b| a.flow.cmp(&b.flow));
    *last = complete.then_some(flows);
    Ok(Some((entries, live)))
}

/// Starts the task that keeps the schedule entries current and, after its
/// first snapshot (so every schedule resumes from its stored cursor and follows
/// its misfire policy), the scheduler loop. Both stop when `shutdown` becomes
/// `true`; the returned handle ends after the loop did.
pub fn spawn(engine: Engine, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let backend = Arc::new(StoreBackend::new(
            engine.store().clone(),
            Some(engine.clone()),
        ));
        let mut cache = VersionCache::new();
        let mut last: LastSnapshot = None;
        let mut entries_tx: Option<watch::Sender<Arc<Vec<ScheduleEntry>>>> = None;
        let mut scheduler: Option<JoinHandle<()>> = None;
        loop {
            match live_schedules(&engine, &mut cache, &mut last).await {
                Ok(None) => {}
                Ok(Some((entries, live))) => {
                    backend.set_live(live);
                    match &entries_tx {
                        Some(tx) => {
                            if **tx.borrow() != entries {
                                tx.send_replace(Arc::new(entries));
                            }
                        }
                        None => {
                            let (tx, rx) = watch::channel(Arc::new(entries));
                            let s = Scheduler::new(Arc::clone(&backend), Arc::clone(&backend));
                            scheduler = Some(tokio::spawn(s.run(rx, shutdown.clone())));
                            entries_tx = Some(tx);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "refreshing schedules failed"),
            }
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH_EVERY) => {}
                _ = engine.schedules_wake().notified() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        if let Some(t) = scheduler {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "scheduler task failed");
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn schedule_run_carries_the_due_time_and_caller() {
        let flow = FlowName::parse("nightly").unwrap();
        let live = LiveSchedule {
            version: 3,
            max_attempts: 4,
        };
        let due = 1_777_000_000_000;
        let run = StoreBackend::schedule_run(&flow, &live, due);
        assert_eq!(run.version, 3);
        assert_eq!(run.max_attempts, 4);
        assert_eq!(run.trigger, TriggerKind::Schedule);
        assert_eq!(run.scheduled_at, Some(due));
        assert_eq!(run.input["caller"]["kind"], "schedule");
        assert_eq!(run.input["caller"]["id"], "nightly");
        assert_eq!(run.input["trigger"]["kind"], "schedule");
        assert_eq!(
            run.input["trigger"]["scheduled_at"],
            flowgate_core::rfc3339(due)
        );
        assert!(run.input["request"].is_null());
    }

    /// `overlap = "skip"` asks once per due time which flows still run: the
    /// answer agrees with asking each flow, and a finished run does not count.
    #[test]
    fn running_of_names_the_flows_with_queued_or_running_runs() {
        let store = Store::open_and_migrate("sqlite::memory:", [7; 32]).unwrap();
        let now = flowgate_core::now_ms();
        let queue = |name: &str| {
            let flow = FlowName::parse(name).unwrap();
            store.create_flow(&flow).unwrap();
            let run = Run::queued(flow, 1, TriggerKind::Schedule, json!({}), 1, now);
            store.enqueue(&run).unwrap();
        };
        // Queued in this order, so claimed in this order (oldest first).
        queue("running");
        queue("finished");
        queue("queued");
        store
            .create_flow(&FlowName::parse("never").unwrap())
            .unwrap();
        let running = store.claim_next("node", 60_000, now).unwrap().unwrap();
        let finished = store.claim_next("node", 60_000, now).unwrap().unwrap();
        assert_eq!(
            (running.flow.as_str(), finished.flow.as_str()),
            ("running", "finished")
        );
        let outcome = flowgate_store::RunOutcome {
            status: flowgate_core::run::RunStatus::Succeeded,
            finished_at: now,
            duration_ms: 1,
            response_status: None,
            response: None,
            error: None,
            logs: Vec::new(),
            http_calls: None,
        };
        assert!(store.complete_run(finished.id, "node", &outcome).unwrap());

        let backend = StoreBackend::new(store, None);
        let asked = ["running", "finished", "queued", "never"];
        let active = backend.running_of(&asked).unwrap();
        let expected: HashSet<String> = ["running", "queued"].map(String::from).into();
        assert_eq!(active, expected);
        for flow in asked {
            assert_eq!(
                backend.is_running(flow).unwrap(),
                active.contains(flow),
                "{flow}"
            );
        }
        assert!(backend
            .running_of(&["finished", "never"])
            .unwrap()
            .is_empty());
    }

    fn version(engine: &Engine, flow: &FlowName, cron: &str) -> u32 {
        let manifest =
            format!("name = \"{flow}\"\n[[trigger]]\nkind = \"schedule\"\ncron = \"{cron}\"\n");
        let files: std::collections::BTreeMap<String, String> = [
            ("flow.toml".to_owned(), manifest),
            ("main.rhai".to_owned(), "1".to_owned()),
        ]
        .into();
        let sha = flowgate_core::package::FlowPackage {
            files: files.clone(),
        }
        .sha256();
        let v = engine
            .store()
            .insert_version(flow, &files, &sha)
            .unwrap()
            .version;
        engine.store().publish_version(flow, v).unwrap();
        engine.registry().invalidate(flow);
        v
    }

    /// A refresh builds the entries again only when the live versions changed.
    #[tokio::test]
    async fn refreshes_rebuild_entries_only_when_live_versions_change() {
        let engine = crate::queries::memory_engine();
        let flow = FlowName::parse("tick").unwrap();
        engine.store().create_flow(&flow).unwrap();
        let v1 = version(&engine, &flow, "* * * * * *");
        let (mut cache, mut last) = (VersionCache::new(), None);

        let (entries, live) = live_schedules(&engine, &mut cache, &mut last)
            .await
            .unwrap()
            .expect("first snapshot");
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].version, live["tick"].version),
            (i64::from(v1), v1)
        );
        assert!(live_schedules(&engine, &mut cache, &mut last)
            .await
            .unwrap()
            .is_none());

        let v2 = version(&engine, &flow, "0 * * * * *");
        let (entries, live) = live_schedules(&engine, &mut cache, &mut last)
            .await
            .unwrap()
            .expect("a new live version");
        assert_eq!(
            (entries[0].version, live["tick"].version),
            (i64::from(v2), v2)
        );
        assert_eq!(
            entries[0].spec,
            flowgate_scheduler::CronSpec::parse("0 * * * * *", "UTC").unwrap()
        );

        engine.store().set_flow_disabled(&flow, true).unwrap();
        let (entries, _) = live_schedules(&engine, &mut cache, &mut last)
            .await
            .unwrap()
            .expect("a disabled flow");
        assert!(entries.is_empty());
    }
}
