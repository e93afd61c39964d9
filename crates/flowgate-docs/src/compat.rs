//! Compatibility report between two versions of a flow: what a partner
//! integrated against `old` would notice when `new` goes live.
//!
//! Detected:
//! - endpoints (method + path, parameter names ignored) removed, added; trigger
//!   kind (http ↔ webhook), run mode (sync ↔ async) and signature scheme changed;
//! - `[auth] mode` accepting fewer kinds of caller, scopes added (removed scopes
//!   and wider modes are reported as non-breaking);
//! - input schema (requests must still be accepted): schema added where there
//!   was none, newly required properties, accepted properties removed when
//!   `additionalProperties` is `false`, `additionalProperties` becoming `false`,
//!   types narrowed (`number` → `integer`, a union shrinking), enum/const values
//!   removed or an enum added, new or tighter `minimum`/`maximum`/
//!   `exclusiveMinimum`/`exclusiveMaximum`/`minLength`/`maxLength`/`minItems`/
//!   `maxItems`, a new or changed `pattern`;
//! - output schema (clients must still understand responses): schema removed,
//!   properties removed, properties no longer required, types widened or
//!   changed, enum values added;
//! - recursion into `properties` and `items` (a schema or, for tuples, an array).
//!
//! Not detected (reported by nobody; review by hand): anything behind `$ref`,
//! `allOf`/`anyOf`/`oneOf`/`not`/`if`-`then`-`else`, `patternProperties`,
//! `prefixItems`, `dependentRequired`, `format`, `multipleOf`, `uniqueItems`,
//! changes in what the script does, and limit changes other than reporting them
//! (rate, burst, timeout and body size changes are listed as non-breaking).

use flowgate_core::manifest::{AuthMode, EndpointTrigger, RunMode, Trigger};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

use crate::FlowDoc;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeKind {
    /// An endpoint (method + path) no longer exists.
    EndpointRemoved,
    /// A new endpoint.
    EndpointAdded,
    /// An endpoint changed between http and webhook.
    TriggerKindChanged,
    /// An endpoint changed between sync and async.
    ModeChanged,
    /// A webhook's signature scheme was added, removed or changed.
    SignatureChanged,
    /// `[auth] mode` changed.
    AuthModeChanged,
    /// A required scope was added.
    ScopeAdded,
    /// A required scope was removed.
    ScopeRemoved,
    /// Event subscriptions or the schedule changed.
    TriggersChanged,
    /// Rate, burst, timeout or body size changed.
    LimitsChanged,
    /// The input or output schema appeared or disappeared.
    SchemaPresence,
    /// A property appeared in a schema.
    PropertyAdded,
    /// A property disappeared from a schema.
    PropertyRemoved,
    /// `required` changed.
    RequiredChanged,
    /// `type` changed.
    TypeChanged,
    /// `enum` or `const` changed.
    EnumChanged,
    /// A validation keyword (bounds, lengths, pattern, additionalProperties) changed.
    ConstraintChanged,
}

/// One difference between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What changed.
    pub kind: ChangeKind,
    /// Where: `input.schema.json#/properties/amount`, `POST /invoices/{}`, `[auth]`, …
    pub location: String,
    /// Human explanation.
    pub detail: String,
}

/// The differences between two versions, split by whether they can break a
/// partner integrated against the old one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompatReport {
    /// Changes that can break existing callers or consumers.
    pub breaking: Vec<Change>,
    /// Changes existing callers do not have to act on.
    pub non_breaking: Vec<Change>,
}

impl CompatReport {
    /// Whether any change is breaking.
    pub fn is_breaking(&self) -> bool {
        !self.breaking.is_empty()
    }

    fn push(
        &mut self,
        breaking: bool,
        kind: ChangeKind,
        location: impl Into<String>,
        detail: impl Into<String>,
    ) {
        let c = Change {
            kind,
            location: location.into(),
            detail: detail.into(),
        };
        if breaking {
            self.breaking.push(c);
        } else {
            self.non_breaking.push(c);
        }
    }
}

/// Compares `new` against `old` (see the module documentation for what is and
/// is not detected).
pub fn compare(old: &FlowDoc<'_>, new: &FlowDoc<'_>) -> CompatReport {
    let mut r = CompatReport::default();
    compare_endpoints(old, new, &mut r);
    compare_auth(old, new, &mut r);
    compare_other_triggers(old, new, &mut r);
    compare_limits(old, new, &mut r);
    // A schema that does not parse counts as absent (the package parser refuses
    // such packages anyway).
    let (oi, ni) = (
        old.input_schema().ok().flatten(),
        new.input_schema().ok().flatten(),
    );
    match (&oi, &ni) {
        (None, Some(_)) if has_endpoints(new) => r.push(
            true,
            ChangeKind::SchemaPresence,
            "input.schema.json",
            "an input schema was added: bodies are now validated and must be application/json",
        ),
        (Some(_), None) => r.push(
            false,
            ChangeKind::SchemaPresence,
            "input.schema.json",
            "the input schema was removed: any body is accepted",
        ),
        (Some(o), Some(n)) => schema_diff(o, n, Dir::Input, "input.schema.json#", &mut r),
        _ => {}
    }
    let (oo, no) = (
        old.output_schema().ok().flatten(),
        new.output_schema().ok().flatten(),
    );
    match (&oo, &no) {
        (Some(_), None) => r.push(
            true,
            ChangeKind::SchemaPresence,
            "output.schema.json",
            "the output schema was removed: responses are no longer described",
        ),
        (None, Some(_)) => r.push(
            false,
            ChangeKind::SchemaPresence,
            "output.schema.json",
            "an output schema was added",
        ),
        (Some(o), Some(n)) => schema_diff(o, n, Dir::Output, "output.schema.json#", &mut r),
        _ => {}
    }
    r
}

fn has_endpoints(d: &FlowDoc<'_>) -> bool {
    d.manifest.endpoints().next().is_some()
}

/// `METHOD /flows/{flow}/path` with parameter names blanked, so renaming one is no change.
fn endpoint_key(flow: &str, ep: &EndpointTrigger) -> String {
    let path: Vec<&str> = ep
        .path
        .as_str()
        .split('/')
        .map(|s| if s.starts_with('{') { "{}" } else { s })
        .collect();
    format!("{} /flows/{flow}{}", ep.method, path.join("/"))
}

fn compare_endpoints(old: &FlowDoc<'_>, new: &FlowDoc<'_>, r: &mut CompatReport) {
    let new_eps: Vec<(String, &Trigger, &EndpointTrigger)> = new
        .manifest
        .endpoints()
        .map(|(t, e)| (endpoint_key(old.flow, e), t, e))
        .collect();
    let old_eps: Vec<(String, &Trigger, &EndpointTrigger)> = old
        .manifest
        .endpoints()
        .map(|(t, e)| (endpoint_key(old.flow, e), t, e))
        .collect();
    for (key, ot, oe) in &old_eps {
        let Some((_, nt, ne)) = new_eps.iter().find(|(k, _, _)| k == key) else {
            r.push(
                true,
                ChangeKind::EndpointRemoved,
                key.clone(),
                "the endpoint no longer exists",
            );
            continue;
        };
        let kind = |t: &Trigger| {
            if matches!(t, Trigger::Webhook(_)) {
                "webhook"
            } else {
                "http"
            }
        };
        if kind(ot) != kind(nt) {
            r.push(
                true,
                ChangeKind::TriggerKindChanged,
                key.clone(),
                format!("trigger kind changed from {} to {}", kind(ot), kind(nt)),
            );
        }
        if oe.mode != ne.mode {
            let m = |m: RunMode| {
                if m == RunMode::Sync {
                    "sync (200 with the flow's response)"
                } else {
                    "async (202 with a run id)"
                }
            };
            r.push(
                true,
                ChangeKind::ModeChanged,
                key.clone(),
                format!("changed from {} to {}", m(oe.mode), m(ne.mode)),
            );
        }
        let scheme = |e: &EndpointTrigger| {
            e.signature
                .as_ref()
                .map(|s| format!("{} ({})", s.scheme.as_str(), s.header))
        };
        if scheme(oe) != scheme(ne) {
            let show = |s: Option<String>| s.unwrap_or_else(|| "none".into());
            r.push(
                true,
                ChangeKind::SignatureChanged,
                key.clone(),
                format!(
                    "signature changed from {} to {}",
                    show(scheme(oe)),
                    show(scheme(ne))
                ),
            );
        }
    }
    for (key, _, _) in &new_eps {
        if !old_eps.iter().any(|(k, _, _)| k == key) {
            r.push(
                false,
                ChangeKind::EndpointAdded,
                key.clone(),
                "new endpoint",
            );
        }
    }
}

/// The kinds of caller a mode admits: API key, JWT, anonymous.
fn admits(mode: AuthMode) -> [bool; 3] {
    match mode {
        AuthMode::ApiKey => [true, false, false],
        AuthMode::OAuth2 => [false, true, false],
        AuthMode::Any => [true, true, false],
        AuthMode::None => [true, true, true],
    }
}

fn compare_auth(old: &FlowDoc<'_>, new: &FlowDoc<'_>, r: &mut CompatReport) {
    // `[auth]` matters only for endpoints without a signature.
    let uses_auth = |d: &FlowDoc<'_>| d.manifest.endpoints().any(|(_, e)| e.signature.is_none());
    if !uses_auth(old) || !uses_auth(new) {
        return;
    }
    let (om, nm) = (old.manifest.auth.mode, new.manifest.auth.mode);
    if om != nm {
        let (o, n) = (admits(om), admits(nm));
        let narrowed = o.iter().zip(n.iter()).any(|(a, b)| *a && !*b);
        r.push(
            narrowed,
            ChangeKind::AuthModeChanged,
            "[auth] mode",
            format!(
                "changed from {} to {}{}",
                om.as_str(),
                nm.as_str(),
                if narrowed {
                    ": some callers are no longer accepted"
                } else {
                    ": every earlier caller is still accepted"
                }
            ),
        );
    }
    if nm == AuthMode::None {
        return;
    }
    let os: BTreeSet<&String> = old.manifest.auth.scopes.iter().collect();
    let ns: BTreeSet<&String> = new.manifest.auth.scopes.iter().collect();
    for s in ns.difference(&os) {
        r.push(
            true,
            ChangeKind::ScopeAdded,
            "[auth] scopes",
            format!("scope `{s}` is now required"),
        );
    }
    for s in os.difference(&ns) {
        r.push(
            false,
            ChangeKind::ScopeRemoved,
            "[auth] scopes",
            format!("scope `{s}` is no longer required"),
        );
    }
}

fn compare_other_triggers(old: &FlowDoc<'_>, new: &FlowDoc<'_>, r: &mut CompatReport) {
    let oe: BTreeSet<&str> = old.manifest.subscribed_events().into_iter().collect();
    let ne: BTreeSet<&str> = new.manifest.subscribed_events().into_iter().collect();
    for e in oe.difference(&ne) {
        r.push(
            false,
            ChangeKind::TriggersChanged,
            "trigger events",
            format!("no longer subscribed to `{e}`"),
        );
    }
    for e in ne.difference(&oe) {
        r.push(
            false,
            ChangeKind::TriggersChanged,
            "trigger events",
            format!("now subscribed to `{e}`"),
        );
    }
    let sched = |d: &FlowDoc<'_>| {
        d.manifest
            .schedule()
            .map(|s| format!("`{}` ({})", s.cron, s.timezone))
    };
    if sched(old) != sched(new) {
        let show = |s: Option<String>| s.unwrap_or_else(|| "none".into());
        r.push(
            false,
            ChangeKind::TriggersChanged,
            "trigger schedule",
            format!(
                "schedule changed from {} to {}",
                show(sched(old)),
                show(sched(new))
            ),
        );
    }
}

fn compare_limits(old: &FlowDoc<'_>, new: &FlowDoc<'_>, r: &mut CompatReport) {
    let (o, n) = (&old.manifest.limits, &new.manifest.limits);
    let rate = |l: &flowgate_core::manifest::Limits| {
        l.rate
            .as_ref()
            .map(|r| format!("{} (burst {})", r.raw, l.burst.unwrap_or(r.count)))
            .unwrap_or_else(|| "none".into())
    };
    if rate(o) != rate(n) {
        r.push(
            false,
            ChangeKind::LimitsChanged,
            "[limits] rate",
            format!("changed from {} to {}", rate(o), rate(n)),
        );
    }
    if o.timeout_ms != n.timeout_ms {
        r.push(
            false,
            ChangeKind::LimitsChanged,
            "[limits] timeout_ms",
            format!("changed from {} to {}", o.timeout_ms, n.timeout_ms),
        );
    }
    if o.max_body_bytes != n.max_body_bytes {
        r.push(
            false,
            ChangeKind::LimitsChanged,
            "[limits] max_body_bytes",
            format!("changed from {} to {}", o.max_body_bytes, n.max_body_bytes),
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Requests: `new` must accept everything `old` accepted.
    Input,
    /// Responses: clients of `old` must understand everything `new` sends.
    Output,
}

fn esc(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The set of JSON types a schema allows (`None` = any). `integer` is kept
/// apart from `number`; `number` includes integers.
fn types(s: &Map<String, Value>) -> Option<BTreeSet<String>> {
    match s.get("type")? {
        Value::String(t) => Some(std::iter::once(t.clone()).collect()),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

/// Whether type set `a` allows only values `b` allows too.
fn types_within(a: &Option<BTreeSet<String>>, b: &Option<BTreeSet<String>>) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => a
            .iter()
            .all(|t| b.contains(t) || (t == "integer" && b.contains("number"))),
    }
}

fn show_types(t: &Option<BTreeSet<String>>) -> String {
    match t {
        None => "any".into(),
        Some(s) => s.iter().cloned().collect::<Vec<_>>().join(" | "),
    }
}

fn enum_values(s: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(Value::Array(a)) = s.get("enum") {
        return Some(a.clone());
    }
    s.get("const").map(|c| vec![c.clone()])
}

fn schema_diff(old: &Value, new: &Value, dir: Dir, at: &str, r: &mut CompatReport) {
    let (Value::Object(o), Value::Object(n)) = (old, new) else {
        if old != new {
            // Boolean schemas: `true` accepts everything, `false` nothing.
            let breaking = match dir {
                Dir::Input => old.as_bool() != Some(false) && new.as_bool() != Some(true),
                Dir::Output => new.as_bool() != Some(false) && old.as_bool() != Some(true),
            };
            r.push(
                breaking,
                ChangeKind::TypeChanged,
                at,
                "the schema changed between a boolean and an object schema",
            );
        }
        return;
    };

    // type
    let (ot, nt) = (types(o), types(n));
    if ot != nt {
        let breaking = match dir {
            Dir::Input => !types_within(&ot, &nt),
            Dir::Output => !types_within(&nt, &ot),
        };
        r.push(
            breaking,
            ChangeKind::TypeChanged,
            format!("{at}/type"),
            format!(
                "type changed from {} to {}",
                show_types(&ot),
                show_types(&nt)
            ),
        );
    }

    // enum / const
    let (oe, ne) = (enum_values(o), enum_values(n));
    if oe != ne {
        let removed: Vec<&Value> = match (&oe, &ne) {
            (Some(o), Some(n)) => o.iter().filter(|v| !n.contains(v)).collect(),
            _ => Vec::new(),
        };
        let added: Vec<&Value> = match (&oe, &ne) {
            (Some(o), Some(n)) => n.iter().filter(|v| !o.contains(v)).collect(),
            _ => Vec::new(),
        };
        let list = |v: &[&Value]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (&oe, &ne, dir) {
            (None, Some(_), Dir::Input) => r.push(
                true,
                ChangeKind::EnumChanged,
                format!("{at}/enum"),
                "values are now restricted to a list",
            ),
            (None, Some(_), Dir::Output) => r.push(
                false,
                ChangeKind::EnumChanged,
                format!("{at}/enum"),
                "values are now restricted to a list",
            ),
            (Some(_), None, Dir::Input) => r.push(
                false,
                ChangeKind::EnumChanged,
                format!("{at}/enum"),
                "values are no longer restricted to a list",
            ),
            (Some(_), None, Dir::Output) => r.push(
                true,
                ChangeKind::EnumChanged,
                format!("{at}/enum"),
                "values are no longer restricted to a list",
            ),
            _ => {
                if !removed.is_empty() {
                    r.push(
                        dir == Dir::Input,
                        ChangeKind::EnumChanged,
                        format!("{at}/enum"),
                        format!("values removed: {}", list(&removed)),
                    );
                }
                if !added.is_empty() {
                    r.push(
                        dir == Dir::Output,
                        ChangeKind::EnumChanged,
                        format!("{at}/enum"),
                        format!("values added: {}", list(&added)),
                    );
                }
            }
        }
    }

    // Validation keywords (inputs only: a tighter output is no problem for clients).
    if dir == Dir::Input {
        for (kw, larger_is_tighter) in [
            ("minimum", true),
            ("exclusiveMinimum", true),
            ("minLength", true),
            ("minItems", true),
            ("minProperties", true),
            ("maximum", false),
            ("exclusiveMaximum", false),
            ("maxLength", false),
            ("maxItems", false),
            ("maxProperties", false),
        ] {
            let (ov, nv) = (
                o.get(kw).and_then(Value::as_f64),
                n.get(kw).and_then(Value::as_f64),
            );
            if ov == nv {
                continue;
            }
            let tighter = match (ov, nv) {
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => (b > a) == larger_is_tighter,
                (None, None) => false,
            };
            let show = |v: Option<f64>| v.map_or_else(|| "none".to_owned(), |x| x.to_string());
            r.push(
                tighter,
                ChangeKind::ConstraintChanged,
                format!("{at}/{kw}"),
                format!("`{kw}` changed from {} to {}", show(ov), show(nv)),
            );
        }
        if o.get("pattern") != n.get("pattern") {
            let breaking = n.get("pattern").is_some();
            r.push(
                breaking,
                ChangeKind::ConstraintChanged,
                format!("{at}/pattern"),
                "`pattern` changed",
            );
        }
    }

    // Objects: required, properties, additionalProperties.
    let req = |m: &Map<String, Value>| -> BTreeSet<String> {
        m.get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (or, nr) = (req(o), req(n));
    for k in nr.difference(&or) {
        match dir {
            Dir::Input => r.push(
                true,
                ChangeKind::RequiredChanged,
                format!("{at}/properties/{}", esc(k)),
                format!("`{k}` is now required"),
            ),
            Dir::Output => r.push(
                false,
                ChangeKind::RequiredChanged,
                format!("{at}/properties/{}", esc(k)),
                format!("`{k}` is now always present"),
            ),
        }
    }
    for k in or.difference(&nr) {
        match dir {
            Dir::Input => r.push(
                false,
                ChangeKind::RequiredChanged,
                format!("{at}/properties/{}", esc(k)),
                format!("`{k}` is no longer required"),
            ),
            Dir::Output => r.push(
                true,
                ChangeKind::RequiredChanged,
                format!("{at}/properties/{}", esc(k)),
                format!("`{k}` may now be missing"),
            ),
        }
    }
    let closed =
        |m: &Map<String, Value>| m.get("additionalProperties") == Some(&Value::Bool(false));
    let empty = Map::new();
    let op = o
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let np = n
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if dir == Dir::Input && closed(n) && !closed(o) {
        r.push(
            true,
            ChangeKind::ConstraintChanged,
            format!("{at}/additionalProperties"),
            "properties not listed are now rejected",
        );
    }
    if dir == Dir::Input && closed(o) && !closed(n) {
        r.push(
            false,
            ChangeKind::ConstraintChanged,
            format!("{at}/additionalProperties"),
            "properties not listed are now accepted",
        );
    }
    for (k, ov) in op {
        let loc = format!("{at}/properties/{}", esc(k));
        match np.get(k) {
            Some(nv) => schema_diff(ov, nv, dir, &loc, r),
            None => match dir {
                Dir::Input if closed(n) => r.push(
                    true,
                    ChangeKind::PropertyRemoved,
                    loc,
                    format!("`{k}` is no longer accepted"),
                ),
                Dir::Input => r.push(
                    false,
                    ChangeKind::PropertyRemoved,
                    loc,
                    format!("`{k}` is no longer described (still accepted, may be ignored)"),
                ),
                Dir::Output => r.push(
                    true,
                    ChangeKind::PropertyRemoved,
                    loc,
                    format!("`{k}` is no longer in the response"),
                ),
            },
        }
    }
    for k in np.keys().filter(|k| !op.contains_key(*k)) {
        let loc = format!("{at}/properties/{}", esc(k));
        // A new required input property is reported under `required`.
        r.push(
            false,
            ChangeKind::PropertyAdded,
            loc,
            format!("`{k}` was added"),
        );
    }

    // Arrays: items (schema) or tuple items (array of schemas).
    match (o.get("items"), n.get("items")) {
        (
            Some(oi @ (Value::Object(_) | Value::Bool(_))),
            Some(ni @ (Value::Object(_) | Value::Bool(_))),
        ) => schema_diff(oi, ni, dir, &format!("{at}/items"), r),
        (Some(Value::Array(oa)), Some(Value::Array(na))) => {
            for (i, (oi, ni)) in oa.iter().zip(na.iter()).enumerate() {
                schema_diff(oi, ni, dir, &format!("{at}/items/{i}"), r);
            }
        }
        (None, Some(_)) if dir == Dir::Input => r.push(
            true,
            ChangeKind::ConstraintChanged,
            format!("{at}/items"),
            "array items are now constrained",
        ),
        (Some(_), None) if dir == Dir::Output => r.push(
            true,
            ChangeKind::ConstraintChanged,
            format!("{at}/items"),
            "array items are no longer described",
        ),
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testutil::package;
    use flowgate_core::{FlowPackage, Manifest};

    fn pkg(toml: &str, input: Option<&str>, output: Option<&str>) -> (Manifest, FlowPackage) {
        let mut files = vec![("flow.toml", toml), ("main.rhai", "1")];
        if let Some(i) = input {
            files.push(("input.schema.json", i));
        }
        if let Some(o) = output {
            files.push(("output.schema.json", o));
        }
        package(&files)
    }

    const HTTP: &str = "name = \"f\"\n[[trigger]]\nkind = \"http\"\n";

    fn run(old: (Manifest, FlowPackage), new: (Manifest, FlowPackage)) -> CompatReport {
        compare(
            &FlowDoc::new("f", 1, &old.0, &old.1, true),
            &FlowDoc::new("f", 2, &new.0, &new.1, false),
        )
    }

    fn kinds(c: &[Change]) -> Vec<(ChangeKind, String)> {
        c.iter().map(|c| (c.kind, c.location.clone())).collect()
    }

    #[test]
    fn identical_versions_have_no_changes() {
        let s = r#"{"type": "object", "properties": {"a": {"type": "string"}}}"#;
        let r = run(pkg(HTTP, Some(s), Some(s)), pkg(HTTP, Some(s), Some(s)));
        assert_eq!(r, CompatReport::default());
    }

    #[test]
    fn input_narrowing_is_breaking() {
        let old = r#"{"type": "object", "required": ["a"], "properties": {
            "a": {"type": "number"}, "b": {"type": "string", "enum": ["x", "y"]},
            "c": {"type": "string", "maxLength": 10},
            "d": {"type": "array", "items": {"type": "object", "properties": {"e": {"type": ["string", "null"]}}}}}}"#;
        let new = r#"{"type": "object", "required": ["a", "b"], "properties": {
            "a": {"type": "integer"}, "b": {"type": "string", "enum": ["x"]},
            "c": {"type": "string", "maxLength": 5, "minLength": 1},
            "d": {"type": "array", "items": {"type": "object", "properties": {"e": {"type": "string"}}}}}}"#;
        let r = run(pkg(HTTP, Some(old), None), pkg(HTTP, Some(new), None));
        let b = kinds(&r.breaking);
        let at = |p: &str| format!("input.schema.json#{p}");
        assert!(
            b.contains(&(ChangeKind::RequiredChanged, at("/properties/b"))),
            "{b:?}"
        );
        assert!(
            b.contains(&(ChangeKind::TypeChanged, at("/properties/a/type"))),
            "{b:?}"
        );
        assert!(
            b.contains(&(ChangeKind::EnumChanged, at("/properties/b/enum"))),
            "{b:?}"
        );
        assert!(
            b.contains(&(ChangeKind::ConstraintChanged, at("/properties/c/maxLength"))),
            "{b:?}"
        );
        assert!(
            b.contains(&(ChangeKind::ConstraintChanged, at("/properties/c/minLength"))),
            "{b:?}"
        );
        assert!(
            b.contains(&(
                ChangeKind::TypeChanged,
                at("/properties/d/items/properties/e/type")
            )),
            "{b:?}"
        );
        assert_eq!(b.len(), 6, "{b:?}");
        assert!(r.non_breaking.is_empty(), "{:?}", r.non_breaking);
    }

    #[test]
    fn input_widening_is_not_breaking() {
        let old = r#"{"type": "object", "required": ["a"], "additionalProperties": false,
            "properties": {"a": {"type": "integer", "minimum": 5}}}"#;
        let new = r#"{"type": "object", "properties": {"a": {"type": "number", "minimum": 1}, "z": {"type": "string"}}}"#;
        let r = run(pkg(HTTP, Some(old), None), pkg(HTTP, Some(new), None));
        assert!(r.breaking.is_empty(), "{:?}", r.breaking);
        assert_eq!(r.non_breaking.len(), 5, "{:?}", r.non_breaking);
    }

    #[test]
    fn removed_input_property_breaks_only_when_closed() {
        let old = r#"{"type": "object", "properties": {"a": {}, "b": {}}}"#;
        let open = r#"{"type": "object", "properties": {"a": {}}}"#;
        let closed =
            r#"{"type": "object", "additionalProperties": false, "properties": {"a": {}}}"#;
        let r = run(pkg(HTTP, Some(old), None), pkg(HTTP, Some(open), None));
        assert!(r.breaking.is_empty());
        let r = run(pkg(HTTP, Some(old), None), pkg(HTTP, Some(closed), None));
        let b = kinds(&r.breaking);
        assert!(
            b.contains(&(
                ChangeKind::PropertyRemoved,
                "input.schema.json#/properties/b".into()
            )),
            "{b:?}"
        );
    }

    #[test]
    fn output_changes() {
        let old = r#"{"type": "object", "required": ["id", "plan"], "properties": {
            "id": {"type": "string"}, "plan": {"type": "string", "enum": ["free", "pro"]}, "n": {"type": "integer"}}}"#;
        let new = r#"{"type": "object", "required": ["id"], "properties": {
            "id": {"type": "string"}, "plan": {"type": "string", "enum": ["free", "pro", "team"]},
            "n": {"type": "number"}, "extra": {"type": "string"}}}"#;
        let r = run(pkg(HTTP, None, Some(old)), pkg(HTTP, None, Some(new)));
        let b = kinds(&r.breaking);
        let at = |p: &str| format!("output.schema.json#{p}");
        assert!(
            b.contains(&(ChangeKind::RequiredChanged, at("/properties/plan"))),
            "{b:?}"
        );
        assert!(
            b.contains(&(ChangeKind::EnumChanged, at("/properties/plan/enum"))),
            "{b:?}"
        );
        assert!(
            b.contains(&(ChangeKind::TypeChanged, at("/properties/n/type"))),
            "{b:?}"
        );
        assert_eq!(b.len(), 3);
        assert_eq!(
            kinds(&r.non_breaking),
            vec![(ChangeKind::PropertyAdded, at("/properties/extra"))]
        );
        // A removed response field breaks.
        let fewer = r#"{"type": "object", "properties": {"id": {"type": "string"}}}"#;
        let r = run(pkg(HTTP, None, Some(new)), pkg(HTTP, None, Some(fewer)));
        assert!(kinds(&r.breaking).contains(&(ChangeKind::PropertyRemoved, at("/properties/plan"))));
    }

    #[test]
    fn manifest_changes() {
        let old = "name = \"f\"\n[[trigger]]\nkind = \"http\"\npath = \"/a/{x}\"\n\
                   [[trigger]]\nkind = \"http\"\nmethod = \"GET\"\n\
                   [auth]\nmode = \"api_key\"\nscopes = [\"a:read\"]\n";
        let new =
            "name = \"f\"\n[[trigger]]\nkind = \"http\"\npath = \"/a/{y}\"\nmode = \"async\"\n\
                   [[trigger]]\nkind = \"http\"\nmethod = \"PUT\"\n\
                   [auth]\nmode = \"oauth2\"\nscopes = [\"a:read\", \"a:write\"]\n";
        let r = run(pkg(old, None, None), pkg(new, None, None));
        assert_eq!(
            kinds(&r.breaking),
            vec![
                (ChangeKind::ModeChanged, "POST /flows/f/a/{}".into()),
                (ChangeKind::EndpointRemoved, "GET /flows/f".into()),
                (ChangeKind::AuthModeChanged, "[auth] mode".into()),
                (ChangeKind::ScopeAdded, "[auth] scopes".into()),
            ]
        );
        assert_eq!(
            kinds(&r.non_breaking),
            vec![(ChangeKind::EndpointAdded, "PUT /flows/f".into())]
        );
        // Widening api_key → any is fine.
        let any = old.replace("api_key", "any");
        let r = run(pkg(old, None, None), pkg(&any, None, None));
        assert!(r.breaking.is_empty());
        assert_eq!(r.non_breaking[0].kind, ChangeKind::AuthModeChanged);
    }

    #[test]
    fn adding_an_input_schema_breaks() {
        let r = run(pkg(HTTP, None, None), pkg(HTTP, Some("{}"), None));
        assert_eq!(r.breaking[0].kind, ChangeKind::SchemaPresence);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["breaking"][0]["kind"], "schema_presence");
    }
}
