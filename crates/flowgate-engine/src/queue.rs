//! Durable run queue workers and the event dispatcher. Workers claim runs
//! with a lease, renew it while running, and record the outcome: success,
//! final failure, retry with exponential backoff and jitter, or `dead`.
//! A run whose node died is claimed again once its lease expires.

use flowgate_core::event::{Cause, Event};
use flowgate_core::run::{RunStatus, TriggerKind};
use flowgate_core::FlowName;
use flowgate_script::RunInput;
use flowgate_store::Run;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::invoke::{emitted_events, run_failed_event, store_outcome};
use crate::Engine;

/// How long idle workers wait before looking at the queue again.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Most claims one pass of the claim loop submits together.
const MAX_CLAIMS: usize = 64;
/// How long shutdown waits for running runs before releasing them.
const DRAIN: Duration = Duration::from_secs(20);

/// A run started without a claim, and the worker slot it holds.
type Started = (Run, OwnedSemaphorePermit);

/// Runs that start at once: an async run queued while the queue is empty
/// and a worker slot is free is stored already claimed by this node
/// ([`flowgate_store::Store::submit_start`]) and handed to the claim loop's
/// workers, instead of waiting for the claim loop to wake, claim it in a
/// commit of its own and only then run it. Queued runs keep their order:
/// once a run was queued (and the workers woken for it), none starts this
/// way until a claim submitted after that commit found the queue empty.
pub(crate) struct Direct {
    /// The worker slots, shared with the claim loop.
    slots: Arc<Semaphore>,
    /// How many times runs were queued so far (counted after their commit).
    queued: AtomicU64,
    /// The count a claim that found the queue empty was submitted at
    /// (`u64::MAX`: none yet): the queue is empty while nothing was queued since.
    empty_at: AtomicU64,
    tx: mpsc::UnboundedSender<Started>,
    rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Started>>>,
}

impl Direct {
    /// `workers` slots, no run started this way until the claim loop runs.
    pub(crate) fn new(workers: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            slots: Arc::new(Semaphore::new(workers.max(1))),
            queued: AtomicU64::new(0),
            empty_at: AtomicU64::new(u64::MAX),
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
        }
    }

    /// A free worker slot, when the queue is empty.
    pub(crate) fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if self.empty_at.load(Ordering::SeqCst) != self.queued.load(Ordering::SeqCst) {
            return None;
        }
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Runs were queued (and committed): none may overtake them.
    pub(crate) fn queued(&self) {
        self.queued.fetch_add(1, Ordering::SeqCst);
    }

    /// Hands a started run to the workers; `false` when they have stopped
    /// (the caller gives the run back to the queue).
    pub(crate) fn start(&self, run: Run, slot: OwnedSemaphorePermit) -> bool {
        self.tx.send((run, slot)).is_ok()
    }
}

/// Waits for a started run; never resolves without a receiver.
async fn next_started(rx: &mut Option<mpsc::UnboundedReceiver<Started>>) -> Option<Started> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Starts the claim loop, the event dispatcher and housekeeping.
pub fn spawn_workers(engine: Engine, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(claim_loop(engine.clone(), shutdown.clone())),
        tokio::spawn(dispatch_loop(engine.clone(), shutdown.clone())),
        tokio::spawn(housekeeping_loop(engine, shutdown)),
    ]
}

async fn sleep_or_shutdown(
    d: Duration,
    shutdown: &mut watch::Receiver<bool>,
    wake: Option<&tokio::sync::Notify>,
) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    match wake {
        Some(n) => tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = n.notified() => false,
            _ = shutdown.changed() => true,
        },
        None => tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = shutdown.changed() => true,
        },
    }
}

async fn claim_loop(engine: Engine, mut shutdown: watch::Receiver<bool>) {
    let direct = engine.direct();
    let slots = Arc::clone(&direct.slots);
    let mut starts = direct.rx.lock().ok().and_then(|mut rx| rx.take());
    let mut running: JoinSet<()> = JoinSet::new();
    // Which run each executing task holds, to release it if shutdown cuts it short.
    let mut held: HashMap<tokio::task::Id, flowgate_core::RunId> = HashMap::new();
    let lease_ms = i64::try_from(engine.config().lease.as_millis()).unwrap_or(30_000);
    let spawn = |running: &mut JoinSet<()>,
                 held: &mut HashMap<tokio::task::Id, flowgate_core::RunId>,
                 run: Run,
                 permit: OwnedSemaphorePermit| {
        let id = run.id;
        let task = running.spawn(execute_claimed(engine.clone(), run, permit));
        held.insert(task.id(), id);
    };
    loop {
        while let Some(done) = running.try_join_next_with_id() {
            held.remove(&done.map_or_else(|e| e.id(), |(id, ())| id));
        }
        if *shutdown.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            Some((run, permit)) = next_started(&mut starts) => {
                spawn(&mut running, &mut held, run, permit);
                continue;
            }
            _ = shutdown.changed() => break,
        };
        // Every free slot claims at once: the claims share one group commit,
        // so a burst of due runs (a schedule's second) starts together
        // instead of one commit after another.
        let mut permits = vec![permit];
        // Runs end in bursts (their outcomes share a commit): let the others
        // of this burst hand back their slots first.
        tokio::task::yield_now().await;
        while permits.len() < MAX_CLAIMS {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let owner = engine.node_id().to_owned();
        let started = Instant::now();
        let now = flowgate_core::now_ms();
        let queued_before = direct.queued.load(Ordering::SeqCst);
        // Through the writer, in arrival order with acknowledgements: neither
        // starves. One read of the due runs for every free slot.
        let claimed = engine
            .store()
            .submit_claims(owner, lease_ms, now, permits.len())
            .await;
        metrics::histogram!("flowgate_queue_claim_seconds").record(started.elapsed().as_secs_f64());
        match claimed {
            Ok(runs) => {
                let idle = runs.len() < permits.len();
                for (run, permit) in runs.into_iter().zip(permits) {
                    spawn(&mut running, &mut held, run, permit);
                }
                if idle {
                    // The queue is empty (its free slots are back): runs
                    // queued from now on may start at once, and those need
                    // no claim, so the loop stays idle while they come.
                    direct.empty_at.store(queued_before, Ordering::SeqCst);
                    let poll = tokio::time::sleep(IDLE_POLL);
                    tokio::pin!(poll);
                    let stop = loop {
                        tokio::select! {
                            _ = &mut poll => break false,
                            _ = engine.wake().notified() => break false,
                            Some((run, permit)) = next_started(&mut starts) => {
                                spawn(&mut running, &mut held, run, permit);
                                while let Some(done) = running.try_join_next_with_id() {
                                    held.remove(&done.map_or_else(|e| e.id(), |(id, ())| id));
                                }
                            }
                            _ = shutdown.changed() => break true,
                        }
                    };
                    if stop {
                        break;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming runs failed");
                if sleep_or_shutdown(Duration::from_secs(1), &mut shutdown, None).await {
                    break;
                }
            }
        }
    }
    // Stop claiming and starting; runs started meanwhile go back to the queue.
    direct.empty_at.store(u64::MAX, Ordering::SeqCst);
    if let Some(rx) = starts.as_mut() {
        rx.close();
        while let Ok((run, _slot)) = rx.try_recv() {
            release(&engine, run.id).await;
        }
    }
    // Let running runs finish (each is bounded by its timeout).
    let drained = tokio::time::timeout(DRAIN, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some runs did not finish during shutdown; releasing them for another node");
        running.abort_all();
        while let Some(done) = running.join_next_with_id().await {
            let task = done.map_or_else(|e| e.id(), |(id, ())| id);
            let Some(run_id) = held.remove(&task) else {
                continue;
            };
            release(&engine, run_id).await;
        }
    }
}

/// Gives a run this node holds back to the queue (shutdown).
pub(crate) async fn release(engine: &Engine, run_id: flowgate_core::RunId) {
    let owner = engine.node_id().to_owned();
    // A run whose outcome was recorded meanwhile is no longer ours: `false`.
    if let Err(e) = engine
        .store()
        .call(move |s| s.release_run(run_id, &owner))
        .await
    {
        tracing::warn!(run.id = %run_id, error = %e, "releasing a run failed; its lease will expire");
    }
}

fn jittered(ms: u64) -> i64 {
    let factor: f64 = 0.5 + rand::random::<f64>() * 0.5;
    (ms as f64 * factor) as i64
}

async fn execute_claimed(engine: Engine, run: Run, permit: OwnedSemaphorePermit) {
    let owner = engine.node_id().to_owned();
    let lease = engine.config().lease;
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(30_000);
    // Renew the lease while the run executes.
    let renew = {
        let engine = engine.clone();
        let id = run.id;
        let owner = owner.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let o = owner.clone();
                let until = flowgate_core::now_ms() + lease_ms;
                match engine
                    .store()
                    .call(move |s| s.renew_lease(id, &o, until))
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(run.id = %id, "lost the lease of a running run");
                        return;
                    }
                    Err(e) => tracing::warn!(run.id = %id, error = %e, "renewing a lease failed"),
                }
            }
        })
    };
    finish_claimed(&engine, run, &owner, permit).await;
    renew.abort();
}

/// Runs a claimed run and records its outcome. `slot` is handed back as soon
/// as the outcome is submitted, before its commit: the next claim then shares
/// the outcome's group commit (the writer commits in arrival order, so that
/// claim cannot see the run before its outcome), and at most one uncommitted
/// outcome per slot waits.
async fn finish_claimed(engine: &Engine, run: Run, owner: &str, slot: OwnedSemaphorePermit) {
    let id = run.id;
    let version = match engine
        .registry()
        .version(&run.flow, i64::from(run.version))
        .await
    {
        Ok(Some(v)) => v,
        Ok(None) => {
            let outcome = flowgate_store::RunOutcome {
                status: RunStatus::Dead,
                finished_at: flowgate_core::now_ms(),
                duration_ms: 0,
                response_status: None,
                response: None,
                error: Some(format!(
                    "version {} of flow `{}` no longer exists",
                    run.version, run.flow
                )),
                logs: Vec::new(),
                http_calls: None,
            };
            let o = owner.to_owned();
            let _ = engine
                .store()
                .call(move |s| s.complete_run(id, &o, &outcome))
                .await;
            return;
        }
        Err(e) => {
            tracing::warn!(run.id = %id, error = %e, "could not load the run's version; releasing it");
            let o = owner.to_owned();
            let _ = engine.store().call(move |s| s.release_run(id, &o)).await;
            return;
        }
    };
    let input = QueuedInput::of(&run);
    // Runs triggered by events carry the chain they belong to; others start one.
    let cause = input
        .causation
        .unwrap_or_else(|| Cause::root(id.to_string()));
    let max_depth = engine.config().max_event_depth;
    if cause.depth > max_depth {
        stop_chain(engine, &run, owner, &cause, max_depth).await;
        return;
    }
    let reads = version.script.reads();
    let run_input = RunInput {
        ctx: Engine::ctx_map(
            reads,
            &run.flow,
            i64::from(run.version),
            id,
            &input.request_id,
            run.attempt,
        ),
        reads,
        ..input.maps
    };
    // Queued runs wait for their flow's share instead of failing; the lease
    // is renewed meanwhile.
    let ticket = engine
        .admission()
        .admit_waiting(run.flow.as_str(), version.manifest().limits.concurrency)
        .await;
    let executed = engine
        .runtime()
        .execute(
            &version.script,
            std::sync::Arc::new(run_input),
            engine.host_for(&run.flow, &cause),
        )
        .await;
    drop(ticket);
    let outcome = match executed {
        Ok(o) => o,
        Err(e) => {
            // Overloaded or broken runtime: give the run back without using an attempt.
            tracing::warn!(run.id = %id, error = %e, "runtime refused the run; releasing it");
            let o = owner.to_owned();
            let _ = engine.store().call(move |s| s.release_run(id, &o)).await;
            return;
        }
    };
    let (committed, stores_events) =
        submit_outcome(engine, &run, owner, &version, &outcome, &cause);
    drop(slot);
    let result = committed.await;
    if stores_events {
        engine.wake_dispatcher();
    }
    match result {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(run.id = %id, "the run's lease was taken over before it finished; its outcome was not recorded")
        }
        Err(e) => {
            tracing::error!(run.id = %id, error = %e, "recording a run's outcome failed; it will be retried after its lease expires")
        }
    }
}

/// Submits the outcome of an attempt of `run` (leased by `owner`): succeeded,
/// failed for good, queued again after its backoff, or dead with a
/// `flow.run_failed` event. Returns the write (`false` once it commits when
/// the lease was no longer `owner`'s) and whether it stores events for the
/// dispatcher.
pub(crate) fn submit_outcome(
    engine: &Engine,
    run: &Run,
    owner: &str,
    version: &crate::LoadedVersion,
    outcome: &flowgate_script::RunOutcome,
    cause: &Cause,
) -> (flowgate_store::Committed<bool>, bool) {
    let (id, o) = (run.id, owner.to_owned());
    // Only an outcome that stored events has anything for the dispatcher (the
    // store announces the user changes it commits itself).
    let stores_events = outcome.result.is_err() || !outcome.events.is_empty();
    let committed = match &outcome.result {
        Ok(_) => {
            let stored = store_outcome(outcome, RunStatus::Succeeded);
            let events = emitted_events(&run.flow, outcome, cause);
            crate::invoke::count_run(run.flow.as_str(), "succeeded");
            engine.store().submit_finish(id, o, stored, events)
        }
        Err(f) if !f.is_retryable() => {
            let stored = store_outcome(outcome, RunStatus::Failed);
            crate::invoke::count_run(run.flow.as_str(), "failed");
            engine.store().submit_finish(id, o, stored, Vec::new())
        }
        Err(_) if run.attempt < run.max_attempts => {
            let delay = jittered(version.manifest().retry.base_delay_ms(run.attempt + 1));
            let stored = store_outcome(outcome, RunStatus::Queued);
            metrics::counter!("flowgate_runs_retried_total", "flow" => run.flow.to_string())
                .increment(1);
            let at = flowgate_core::now_ms() + delay;
            let error = stored.error.clone().unwrap_or_default();
            engine.store().submit_retry(id, o, at, error, stored.logs)
        }
        Err(_) => {
            let stored = store_outcome(outcome, RunStatus::Dead);
            let events: Vec<Event> = run_failed_event(run, outcome, RunStatus::Dead, cause)
                .into_iter()
                .collect();
            crate::invoke::count_run(run.flow.as_str(), "dead");
            engine.store().submit_finish(id, o, stored, events)
        }
    };
    (committed, stores_events)
}

/// Ends a run that an event chain deeper than `max_depth` triggered, without
/// running it: a flow that reacts to events it causes itself (a `user.updated`
/// handler that updates the user) would otherwise loop forever. The run fails
/// with `event_chain_too_deep` and a `flow.run_failed` in the same chain; that
/// event is past the bound, so it starts nothing further.
async fn stop_chain(engine: &Engine, run: &Run, owner: &str, cause: &Cause, max_depth: u32) {
    let id = run.id;
    let error = format!(
        "event chain too deep: this run would be number {} in a chain of runs triggered by events that runs caused (chain {}); the limit is {max_depth}. A flow that reacts to an event it causes itself, such as a user.updated handler that updates the user, loops: check what the flow changes",
        cause.depth, cause.chain_id
    );
    tracing::warn!(run.id = %id, flow.name = %run.flow, chain = %cause.chain_id, depth = cause.depth, "event chain stopped");
    metrics::counter!("flowgate_event_chains_stopped_total", "flow" => run.flow.to_string())
        .increment(1);
    let now = flowgate_core::now_ms();
    let outcome = flowgate_store::RunOutcome {
        status: RunStatus::Failed,
        finished_at: now,
        duration_ms: 0,
        response_status: None,
        response: None,
        error: Some(error.clone()),
        logs: vec![flowgate_core::run::LogLine {
            time: now,
            level: flowgate_core::run::LogLevel::Error,
            message: error.clone(),
        }],
        http_calls: None,
    };
    let failed = Event::new(
        flowgate_core::event::types::RUN_FAILED,
        "flowgate",
        json!({
            "run_id": id.to_string(),
            "flow": run.flow.as_str(),
            "version": run.version,
            "status": RunStatus::Failed.as_str(),
            "attempt": run.attempt,
            "code": "event_chain_too_deep",
            "error": error,
        }),
    )
    .caused_by(cause);
    let o = owner.to_owned();
    if let Err(e) = engine
        .store()
        .call(move |s| s.finish_run_with_events(id, &o, &outcome, &[failed]))
        .await
    {
        tracing::error!(run.id = %id, error = %e, "recording a stopped chain failed; it will be retried after its lease expires");
    }
    engine.wake_dispatcher();
}

/// Event type → live flows subscribed to it, rebuilt every few seconds.
async fn subscriptions(engine: &Engine) -> crate::Result<HashMap<String, Vec<(FlowName, i64)>>> {
    let mut map: HashMap<String, Vec<(FlowName, i64)>> = HashMap::new();
    for (flow, version) in engine.live_flows().await? {
        for ev in version.manifest().subscribed_events() {
            map.entry(ev.to_owned())
                .or_default()
                .push((flow.clone(), version.number));
        }
    }
    Ok(map)
}

async fn dispatch_loop(engine: Engine, mut shutdown: watch::Receiver<bool>) {
    let mut subs: HashMap<String, Vec<(FlowName, i64)>> = HashMap::new();
    // Epoch ms at which the subscriptions in `subs` started loading.
    let mut subs_at: Option<i64> = None;
    loop {
        let pending = match engine.store().call(|s| s.pending_events(100)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "reading pending events failed");
                if sleep_or_shutdown(Duration::from_secs(1), &mut shutdown, None).await {
                    return;
                }
                continue;
            }
        };
        if pending.is_empty() {
            if sleep_or_shutdown(
                Duration::from_millis(200),
                &mut shutdown,
                Some(engine.event_wake()),
            )
            .await
            {
                return;
            }
            continue;
        }
        // The subscriptions must have been read after the newest event of the
        // batch was produced, so a flow published before an event gets it.
        let newest = pending.iter().map(|e| e.time).max().unwrap_or(0);
        if subs_at.is_none_or(|t| t <= newest || flowgate_core::now_ms() - t > 2_000) {
            let loading_at = flowgate_core::now_ms();
            match subscriptions(&engine).await {
                Ok(s) => {
                    subs = s;
                    subs_at = Some(loading_at);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "loading event subscriptions failed");
                    if sleep_or_shutdown(Duration::from_secs(1), &mut shutdown, None).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let plan = subs.clone();
        let registry = engine.registry().clone();
        let max_depth = engine.config().max_event_depth;
        let mut retry_cfg: HashMap<String, u32> = HashMap::new();
        for list in plan.values() {
            for (f, n) in list {
                if let Ok(Some(v)) = registry.version(f, *n).await {
                    retry_cfg.insert(format!("{f}@{n}"), v.manifest().retry.max_attempts);
                }
            }
        }
        let dispatched = engine
            .store()
            .call(move |s| {
                let fanout = |ev: &Event| -> Vec<Run> {
                    // Past the bound: the chain was stopped (its last run
                    // failed with `event_chain_too_deep`); start nothing more.
                    if ev.depth > max_depth {
                        return Vec::new();
                    }
                    let cause = Cause::triggered_by(ev);
                    plan.get(&ev.kind)
                        .map(|flows| {
                            flows
                                .iter()
                                .map(|(f, n)| {
                                    let mut r = Run::queued(
                                        f.clone(),
                                        u32::try_from(*n).unwrap_or(0),
                                        TriggerKind::Event,
                                        json!({
                                            "request": Value::Null,
                                            "caller": {"kind": "event", "id": ev.source, "scopes": []},
                                            "trigger": {"kind": "event", "event": ev.to_json()},
                                            "request_id": ev.id.to_string(),
                                            "causation": cause,
                                        }),
                                        retry_cfg.get(&format!("{f}@{n}")).copied().unwrap_or(5),
                                        flowgate_core::now_ms(),
                                    );
                                    r.event_id = Some(ev.id);
                                    r
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let mut n = 0usize;
                for ev in &pending {
                    if s.dispatch_event(ev.id, &fanout(ev))? {
                        n += 1;
                    }
                }
                Ok(n)
            })
            .await;
        match dispatched {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("flowgate_events_dispatched_total").increment(n as u64);
                engine.wake_workers();
            }
            Err(e) => {
                tracing::warn!(error = %e, "dispatching events failed");
                if sleep_or_shutdown(Duration::from_secs(1), &mut shutdown, None).await {
                    return;
                }
            }
        }
    }
}

async fn housekeeping_loop(engine: Engine, mut shutdown: watch::Receiver<bool>) {
    loop {
        if sleep_or_shutdown(Duration::from_secs(60), &mut shutdown, None).await {
            return;
        }
        engine.security().housekeeping();
        let now = flowgate_core::now_ms();
        let retention = engine.config().retention.clone();
        let r = engine
            .store()
            .call(move |s| {
                s.purge_expired_kv(now)?;
                s.purge_idempotency(now)?;
                s.purge_console_sessions(now, now - crate::sessions::idle_ms())?;
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "housekeeping failed");
        }
        if let Err(e) = apply_retention(&engine, &retention, now).await {
            tracing::warn!(error = %e, "retention purge failed");
        }
    }
}

/// Rows deleted per retention transaction.
const PURGE_BATCH: usize = 1_000;

async fn apply_retention(engine: &Engine, r: &crate::Retention, now: i64) -> crate::Result<()> {
    let cutoff = |d: std::time::Duration| now - i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    type Purge = fn(&flowgate_store::Store, i64, usize) -> flowgate_store::Result<usize>;
    let jobs: [(Option<std::time::Duration>, Purge, &str); 3] = [
        (r.runs, flowgate_store::Store::purge_finished_runs, "runs"),
        (r.audit, flowgate_store::Store::purge_audit, "audit"),
        (
            r.events,
            flowgate_store::Store::purge_dispatched_events,
            "events",
        ),
    ];
    for (keep, purge, what) in jobs {
        let Some(keep) = keep else { continue };
        let before = cutoff(keep);
        // Bounded batches; stop after a while so one pass never runs long.
        for _ in 0..20 {
            let n = engine
                .store()
                .call(move |s| purge(s, before, PURGE_BATCH))
                .await?;
            metrics::counter!("flowgate_retention_purged_total", "what" => what)
                .increment(n as u64);
            if n < PURGE_BATCH {
                break;
            }
        }
    }
    Ok(())
}

impl Engine {
    /// Live flows and their live versions.
    pub async fn live_flows(&self) -> crate::Result<Vec<(FlowName, Arc<crate::LoadedVersion>)>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let c = cursor.clone();
            let page = self
                .store()
                .call(move |s| s.list_flows(c.as_deref(), 500))
                .await?;
            for f in page.items {
                if f.disabled {
                    continue;
                }
                if let Some(n) = f.live_version {
                    if let Some(v) = self.registry().version(&f.name, i64::from(n)).await? {
                        out.push((f.name.clone(), v));
                    }
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(out)
    }
}

/// What a claimed run's stored input gives its run: the script's maps, read
/// straight from the stored text when the claim left it as text, and the
/// chain and request id it belongs to.
struct QueuedInput {
    maps: RunInput,
    causation: Option<Cause>,
    request_id: String,
}

/// The top level of a stored input, its maps left as JSON text.
#[derive(Default)]
struct StoredInput<'a> {
    request: Option<&'a str>,
    caller: Option<&'a str>,
    trigger: Option<&'a str>,
    request_id: Option<String>,
    causation: Option<Cause>,
}

impl<'a> StoredInput<'a> {
    /// The fields of `text`, an object's JSON text; `None` when it does not
    /// read as the usual top level (an escaped or repeated key, a field of
    /// the wrong type).
    fn read(text: &'a str) -> Option<Self> {
        let mut out = Self::default();
        for (key, value) in top_level_fields(text)? {
            let slot = match key {
                "request" => &mut out.request,
                "caller" => &mut out.caller,
                "trigger" => &mut out.trigger,
                "request_id" => {
                    if out.request_id.is_some() {
                        return None;
                    }
                    out.request_id = serde_json::from_str(value).ok()?;
                    continue;
                }
                "causation" => {
                    if out.causation.is_some() {
                        return None;
                    }
                    out.causation = serde_json::from_str(value).ok()?;
                    continue;
                }
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return None;
            }
        }
        Some(out)
    }
}

/// The keys and value texts of a JSON object's top level, found by a linear
/// scan that trusts `text` to be valid JSON (a stored input was checked or
/// written by this process; each value is parsed strictly later). `None`
/// for anything else, or a key with an escape in it.
///
/// serde_json's `RawValue` would find these spans, but its feature makes
/// every `Value` parse treat an object with the key
/// `$serde_json::private::RawValue` as a value in text form: what a caller
/// sends must not change shape like that.
fn top_level_fields(text: &str) -> Option<Vec<(&str, &str)>> {
    let b = text.as_bytes();
    let ws = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    // The index just past the string that starts at `i`.
    let string_end = |mut i: usize| -> Option<usize> {
        i += 1;
        loop {
            match b.get(i)? {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
    };
    // The index just past the value that starts at `i`.
    let value_end = |mut i: usize| -> Option<usize> {
        match *b.get(i)? {
            b'"' => string_end(i),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *b.get(i)? {
                        b'"' => {
                            i = string_end(i)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                    i += 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
            }
            _ => {
                let start = i;
                while b
                    .get(i)
                    .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
                {
                    i += 1;
                }
                (i > start).then_some(i)
            }
        }
    };
    let mut fields = Vec::with_capacity(5);
    let mut i = ws(0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(i + 1);
    if b.get(i) == Some(&b'}') {
        return (ws(i + 1) == b.len()).then_some(fields);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(i)?;
        let key = text.get(i + 1..key_end - 1)?;
        if key.contains('\\') {
            return None;
        }
        i = ws(key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = ws(i + 1);
        i = value_end(start)?;
        fields.push((key, text.get(start..i)?));
        i = ws(i);
        match b.get(i)? {
            b',' => i = ws(i + 1),
            b'}' => return (ws(i + 1) == b.len()).then_some(fields),
            _ => return None,
        }
    }
}

impl QueuedInput {
    fn of(run: &Run) -> Self {
        if let Some(text) = run.input_json.as_deref() {
            if let Some(stored) = StoredInput::read(text) {
                let map =
                    |raw: Option<&str>| flowgate_script::JsonBody::stored(raw.unwrap_or("null"));
                return Self {
                    maps: RunInput {
                        stored: Some(flowgate_script::StoredMaps {
                            request: map(stored.request),
                            caller: map(stored.caller),
                            trigger: map(stored.trigger),
                        }),
                        ..RunInput::default()
                    },
                    causation: stored.causation,
                    request_id: stored.request_id.unwrap_or_default(),
                };
            }
        }
        // Inputs as a document (or text that did not read as the usual
        // top level, e.g. a repeated key): the general conversion.
        let input = run.input_value();
        let field = |k: &str| input.get(k).cloned().unwrap_or(Value::Null);
        Self {
            maps: RunInput {
                request: field("request"),
                caller: field("caller"),
                trigger: field("trigger"),
                ..RunInput::default()
            },
            causation: input
                .get("causation")
                .and_then(|c| serde_json::from_value::<Cause>(c.clone()).ok()),
            request_id: input
                .get("request_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runs_start_without_a_claim_only_while_the_queue_is_empty() {
        let d = Direct::new(2);
        assert!(d.slot().is_none(), "no claim has found the queue empty yet");
        // A claim submitted when nothing had been queued found it empty.
        d.empty_at
            .store(d.queued.load(Ordering::SeqCst), Ordering::SeqCst);
        let a = d.slot().expect("a free slot");
        let b = d.slot().expect("another free slot");
        assert!(d.slot().is_none(), "every slot is taken");
        drop((a, b));
        assert!(d.slot().is_some());
        // A run is queued: none overtakes it until a later claim finds the queue empty.
        let before = d.queued.load(Ordering::SeqCst);
        d.queued();
        assert!(d.slot().is_none());
        d.empty_at.store(before, Ordering::SeqCst);
        assert!(
            d.slot().is_none(),
            "a claim submitted before that run was queued proves nothing"
        );
        d.empty_at
            .store(d.queued.load(Ordering::SeqCst), Ordering::SeqCst);
        assert!(d.slot().is_some());
    }

    #[test]
    fn the_top_level_of_a_stored_input_is_read_as_text() {
        let text = r#" { "request" : {"body": "a \"}\" b", "n": [1, {"x": []}]},
            "caller":{"kind":"anonymous"},"trigger" :null, "request_id": "r-1",
            "causation": {"depth": 2, "chain_id": "c"}, "extra": -1.5e3 } "#;
        let s = StoredInput::read(text).unwrap_or_else(|| panic!("not read"));
        assert_eq!(
            s.request,
            Some(r#"{"body": "a \"}\" b", "n": [1, {"x": []}]}"#)
        );
        assert_eq!(s.caller, Some(r#"{"kind":"anonymous"}"#));
        assert_eq!(s.trigger, Some("null"));
        assert_eq!(s.request_id.as_deref(), Some("r-1"));
        assert_eq!(s.causation.map(|c| c.depth), Some(2));
        assert_eq!(
            top_level_fields(r#"{"a":1,"b":true,"c":"x"}"#),
            Some(vec![("a", "1"), ("b", "true"), ("c", "\"x\"")])
        );
        assert_eq!(top_level_fields(" {} "), Some(vec![]));
    }

    #[test]
    fn each_field_is_the_text_of_its_value() {
        let values = [
            json!("a \\\" } ] , \\"),
            json!({"k\"}": ["\\", "]", {"": {}}], "n": -0.5e-3}),
            json!([[], [[]], {}, null, true, false, 0, "\u{0}\u{1f600}"]),
            json!(12345678901234567890u64),
        ];
        for v in &values {
            for w in &values {
                let doc = json!({"request": v, "caller": w, "trigger": {}, "request_id": "r"});
                for text in [doc.to_string(), serde_json::to_string_pretty(&doc).unwrap()] {
                    let s = StoredInput::read(&text).unwrap_or_else(|| panic!("not read: {text}"));
                    let parse =
                        |t: Option<&str>| serde_json::from_str::<Value>(t.unwrap()).unwrap();
                    assert_eq!(&parse(s.request), v, "{text}");
                    assert_eq!(&parse(s.caller), w, "{text}");
                    assert_eq!(parse(s.trigger), json!({}));
                    assert_eq!(s.request_id.as_deref(), Some("r"));
                }
            }
        }
    }

    #[test]
    fn anything_unusual_falls_back_to_the_general_conversion() {
        for text in [
            r#"{"request": {}, "request": {}}"#,
            r#"{"req\u0075est": {}}"#,
            r#"{"request_id": 5}"#,
            r#"[1]"#,
            r#"{"request": {}} x"#,
            r#"{"request": {"#,
            r#"{"request" {}}"#,
            r#"{"request": }"#,
            "",
        ] {
            assert!(StoredInput::read(text).is_none(), "{text}");
        }
    }
}
