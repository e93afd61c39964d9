//! Running flows: synchronous runs (executed now, recorded with their logs
//! and emitted events in one transaction) and async runs (durably queued;
//! the queue workers execute them).

use flowgate_core::event::{Cause, Event};
use flowgate_core::run::{RunStatus, TriggerKind};
use flowgate_core::{FlowName, RunId};
use flowgate_script::{
    FlowResponse, Host, InputMap, InputReads, JsonBody, RunInput, RunOutcome, StoredMaps,
};
use flowgate_store::Run;
use serde_json::{json, Value};
use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::registry::LoadedVersion;
use crate::Engine;

/// The script's `request` map: what the caller sent, as the script sees it.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// HTTP method (`POST` for admin runs).
    pub method: String,
    /// Path below the flow's base (`""` at the base).
    pub path: String,
    /// Path parameters of the matched endpoint.
    pub params: serde_json::Map<String, Value>,
    /// Query parameters (the last value wins).
    pub query: std::collections::BTreeMap<String, String>,
    /// Headers the script may see, in arrival order, each name once
    /// (repeated ones joined with `, `).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: RequestBody,
}

/// A request body as the script's `request.body` gets it.
#[derive(Debug, Clone)]
pub enum RequestBody {
    /// A parsed value (`null` when empty).
    Value(Value),
    /// JSON kept as sent: parsed straight into script values, and stored
    /// with the run as its text.
    Json(JsonBody),
}

impl Default for RequestBody {
    fn default() -> Self {
        Self::Value(Value::Null)
    }
}

impl RunRequest {
    /// The script's `request` map, written into `m` (the body's parsed
    /// value taken, its text spliced in).
    fn write(&self, mut m: InputMap) -> JsonBody {
        m.str("method", &self.method);
        m.str("path", &self.path);
        m.value_map("params", &self.params);
        m.str_map(
            "query",
            self.query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        m.str_map(
            "headers",
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        match &self.body {
            RequestBody::Value(v) => m.value("body", v),
            RequestBody::Json(b) => m.json("body", b),
        }
        m.finish()
    }

    /// The request of an admin "run now": a `POST` of `body` at the base.
    pub fn admin(body: Value) -> Self {
        Self {
            method: "POST".into(),
            body: RequestBody::Value(body),
            ..Self::default()
        }
    }
}

/// The script's `caller` map: who is calling.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallerInfo {
    /// How the caller authenticated (`api_key`, `jwt`, `anonymous`, `signature`, `admin`).
    pub kind: &'static str,
    /// Key id, token subject, webhook scheme or client address.
    pub id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

impl CallerInfo {
    /// The caller `principal` authenticated as.
    pub fn of(principal: &flowgate_auth::Principal) -> Self {
        Self {
            kind: principal.kind.as_str(),
            id: principal.id.clone(),
            scopes: principal.scopes.clone(),
        }
    }

    /// An administrator starting a run by hand.
    pub fn admin(principal: &flowgate_auth::Principal) -> Self {
        Self {
            kind: "admin",
            ..Self::of(principal)
        }
    }

    /// The `caller` map, written into `m`.
    fn write(&self, mut m: InputMap) -> JsonBody {
        m.str("kind", self.kind);
        m.str("id", &self.id);
        m.strs("scopes", self.scopes.iter().map(String::as_str));
        m.finish()
    }

    /// The key a sync run's share of the run pool is counted for. Signed
    /// webhooks have no caller of their own (the flow's share applies).
    pub fn share_key(&self) -> Option<String> {
        (self.kind != "signature").then(|| [self.kind, ":", &self.id].concat())
    }
}

/// The script's `trigger` map: what started the run.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TriggerInfo {
    /// An HTTP endpoint.
    Http,
    /// A webhook endpoint, with the provider's delivery id when it sent one.
    Webhook {
        /// The provider's delivery id.
        delivery_id: Option<String>,
    },
    /// "Run now" from the admin API.
    Admin,
}

impl TriggerInfo {
    /// The `trigger` map, as its `Serialize` form writes it, into `m`.
    fn write(&self, mut m: InputMap) -> JsonBody {
        match self {
            Self::Http => m.str("kind", "http"),
            Self::Admin => m.str("kind", "admin"),
            Self::Webhook { delivery_id } => {
                m.str("kind", "webhook");
                match delivery_id {
                    Some(id) => m.str("delivery_id", id),
                    None => m.null("delivery_id"),
                }
            }
        }
        m.finish()
    }
}

/// One request to run a flow version.
pub struct Invocation {
    /// The version to run.
    pub version: Arc<LoadedVersion>,
    /// What started it.
    pub trigger: TriggerKind,
    /// The script's `request` map.
    pub request: RunRequest,
    /// The script's `caller` map.
    pub caller: CallerInfo,
    /// The script's `trigger` map.
    pub trigger_info: TriggerInfo,
    /// Request id of the HTTP call (or a fresh one).
    pub request_id: String,
    /// Idempotency scope or delivery id that created the run.
    pub idempotency_key: Option<String>,
}

impl Invocation {
    /// The script's `request`, `caller` and `trigger` maps, written once
    /// (the request's body taken out of the invocation): as script values
    /// built to at most `max_depth` levels when `max_depth` is set, as text
    /// only otherwise.
    /// Only what the script reads is built as values (see [`InputReads`]).
    fn input_maps(&mut self, max_depth: Option<usize>, reads: InputReads) -> StoredMaps {
        let map = |name: &str| match max_depth {
            Some(d) if reads.variable(name) => InputMap::new(d),
            _ => InputMap::text_only(),
        };
        let request = std::mem::take(&mut self.request);
        let request_map = match max_depth {
            Some(d) if reads.variable("request") => InputMap::request(d, reads),
            _ => InputMap::text_only(),
        };
        StoredMaps {
            request: request.write(request_map),
            caller: self.caller.write(map("caller")),
            trigger: self.trigger_info.write(map("trigger")),
        }
    }
}

/// A run's stored input, `{request, caller, trigger, request_id}` (what
/// replays and retries run with again), as text: the maps' own texts
/// spliced in.
fn record_text(maps: &StoredMaps, request_id: &str) -> String {
    let parts = [&maps.request, &maps.caller, &maps.trigger];
    let mut out = String::with_capacity(parts.iter().map(|p| p.text().len()).sum::<usize>() + 96);
    out.push_str("{\"request\":");
    out.push_str(maps.request.text());
    out.push_str(",\"caller\":");
    out.push_str(maps.caller.text());
    out.push_str(",\"trigger\":");
    out.push_str(maps.trigger.text());
    out.push_str(",\"request_id\":");
    flowgate_script::input::push_json_string(&mut out, request_id);
    out.push('}');
    out
}

/// Counts a finished run in `flowgate_runs_total`. The labelled handle is
/// built and looked up in the recorder once per flow and status on each thread,
/// not once per run (the flows are the published ones, the statuses four).
pub(crate) fn count_run(flow: &str, status: &'static str) {
    type ByStatus = Vec<(&'static str, metrics::Counter)>;
    thread_local! {
        static HANDLES: std::cell::RefCell<std::collections::HashMap<String, ByStatus>> =
            std::cell::RefCell::default();
    }
    HANDLES.with_borrow_mut(|handles| {
        let known = handles
            .get(flow)
            .and_then(|by_status| by_status.iter().find(|(s, _)| *s == status));
        if let Some((_, c)) = known {
            c.increment(1);
            return;
        }
        let c =
            metrics::counter!("flowgate_runs_total", "flow" => flow.to_owned(), "status" => status);
        c.increment(1);
        handles
            .entry(flow.to_owned())
            .or_default()
            .push((status, c));
    });
}

/// The stored response document of a successful run.
pub fn response_doc(r: &FlowResponse) -> Value {
    into_response_doc(r.clone())
}

/// [`response_doc`], moving the response in.
fn into_response_doc(r: FlowResponse) -> Value {
    let mut m = serde_json::Map::with_capacity(3);
    m.insert("status".into(), Value::from(r.status));
    m.insert(
        "headers".into(),
        Value::Object(
            r.headers
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        ),
    );
    m.insert("body".into(), r.body.into_value());
    Value::Object(m)
}

/// A successful run's answer written once: the document without its body
/// (`{status, headers}`), the body's JSON text for the caller, and the
/// whole stored document as text (the body's text spliced in), the same
/// document [`into_response_doc`] builds.
fn written_response(r: FlowResponse) -> (Value, String, String) {
    let body = r.body.into_json();
    let headers: serde_json::Map<String, Value> = r
        .headers
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let mut stored = String::with_capacity(body.len() + 48);
    stored.push_str("{\"status\":");
    // Writing to a `String` cannot fail.
    let _ = std::fmt::Write::write_fmt(&mut stored, format_args!("{}", r.status));
    stored.push_str(",\"headers\":");
    if headers.is_empty() {
        stored.push_str("{}");
    } else {
        // Writing a map of strings cannot fail.
        stored.push_str(&serde_json::to_string(&headers).unwrap_or_else(|_| "{}".to_owned()));
    }
    stored.push_str(",\"body\":");
    stored.push_str(&body);
    stored.push('}');
    let mut doc = serde_json::Map::with_capacity(2);
    doc.insert("status".into(), Value::from(r.status));
    doc.insert("headers".into(), Value::Object(headers));
    (Value::Object(doc), body, stored)
}

/// Converts the runtime's outcome into the store's record of an attempt.
pub fn store_outcome(outcome: &RunOutcome, status: RunStatus) -> flowgate_store::RunOutcome {
    let (response, error) = match &outcome.result {
        Ok(r) => (Some(response_doc(r)), None),
        Err(f) => (
            Some(json!({"status": f.http_status(), "body": f.problem_body()})),
            Some(f.message()),
        ),
    };
    flowgate_store::RunOutcome {
        status,
        finished_at: flowgate_core::now_ms(),
        duration_ms: i64::try_from(outcome.duration_ms).unwrap_or(i64::MAX),
        response_status: Some(outcome.status()),
        response,
        error,
        logs: outcome.logs.clone(),
        http_calls: serde_json::to_value(&outcome.http_calls).ok(),
    }
}

/// The events a successful run emitted, ready to store (carrying the run's cause).
pub fn emitted_events(flow: &FlowName, outcome: &RunOutcome, cause: &Cause) -> Vec<Event> {
    if outcome.result.is_err() {
        return Vec::new();
    }
    outcome
        .events
        .iter()
        .map(|e| {
            Event::new(e.kind.clone(), format!("flow:{flow}"), e.data.clone()).caused_by(cause)
        })
        .collect()
}

/// `flow.run_failed` for a failure that counts (not a deliberate `fail` below 500).
pub fn run_failed_event(
    run: &Run,
    outcome: &RunOutcome,
    final_status: RunStatus,
    cause: &Cause,
) -> Option<Event> {
    let f = outcome.result.as_ref().err()?;
    if !f.counts_as_run_failed_event() {
        return None;
    }
    Some(
        Event::new(
            flowgate_core::event::types::RUN_FAILED,
            "flowgate",
            json!({
                "run_id": run.id.to_string(),
                "flow": run.flow.as_str(),
                "version": run.version,
                "status": final_status.as_str(),
                "attempt": run.attempt,
                "code": f.code(),
                "error": f.message(),
            }),
        )
        .caused_by(cause),
    )
}

/// The stored form of a run of `v` that just ended with `outcome` (its
/// response and logs are added by the caller): id and start time as given,
/// its input the stored text `input`.
fn finished_run(
    v: &crate::LoadedVersion,
    trigger: TriggerKind,
    (id, started_at): (RunId, i64),
    status: RunStatus,
    outcome: &RunOutcome,
    input: String,
) -> Run {
    let stored = flowgate_store::RunOutcome {
        status,
        finished_at: flowgate_core::now_ms(),
        duration_ms: i64::try_from(outcome.duration_ms).unwrap_or(i64::MAX),
        response_status: Some(outcome.status()),
        response: None,
        error: None,
        logs: Vec::new(),
        http_calls: serde_json::to_value(&outcome.http_calls).ok(),
    };
    let mut run = Run::finished(
        v.flow.clone(),
        u32::try_from(v.number).unwrap_or(0),
        trigger,
        Value::Null,
        started_at,
        &stored,
    );
    run.id = id;
    run.input_json = Some(input);
    run
}

impl Engine {
    /// The host a run of `flow` uses: the store for users, kv and secrets and
    /// the real HTTP client. User events the run causes carry `cause`.
    pub fn host_for(&self, flow: &FlowName, cause: &Cause) -> Host {
        let store = Arc::new(self.store().clone());
        Host {
            users: Arc::new(self.store().with_cause(cause.clone())),
            kv: store.clone(),
            secrets: store,
            http: self.inner_http(),
            flow: flow.clone(),
        }
    }

    /// The script's `ctx` map, when it reads it (an empty body otherwise).
    pub fn ctx_map(
        reads: InputReads,
        flow: &FlowName,
        version: i64,
        run_id: RunId,
        request_id: &str,
        attempt: u32,
    ) -> JsonBody {
        if !reads.variable("ctx") {
            return JsonBody::default();
        }
        // A flat map of scalars: it nests no deeper than any limit allows.
        let mut m = InputMap::new(2);
        m.str("flow", flow.as_str());
        m.int("version", version);
        m.str("run_id", &run_id.to_string());
        m.str("request_id", request_id);
        m.int("attempt", i64::from(attempt));
        m.finish()
    }

    /// Runs a version now and records the run (with logs, and with its
    /// emitted events when it succeeded). The record is group-committed: the
    /// call waits for that commit only when something depends on it (emitted
    /// events, an idempotency key); a plain run's record may still be in
    /// flight when the caller answers, and a crash can lose it (never an
    /// acknowledged effect). Answers the response document (a problem
    /// document when the run failed); a plain successful run's body is
    /// written once, for the record and the answer alike
    /// ([`Answer::body_json`]).
    pub async fn execute_sync(&self, mut inv: Invocation) -> Result<Answer> {
        let run_id = RunId::new();
        let started_at = flowgate_core::now_ms();
        let v = inv.version.clone();
        let max_depth = self.runtime().config().limits.max_value_depth;
        let reads = v.script.reads();
        let maps = inv.input_maps(Some(max_depth), reads);
        let record = record_text(&maps, &inv.request_id);
        let input = Arc::new(RunInput {
            stored: Some(maps),
            ctx: Self::ctx_map(reads, &v.flow, v.number, run_id, &inv.request_id, 1),
            reads,
            ..RunInput::default()
        });
        let caller_key = inv.caller.share_key();
        let ticket = self.admit_run(&v, caller_key.as_deref()).await?;
        let cause = Cause::root(run_id.to_string());
        let outcome = self
            .runtime()
            .execute(
                &v.script,
                Arc::clone(&input),
                self.host_for(&v.flow, &cause),
            )
            .await;
        drop(ticket);
        let mut outcome = outcome?;
        drop(input);
        let status = if outcome.result.is_ok() {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        let mut events = emitted_events(&v.flow, &outcome, &cause);
        let logs = std::mem::take(&mut outcome.logs);
        let mut run = finished_run(
            &v,
            inv.trigger,
            (run_id, started_at),
            status,
            &outcome,
            record,
        );
        events.extend(run_failed_event(&run, &outcome, status, &cause));
        let idempotent = inv.idempotency_key.is_some();
        let emitted = !events.is_empty();
        // A successful run's answer is its stored response: it stays in the
        // run until the record is built from it, and is copied only for a
        // write that takes the run along (events, an idempotency record).
        // Otherwise its body is written once, for the record and the caller.
        let mut written = None;
        let failed = match outcome.result {
            Ok(r) if !emitted && !idempotent => {
                let (doc, body, stored) = written_response(r);
                run.response_json = Some(stored);
                written = Some((doc, body));
                None
            }
            Ok(r) => {
                run.response = Some(into_response_doc(r));
                None
            }
            Err(f) => {
                run.response = Some(json!({"status": f.http_status(), "body": f.problem_body()}));
                run.error = Some(f.message());
                Some(failure_doc(&f, run_id))
            }
        };
        run.idempotency_key = inv.idempotency_key;
        count_run(v.flow.as_str(), status.as_str());
        let answer = if emitted || idempotent {
            let answer = failed.unwrap_or_else(|| run.response.clone().unwrap_or(Value::Null));
            self.store().submit_run(run, logs, events).await?;
            Answer::of(answer)
        } else {
            self.store().record_run(&run, logs);
            match (failed, written) {
                (Some(doc), _) => Answer::of(doc),
                (None, Some((doc, body))) => Answer {
                    doc,
                    replayed: false,
                    body_json: Some(body),
                },
                (None, None) => Answer::of(run.response.take().unwrap_or(Value::Null)),
            }
        };
        // Emitted events wait in the outbox: hand them on now (the store
        // announces the user changes it commits itself).
        if emitted {
            self.wake_dispatcher();
        }
        Ok(answer)
    }

    /// Accepts an async flow call and returns its run's id, only after the
    /// commit that holds the run. The run is first tried right here, inline
    /// (see [`flowgate_script::FlowRuntime::run_inline`]), within the flow's
    /// and the caller's share of runs: a run that needs nothing but
    /// computation and succeeds within the inline budget is committed
    /// already finished, one write instead of a queued row, its start and
    /// its outcome. A run that fails inline is recorded as its first attempt
    /// (`record_failed_inline`). Any other run (one that calls the store or
    /// another service, or finds no room) is queued as by [`Self::enqueue`]
    /// and runs from the start on a worker: the attempt given up did nothing
    /// outside its own memory. Async runs promise no order, so a run done at
    /// once may finish before older queued ones.
    pub async fn accept_async(&self, mut inv: Invocation) -> Result<RunId> {
        if self.is_shutting_down() {
            return self.enqueue(inv).await;
        }
        let v = inv.version.clone();
        let max_depth = self.runtime().config().limits.max_value_depth;
        let reads = v.script.reads();
        let maps = inv.input_maps(Some(max_depth), reads);
        let record = record_text(&maps, &inv.request_id);
        let run_id = RunId::new();
        let started_at = flowgate_core::now_ms();
        let input = RunInput {
            stored: Some(maps),
            ctx: Self::ctx_map(reads, &v.flow, v.number, run_id, &inv.request_id, 1),
            reads,
            ..RunInput::default()
        };
        let cause = Cause::root(run_id.to_string());
        let concurrency = v.manifest().limits.concurrency;
        let caller_key = inv.caller.share_key();
        let admitted =
            self.admission()
                .try_admit(v.flow.as_str(), caller_key.as_deref(), concurrency);
        let outcome = match admitted {
            Ok(_ticket) => {
                self.runtime()
                    .run_inline(&v.script, &input, &self.host_for(&v.flow, &cause))
            }
            Err(_) => None,
        };
        drop(input);
        let mut outcome = match outcome {
            Some(o) if o.result.is_ok() => o,
            Some(failed) => {
                return self
                    .record_failed_inline(inv, record, (run_id, started_at), failed, &cause)
                    .await
            }
            None => return self.enqueue_run(Self::queued_run_with(inv, record)).await,
        };
        let events = emitted_events(&v.flow, &outcome, &cause);
        let logs = std::mem::take(&mut outcome.logs);
        let status = RunStatus::Succeeded;
        let mut run = finished_run(
            &v,
            inv.trigger,
            (run_id, started_at),
            status,
            &outcome,
            record,
        );
        run.max_attempts = v.manifest().retry.max_attempts.max(1);
        run.idempotency_key = inv.idempotency_key;
        if let Ok(r) = outcome.result {
            run.response_json = Some(written_response(r).2);
        }
        if events.is_empty() {
            self.store().submit_record(&run, logs).await?;
        } else {
            self.store().submit_run(run, logs, events).await?;
            self.wake_dispatcher();
        }
        // Done, never queued: counted in `flowgate_runs_total` and
        // `flowgate_script_inline_runs_total`, not as enqueued.
        count_run(v.flow.as_str(), status.as_str());
        Ok(run_id)
    }

    /// An async run whose inline attempt failed: stored as its first attempt,
    /// started by this node, then that attempt's outcome as a worker would
    /// record it (failed, queued again after its backoff, or dead). Answered
    /// once both have committed; a crash between the two leaves the run
    /// leased, and it runs again when the lease expires.
    async fn record_failed_inline(
        &self,
        inv: Invocation,
        record: String,
        (run_id, started_at): (RunId, i64),
        outcome: flowgate_script::RunOutcome,
        cause: &Cause,
    ) -> Result<RunId> {
        let v = inv.version.clone();
        let mut run = Self::queued_run_with(inv, record);
        run.id = run_id;
        self.lease_first_attempt(&mut run, started_at);
        self.store().submit_start(run.clone()).await?;
        let (committed, stores_events) =
            crate::queue::submit_outcome(self, &run, self.node_id(), &v, &outcome, cause);
        let recorded = committed.await;
        if stores_events {
            self.wake_dispatcher();
        }
        if !matches!(recorded, Ok(true)) {
            tracing::warn!(run.id = %run_id, "the outcome of a failed inline attempt was not recorded; the run is retried after its lease expires");
        }
        Ok(run_id)
    }

    /// Queues an async run durably and returns its id (only after the commit).
    /// When the queue is empty and a worker slot is free, the run is stored
    /// already claimed by this node and starts at once (see [`crate::queue::Direct`]).
    pub async fn enqueue(&self, inv: Invocation) -> Result<RunId> {
        self.enqueue_run(Self::queued_run(inv)).await
    }

    async fn enqueue_run(&self, run: Run) -> Result<RunId> {
        let (id, flow) = (run.id, run.flow.to_string());
        // Answered only after the commit that holds the run.
        let store = self.store();
        self.store_new_run(run, |r| match r.status {
            RunStatus::Running => store.submit_start(r),
            _ => store.submit_enqueue(r),
        })
        .await?;
        metrics::counter!("flowgate_runs_enqueued_total", "flow" => flow).increment(1);
        Ok(id)
    }

    /// Writes a new async run with `submit`, started at once when
    /// [`Self::start_now`] gives it a worker slot, queued otherwise; after
    /// the commit the run goes to its worker, or the workers are woken.
    async fn store_new_run<T: Send + 'static>(
        &self,
        mut run: Run,
        submit: impl FnOnce(Run) -> flowgate_store::Committed<T>,
    ) -> Result<T> {
        match self.start_now(&mut run) {
            Some(slot) => {
                let committed = submit(run.clone());
                self.start_when_committed(committed, run, slot).await
            }
            None => {
                let out = submit(run).await?;
                self.wake_workers();
                Ok(out)
            }
        }
    }

    /// A worker slot for `run` when it may start at once, the run then set
    /// as its claim by this node would leave it (`None`: it queues).
    fn start_now(&self, run: &mut Run) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if self.is_shutting_down() {
            return None;
        }
        let slot = self.direct().slot()?;
        self.lease_first_attempt(run, flowgate_core::now_ms());
        Some(slot)
    }

    /// Sets `run` as a claim by this node at `now` would leave it: running
    /// its first attempt, leased.
    fn lease_first_attempt(&self, run: &mut Run, now: i64) {
        let lease_ms = i64::try_from(self.config().lease.as_millis()).unwrap_or(30_000);
        run.status = RunStatus::Running;
        run.attempt = 1;
        run.lease_owner = Some(self.node_id().to_owned());
        run.lease_expires_at = Some(now + lease_ms);
        run.started_at = Some(now);
    }

    /// Waits for `committed`, the write that holds the started `run`, then
    /// hands the run to the workers (back to the queue if they stopped
    /// meanwhile). Both happen in a task of their own, so a caller that stops
    /// waiting (a client that hung up) cannot leave the run leased by a node
    /// that will not run it.
    async fn start_when_committed<T: Send + 'static>(
        &self,
        committed: flowgate_store::Committed<T>,
        run: Run,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<T> {
        let engine = self.clone();
        let handover = tokio::spawn(async move {
            let out = committed.await;
            if out.is_ok() {
                let id = run.id;
                if !engine.direct().start(run, slot) {
                    crate::queue::release(&engine, id).await;
                }
            }
            out
        });
        Ok(handover.await??)
    }

    /// Queues an async run and stores the acknowledgement `response(run_id)`
    /// under the started idempotency record `scope` in one transaction, so a
    /// repeated delivery gets the original answer even after a crash. Returns
    /// the run id and the stored response.
    pub async fn enqueue_idempotent(
        &self,
        inv: Invocation,
        scope: String,
        response: impl FnOnce(RunId) -> Value,
    ) -> Result<(RunId, Value)> {
        let run = Self::queued_run(inv);
        let (id, flow) = (run.id, run.flow.to_string());
        let doc = response(id);
        let store = self.store();
        self.store_new_run(run, |r| {
            store.submit_enqueue_with_idempotency(r, scope, &doc)
        })
        .await?;
        metrics::counter!("flowgate_runs_enqueued_total", "flow" => flow).increment(1);
        Ok((id, doc))
    }

    fn queued_run(mut inv: Invocation) -> Run {
        let input = record_text(&inv.input_maps(None, InputReads::NONE), &inv.request_id);
        Self::queued_run_with(inv, input)
    }

    /// A queued run of `inv`, whose input maps were already written as `input`.
    fn queued_run_with(inv: Invocation, input: String) -> Run {
        let v = inv.version.clone();
        let mut run = Run::queued(
            v.flow.clone(),
            u32::try_from(v.number).unwrap_or(0),
            inv.trigger,
            Value::Null,
            v.manifest().retry.max_attempts,
            flowgate_core::now_ms(),
        );
        run.input_json = Some(input);
        run.idempotency_key = inv.idempotency_key;
        run
    }
}

impl Engine {
    /// "Run now": queues an admin run of the live version.
    pub async fn run_now(&self, flow: &str, caller: CallerInfo, body: Value) -> Result<RunId> {
        let name = crate::flows::parse_existing(flow)?;
        let version = self.registry().resolve(&name, None).await?;
        let request_id = RunId::new().to_string();
        self.enqueue(Invocation {
            version,
            trigger: TriggerKind::Admin,
            request: RunRequest::admin(body),
            caller,
            trigger_info: TriggerInfo::Admin,
            request_id,
            idempotency_key: None,
        })
        .await
    }

    /// Queues a fresh attempt of an earlier run with its original input.
    pub async fn replay(&self, run_id: &str) -> Result<RunId> {
        let id = RunId::parse(run_id)
            .map_err(|_| EngineError::NotFound(format!("run `{run_id}` does not exist")))?;
        let Some(detail) = self.store().call(move |s| s.get_run(id)).await? else {
            return Err(EngineError::NotFound(format!(
                "run `{run_id}` does not exist"
            )));
        };
        let old = detail.run;
        let Some(version) = self
            .registry()
            .version(&old.flow, i64::from(old.version))
            .await?
        else {
            return Err(EngineError::Gone(format!(
                "version {} of flow `{}` no longer exists",
                old.version, old.flow
            )));
        };
        let mut run = Run::queued(
            old.flow.clone(),
            old.version,
            old.trigger,
            old.input.clone(),
            version.manifest().retry.max_attempts,
            flowgate_core::now_ms(),
        );
        run.event_id = old.event_id;
        run.scheduled_at = old.scheduled_at;
        let new_id = run.id;
        self.store().submit_enqueue(run).await?;
        self.wake_workers();
        Ok(new_id)
    }
}

pub use flowgate_store::IdempotencyBegin;

/// An idempotent call: the scope its key (or the provider's delivery id)
/// names, and the fingerprint of what was sent under it.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// Caller, flow and key (or flow and delivery id), hashed.
    pub scope: String,
    /// Hash of the method, path, query and body.
    pub request_hash: String,
}

/// What a flow call answers: a response document `{status, headers, body,
/// problem?}` (the form idempotency records store), and whether it is the
/// replay of an earlier answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The response document (without its `body` when [`Self::body_json`] holds it).
    pub doc: Value,
    /// Replayed from the idempotency record (`Idempotent-Replayed: true`).
    pub replayed: bool,
    /// The body as JSON text, when it was written once already (a sync
    /// run's, for its record): the answer sends it as it is.
    pub body_json: Option<String>,
}

impl Answer {
    /// A fresh answer of `doc`, its body in it.
    pub fn of(doc: Value) -> Self {
        Self {
            doc,
            replayed: false,
            body_json: None,
        }
    }

    /// The 202 of a run queued (or done) without an idempotency record: its
    /// small body written straight as text.
    fn accepted(run_id: RunId) -> Self {
        Self {
            doc: json!({
                "status": 202,
                "headers": {"location": format!("/admin/v1/runs/{run_id}")},
            }),
            replayed: false,
            body_json: Some(format!(r#"{{"run_id":"{run_id}"}}"#)),
        }
    }

    /// The body as a value, from [`Self::body_json`] or the document.
    pub fn body(&self) -> Value {
        match &self.body_json {
            Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            None => self.doc.get("body").cloned().unwrap_or(Value::Null),
        }
    }
}

/// The 202 document of a queued run.
fn accepted_doc(run_id: RunId) -> Value {
    json!({
        "status": 202,
        "headers": {"location": format!("/admin/v1/runs/{run_id}")},
        "body": {"run_id": run_id.to_string()},
    })
}

/// The answer of a failed sync run: its problem.
fn failure_doc(f: &flowgate_script::RunFailure, run_id: RunId) -> Value {
    let status = Some(f.http_status())
        .filter(|s| (400..600).contains(s))
        .unwrap_or(500);
    json!({
        "status": status,
        "problem": true,
        "body": {
            "type": flowgate_core::problem::problem_type(f.code()),
            "title": flowgate_core::problem::title_of(status),
            "status": status,
            "detail": f.public_detail(),
            "code": f.code(),
            "run_id": run_id.to_string(),
        },
    })
}

impl Engine {
    /// Runs a flow call by the invocation protocol once the caller is known
    /// and the body valid: the idempotency check (replay, 409 while in
    /// flight, 422 for a reused key), then the run — executed now (`Sync`)
    /// or durably queued (`Async`, answered 202 only after the commit, with
    /// its idempotency record in the same transaction) — and the answer
    /// stored for replays.
    pub async fn invoke(
        &self,
        mut inv: Invocation,
        mode: flowgate_core::manifest::RunMode,
        idempotency: Option<Idempotency>,
    ) -> Result<Answer> {
        use flowgate_core::manifest::RunMode;
        let scope = match idempotency {
            Some(i) => match self.begin_idempotent(&i.scope, &i.request_hash).await? {
                IdempotencyBegin::Started => Some(i.scope),
                IdempotencyBegin::Done(doc) => {
                    return Ok(Answer {
                        replayed: true,
                        ..Answer::of(doc)
                    })
                }
                IdempotencyBegin::InFlight => return Err(EngineError::IdempotencyInFlight),
                IdempotencyBegin::Mismatch => return Err(EngineError::IdempotencyKeyReused),
            },
            None => None,
        };
        inv.idempotency_key = scope.clone();
        let outcome = match (mode, &scope) {
            // The run and its stored 202 commit together: a repeated delivery
            // gets the original answer even if this process dies right after.
            (RunMode::Async, Some(s)) => self
                .enqueue_idempotent(inv, s.clone(), accepted_doc)
                .await
                .map(|(_, doc)| (Answer::of(doc), true)),
            (RunMode::Async, None) => self
                .accept_async(inv)
                .await
                .map(|id| (Answer::accepted(id), false)),
            // An idempotent run's answer keeps its body in the document.
            (RunMode::Sync, _) => self.execute_sync(inv).await.map(|a| (a, false)),
        };
        match outcome {
            Ok((answer, recorded)) => {
                if let Some(s) = scope.filter(|_| !recorded) {
                    self.complete_idempotent(s, &answer.doc).await;
                }
                Ok(answer)
            }
            Err(e) => {
                if let Some(s) = scope {
                    self.abandon_idempotent(s).await;
                }
                Err(e)
            }
        }
    }
}

/// The parts of the invocation protocol that keep state: webhook secrets and
/// idempotency records.
impl Engine {
    /// The secret a webhook's signature is checked with; `None` when the
    /// secret store has none under `name`.
    pub async fn webhook_secret(&self, name: &str) -> Result<Option<flowgate_core::SecretString>> {
        let name = name.to_owned();
        Ok(self
            .store()
            .call(move |s| {
                flowgate_core::repo::SecretRepo::secret_get(s, &name).map_err(Into::into)
            })
            .await?)
    }

    /// Starts the idempotent execution of `request_hash` under `scope` (or
    /// finds the earlier one); records live for `idempotency_ttl`.
    pub async fn begin_idempotent(
        &self,
        scope: &str,
        request_hash: &str,
    ) -> Result<IdempotencyBegin> {
        let ttl_ms = i64::try_from(self.config().idempotency_ttl.as_millis()).unwrap_or(i64::MAX);
        let (scope, hash) = (scope.to_owned(), request_hash.to_owned());
        Ok(self
            .store()
            .call(move |s| s.begin_idempotent(&scope, &hash, flowgate_core::now_ms(), ttl_ms))
            .await?)
    }

    /// Stores the answer of a started idempotent execution, for replays. A
    /// failure is logged: the record then expires and a retry runs again.
    pub async fn complete_idempotent(&self, scope: String, response: &Value) {
        if let Err(e) = self
            .store()
            .submit_complete_idempotent(scope, response)
            .await
        {
            tracing::warn!(error = %e, "could not store the idempotent response");
        }
    }

    /// Forgets a started idempotent execution that ended without an answer,
    /// so the caller's retry runs.
    pub async fn abandon_idempotent(&self, scope: String) {
        if let Err(e) = self
            .store()
            .call(move |s| s.abandon_idempotent(&scope))
            .await
        {
            tracing::warn!(error = %e, "could not release the idempotency record");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_maps_match_their_serialized_forms() {
        let caller = CallerInfo {
            kind: "api_key",
            id: "k1".into(),
            scopes: vec!["a:b".into(), "c".into()],
        };
        // Compared as text: key order is part of a stored input.
        let text = |b: JsonBody| b.text().to_owned();
        assert_eq!(
            text(caller.write(InputMap::new(16))),
            serde_json::to_string(&caller).unwrap()
        );
        for t in [
            TriggerInfo::Http,
            TriggerInfo::Admin,
            TriggerInfo::Webhook { delivery_id: None },
            TriggerInfo::Webhook {
                delivery_id: Some("msg_1".into()),
            },
        ] {
            assert_eq!(
                text(t.write(InputMap::text_only())),
                serde_json::to_string(&t).unwrap()
            );
        }
    }

    #[test]
    fn a_stored_input_holds_the_request_as_sent() {
        let body = JsonBody::parse(br#"{"n": 1, "s": "x"}"#, 16).unwrap();
        let mut inv_request = RunRequest {
            method: "POST".into(),
            path: "/a".into(),
            query: [("q".to_owned(), "1".to_owned())].into(),
            headers: vec![("x-one".into(), "a, b".into())],
            body: RequestBody::Json(body),
            ..RunRequest::default()
        };
        inv_request.params.insert("id".into(), json!(7));
        let maps = StoredMaps {
            request: inv_request.write(InputMap::new(16)),
            caller: CallerInfo {
                kind: "anonymous",
                id: "127.0.0.1".into(),
                scopes: Vec::new(),
            }
            .write(InputMap::new(16)),
            trigger: TriggerInfo::Http.write(InputMap::new(16)),
        };
        let text = record_text(&maps, "req\"1");
        assert_eq!(
            text,
            concat!(
                r#"{"request":{"method":"POST","path":"/a","params":{"id":7},"query":{"q":"1"},"#,
                r#""headers":{"x-one":"a, b"},"body":{"n": 1, "s": "x"}},"#,
                r#""caller":{"kind":"anonymous","id":"127.0.0.1","scopes":[]},"#,
                r#""trigger":{"kind":"http"},"request_id":"req\"1"}"#
            )
        );
    }
}
