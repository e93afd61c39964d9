//! Running flows: synchronous runs (executed now, recorded with their logs
//! and emitted events in one transaction) and async runs (durably queued;
//! the queue workers execute them).

use flowgate_core::event::{Cause, Event};
use flowgate_core::run::{RunStatus, TriggerKind};
use flowgate_core::{EventId, FlowName, RunId};
use flowgate_script::{FlowResponse, Host, RunInput, RunOutcome};
use flowgate_store::Run;
use serde_json::{json, Value};
use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::registry::LoadedVersion;
use crate::Engine;

/// One request to run a flow version.
pub struct Invocation {
    /// The version to run.
    pub version: Arc<LoadedVersion>,
    /// What started it.
    pub trigger: TriggerKind,
    /// The script's `request` map.
    pub request: Value,
    /// The script's `caller` map.
    pub caller: Value,
    /// The script's `trigger` map.
    pub trigger_map: Value,
    /// Request id of the HTTP call (or a fresh one).
    pub request_id: String,
    /// Idempotency scope or delivery id that created the run.
    pub idempotency_key: Option<String>,
    /// Event that triggered the run.
    pub event_id: Option<EventId>,
    /// Due time of a schedule run.
    pub scheduled_at: Option<i64>,
}

/// A finished synchronous run.
pub struct SyncRun {
    /// Its id.
    pub run_id: RunId,
    /// What it produced.
    pub outcome: RunOutcome,
}

/// The stored response document of a successful run.
pub fn response_doc(r: &FlowResponse) -> Value {
    json!({"status": r.status, "headers": r.headers, "body": r.body})
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

    /// The script's `ctx` map.
    pub fn ctx_map(
        flow: &FlowName,
        version: i64,
        run_id: RunId,
        request_id: &str,
        attempt: u32,
    ) -> Value {
        json!({
            "flow": flow.as_str(),
            "version": version,
            "run_id": run_id.to_string(),
            "request_id": request_id,
            "attempt": attempt,
        })
    }

    /// Runs a version now and records the run (with logs, and with its
    /// emitted events when it succeeded). The record is group-committed: the
    /// call waits for that commit only when something depends on it (emitted
    /// events, an idempotency key); a plain run's record may still be in
    /// flight when the caller answers, and a crash can lose it (never an
    /// acknowledged effect).
    pub async fn execute_sync(&self, inv: Invocation) -> Result<SyncRun> {
        let run_id = RunId::new();
        let started_at = flowgate_core::now_ms();
        let v = inv.version.clone();
        let input = RunInput {
            request: inv.request.clone(),
            caller: inv.caller.clone(),
            trigger: inv.trigger_map.clone(),
            ctx: Self::ctx_map(&v.flow, v.number, run_id, &inv.request_id, 1),
        };
        let caller_key = crate::admission::caller_key(&inv.caller);
        let ticket = self.admit_run(&v, caller_key.as_deref()).await?;
        let cause = Cause::root(run_id.to_string());
        let outcome = self
            .runtime()
            .execute(&v.script, input, self.host_for(&v.flow, &cause))
            .await;
        drop(ticket);
        let outcome = outcome?;
        let status = if outcome.result.is_ok() {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        let stored = store_outcome(&outcome, status);
        let mut run = Run::finished(
            v.flow.clone(),
            u32::try_from(v.number).unwrap_or(0),
            inv.trigger,
            json!({"request": inv.request, "caller": inv.caller, "trigger": inv.trigger_map, "request_id": inv.request_id}),
            started_at,
            &stored,
        );
        run.id = run_id;
        let idempotent = inv.idempotency_key.is_some();
        run.idempotency_key = inv.idempotency_key;
        run.event_id = inv.event_id;
        run.scheduled_at = inv.scheduled_at;
        let mut events = emitted_events(&v.flow, &outcome, &cause);
        events.extend(run_failed_event(&run, &outcome, status, &cause));
        metrics::counter!("flowgate_runs_total", "flow" => v.flow.to_string(), "status" => status.as_str()).increment(1);
        let emitted = !events.is_empty();
        if emitted || idempotent {
            self.store().submit_run(run, stored.logs, events).await?;
        } else {
            self.store().record_run(run, stored.logs);
        }
        // Emitted events wait in the outbox: hand them on now (the store
        // announces the user changes it commits itself).
        if emitted {
            self.wake_dispatcher();
        }
        Ok(SyncRun { run_id, outcome })
    }

    /// Queues an async run durably and returns its id (only after the commit).
    pub async fn enqueue(&self, inv: Invocation) -> Result<RunId> {
        let run = Self::queued_run(inv);
        let (id, flow) = (run.id, run.flow.to_string());
        // Answered only after the commit that holds the run.
        self.store().submit_enqueue(run).await?;
        metrics::counter!("flowgate_runs_enqueued_total", "flow" => flow).increment(1);
        self.wake_workers();
        Ok(id)
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
        self.store()
            .submit_enqueue_with_idempotency(run, scope, &doc)
            .await?;
        metrics::counter!("flowgate_runs_enqueued_total", "flow" => flow).increment(1);
        self.wake_workers();
        Ok((id, doc))
    }

    fn queued_run(inv: Invocation) -> Run {
        let v = inv.version.clone();
        let mut run = Run::queued(
            v.flow.clone(),
            u32::try_from(v.number).unwrap_or(0),
            inv.trigger,
            json!({"request": inv.request, "caller": inv.caller, "trigger": inv.trigger_map, "request_id": inv.request_id}),
            v.manifest().retry.max_attempts,
            flowgate_core::now_ms(),
        );
        run.idempotency_key = inv.idempotency_key;
        run.event_id = inv.event_id;
        run.scheduled_at = inv.scheduled_at;
        run
    }
}

impl Engine {
    /// "Run now": queues an admin run of the live version.
    pub async fn run_now(&self, flow: &str, caller: Value, body: Value) -> Result<RunId> {
        let name = crate::flows::parse_existing(flow)?;
        let version = self.registry().resolve(&name, None).await?;
        let request_id = RunId::new().to_string();
        self.enqueue(Invocation {
            version,
            trigger: TriggerKind::Admin,
            request: json!({"method": "POST", "path": "", "params": {}, "query": {}, "headers": {}, "body": body}),
            caller,
            trigger_map: json!({"kind": "admin"}),
            request_id,
            idempotency_key: None,
            event_id: None,
            scheduled_at: None,
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
