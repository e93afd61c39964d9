//! Dry runs: execute any version (drafts too) with a given request; user and
//! kv writes go to an in-memory overlay, events are collected, outbound calls
//! are answered by the given mocks (or refused). Nothing is committed.
//!
//! A dry run never reads the secret store: `secrets::get` sees only the
//! values given in the request's `secrets` (as in fixtures) and `()` for
//! every other name. A `flows:write` key may dry-run any version, so the
//! answer (response, logs, intended changes, unmatched calls) must hold
//! nothing the caller could not read otherwise; giving it no stored secret
//! closes that in every encoding a script might produce.

use flowgate_core::run::LogLine;
use flowgate_core::RunId;
use flowgate_script::{Changes, Host, MemoryRepo, MockHttp, OverlayRepo, RunInput};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::flows::parse_existing;
use crate::Engine;

/// One mocked outbound response of a dry run.
pub use flowgate_script::MockResponse;

/// Body of `POST …/dry-run`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// The request as in fixtures (`method`, `path`, `query`, `headers`, `body`).
    #[serde(default)]
    pub request: Value,
    /// The caller map (default: an admin caller).
    pub caller: Option<Value>,
    /// The trigger map (default: the version's first trigger kind).
    pub trigger: Option<Value>,
    /// Mocked outbound responses; calls without a mock are refused.
    #[serde(default)]
    pub http: Vec<MockResponse>,
    /// Secret values the run sees (the secret store is never read).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

/// What a dry run answers (the gateway renders it as `DryRunOut`).
#[derive(Debug, Clone)]
pub struct DryRunOutcome {
    /// The response the caller would have got.
    pub response: DryRunResponse,
    /// Captured log lines, secrets redacted.
    pub logs: Vec<LogLine>,
    /// Intended user and kv writes and emitted events.
    pub changes: Changes,
    /// `METHOD url` of every outbound call that had no mock.
    pub unmatched_http: Vec<String>,
    /// Run time.
    pub duration_ms: u64,
}

/// The response part of a dry run.
#[derive(Debug, Clone)]
pub struct DryRunResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers the script set.
    pub headers: BTreeMap<String, String>,
    /// The body (a problem document when the run failed).
    pub body: Value,
    /// The failure, when the run failed.
    pub error: Option<String>,
}

impl Engine {
    /// Runs version `number` of `flow` without committing anything.
    pub async fn dry_run(
        &self,
        flow: &str,
        number: i64,
        req: DryRunRequest,
    ) -> Result<DryRunOutcome> {
        let flow = parse_existing(flow)?;
        let Some(version) = self.registry().version(&flow, number).await? else {
            return Err(EngineError::NotFound(format!(
                "flow `{flow}` has no version {number}"
            )));
        };
        let store = Arc::new(self.store().clone());
        let overlay = Arc::new(OverlayRepo::new(store.clone(), store.clone()));
        let http = Arc::new(MockHttp::new(req.http));
        let secrets = Arc::new(MemoryRepo::new());
        for (name, value) in &req.secrets {
            secrets.set_secret(name, value);
        }
        let host = Host {
            users: overlay.clone(),
            kv: overlay.clone(),
            secrets,
            http: http.clone(),
            flow: flow.clone(),
        };
        let mut request = match req.request {
            Value::Object(m) => Value::Object(m),
            Value::Null => json!({}),
            _ => return Err(EngineError::invalid("`request` must be an object")),
        };
        for (k, default) in [
            ("method", json!("POST")),
            ("path", json!("")),
            ("params", json!({})),
            ("query", json!({})),
            ("headers", json!({})),
            ("body", Value::Null),
        ] {
            if request.get(k).is_none() {
                request[k] = default;
            }
        }
        let trigger = req.trigger.unwrap_or_else(|| {
            let kind = match version.manifest().triggers.first() {
                Some(flowgate_core::manifest::Trigger::Webhook(_)) => "webhook",
                Some(flowgate_core::manifest::Trigger::Event { .. }) => "event",
                Some(flowgate_core::manifest::Trigger::Schedule(_)) => "schedule",
                _ => "http",
            };
            json!({"kind": kind})
        });
        let run_id = RunId::new();
        let input = RunInput {
            body: None,
            stored: None,
            request,
            caller: req
                .caller
                .unwrap_or_else(|| json!({"kind": "admin", "id": "dry-run", "scopes": []})),
            trigger,
            ctx: Engine::ctx_map(
                flowgate_script::InputReads::ALL,
                &flow,
                number,
                run_id,
                &run_id.to_string(),
                1,
            ),
            reads: flowgate_script::InputReads::ALL,
        };
        let ticket = self.admit_run(&version, None).await?;
        let outcome = self
            .runtime()
            .execute(&version.script, std::sync::Arc::new(input), host)
            .await;
        drop(ticket);
        let outcome = outcome?;
        let changes = overlay.changes(outcome.events.clone());
        let response = match outcome.result {
            Ok(r) => DryRunResponse {
                status: r.status,
                headers: r.headers,
                body: r.body.into_value(),
                error: None,
            },
            Err(f) => DryRunResponse {
                status: f.http_status(),
                headers: BTreeMap::new(),
                body: f.problem_body(),
                error: Some(f.message()),
            },
        };
        Ok(DryRunOutcome {
            response,
            logs: outcome.logs,
            changes,
            unmatched_http: http.unmatched(),
            duration_ms: outcome.duration_ms,
        })
    }
}
