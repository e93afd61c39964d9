//! Offline flow fixtures (SPEC §6a): seed an in-memory store, mock `http::`, run
//! the flow and compare the outcome with `expect`, producing a readable diff.

use flowgate_core::manifest::Trigger;
use flowgate_core::repo::KvRepo;
use flowgate_core::{FlowName, Manifest, RunId};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::ScriptEngine;
use crate::host::Host;
use crate::http::{MockHttp, MockResponse};
use crate::memory::MemoryRepo;
use crate::outcome::{RunInput, RunOutcome};
use crate::runtime::{FlowRuntime, FlowVersion};

/// One fixture file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Human description printed with the result.
    #[serde(default)]
    pub name: Option<String>,
    /// `{kind, event?, scheduled_at?}`; default: the manifest's first trigger.
    #[serde(default)]
    pub trigger: Option<Value>,
    /// `{method, path, query, headers, body}`; all optional.
    #[serde(default)]
    pub request: Option<Value>,
    /// The caller map; default depends on the trigger kind.
    #[serde(default)]
    pub caller: Option<Value>,
    /// Users to seed (may carry an `id`).
    #[serde(default)]
    pub users: Vec<Value>,
    /// Key-value state of the flow to seed.
    #[serde(default)]
    pub kv: Map<String, Value>,
    /// Secrets to seed.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Canned responses for `http::` calls.
    #[serde(default)]
    pub http: Vec<MockResponse>,
    /// What must hold after the run.
    #[serde(default)]
    pub expect: Expect,
}

/// The `expect` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Response status.
    #[serde(default)]
    pub status: Option<u16>,
    /// Response body (subset match; a problem body on failure).
    #[serde(default)]
    pub body: Option<Value>,
    /// Events emitted with `events::emit`, in order (same count, each a subset).
    #[serde(default)]
    pub events: Option<Vec<Value>>,
    /// Users in the final store, matched by `email`, as subsets.
    #[serde(default)]
    pub users: Option<Vec<Value>>,
    /// Key-value state of the flow after the run (subset).
    #[serde(default)]
    pub kv: Option<Map<String, Value>>,
    /// Substrings that must appear in the run log.
    #[serde(default)]
    pub logs_contain: Vec<String>,
}

/// The result of one fixture.
#[derive(Debug, Clone)]
pub struct FixtureResult {
    /// Path of the fixture inside the package (`tests/paid.json`).
    pub file: String,
    /// The fixture's `name` (or the file name).
    pub name: String,
    /// Differences; empty when the fixture passed.
    pub diffs: Vec<String>,
    /// The run, when it happened.
    pub outcome: Option<RunOutcome>,
}

impl FixtureResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.diffs.is_empty()
    }
}

/// Runs every fixture (`tests/*.json`) of a version.
pub fn run_package<E: ScriptEngine>(
    runtime: &FlowRuntime<E>,
    version: &FlowVersion,
) -> Vec<FixtureResult> {
    version
        .package
        .fixtures()
        .map(|(file, src)| run_fixture_source(runtime, version, file, src))
        .collect()
}

/// Parses and runs one fixture.
pub fn run_fixture_source<E: ScriptEngine>(
    runtime: &FlowRuntime<E>,
    version: &FlowVersion,
    file: &str,
    source: &str,
) -> FixtureResult {
    match serde_json::from_str::<Fixture>(source) {
        Ok(f) => run_fixture(runtime, version, file, &f),
        Err(e) => FixtureResult {
            file: file.to_owned(),
            name: file.to_owned(),
            diffs: vec![format!(
                "{file}:{}:{}: invalid fixture: {e}",
                e.line(),
                e.column()
            )],
            outcome: None,
        },
    }
}

/// Runs one parsed fixture against a fresh in-memory store.
pub fn run_fixture<E: ScriptEngine>(
    runtime: &FlowRuntime<E>,
    version: &FlowVersion,
    file: &str,
    fx: &Fixture,
) -> FixtureResult {
    let mut res = FixtureResult {
        file: file.to_owned(),
        name: fx.name.clone().unwrap_or_else(|| file.to_owned()),
        diffs: Vec::new(),
        outcome: None,
    };
    let store = Arc::new(MemoryRepo::new());
    for (i, u) in fx.users.iter().enumerate() {
        if let Err(e) = store.seed_user(u) {
            res.diffs.push(format!("/users/{i}: cannot seed user: {e}"));
        }
    }
    for (k, v) in &fx.kv {
        if let Err(e) = store.kv_set(&version.flow, k, v, None) {
            res.diffs.push(format!("/kv/{k}: cannot seed: {e}"));
        }
    }
    for (k, v) in &fx.secrets {
        store.set_secret(k, v);
    }
    let input = match build_input(&version.manifest, version.version, fx) {
        Ok(i) => i,
        Err(e) => {
            res.diffs.push(e);
            return res;
        }
    };
    if !res.diffs.is_empty() {
        return res;
    }
    let http = Arc::new(MockHttp::new(fx.http.clone()));
    let host = Host {
        users: store.clone(),
        kv: store.clone(),
        secrets: store.clone(),
        http: http.clone(),
        flow: version.flow.clone(),
    };
    let outcome = match runtime.execute_blocking(version, input, host) {
        Ok(o) => o,
        Err(e) => {
            res.diffs.push(e.to_string());
            return res;
        }
    };
    for call in http.unmatched() {
        res.diffs.push(format!("http: no mock for {call}"));
    }
    compare(&fx.expect, &outcome, &store, &version.flow, &mut res.diffs);
    res.outcome = Some(outcome);
    res
}

fn trigger_kind_of(t: &Trigger) -> &'static str {
    match t {
        Trigger::Http(_) => "http",
        Trigger::Webhook(_) => "webhook",
        Trigger::Event { .. } => "event",
        Trigger::Schedule(_) => "schedule",
    }
}

/// Builds the script's `request`, `caller`, `trigger` and `ctx` for a fixture.
pub fn build_input(manifest: &Manifest, version: i64, fx: &Fixture) -> Result<RunInput, String> {
    let trig = fx.trigger.clone().unwrap_or(Value::Null);
    let kind = trig
        .get("kind")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            manifest
                .triggers
                .first()
                .map(|t| trigger_kind_of(t).to_owned())
        })
        .unwrap_or_else(|| "http".into());
    let req = fx.request.clone().unwrap_or(Value::Null);
    let request = build_request(manifest, &kind, &req)?;
    let caller = fx
        .caller
        .clone()
        .unwrap_or_else(|| default_caller(manifest, &kind));
    let mut trigger = json!({"kind": kind});
    match kind.as_str() {
        "event" => {
            let ev = trig.get("event").cloned().unwrap_or_else(|| json!({}));
            let mut full = json!({
                "id": flowgate_core::EventId::new().to_string(),
                "type": manifest.subscribed_events().first().copied().unwrap_or("test.event"),
                "source": "fixture",
                "time": flowgate_core::rfc3339(flowgate_core::now_ms()),
                "data": {},
            });
            flowgate_core::user::merge_patch(&mut full, &ev);
            trigger["event"] = full;
        }
        "schedule" => {
            trigger["scheduled_at"] = trig
                .get("scheduled_at")
                .cloned()
                .unwrap_or_else(|| json!(flowgate_core::rfc3339(flowgate_core::now_ms())));
        }
        _ => {}
    }
    let mut ctx = crate::input::InputMap::text_only();
    ctx.str("flow", manifest.name.as_str());
    ctx.int("version", version);
    ctx.str("run_id", &RunId::new().to_string());
    ctx.str("request_id", &format!("fixture-{}", uuid::Uuid::new_v4()));
    ctx.int("attempt", 1);
    let ctx = ctx.finish();
    Ok(RunInput {
        body: None,
        stored: None,
        request,
        caller,
        trigger,
        ctx,
        reads: crate::InputReads::ALL,
    })
}

fn default_caller(manifest: &Manifest, kind: &str) -> Value {
    match kind {
        "http" => json!({"kind": "api_key", "id": "fixture", "scopes": manifest.auth.scopes}),
        "webhook" => json!({"kind": "signature", "id": (), "scopes": []}),
        other => json!({"kind": other, "id": (), "scopes": []}),
    }
}

/// Builds `request` from a partial one, matching the path against the endpoint triggers.
pub fn build_request(manifest: &Manifest, kind: &str, req: &Value) -> Result<Value, String> {
    let endpoint = manifest.endpoints().next().map(|(_, e)| e);
    let method = req
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .or_else(|| endpoint.map(|e| e.method.clone()))
        .unwrap_or_else(|| "POST".into());
    let path = req
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut params = Map::new();
    if matches!(kind, "http" | "webhook") && manifest.endpoints().next().is_some() {
        let matched = manifest
            .endpoints()
            .filter(|(_, e)| e.method == method)
            .find_map(|(_, e)| e.path.matches(&path));
        match matched {
            Some(p) => params.extend(p.into_iter().map(|(k, v)| (k, Value::String(v)))),
            None => {
                return Err(format!(
                    "/request: no trigger of the manifest matches {method} `{path}`"
                ))
            }
        }
    }
    if let Some(Value::Object(p)) = req.get("params") {
        params.extend(p.clone());
    }
    let headers: Map<String, Value> = req
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "method": method,
        "path": path,
        "params": params,
        "query": req.get("query").cloned().unwrap_or_else(|| json!({})),
        "headers": headers,
        "body": req.get("body").cloned().unwrap_or(Value::Null),
    }))
}

fn compare(
    expect: &Expect,
    out: &RunOutcome,
    store: &MemoryRepo,
    flow: &FlowName,
    diffs: &mut Vec<String>,
) {
    let status = out.status();
    if let Some(s) = expect.status {
        if s != status {
            let why = match &out.result {
                Err(f) => format!(" ({})", f.message()),
                Ok(_) => String::new(),
            };
            diffs.push(format!("/status: expected {s}, got {status}{why}"));
        }
    } else if let Err(f) = &out.result {
        if !matches!(f, crate::outcome::RunFailure::Fail { .. }) {
            diffs.push(format!("the run failed: {}", f.message()));
        }
    }
    if let Some(b) = &expect.body {
        subset(b, &out.body(), "/body", diffs);
    }
    if let Some(evs) = &expect.events {
        // As on the server: a run's events are delivered only when it succeeds.
        let delivered = if out.result.is_ok() {
            out.events.as_slice()
        } else {
            &[]
        };
        let actual: Vec<Value> = delivered
            .iter()
            .map(|e| json!({"type": e.kind, "data": e.data}))
            .collect();
        subset(
            &Value::Array(evs.clone()),
            &Value::Array(actual),
            "/events",
            diffs,
        );
    }
    if let Some(users) = &expect.users {
        let all = store.users();
        for (i, want) in users.iter().enumerate() {
            let Some(email) = want.get("email").and_then(Value::as_str) else {
                diffs.push(format!("/users/{i}: expected users need an `email`"));
                continue;
            };
            match all.iter().find(|u| u.email.eq_ignore_ascii_case(email)) {
                Some(u) => subset(want, &u.to_json(), &format!("/users/{i}"), diffs),
                None => diffs.push(format!(
                    "/users/{i}: no user with email {email:?} in the store"
                )),
            }
        }
    }
    if let Some(kv) = &expect.kv {
        subset(
            &Value::Object(kv.clone()),
            &Value::Object(store.kv_snapshot(flow)),
            "/kv",
            diffs,
        );
    }
    for s in &expect.logs_contain {
        if !out.logs.iter().any(|l| l.message.contains(s.as_str())) {
            diffs.push(format!("/logs: no log line contains {s:?}"));
        }
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Subset match: objects may have extra keys, arrays match in order with the same
/// length, scalars must be equal (`1` equals `1.0`). Differences are appended as
/// `pointer: expected X, got Y`.
pub fn subset(expected: &Value, actual: &Value, pointer: &str, diffs: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{pointer}/{}", escape(k));
                match a.get(k) {
                    Some(av) => subset(ev, av, &p, diffs),
                    None if ev.is_null() => {}
                    None => diffs.push(format!("{p}: expected {ev}, but it is missing")),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                diffs.push(format!(
                    "{pointer}: expected {} items, got {}: {}",
                    e.len(),
                    a.len(),
                    Value::Array(a.clone())
                ));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                subset(ev, av, &format!("{pointer}/{i}"), diffs);
            }
        }
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => {}
        (e, a) if e == a => {}
        (e, a) => diffs.push(format!("{pointer}: expected {e}, got {a}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_rules() {
        let mut d = Vec::new();
        subset(&json!({"a": 1}), &json!({"a": 1.0, "b": 2}), "", &mut d);
        subset(
            &json!([1, {"x": "y"}]),
            &json!([1, {"x": "y", "z": 0}]),
            "",
            &mut d,
        );
        assert!(d.is_empty(), "{d:?}");
        subset(
            &json!({"a": {"b/c": 2}}),
            &json!({"a": {"b/c": 3}}),
            "/body",
            &mut d,
        );
        assert_eq!(d, ["/body/a/b~1c: expected 2, got 3"]);
        d.clear();
        subset(&json!([1]), &json!([1, 2]), "", &mut d);
        assert_eq!(d.len(), 1);
        d.clear();
        subset(&json!({"m": 1}), &json!({}), "", &mut d);
        assert_eq!(d, ["/m: expected 1, but it is missing"]);
    }
}
