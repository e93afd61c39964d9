//! OpenAPI 3.1 documents for flows: one per pinned version
//! ([`flow_version_openapi`]) and one for all live flows ([`live_openapi`]).
//!
//! What an operation documents, and why:
//! - Parameters: path template parameters (required strings); query parameters
//!   seen in the fixtures that exercise the operation (the manifest has no key for
//!   them, so they are optional strings); `Idempotency-Key` on POST/PUT/PATCH;
//!   the delivery headers of the webhook signature scheme; `X-Request-Id`.
//! - Request body: `input.schema.json` (required, `application/json` only), or an
//!   open schema noting that any content type is accepted. GET and DELETE get a
//!   body only when there is an input schema (the server validates it then).
//! - Success: 200 with `output.schema.json` (or an open schema) for sync
//!   triggers; 202 with `{"run_id"}` and `Location` for async ones. Other 2xx
//!   statuses and `fail()` statuses are added when a fixture expects them (sync
//!   only: an async caller never sees the script's answer).
//! - Problems: only the statuses the server can return for this operation (see
//!   [`problem_statuses`], which mirrors the gateway's `routes/invoke.rs`), as
//!   `$ref`s to `components/responses`, all using one `Problem` schema; a `$ref`'s
//!   sibling `description` says what causes it for this operation. Examples from
//!   fixtures are attached inline. Two statuses appear more often than a first
//!   reading of SPEC §5 suggests, because the gateway really answers them: 415
//!   also without an input schema (a body that is neither JSON nor UTF-8 text),
//!   and 429 also without `[limits] rate` (anonymous requests per address for
//!   `mode = "none"`, repeated failed authentication otherwise). 409/422 also
//!   apply to signed webhooks that de-duplicate by delivery id. Not documented:
//!   405 (another method on the same path), 414 and 431 (oversized URL/headers).
//! - Rate-limit headers are listed on the responses sent after the limiter ran
//!   (not on 401, 403, 404, 410, 413).
//! - Security from `[auth]`, or the signature scheme for signed webhooks.
//! - `x-ratelimit`, `x-timeout-ms`, `x-max-body-bytes`, `x-flowgate-trigger`,
//!   `x-run-mode` extensions.
//!
//! Embedded schemas: `$schema` and `$id` are dropped from the root of the
//! package's schemas and their local `$ref`s (`#/…`) are rewritten to point into
//! `components/schemas`, so `$defs`/`definitions` keep working.

use flowgate_core::manifest::{
    AuthMode, EndpointTrigger, RunMode, SignatureConfig, SignatureScheme, Trigger,
};
use flowgate_core::problem::{problem_type, title_of};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

use crate::fixtures::Fixture;
use crate::FlowDoc;

/// The OpenAPI version written into every document.
pub const OPENAPI_VERSION: &str = "3.1.0";

/// OpenAPI 3.1 document of one flow version at its pinned path
/// `/flows/{flow}/v{n}{path}`. Event- and schedule-only flows get an empty
/// `paths` and their triggers under the root `x-flowgate` extension.
pub fn flow_version_openapi(doc: &FlowDoc<'_>, server_url: &str) -> Value {
    let mut b = Builder::default();
    let base = format!("/flows/{}/v{}", doc.flow, doc.version);
    b.add_flow(doc, &base, true);
    let mut info = json!({
        "title": doc.title(),
        "version": format!("v{}", doc.version),
    });
    if let Some(d) = &doc.manifest.description {
        info["description"] = json!(d);
    }
    let x = flow_extension(doc, &b.warnings_for(doc.flow));
    b.finish(info, server_url, x)
}

/// All live flows in one OpenAPI 3.1 document at their live paths
/// `/flows/{flow}{path}`. Docs with `live == false` are skipped, as are later
/// docs of a flow already included. Schemas are named `{flow}.Input` /
/// `{flow}.Output`, operation ids stay unique across flows.
pub fn live_openapi(docs: &[FlowDoc<'_>], server_url: &str) -> Value {
    let mut b = Builder::default();
    let mut seen = BTreeSet::new();
    let mut flows = Vec::new();
    for d in docs.iter().filter(|d| d.live) {
        if !seen.insert(d.flow) {
            continue;
        }
        let base = format!("/flows/{}", d.flow);
        b.add_flow(d, &base, false);
        flows.push(flow_extension(d, &b.warnings_for(d.flow)));
    }
    let info = json!({
        "title": "Flowgate flows",
        "version": "live",
        "description": "Every live flow at its live path `/flows/{flow}{path}`. \
            Each published version stays callable at `/flows/{flow}/v{n}{path}`; \
            its own document is at `/openapi/flows/{flow}/v{n}.json`.",
    });
    b.finish(info, server_url, json!({ "flows": flows }))
}

/// Root `x-flowgate` content for one flow version.
fn flow_extension(doc: &FlowDoc<'_>, warnings: &[String]) -> Value {
    let m = doc.manifest;
    let triggers: Vec<&str> = m
        .triggers
        .iter()
        .map(|t| match t {
            Trigger::Http(_) => "http",
            Trigger::Webhook(_) => "webhook",
            Trigger::Event { .. } => "event",
            Trigger::Schedule(_) => "schedule",
        })
        .collect();
    let mut x = json!({
        "flow": doc.flow,
        "version": doc.version,
        "live": doc.live,
        "triggers": triggers,
        "events": m.subscribed_events(),
    });
    if let Some(s) = m.schedule() {
        x["schedule"] = json!({"cron": s.cron, "timezone": s.timezone});
    }
    if let Some(src) = doc.script() {
        let emits = crate::events::emitted_events(src);
        if !emits.is_empty() {
            x["emits"] = json!(emits);
        }
    }
    if !warnings.is_empty() {
        x["warnings"] = json!(warnings);
    }
    x
}

fn is_body_method(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH")
}

/// How an endpoint authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Authn<'a> {
    /// `[auth] mode` applies.
    Mode(AuthMode),
    /// A webhook signature replaces `[auth]`.
    Signature(&'a SignatureConfig),
}

pub(crate) fn authn<'a>(doc: &FlowDoc<'a>, ep: &'a EndpointTrigger) -> Authn<'a> {
    match &ep.signature {
        Some(s) => Authn::Signature(s),
        None => Authn::Mode(doc.manifest.auth.mode),
    }
}

/// One problem answer an operation can get: status, component response and
/// the description for this operation.
pub(crate) struct ProblemStatus {
    /// HTTP status.
    pub status: u16,
    /// Component response name (without the rate-limit suffix).
    pub component: &'static str,
    /// What causes it for this operation.
    pub description: String,
}

/// Whether a signature scheme carries a delivery id the server de-duplicates by.
fn dedupes_deliveries(auth: Authn<'_>) -> bool {
    matches!(auth, Authn::Signature(s) if s.scheme != SignatureScheme::HmacSha256)
}

/// The problem statuses the server can answer for one operation, mirroring the
/// gateway's order of checks: resolve (404/410) → signature or credentials
/// (401/403, 429 for repeated failures or anonymous floods) → body size (413) →
/// rate limit (429) → content type (415) → JSON (400) → schema (422) →
/// idempotency (409/422) → run (500/504; 503 when overloaded).
pub(crate) fn problem_statuses(
    doc: &FlowDoc<'_>,
    ep: &EndpointTrigger,
    pinned: bool,
    has_input: bool,
) -> Vec<ProblemStatus> {
    let m = doc.manifest;
    let body = is_body_method(&ep.method);
    let auth = authn(doc, ep);
    let dedupe = dedupes_deliveries(auth);
    let sync = ep.mode == RunMode::Sync;
    let mut v = Vec::new();
    let mut push = |status: u16, component: &'static str, description: String| {
        v.push(ProblemStatus {
            status,
            component,
            description,
        })
    };

    let mut d400 = "Malformed request: an invalid query string, or a body sent as JSON \
                    (`application/json` or `application/*+json`) that does not parse \
                    (code `invalid_json`)"
        .to_owned();
    if body {
        d400.push_str(
            ", or an `Idempotency-Key` that is empty, longer than 255 characters or not \
             printable ASCII (code `invalid_idempotency_key`)",
        );
    }
    d400.push('.');
    push(400, "BadRequest", d400);

    match auth {
        Authn::Signature(_) => push(
            401,
            "InvalidSignature",
            problem_component("InvalidSignature").0.to_owned(),
        ),
        Authn::Mode(AuthMode::None) => {}
        Authn::Mode(_) => {
            push(
                401,
                "Unauthorized",
                problem_component("Unauthorized").0.to_owned(),
            );
            if !m.auth.scopes.is_empty() {
                push(
                    403,
                    "Forbidden",
                    format!(
                        "Valid credentials without every required scope ({}).",
                        m.auth.scopes.join(", ")
                    ),
                );
            }
        }
    }
    push(404, "NotFound", problem_component("NotFound").0.to_owned());
    if body || dedupe {
        let mut d = Vec::new();
        if body {
            d.push("a request with the same `Idempotency-Key` is still running");
        }
        if dedupe {
            d.push("a delivery with the same id is still being processed");
        }
        push(
            409,
            "IdempotencyConflict",
            sentence(&d, "; retry after `Retry-After` seconds."),
        );
    }
    if pinned {
        push(410, "Gone", problem_component("Gone").0.to_owned());
    }
    if body {
        push(
            408,
            "RequestTimeout",
            problem_component("RequestTimeout").0.to_owned(),
        );
    }
    push(
        413,
        "PayloadTooLarge",
        format!(
            "The request body is larger than {} bytes.",
            m.limits.max_body_bytes
        ),
    );
    push(
        415,
        "UnsupportedMediaType",
        if has_input {
            "The flow has an input schema and takes JSON only (`application/json` or `application/*+json`).".to_owned()
        } else {
            "The body is neither JSON nor UTF-8 text.".to_owned()
        },
    );
    if has_input || body || dedupe {
        let mut d = Vec::new();
        if has_input {
            d.push("the body does not match the input schema (`errors` lists every violation)");
        }
        if body {
            d.push("the `Idempotency-Key` was used before with a different request");
        }
        if dedupe {
            d.push("a delivery id was seen before with a different request");
        }
        push(422, "UnprocessableContent", sentence(&d, "."));
    }
    let mut d429 = Vec::new();
    let rate_text;
    if let Some(r) = &m.limits.rate {
        rate_text = format!("more than {} from this caller", r.raw);
        d429.push(rate_text.as_str());
    }
    match auth {
        Authn::Mode(AuthMode::None) => d429.push("too many anonymous requests from this address"),
        Authn::Mode(_) => d429.push("too many failed authentication attempts from this address"),
        Authn::Signature(_) => {}
    }
    if !d429.is_empty() {
        push(
            429,
            "TooManyRequests",
            sentence(&d429, "; retry after `Retry-After` seconds."),
        );
    }
    push(
        500,
        "InternalServerError",
        if sync {
            problem_component("InternalServerError").0.to_owned()
        } else {
            "The server failed before the run was queued.".to_owned()
        },
    );
    push(
        503,
        "ServiceUnavailable",
        if matches!(auth, Authn::Signature(_)) {
            "The server is overloaded, or the webhook cannot be verified right now (its \
             signing secret is not configured); retry after `Retry-After` seconds."
                .to_owned()
        } else {
            problem_component("ServiceUnavailable").0.to_owned()
        },
    );
    if sync {
        push(
            504,
            "GatewayTimeout",
            problem_component("GatewayTimeout").0.to_owned(),
        );
    }
    v
}

/// Joins clauses into one sentence: "A; or b; or c" + `end`.
fn sentence(parts: &[&str], end: &str) -> String {
    let mut s = parts.join(", or ");
    if let Some(first) = s.get(..1) {
        s = format!("{}{}", first.to_ascii_uppercase(), &s[1..]);
    }
    s.push_str(end);
    s
}

/// Whether a problem status is answered after the rate limiter ran, so it
/// carries the `RateLimit-Policy`/`RateLimit` headers.
fn after_rate_check(status: u16) -> bool {
    !matches!(status, 401 | 403 | 404 | 410 | 413)
}

/// (description, extra headers) of each problem component response.
fn problem_component(name: &str) -> (&'static str, &'static [&'static str]) {
    match name {
        "BadRequest" => (
            "Malformed request: an invalid query string, or a body sent as JSON \
             (`application/json` or `application/*+json`) that does not parse \
             (code `invalid_json`), or an `Idempotency-Key` that is empty, longer than 255 \
             characters or not printable ASCII (code `invalid_idempotency_key`).",
            &[],
        ),
        "Unauthorized" => ("Missing or invalid credentials.", &["WWW-Authenticate"]),
        "InvalidSignature" => (
            "Missing or invalid webhook signature, or a signature timestamp more than \
             5 minutes in the past or the future.",
            &[],
        ),
        "Forbidden" => (
            "Valid credentials without a required scope.",
            &["WWW-Authenticate"],
        ),
        "NotFound" => ("Unknown or disabled flow, or unknown version.", &[]),
        "IdempotencyConflict" => (
            "A request with the same `Idempotency-Key` is still running; retry after \
             `Retry-After` seconds.",
            &["Retry-After"],
        ),
        "Gone" => ("This version was retired.", &[]),
        "RequestTimeout" => (
            "The request body did not arrive in full within the server's body deadline \
             (code `request_timeout`).",
            &[],
        ),
        "PayloadTooLarge" => ("The request body is larger than the flow accepts.", &[]),
        "UnsupportedMediaType" => (
            "The flow has an input schema and takes JSON only (`application/json` or \
             `application/*+json`).",
            &[],
        ),
        "UnprocessableContent" => (
            "The body does not match the input schema (`errors` lists every violation), \
             or the `Idempotency-Key` was used before with a different request.",
            &[],
        ),
        "TooManyRequests" => (
            "Too many requests (the flow's rate limit, anonymous requests from one address, \
             or failed authentication attempts); retry after `Retry-After` seconds.",
            &["Retry-After"],
        ),
        "InternalServerError" => (
            "The flow failed (code `flow_error`; details are in the run log, not here), \
             exceeded a sandbox limit (code `flow_limit_exceeded`), or the server failed.",
            &[],
        ),
        "ServiceUnavailable" => (
            "The server is overloaded or a dependency is unavailable; retry after \
             `Retry-After` seconds.",
            &["Retry-After"],
        ),
        "GatewayTimeout" => (
            "The flow ran longer than its timeout (code `flow_timeout`).",
            &[],
        ),
        _ => ("Error.", &[]),
    }
}

/// Operation id `<method>_<flow>` in snake case (plus the path when needed).
fn snake(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// Rewrites local `$ref`s of an embedded schema to its component location and
/// drops root `$schema`/`$id` (their base would no longer hold).
fn embed_schema(mut schema: Value, component: &str) -> Value {
    if let Value::Object(m) = &mut schema {
        m.remove("$schema");
        m.remove("$id");
    }
    let target = format!("#/components/schemas/{component}");
    rewrite_refs(&mut schema, &target);
    schema
}

fn rewrite_refs(v: &mut Value, target: &str) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                match val {
                    Value::String(s) if k == "$ref" && s.starts_with('#') => {
                        *s = format!("{target}{}", &s[1..]);
                    }
                    _ => rewrite_refs(val, target),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_refs(x, target)),
        _ => {}
    }
}

/// Security scheme name and definition for a signature config.
fn signature_scheme(
    sig: &SignatureConfig,
) -> (String, Value, Vec<(&'static str, bool, &'static str)>) {
    let (name, header, extra): (String, String, Vec<(&'static str, bool, &'static str)>) = match sig
        .scheme
    {
        SignatureScheme::StandardWebhooks => (
            "standardWebhooksSignature".into(),
            "webhook-signature".into(),
            vec![
                (
                    "webhook-id",
                    true,
                    "Unique message id; signed, and used to de-duplicate deliveries \
                         (a duplicate gets the original answer and does not run again).",
                ),
                (
                    "webhook-timestamp",
                    true,
                    "Unix seconds when the message was sent; signed. More than 5 minutes \
                         from the server's clock → 401.",
                ),
            ],
        ),
        SignatureScheme::Stripe => ("stripeSignature".into(), "Stripe-Signature".into(), vec![]),
        SignatureScheme::Github => (
            "githubSignature".into(),
            "X-Hub-Signature-256".into(),
            vec![(
                "X-GitHub-Delivery",
                false,
                "Delivery id, used to de-duplicate deliveries (a duplicate gets the \
                     original answer and does not run again).",
            )],
        ),
        SignatureScheme::HmacSha256 => {
            let safe: String = sig
                .header
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            (
                format!("hmacSha256Signature.{safe}"),
                sig.header.clone(),
                vec![],
            )
        }
    };
    let description = match sig.scheme {
        SignatureScheme::StandardWebhooks => {
            "Standard Webhooks signature (`v1,<base64 HMAC-SHA256>` of \
             `{webhook-id}.{webhook-timestamp}.{body}`, space-separated list)."
                .to_owned()
        }
        SignatureScheme::Stripe => {
            "Stripe signature (`t=<unix>,v1=<hex HMAC-SHA256 of {t}.{body}>`); the event \
             `id` de-duplicates deliveries."
                .to_owned()
        }
        SignatureScheme::Github => {
            "GitHub signature (`sha256=<hex HMAC-SHA256 of the body>`).".to_owned()
        }
        SignatureScheme::HmacSha256 => format!(
            "HMAC-SHA256 of the raw body, {}-encoded{}.",
            match sig.encoding {
                flowgate_core::manifest::SignatureEncoding::Hex => "hex",
                flowgate_core::manifest::SignatureEncoding::Base64 => "base64",
            },
            if sig.prefix.is_empty() {
                String::new()
            } else {
                format!(", prefixed with `{}`", sig.prefix)
            }
        ),
    };
    let def = json!({
        "type": "apiKey",
        "in": "header",
        "name": header,
        "description": description,
    });
    (name, def, extra)
}

#[derive(Default)]
struct Builder {
    paths: Map<String, Value>,
    schemas: Map<String, Value>,
    responses: Map<String, Value>,
    headers: Map<String, Value>,
    parameters: Map<String, Value>,
    security_schemes: Map<String, Value>,
    tags: Vec<Value>,
    op_ids: BTreeSet<String>,
    warnings: Vec<(String, String)>,
}

impl Builder {
    fn warnings_for(&self, flow: &str) -> Vec<String> {
        self.warnings
            .iter()
            .filter(|(f, _)| f == flow)
            .map(|(_, w)| w.clone())
            .collect()
    }

    fn header_ref(&mut self, name: &str) -> Value {
        if !self.headers.contains_key(name) {
            let def = match name {
                "X-Request-Id" => json!({
                    "description": "The request id (echoed when the caller sent one); quote it when reporting a problem.",
                    "schema": {"type": "string"}
                }),
                "RateLimit-Policy" => json!({
                    "description": "The flow's rate-limit policy (IETF httpapi draft), e.g. `\"flow\";q=600;w=60`.",
                    "schema": {"type": "string"}
                }),
                "RateLimit" => json!({
                    "description": "Remaining calls and seconds until the window resets, e.g. `\"flow\";r=42;t=17`.",
                    "schema": {"type": "string"}
                }),
                "Retry-After" => json!({
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer", "minimum": 0}
                }),
                "Location" => json!({
                    "description": "The queued run: `/admin/v1/runs/{run_id}`.",
                    "schema": {"type": "string"}
                }),
                "WWW-Authenticate" => json!({
                    "description": "The accepted authentication scheme.",
                    "schema": {"type": "string"}
                }),
                "Idempotent-Replayed" => json!({
                    "description": "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`.",
                    "schema": {"type": "string", "enum": ["true"]}
                }),
                _ => json!({"schema": {"type": "string"}}),
            };
            self.headers.insert(name.to_owned(), def);
        }
        json!({"$ref": format!("#/components/headers/{name}")})
    }

    fn headers_obj(&mut self, names: &[&str]) -> Value {
        let mut m = Map::new();
        for n in names {
            let r = self.header_ref(n);
            m.insert((*n).to_owned(), r);
        }
        Value::Object(m)
    }

    fn ensure_problem_schema(&mut self) {
        if self.schemas.contains_key("Problem") {
            return;
        }
        self.schemas.insert(
            "Problem".into(),
            json!({
                "type": "object",
                "description": "RFC 9457 problem details (`application/problem+json`).",
                "required": ["type", "title", "status", "detail", "code", "request_id"],
                "properties": {
                    "type": {"type": "string", "description": "URI naming the problem type."},
                    "title": {"type": "string", "description": "Short summary of the status."},
                    "status": {"type": "integer", "description": "The HTTP status."},
                    "detail": {"type": "string", "description": "What went wrong in this occurrence."},
                    "code": {"type": "string", "description": "Stable machine-readable code, e.g. `invalid_json`, `flow_timeout`."},
                    "request_id": {"type": "string", "description": "The request id (also in `X-Request-Id`)."},
                    "run_id": {"type": "string", "description": "The run that failed, when a flow run produced this problem."},
                    "errors": {
                        "type": "array",
                        "description": "Every violation of the input schema (422 only).",
                        "items": {"$ref": "#/components/schemas/ProblemFieldError"}
                    }
                }
            }),
        );
        self.schemas.insert(
            "ProblemFieldError".into(),
            json!({
                "type": "object",
                "required": ["pointer", "detail"],
                "properties": {
                    "pointer": {"type": "string", "description": "JSON Pointer into the request body, e.g. `/amount`."},
                    "detail": {"type": "string"}
                }
            }),
        );
    }

    /// Registers component response `name` (with rate-limit headers when
    /// `rate`) and returns its component key.
    fn problem_response(&mut self, name: &str, rate: bool) -> String {
        self.ensure_problem_schema();
        let key = if rate {
            format!("{name}WithRateLimit")
        } else {
            name.to_owned()
        };
        if !self.responses.contains_key(&key) {
            let (description, extra) = problem_component(name);
            let mut hs = vec!["X-Request-Id"];
            if rate {
                hs.extend(["RateLimit-Policy", "RateLimit"]);
            }
            hs.extend(extra);
            let headers = self.headers_obj(&hs);
            self.responses.insert(
                key.clone(),
                json!({
                    "description": description,
                    "headers": headers,
                    "content": {"application/problem+json": {
                        "schema": {"$ref": "#/components/schemas/Problem"}
                    }}
                }),
            );
        }
        key
    }

    fn unique_op_id(&mut self, base: String) -> String {
        let mut id = base.clone();
        let mut n = 2;
        while self.op_ids.contains(&id) {
            id = format!("{base}_{n}");
            n += 1;
        }
        self.op_ids.insert(id.clone());
        id
    }

    fn add_flow(&mut self, doc: &FlowDoc<'_>, base: &str, pinned: bool) {
        let input = match doc.input_schema() {
            Ok(s) => s,
            Err(e) => {
                self.warnings.push((doc.flow.to_owned(), e.to_string()));
                None
            }
        };
        let output = match doc.output_schema() {
            Ok(s) => s,
            Err(e) => {
                self.warnings.push((doc.flow.to_owned(), e.to_string()));
                None
            }
        };
        let (mut fixtures, bad) = doc.fixtures();
        for e in bad {
            self.warnings.push((doc.flow.to_owned(), e.to_string()));
        }
        // A fixture whose request body the input schema refuses, expecting
        // anything but 422, shows what the script would do, not what the
        // server answers (422 before the script runs): it is no example of
        // this API.
        if let Some(validator) = input.as_ref().and_then(|s| {
            jsonschema::options()
                .with_pattern_options(jsonschema::PatternOptions::regex())
                .build(s)
                .ok()
        }) {
            fixtures.retain(|f| match &f.body {
                Some(b) if f.status != 422 && !validator.is_valid(b) => {
                    self.warnings.push((
                        doc.flow.to_owned(),
                        format!(
                            "tests/{}.json: the request body does not match input.schema.json (the server answers 422), so it is not used as an example",
                            f.stem
                        ),
                    ));
                    false
                }
                _ => true,
            });
        }
        let has_endpoints = doc.manifest.endpoints().next().is_some();
        if !has_endpoints {
            return;
        }
        let input_ref = input.map(|s| {
            let name = format!("{}.Input", doc.flow);
            self.schemas.insert(name.clone(), embed_schema(s, &name));
            json!({"$ref": format!("#/components/schemas/{name}")})
        });
        let output_ref = output.map(|s| {
            let name = format!("{}.Output", doc.flow);
            self.schemas.insert(name.clone(), embed_schema(s, &name));
            json!({"$ref": format!("#/components/schemas/{name}")})
        });
        let mut tag = json!({"name": doc.flow});
        if let Some(t) = &doc.manifest.title {
            tag["description"] = json!(t);
        }
        self.tags.push(tag);

        let endpoints: Vec<(&Trigger, &EndpointTrigger)> = doc.manifest.endpoints().collect();
        for (trigger, ep) in &endpoints {
            let same_method = endpoints
                .iter()
                .filter(|(_, e)| e.method == ep.method)
                .count();
            let mut id = format!("{}_{}", ep.method.to_ascii_lowercase(), snake(doc.flow));
            if same_method > 1 && !ep.path.as_str().is_empty() {
                id = format!("{id}_{}", snake(ep.path.as_str()));
            }
            let id = self.unique_op_id(id);
            let op = self.operation(
                doc,
                trigger,
                ep,
                &id,
                pinned,
                input_ref.as_ref(),
                output_ref.as_ref(),
                &fixtures,
            );
            let path = format!("{base}{}", ep.path.as_str());
            let item = self
                .paths
                .entry(path)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = item {
                m.insert(ep.method.to_ascii_lowercase(), op);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn operation(
        &mut self,
        doc: &FlowDoc<'_>,
        trigger: &Trigger,
        ep: &EndpointTrigger,
        op_id: &str,
        pinned: bool,
        input_ref: Option<&Value>,
        output_ref: Option<&Value>,
        all_fixtures: &[Fixture],
    ) -> Value {
        let m = doc.manifest;
        let kind = if matches!(trigger, Trigger::Webhook(_)) {
            "webhook"
        } else {
            "http"
        };
        let body_method = is_body_method(&ep.method);
        let fixtures: Vec<&Fixture> = all_fixtures
            .iter()
            .filter(|f| f.exercises(trigger, ep))
            .collect();
        let rate = m.limits.rate.as_ref();

        // Description: the manifest's, then limits.
        let mut desc = m.description.clone().unwrap_or_default();
        if !desc.is_empty() {
            desc.push_str("\n\n");
        }
        let rate_text = match rate {
            Some(r) => format!(
                "{} per caller (burst {})",
                r.raw,
                m.limits.burst.unwrap_or(r.count)
            ),
            None => "none".to_owned(),
        };
        desc.push_str(&format!(
            "Timeout: {} ms. Rate limit: {}. Maximum body: {} bytes.",
            m.limits.timeout_ms, rate_text, m.limits.max_body_bytes
        ));
        if ep.mode == RunMode::Async {
            desc.push_str(
                " Runs asynchronously: answers 202 once the run is durably queued; \
                 follow `Location` for its outcome.",
            );
        }

        // Parameters.
        let mut params = Vec::new();
        for p in ep.path.params() {
            params.push(json!({
                "name": p, "in": "path", "required": true, "schema": {"type": "string"}
            }));
        }
        let mut query_keys: Vec<&str> = Vec::new();
        for f in &fixtures {
            for k in f.query.keys() {
                if !query_keys.contains(&k.as_str()) {
                    query_keys.push(k);
                }
            }
        }
        query_keys.sort_unstable();
        for k in query_keys {
            params.push(json!({
                "name": k, "in": "query", "required": false, "schema": {"type": "string"},
                "description": "Used by the flow's test fixtures; the flow reads it from `request.query`."
            }));
        }
        if body_method {
            if !self.parameters.contains_key("IdempotencyKey") {
                self.parameters.insert(
                    "IdempotencyKey".into(),
                    json!({
                        "name": "Idempotency-Key", "in": "header", "required": false,
                        "description": "Makes retries safe: the first completed answer is stored for 24 hours per caller, flow and key, and replayed with `Idempotent-Replayed: true`. The same key with a different body → 422; while the first request still runs → 409.",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7E]+$"}
                    }),
                );
            }
            params.push(json!({"$ref": "#/components/parameters/IdempotencyKey"}));
        }
        let auth = authn(doc, ep);
        let mut signature_ext = None;
        let security = match auth {
            Authn::Signature(sig) => {
                let (name, def, extra) = signature_scheme(sig);
                self.security_schemes.insert(name.clone(), def);
                for (h, required, d) in extra {
                    params.push(json!({
                        "name": h, "in": "header", "required": required,
                        "description": d, "schema": {"type": "string"}
                    }));
                }
                signature_ext = Some(json!({"scheme": sig.scheme.as_str()}));
                json!([{ name: [] }])
            }
            Authn::Mode(mode) => self.security_for(mode, &m.auth.scopes),
        };
        if !self.parameters.contains_key("RequestId") {
            self.parameters.insert(
                "RequestId".into(),
                json!({
                    "name": "X-Request-Id", "in": "header", "required": false,
                    "description": "Your own request id; echoed in the response's `X-Request-Id`.",
                    "schema": {"type": "string"}
                }),
            );
        }
        params.push(json!({"$ref": "#/components/parameters/RequestId"}));

        let mut op = Map::new();
        op.insert("operationId".into(), json!(op_id));
        op.insert("summary".into(), json!(doc.title()));
        op.insert("description".into(), json!(desc));
        op.insert("tags".into(), json!([doc.flow]));
        op.insert("parameters".into(), Value::Array(params));

        // Request body.
        let has_input = input_ref.is_some();
        if body_method || has_input {
            let mut media = Map::new();
            match input_ref {
                Some(r) => {
                    media.insert("schema".into(), r.clone());
                }
                None => {
                    media.insert("schema".into(), json!({}));
                }
            }
            let mut examples = Map::new();
            for f in fixtures.iter().filter(|f| f.expects_success()) {
                if let Some(b) = &f.body {
                    examples.insert(f.stem.clone(), json!({"summary": f.name, "value": b}));
                }
            }
            if !examples.is_empty() {
                media.insert("examples".into(), Value::Object(examples));
            }
            let mut rb = json!({
                "required": has_input,
                "content": {"application/json": Value::Object(media)},
            });
            rb["description"] = json!(if has_input {
                "Validated against the flow's input schema; JSON only (`application/json` or `application/*+json`)."
            } else {
                "Any content type is accepted: a JSON body reaches the flow parsed, any other as a string (it must be UTF-8 text)."
            });
            op.insert("requestBody".into(), rb);
        }

        // Responses.
        let mut responses = Map::new();
        let mut ok_headers = vec!["X-Request-Id"];
        if rate.is_some() {
            ok_headers.extend(["RateLimit-Policy", "RateLimit"]);
        }
        if body_method {
            ok_headers.push("Idempotent-Replayed");
        }
        let sync = ep.mode == RunMode::Sync;
        if sync {
            let mut media = Map::new();
            media.insert(
                "schema".into(),
                output_ref.cloned().unwrap_or_else(|| json!({})),
            );
            let ex = examples_for(&fixtures, 200, false);
            if !ex.is_empty() {
                media.insert("examples".into(), Value::Object(ex));
            }
            let headers = self.headers_obj(&ok_headers);
            responses.insert(
                "200".into(),
                json!({
                    "description": "The flow's response.",
                    "headers": headers,
                    "content": {"application/json": Value::Object(media)}
                }),
            );
        } else {
            if !self.schemas.contains_key("RunAccepted") {
                self.schemas.insert(
                    "RunAccepted".into(),
                    json!({
                        "type": "object",
                        "required": ["run_id"],
                        "properties": {"run_id": {"type": "string", "description": "Id of the queued run (UUIDv7)."}}
                    }),
                );
            }
            let mut hs = ok_headers.clone();
            hs.push("Location");
            let headers = self.headers_obj(&hs);
            responses.insert(
                "202".into(),
                json!({
                    "description": "The run is durably queued.",
                    "headers": headers,
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/RunAccepted"},
                        "examples": {"accepted": {"value": {"run_id": "01890a5d-ac96-774b-bcce-b302099a8057"}}}
                    }}
                }),
            );
        }

        // Statuses the flow itself answers (respond/fail), seen in fixtures.
        let standard = problem_statuses(doc, ep, pinned, has_input);
        if sync {
            let mut extra: Vec<u16> = fixtures
                .iter()
                .map(|f| f.status)
                .filter(|s| *s != 200 && !standard.iter().any(|p| p.status == *s))
                .collect();
            extra.sort_unstable();
            extra.dedup();
            for status in extra {
                let problem = status >= 400 && fixtures_look_like_problems(&fixtures, status);
                let headers = self.headers_obj(&ok_headers[..if rate.is_some() { 3 } else { 1 }]);
                let (ct, schema, description) = if problem {
                    self.ensure_problem_schema();
                    (
                        "application/problem+json",
                        json!({"$ref": "#/components/schemas/Problem"}),
                        "Answered by the flow (`fail`).",
                    )
                } else {
                    (
                        "application/json",
                        json!({}),
                        "Answered by the flow (`respond`).",
                    )
                };
                let mut media = Map::new();
                media.insert("schema".into(), schema);
                let ex = examples_for(&fixtures, status, problem);
                if !ex.is_empty() {
                    media.insert("examples".into(), Value::Object(ex));
                }
                responses.insert(
                    status.to_string(),
                    json!({"description": description, "headers": headers, "content": {ct: Value::Object(media)}}),
                );
            }
        }
        for ps in &standard {
            let status = ps.status;
            let with_rate = rate.is_some() && after_rate_check(status);
            let key = self.problem_response(ps.component, with_rate);
            let default_desc = problem_component(ps.component).0;
            let override_desc = (ps.description != default_desc).then(|| ps.description.clone());
            let ex = if sync {
                examples_for(&fixtures, status, true)
            } else {
                Map::new()
            };
            let resp = if ex.is_empty() {
                let mut r = json!({"$ref": format!("#/components/responses/{key}")});
                if let Some(d) = override_desc {
                    r["description"] = json!(d);
                }
                r
            } else {
                // Examples cannot hang off a `$ref`: inline the component.
                let mut r = self.responses.get(&key).cloned().unwrap_or_default();
                if let Some(d) = override_desc {
                    r["description"] = json!(d);
                }
                r["content"]["application/problem+json"]["examples"] = Value::Object(ex);
                r
            };
            responses.insert(status.to_string(), resp);
        }
        sort_responses(&mut responses);
        op.insert("responses".into(), Value::Object(responses));
        op.insert("security".into(), security);
        if !m.auth.scopes.is_empty() && matches!(auth, Authn::Mode(mode) if mode != AuthMode::None)
        {
            op.insert("x-required-scopes".into(), json!(m.auth.scopes));
        }
        if let Some(s) = signature_ext {
            op.insert("x-webhook-signature".into(), s);
        }
        if let Some(r) = rate {
            op.insert(
                "x-ratelimit".into(),
                json!({"rate": r.raw, "burst": m.limits.burst.unwrap_or(r.count)}),
            );
        }
        op.insert("x-timeout-ms".into(), json!(m.limits.timeout_ms));
        op.insert("x-max-body-bytes".into(), json!(m.limits.max_body_bytes));
        op.insert("x-flowgate-trigger".into(), json!(kind));
        op.insert(
            "x-run-mode".into(),
            json!(if sync { "sync" } else { "async" }),
        );
        Value::Object(op)
    }

    fn security_for(&mut self, mode: AuthMode, scopes: &[String]) -> Value {
        let api_key = |b: &mut Self| {
            b.security_schemes.insert(
                "apiKey".into(),
                json!({"type": "apiKey", "in": "header", "name": "X-API-Key",
                       "description": "A Flowgate API key. Never in the query string."}),
            );
        };
        let bearer = |b: &mut Self| {
            b.security_schemes.insert(
                "bearerAuth".into(),
                json!({"type": "http", "scheme": "bearer",
                       "description": "A Flowgate API key as a bearer token: `Authorization: Bearer <key>`."}),
            );
        };
        let jwt = |b: &mut Self, scopes: &[String]| {
            let mut d = "An OAuth2 access token (JWT) from the identity platform's issuer; \
                         scopes come from its `scope` (space-separated) or `scp` (array) claim."
                .to_owned();
            if !scopes.is_empty() {
                d.push_str(" Operations list the scopes they need in `x-required-scopes`.");
            }
            b.security_schemes.insert(
                "oauth2Jwt".into(),
                json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": d}),
            );
        };
        match mode {
            AuthMode::None => json!([]),
            AuthMode::ApiKey => {
                api_key(self);
                bearer(self);
                json!([{"apiKey": scopes}, {"bearerAuth": scopes}])
            }
            AuthMode::OAuth2 => {
                jwt(self, scopes);
                json!([{"oauth2Jwt": scopes}])
            }
            AuthMode::Any => {
                api_key(self);
                bearer(self);
                jwt(self, scopes);
                json!([{"apiKey": scopes}, {"bearerAuth": scopes}, {"oauth2Jwt": scopes}])
            }
        }
    }

    fn finish(self, info: Value, server_url: &str, x_flowgate: Value) -> Value {
        let mut components = Map::new();
        let sections = [
            ("schemas", self.schemas),
            ("responses", self.responses),
            ("parameters", self.parameters),
            ("headers", self.headers),
            ("securitySchemes", self.security_schemes),
        ];
        for (k, v) in sections {
            if !v.is_empty() {
                components.insert(k.into(), Value::Object(sorted(v)));
            }
        }
        let mut doc = Map::new();
        doc.insert("openapi".into(), json!(OPENAPI_VERSION));
        doc.insert("info".into(), info);
        doc.insert("servers".into(), json!([{"url": server_url}]));
        if !self.tags.is_empty() {
            doc.insert("tags".into(), Value::Array(self.tags));
        }
        doc.insert("paths".into(), Value::Object(self.paths));
        if !components.is_empty() {
            doc.insert("components".into(), Value::Object(components));
        }
        doc.insert("x-flowgate".into(), x_flowgate);
        Value::Object(doc)
    }
}

fn sorted(m: Map<String, Value>) -> Map<String, Value> {
    let mut v: Vec<(String, Value)> = m.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().collect()
}

fn sort_responses(m: &mut Map<String, Value>) {
    let taken = std::mem::take(m);
    *m = sorted(taken);
}

/// Whether the bodies fixtures expect for `status` look like problem documents
/// (an object with `code`, `detail` or `type`, or no body at all).
fn fixtures_look_like_problems(fixtures: &[&Fixture], status: u16) -> bool {
    fixtures
        .iter()
        .filter(|f| f.status == status)
        .all(|f| match &f.expect_body {
            None => true,
            Some(Value::Object(o)) => ["code", "detail", "type"]
                .iter()
                .any(|k| o.contains_key(*k)),
            Some(_) => false,
        })
}

/// Named response examples for `status` from the fixtures that give a body.
/// Fixtures compare objects as subsets; for problem responses the members a
/// problem always has are filled in (type, title and status exactly as the
/// server renders them; detail, code and request_id with illustrative values).
fn examples_for(fixtures: &[&Fixture], status: u16, problem: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for f in fixtures.iter().filter(|f| f.status == status) {
        let Some(body) = &f.expect_body else {
            continue;
        };
        let mut value = body.clone();
        let mut description = format!(
            "From fixture `tests/{}.json`. Fixtures compare objects as subsets: the real answer may hold more members.",
            f.stem
        );
        if problem {
            if let Value::Object(o) = &mut value {
                let code = o
                    .get("code")
                    .and_then(Value::as_str)
                    .map_or_else(|| snake(title_of(status)), str::to_owned);
                let filled = [
                    ("type", json!(problem_type(&code))),
                    ("title", json!(title_of(status))),
                    ("status", json!(status)),
                    ("detail", json!(title_of(status))),
                    ("code", json!(code)),
                    ("request_id", json!("01890a5d-ac96-774b-bcce-b302099a8057")),
                ];
                for (k, v) in filled {
                    o.entry(k).or_insert(v);
                }
                description.push_str(
                    " Members the fixture does not check are filled with illustrative values.",
                );
            }
        }
        out.insert(
            f.stem.clone(),
            json!({"summary": f.name, "description": description, "value": value}),
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testutil::package;

    fn ops(doc: &Value) -> Vec<(String, String, Value)> {
        let mut v = Vec::new();
        for (p, item) in doc["paths"].as_object().unwrap() {
            for (m, op) in item.as_object().unwrap() {
                v.push((p.clone(), m.clone(), op.clone()));
            }
        }
        v
    }

    #[test]
    fn statuses_follow_the_manifest() {
        let (m, p) = package(&[
            (
                "flow.toml",
                "name = \"lookup\"\n[[trigger]]\nkind = \"http\"\nmethod = \"GET\"\npath = \"/users/{id}\"\n[auth]\nmode = \"none\"\n",
            ),
            ("main.rhai", "1"),
        ]);
        let d = FlowDoc::new("lookup", 2, &m, &p, true);
        let doc = flow_version_openapi(&d, "https://api.example");
        let all = ops(&doc);
        assert_eq!(all.len(), 1);
        let (path, method, op) = &all[0];
        assert_eq!(path, "/flows/lookup/v2/users/{id}");
        assert_eq!(method, "get");
        assert_eq!(op["operationId"], "get_lookup");
        assert_eq!(op["security"], json!([]));
        let codes: Vec<&str> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            codes,
            vec!["200", "400", "404", "410", "413", "415", "429", "500", "503", "504"]
        );
        let d429 = op["responses"]["429"]["description"].as_str().unwrap();
        assert!(d429.contains("anonymous"), "{d429}");
        assert!(op.get("requestBody").is_none());
        assert!(op.get("x-ratelimit").is_none());
        assert_eq!(op["parameters"][0]["in"], "path");
        assert_eq!(op["parameters"][0]["required"], true);
        // The live document has no 410: the live version is not retired.
        let live = live_openapi(&[d], "https://api.example");
        let op = &live["paths"]["/flows/lookup/users/{id}"]["get"];
        assert!(op["responses"].get("410").is_none());
    }

    #[test]
    fn operation_ids_stay_unique() {
        let (m, p) = package(&[
            (
                "flow.toml",
                "name = \"a\"\n[[trigger]]\nkind = \"http\"\n[[trigger]]\nkind = \"http\"\npath = \"/b\"\n",
            ),
            ("main.rhai", "1"),
        ]);
        let (m2, p2) = package(&[
            (
                "flow.toml",
                "name = \"a-b\"\n[[trigger]]\nkind = \"http\"\n",
            ),
            ("main.rhai", "1"),
        ]);
        let live = live_openapi(
            &[
                FlowDoc::new("a", 1, &m, &p, true),
                FlowDoc::new("a-b", 1, &m2, &p2, true),
            ],
            "http://x",
        );
        let ids: Vec<String> = ops(&live)
            .iter()
            .map(|(_, _, o)| o["operationId"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, vec!["post_a", "post_a_b", "post_a_b_2"]);
    }

    #[test]
    fn local_refs_are_rewritten() {
        let s = embed_schema(
            json!({"$schema": "x", "$defs": {"n": {"type": "integer"}},
                   "properties": {"a": {"$ref": "#/$defs/n"}}}),
            "f.Input",
        );
        assert_eq!(
            s["properties"]["a"]["$ref"],
            "#/components/schemas/f.Input/$defs/n"
        );
        assert!(s.get("$schema").is_none());
    }

    #[test]
    fn snake_case() {
        assert_eq!(
            snake("/invoices/{invoice_id}/lines"),
            "invoices_invoice_id_lines"
        );
        assert_eq!(snake("payment-webhook"), "payment_webhook");
    }
}
