//! Services behind the console's admin endpoints: fixtures run on the server
//! (as `flowgate test` runs them), the diff between two versions, a run's
//! details with secrets redacted, and a run turned into a fixture whose HTTP
//! mocks reproduce it offline.

use flowgate_core::run::TriggerKind;
use flowgate_core::{FlowName, FlowPackage, RunId};
use flowgate_script::fixtures;
use flowgate_script::FlowVersion;
use flowgate_store::RunDetail;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

use crate::check::Problem;
use crate::error::{EngineError, Result};
use crate::flows::parse_existing;
use crate::{Engine, LiveState};

/// What replaces secret values (the same placeholder as for query values).
pub use flowgate_script::http::REDACTED;
/// Value given in fixtures to the secrets a run read.
pub const PLACEHOLDER_SECRET: &str = "test-value";

/// The result of one fixture run on the server.
#[derive(Debug, Clone, Serialize)]
pub struct FixtureOutcome {
    /// `tests/<name>.json`.
    pub file: String,
    /// The fixture's `name` (or its file).
    pub name: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// Readable differences of a failing fixture.
    pub differences: Vec<String>,
    /// The run's log lines (`[level] message`).
    pub logs: Vec<String>,
}

/// The fixtures of a package, run.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    /// Fixtures that passed.
    pub passed: usize,
    /// Fixtures that failed.
    pub failed: usize,
    /// Each fixture, in file order.
    pub results: Vec<FixtureOutcome>,
}

/// How a file differs between two versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    /// Only in the newer version.
    Added,
    /// Only in the older version.
    Removed,
    /// In both, with different content.
    Modified,
    /// In both, the same.
    Unchanged,
}

/// One file of a version diff.
#[derive(Debug, Clone, Serialize)]
pub struct FileDiff {
    /// Path inside the package.
    pub name: String,
    /// How it changed.
    pub status: FileStatus,
    /// Content in the older version.
    pub from: Option<String>,
    /// Content in the newer version.
    pub to: Option<String>,
}

/// One change of the compatibility report.
#[derive(Debug, Clone, Serialize)]
pub struct CompatChange {
    /// Whether it can break existing partners.
    pub breaking: bool,
    /// What changed (`endpoint_removed`, `schema_field_added`, …).
    pub kind: Value,
    /// Where.
    pub location: String,
    /// Explanation.
    pub detail: String,
}

/// The OpenAPI compatibility of two versions.
#[derive(Debug, Clone, Serialize)]
pub struct Compatibility {
    /// Whether any change is breaking.
    pub breaking: bool,
    /// Every change, breaking ones first.
    pub changes: Vec<CompatChange>,
}

/// Two versions compared.
#[derive(Debug, Clone, Serialize)]
pub struct VersionDiff {
    /// Older version.
    pub from: i64,
    /// Newer version.
    pub to: i64,
    /// Every file of either version, by name.
    pub files: Vec<FileDiff>,
    /// The compatibility report of their OpenAPI documents.
    pub compatibility: Compatibility,
}

/// The names a script reads with `secrets::get("…")` (literal names only).
pub fn secret_names(script: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in script.match_indices("secrets::get") {
        let rest = script[at + "secrets::get".len()..].trim_start();
        let Some(rest) = rest.strip_prefix('(') else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '`') else {
            continue;
        };
        if let Some(end) = rest[1..].find(quote) {
            names.insert(rest[1..=end].to_owned());
        }
    }
    names
}

/// Replaces every occurrence of a secret value in the strings of `v`.
pub fn redact_values(v: &mut Value, secrets: &[String]) {
    match v {
        Value::String(s) => {
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), REDACTED);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact_values(x, secrets)),
        Value::Object(m) => m.values_mut().for_each(|x| redact_values(x, secrets)),
        _ => {}
    }
}

/// Whether a run's trigger carries an HTTP request.
fn has_request(trigger: TriggerKind) -> bool {
    matches!(
        trigger,
        TriggerKind::Http | TriggerKind::Webhook | TriggerKind::Admin | TriggerKind::DryRun
    )
}

/// The request map of a run (`None` for event and schedule runs).
pub fn run_request(detail: &RunDetail) -> Option<Value> {
    has_request(detail.run.trigger)
        .then(|| detail.run.input.get("request").cloned())
        .flatten()
}

fn compatibility(report: &flowgate_docs::CompatReport) -> Compatibility {
    let change = |breaking: bool, c: &flowgate_docs::Change| CompatChange {
        breaking,
        kind: serde_json::to_value(c.kind).unwrap_or(Value::Null),
        location: c.location.clone(),
        detail: c.detail.clone(),
    };
    Compatibility {
        breaking: report.is_breaking(),
        changes: report
            .breaking
            .iter()
            .map(|c| change(true, c))
            .chain(report.non_breaking.iter().map(|c| change(false, c)))
            .collect(),
    }
}

impl Engine {
    /// The script API: the variables every script sees, then every host
    /// function this engine's runtime registered, with signature and doc.
    pub fn script_api(&self) -> Vec<flowgate_script::ApiEntry> {
        let mut all = flowgate_script::api::script_variables();
        all.extend(self.runtime().engine().api().iter().cloned());
        all
    }

    /// Runs the fixtures (`tests/*.json`) of a package exactly as `flowgate
    /// test` does, offline against an in-memory store with HTTP mocks. A
    /// package that does not parse or compile is refused (422) with its problems.
    pub async fn test_package(&self, files: BTreeMap<String, String>) -> Result<TestReport> {
        let refused = |problems: Vec<Problem>, message: String| {
            let mut details = Map::new();
            details.insert(
                "problems".into(),
                serde_json::to_value(&problems).unwrap_or(Value::Null),
            );
            EngineError::Invalid { message, details }
        };
        let parsed = match (FlowPackage {
            files: files.clone(),
        })
        .parse()
        {
            Ok(p) => p,
            Err(e) => return Err(refused(self.check_package(&files), e.to_string())),
        };
        let version = FlowVersion::new(0, parsed.manifest, parsed.package);
        if let Err(e) = self.runtime().check(
            &version.manifest.script,
            version
                .package
                .script(&version.manifest)
                .unwrap_or_default(),
        ) {
            return Err(refused(self.check_package(&files), e.to_string()));
        }
        let runtime = self.runtime().clone();
        let results =
            tokio::task::spawn_blocking(move || fixtures::run_package(&runtime, &version)).await?;
        let results: Vec<FixtureOutcome> = results
            .into_iter()
            .map(|r| FixtureOutcome {
                passed: r.passed(),
                logs: r
                    .outcome
                    .as_ref()
                    .map(|o| {
                        o.logs
                            .iter()
                            .map(|l| format!("[{}] {}", l.level.as_str(), l.message))
                            .collect()
                    })
                    .unwrap_or_default(),
                file: r.file,
                name: r.name,
                differences: r.diffs,
            })
            .collect();
        let passed = results.iter().filter(|r| r.passed).count();
        Ok(TestReport {
            passed,
            failed: results.len() - passed,
            results,
        })
    }

    /// Compares two versions of a flow: every file, and the compatibility of
    /// their OpenAPI documents. `from` defaults to the live version (or the
    /// one before `to` when nothing is live), `to` to the latest version.
    pub async fn version_diff(
        &self,
        flow: &str,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<VersionDiff> {
        let name = parse_existing(flow)?;
        let n = name.clone();
        let versions = self.store().call(move |s| s.list_versions(&n)).await?;
        let Some(latest) = versions.iter().map(|v| i64::from(v.version)).max() else {
            return Err(EngineError::NotFound(format!(
                "flow `{flow}` does not exist"
            )));
        };
        let to = to.unwrap_or(latest);
        let from = match from {
            Some(n) => n,
            None => match self.registry().live_state(&name).await? {
                LiveState::Live(n) => n,
                _ => (to - 1).max(1),
            },
        };
        let old = self.loaded(&name, from).await?;
        let new = self.loaded(&name, to).await?;
        let names: BTreeSet<&String> = old
            .package()
            .files
            .keys()
            .chain(new.package().files.keys())
            .collect();
        let files = names
            .into_iter()
            .map(|f| {
                let a = old.package().files.get(f).cloned();
                let b = new.package().files.get(f).cloned();
                let status = match (&a, &b) {
                    (None, _) => FileStatus::Added,
                    (_, None) => FileStatus::Removed,
                    (Some(x), Some(y)) if x == y => FileStatus::Unchanged,
                    _ => FileStatus::Modified,
                };
                FileDiff {
                    name: f.clone(),
                    status,
                    from: a,
                    to: b,
                }
            })
            .collect();
        let report = flowgate_docs::compare(
            &crate::docs::flow_doc(&old, true),
            &crate::docs::flow_doc(&new, false),
        );
        Ok(VersionDiff {
            from,
            to,
            files,
            compatibility: compatibility(&report),
        })
    }

    async fn loaded(
        &self,
        flow: &FlowName,
        number: i64,
    ) -> Result<std::sync::Arc<crate::LoadedVersion>> {
        self.registry()
            .version(flow, number)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("flow `{flow}` has no version {number}")))
    }

    /// The values of the secrets a version's script names, for redaction.
    async fn secret_values(&self, flow: &FlowName, version: u32) -> Result<Vec<String>> {
        let Some(v) = self.registry().version(flow, i64::from(version)).await? else {
            return Ok(Vec::new());
        };
        let names: Vec<String> = v
            .package()
            .script(v.manifest())
            .map(secret_names)
            .unwrap_or_default()
            .into_iter()
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .store()
            .call(move |s| {
                let mut out = Vec::new();
                for n in &names {
                    if let Some(v) = s.get_secret(n)? {
                        out.push(v.expose().to_owned());
                    }
                }
                Ok(out)
            })
            .await?)
    }

    /// A run with its logs and attempts, the values of the secrets its flow
    /// reads replaced by `[redacted]` in its input, response and HTTP calls.
    pub async fn run_detail(&self, id: &str) -> Result<RunDetail> {
        let not_found = || EngineError::NotFound(format!("run `{id}` does not exist"));
        let run_id = RunId::parse(id).map_err(|_| not_found())?;
        let mut detail = self
            .store()
            .call(move |s| s.get_run(run_id))
            .await?
            .ok_or_else(not_found)?;
        let secrets = self
            .secret_values(&detail.run.flow, detail.run.version)
            .await?;
        redact_values(&mut detail.run.input, &secrets);
        if let Some(r) = detail.run.response.as_mut() {
            redact_values(r, &secrets);
        }
        if let Some(c) = detail.run.http_calls.as_mut() {
            redact_values(c, &secrets);
        }
        Ok(detail)
    }

    /// A fixture (SPEC §6a) built from a run: its trigger, request and caller,
    /// its outbound calls as HTTP mocks and its response as the expectation,
    /// so that `flowgate test` reproduces the run offline. Secrets the flow
    /// reads get the placeholder value [`PLACEHOLDER_SECRET`].
    pub async fn run_fixture(&self, id: &str) -> Result<Value> {
        let detail = self.run_detail(id).await?;
        let run = &detail.run;
        let script_secrets = match self
            .registry()
            .version(&run.flow, i64::from(run.version))
            .await?
        {
            Some(v) => v
                .package()
                .script(v.manifest())
                .map(secret_names)
                .unwrap_or_default(),
            None => BTreeSet::new(),
        };
        let mut fixture = Map::new();
        fixture.insert("name".into(), json!(format!("run {}", run.id)));
        let mut trigger = run
            .input
            .get("trigger")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({"kind": run.trigger.as_str()}));
        if trigger.get("kind").and_then(Value::as_str) == Some("admin") {
            // Fixtures know the manifest's trigger kinds; an admin run ran the first one.
            trigger = Value::Null;
        }
        if let Some(user) = event_user(&trigger) {
            // The flow most likely reads the user its event is about: seed the
            // user as the event carried it, so the fixture runs offline.
            fixture.insert("users".into(), json!([user]));
        }
        if !trigger.is_null() {
            fixture.insert("trigger".into(), trigger);
        }
        if let Some(mut request) = run_request(&detail) {
            if let Some(m) = request.as_object_mut() {
                m.retain(|k, _| {
                    matches!(k.as_str(), "method" | "path" | "query" | "headers" | "body")
                });
            }
            fixture.insert("request".into(), request);
        }
        if let Some(caller) = run.input.get("caller").filter(|c| c.is_object()) {
            fixture.insert("caller".into(), caller.clone());
        }
        if !script_secrets.is_empty() {
            let secrets: Map<String, Value> = script_secrets
                .into_iter()
                .map(|n| (n, json!(PLACEHOLDER_SECRET)))
                .collect();
            fixture.insert("secrets".into(), Value::Object(secrets));
        }
        let mocks: Vec<Value> = run
            .http_calls
            .as_ref()
            .and_then(Value::as_array)
            .map(|calls| {
                calls
                    .iter()
                    .filter(|c| c.get("status").is_some_and(Value::is_u64))
                    .map(|c| {
                        json!({
                            "method": c.get("method").cloned().unwrap_or(json!("GET")),
                            "url": c.get("url").cloned().unwrap_or(Value::Null),
                            "status": c.get("status").cloned().unwrap_or(json!(200)),
                            "body": c.get("response_body").cloned().unwrap_or(Value::Null),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        fixture.insert("http".into(), Value::Array(mocks));
        let mut expect = Map::new();
        if let Some(status) = run.response_status {
            expect.insert("status".into(), json!(status));
        }
        if let Some(body) = run.response.as_ref().and_then(|r| r.get("body")) {
            expect.insert("body".into(), body.clone());
        }
        fixture.insert("expect".into(), Value::Object(expect));
        Ok(Value::Object(fixture))
    }
}

/// The user a `user.*` event (other than `user.deleted`) carries as its data,
/// with the fields a fixture seeds (SPEC §2).
fn event_user(trigger: &Value) -> Option<Value> {
    let event = trigger.get("event")?;
    let kind = event.get("type")?.as_str()?;
    if !kind.starts_with("user.") || kind == "user.deleted" {
        return None;
    }
    let data = event.get("data")?.as_object()?;
    data.get("id")?.as_str()?;
    data.get("email")?.as_str()?;
    let user: Map<String, Value> = data
        .iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "id" | "email" | "display_name" | "status" | "attributes" | "external_ids"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(Value::Object(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_events_seed_their_user_and_deletions_do_not() {
        let t = json!({"kind": "event", "event": {"type": "user.created", "data": {
            "id": "0190a0a0-0000-7000-8000-000000000001", "email": "ann@example.com",
            "display_name": "Ann", "created_at": "2026-12-01T00:00:00Z", "changes": ["email"]}}});
        assert_eq!(
            event_user(&t),
            Some(
                json!({"id": "0190a0a0-0000-7000-8000-000000000001", "email": "ann@example.com", "display_name": "Ann"})
            )
        );
        let mut gone = t.clone();
        gone["event"]["type"] = json!("user.deleted");
        assert_eq!(event_user(&gone), None);
        assert_eq!(event_user(&json!({"kind": "http"})), None);
    }

    #[test]
    fn secret_names_are_the_literal_ones() {
        let src = r#"let t = secrets::get("CRM_TOKEN"); let u = secrets::get( `OTHER` ); secrets::get(name);"#;
        let names: Vec<String> = secret_names(src).into_iter().collect();
        assert_eq!(names, ["CRM_TOKEN", "OTHER"]);
    }

    #[test]
    fn secret_values_are_redacted_everywhere() {
        let mut v = json!({"a": "Bearer s3cret", "b": ["s3cret"], "c": 1});
        redact_values(&mut v, &["s3cret".into(), String::new()]);
        assert_eq!(
            v,
            json!({"a": "Bearer [redacted]", "b": ["[redacted]"], "c": 1})
        );
    }
}
