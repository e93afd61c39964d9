//! The invocation pipeline of flow endpoints (`{METHOD} /flows/{flow}{path}`
//! and `/flows/{flow}/v{n}{path}`), in the order SPEC §5 fixes: resolve
//! (404/410) → trigger and method (404/405) → credentials or signature
//! (401/403) → rate limit (429) → body size (413) → content type (415) →
//! JSON (400) → schema (422) → idempotency (409/422) → run.
//!
//! The HTTP adapter hands over the request head ([`CallHead`]) and a way to
//! read the body up to a limit; it renders the [`Answer`] or the error.
//! Nothing here knows about the HTTP server.

use flowgate_auth::{Principal, PrincipalKind};
use flowgate_core::manifest::{AuthMode, EndpointTrigger, Trigger};
#[cfg(test)]
use flowgate_core::package::FlowPackage;
use flowgate_core::run::TriggerKind;
use flowgate_core::FlowName;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::invoke::{
    Answer, CallerInfo, Idempotency, Invocation, RequestBody, RunRequest, TriggerInfo,
};
use crate::registry::LoadedVersion;
use crate::Engine;

/// Headers a script never sees: credentials and signatures.
const HIDDEN_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "x-api-key",
    "webhook-signature",
    "stripe-signature",
    "x-hub-signature-256",
    "x-hub-signature",
    "proxy-authorization",
];

/// Bodies up to this size are parsed and validated on the calling thread;
/// larger ones on the blocking pool, so no body keeps an I/O thread busy.
const INLINE_PARSE_BYTES: usize = 8 * 1024;

/// What the pipeline reads of an HTTP request before its body. Header names
/// are lower case.
pub trait CallHead {
    /// The method (`GET`, `POST`, …).
    fn method(&self) -> &str;
    /// The whole path, `/flows/…` included.
    fn path(&self) -> &str;
    /// The raw query string, without `?`.
    fn query(&self) -> &str;
    /// The first value of a header, when it is visible ASCII.
    fn header(&self, name: &str) -> Option<&str>;
    /// Whether the header was sent at all (whatever its value).
    fn has_header(&self, name: &str) -> bool;
    /// Visits every header, repeated ones once per value.
    fn for_each_header(&self, visit: &mut dyn FnMut(&str, &[u8]));
}

/// One call of a flow endpoint.
pub struct FlowCall<'a> {
    /// The request head.
    pub head: &'a dyn CallHead,
    /// The `{flow}` path segment, as sent.
    pub flow: &'a str,
    /// The path after it (`/v3/invoices/7`, `/invoices/7`, `""`).
    pub tail: &'a str,
    /// The client's address (after trusted proxies).
    pub client_ip: IpAddr,
    /// The request id.
    pub request_id: String,
}

/// What the pipeline learnt about a call, whether it was answered or
/// refused: for the audit log and the response headers.
#[derive(Debug, Default)]
pub struct CallNotes {
    /// The flow and the version it resolved to.
    pub flow: Option<(String, Option<u32>)>,
    /// The caller, once known (`api_key:…`, `anonymous:…`, …).
    pub caller: Option<String>,
    /// Headers every answer carries (the flow's `RateLimit-Policy` and
    /// `RateLimit`, or the anonymous limit's on a refusal).
    pub headers: Vec<(&'static str, String)>,
}

/// The endpoint a call resolved to.
struct Target {
    version: Arc<LoadedVersion>,
    trigger_kind: TriggerKind,
    endpoint: EndpointTrigger,
    path: String,
    params: Map<String, Value>,
}

/// Splits `/v3/rest` into (Some(3), "/rest").
fn split_pin(tail: &str) -> (Option<i64>, &str) {
    if let Some(rest) = tail.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let digits = &rest[..end];
        if !digits.is_empty() && digits.len() <= 9 && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = digits.parse::<i64>() {
                return (Some(n), &rest[end..]);
            }
        }
    }
    (None, tail)
}

fn is_json_content_type(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

fn valid_idempotency_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn invalid_idempotency_key() -> EngineError {
    EngineError::BadRequest {
        code: "invalid_idempotency_key",
        detail: "Idempotency-Key must be 1–255 printable ASCII characters".into(),
    }
}

/// How a JSON body without an input schema is kept for its run.
#[derive(Clone, Copy)]
enum KeepJson {
    /// Parsed into script values now (a run tried at once takes them),
    /// nested at most this deep.
    Parsed { max_depth: usize },
    /// Checked and kept as text (a queued run parses its stored input).
    Checked,
}

fn not_utf8() -> EngineError {
    EngineError::UnsupportedMediaType {
        detail: "the body is not UTF-8 text".into(),
        accept_json: false,
    }
}

/// Parses the body per SPEC §5 and validates it against the input schema.
/// A JSON body is kept as its text (see [`KeepJson`]); without a schema it is
/// never built as a `Value`, with one the value is what the schema checks.
fn parse_body_now(
    ct: Option<&str>,
    version: &LoadedVersion,
    body: &[u8],
    keep: KeepJson,
) -> Result<RequestBody> {
    let json_ct = ct.is_some_and(is_json_content_type);
    if version.input_schema.is_some() && !json_ct && !(body.is_empty() && ct.is_none()) {
        return Err(EngineError::UnsupportedMediaType {
            detail: "this flow takes application/json only".into(),
            accept_json: true,
        });
    }
    let invalid_json = |e: serde_json::Error| EngineError::BadRequest {
        code: "invalid_json",
        detail: format!("the body is not valid JSON: {e}"),
    };
    if json_ct && !body.is_empty() && version.input_schema.is_none() {
        let kept = match keep {
            KeepJson::Parsed { max_depth } => flowgate_script::JsonBody::parse(body, max_depth),
            KeepJson::Checked => flowgate_script::JsonBody::checked(body),
        };
        return kept.map(RequestBody::Json).map_err(invalid_json);
    }
    let value = if body.is_empty() {
        Value::Null
    } else if json_ct {
        serde_json::from_slice(body).map_err(invalid_json)?
    } else {
        match std::str::from_utf8(body) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => return Err(not_utf8()),
        }
    };
    // `is_valid` stops at the first problem and builds no messages; only an
    // invalid body pays for the list of every violation.
    if let Some(schema) = version
        .input_schema
        .as_ref()
        .filter(|s| !s.is_valid(&value))
    {
        let errors: Vec<Value> = schema
            .iter_errors(&value)
            .take(100)
            .map(|e| json!({"pointer": e.instance_path().as_str(), "detail": e.to_string()}))
            .collect();
        if !errors.is_empty() {
            let mut details = Map::new();
            let message = format!(
                "the body does not match the input schema ({} problem{})",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            details.insert("errors".into(), Value::Array(errors));
            return Err(EngineError::Invalid { message, details });
        }
    }
    if json_ct && !body.is_empty() {
        // The value was parsed as strictly as `checked` would check it.
        let kept = match keep {
            KeepJson::Parsed { max_depth } => {
                flowgate_script::JsonBody::parsed_from(body, &value, max_depth)
                    .map_err(invalid_json)?
            }
            KeepJson::Checked => match std::str::from_utf8(body) {
                Ok(text) => flowgate_script::JsonBody::stored(text),
                Err(_) => return Err(not_utf8()),
            },
        };
        return Ok(RequestBody::Json(kept));
    }
    Ok(RequestBody::Value(value))
}

/// The script's `request` map of a call.
fn run_request(head: &dyn CallHead, target: &Target, body: RequestBody) -> Result<RunRequest> {
    let query: std::collections::BTreeMap<String, String> =
        serde_urlencoded::from_str(head.query()).map_err(|e| EngineError::BadRequest {
            code: "invalid_query",
            detail: format!("the query string is invalid: {e}"),
        })?;
    let generic_sig = target
        .endpoint
        .signature
        .as_ref()
        .map_or("", |s| s.header.as_str());
    let mut headers: Vec<(String, String)> = Vec::with_capacity(8);
    head.for_each_header(&mut |n, value| {
        if HIDDEN_HEADERS.contains(&n) || n == generic_sig {
            return;
        }
        let v = String::from_utf8_lossy(value);
        // A repeated header is joined to the first (the count of headers
        // is bounded by the HTTP server's limit).
        match headers.iter_mut().find(|(k, _)| k == n) {
            Some((_, prev)) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            None => headers.push((n.to_owned(), v.into_owned())),
        }
    });
    Ok(RunRequest {
        method: head.method().to_owned(),
        path: target.path.clone(),
        params: target.params.clone(),
        query,
        headers,
        body,
    })
}

impl Engine {
    /// Runs one call of a flow endpoint through the whole pipeline (see the
    /// module docs). `read_body(limit)` reads the request body, refusing one
    /// over `limit` bytes with [`EngineError::TooLarge`]; it is called once,
    /// after the credentials were checked (a signed webhook: before, since
    /// its signature covers the body). `notes` is filled as the call goes,
    /// also when it is refused.
    pub async fn call_flow<B, F>(
        &self,
        call: FlowCall<'_>,
        read_body: B,
        notes: &mut CallNotes,
    ) -> Result<Answer>
    where
        B: FnOnce(usize) -> F,
        F: Future<Output = Result<Vec<u8>>>,
    {
        let head = call.head;
        let target = self.resolve_target(&call).await?;
        let version = target.version.clone();
        notes.flow = Some((
            version.flow.as_str().to_owned(),
            u32::try_from(version.number).ok(),
        ));
        let manifest = version.manifest();
        let limit = manifest.limits.max_body_bytes;
        // A rate-limited flow states its policy on every answer, also on
        // those refused before the caller is known (the full `RateLimit`
        // follows below).
        if let Some(rate) = &manifest.limits.rate {
            notes.headers = vec![flowgate_auth::ratelimit::policy_header(
                flowgate_auth::ratelimit::FLOW_POLICY,
                rate.count,
                rate.window_secs,
            )];
        }

        // Credentials: a signed webhook proves itself with its signature;
        // other endpoints use the flow's [auth] mode.
        let (principal, body_bytes, delivery_id) =
            match (target.trigger_kind, &target.endpoint.signature) {
                (TriggerKind::Webhook, Some(sig)) => {
                    let body = read_body(limit).await?;
                    let delivery = self.verify_webhook(&call, &version, sig, &body).await?;
                    let p = Principal {
                        kind: PrincipalKind::Signature,
                        id: sig.scheme.as_str().to_owned(),
                        scopes: Vec::new(),
                    };
                    (p, body, delivery)
                }
                _ => {
                    let principal = self.authenticate_call(&call, &version, notes).await?;
                    (principal, read_body(limit).await?, None)
                }
            };
        let caller_key = principal.caller_key();
        notes.caller = Some(caller_key.clone());

        let security = self.security();
        if let Some(d) = security
            .check_rate(version.flow.as_str(), &manifest.limits, &caller_key)
            .await
        {
            notes.headers = d.headers();
            if !d.allowed {
                security.rate_limited(&caller_key, version.flow.as_str());
                let raw = manifest.limits.rate.as_ref().map_or("", |r| r.raw.as_str());
                return Err(EngineError::RateLimited(format!(
                    "this flow allows {raw} per caller"
                )));
            }
        }

        let ct = head.header("content-type").map(str::to_owned);
        // A sync run takes the parsed values, and so does an async one that
        // is tried inline before its 202 (one without an idempotency record,
        // see `Engine::accept_async`); a queued run parses its stored input.
        let queued = target.endpoint.mode == flowgate_core::manifest::RunMode::Async
            && (delivery_id.is_some() || head.has_header("idempotency-key"));
        let keep = if queued {
            KeepJson::Checked
        } else {
            KeepJson::Parsed {
                max_depth: self.runtime().config().limits.max_value_depth,
            }
        };
        let (body, body_bytes) = if body_bytes.len() <= INLINE_PARSE_BYTES {
            (
                parse_body_now(ct.as_deref(), &version, &body_bytes, keep)?,
                body_bytes,
            )
        } else {
            let v = version.clone();
            tokio::task::spawn_blocking(move || {
                parse_body_now(ct.as_deref(), &v, &body_bytes, keep).map(|b| (b, body_bytes))
            })
            .await??
        };

        let idempotency = idempotency(
            head,
            &version,
            &caller_key,
            delivery_id.as_deref(),
            &body_bytes,
        )?;
        let trigger_info = match target.trigger_kind {
            TriggerKind::Webhook => TriggerInfo::Webhook { delivery_id },
            _ => TriggerInfo::Http,
        };
        let inv = Invocation {
            version: version.clone(),
            trigger: target.trigger_kind,
            request: run_request(head, &target, body)?,
            caller: CallerInfo::of(&principal),
            trigger_info,
            request_id: call.request_id,
            idempotency_key: None,
        };
        self.invoke(inv, target.endpoint.mode, idempotency).await
    }

    /// Resolves the flow, its version and the endpoint of the method.
    async fn resolve_target(&self, call: &FlowCall<'_>) -> Result<Target> {
        let flow_raw = call.flow;
        let flow = FlowName::parse(flow_raw)
            .map_err(|_| EngineError::NotFound(format!("flow `{flow_raw}` does not exist")))?;
        let (pin, rest) = split_pin(call.tail);
        let version = self.registry().resolve(&flow, pin).await?;
        let method = call.head.method();
        let mut allowed: Vec<String> = Vec::new();
        for t in &version.manifest().triggers {
            let (kind, e) = match t {
                Trigger::Http(e) => (TriggerKind::Http, e),
                Trigger::Webhook(e) => (TriggerKind::Webhook, e),
                _ => continue,
            };
            let Some(params) = e.path.matches(rest) else {
                continue;
            };
            if e.method == method {
                return Ok(Target {
                    trigger_kind: kind,
                    endpoint: e.clone(),
                    path: rest.to_owned(),
                    params: params
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect(),
                    version,
                });
            }
            allowed.push(e.method.clone());
        }
        if allowed.is_empty() {
            return Err(EngineError::NotFound(format!(
                "flow `{flow}` has no endpoint at `{}`",
                if rest.is_empty() { "/" } else { rest }
            )));
        }
        allowed.sort();
        allowed.dedup();
        Err(EngineError::MethodNotAllowed {
            method: method.to_owned(),
            allowed,
        })
    }

    /// Checks a webhook's signature; the provider's delivery id when it sent one.
    async fn verify_webhook(
        &self,
        call: &FlowCall<'_>,
        version: &LoadedVersion,
        sig: &flowgate_core::manifest::SignatureConfig,
        body: &[u8],
    ) -> Result<Option<String>> {
        let Some(secret) = self.webhook_secret(&sig.secret).await? else {
            tracing::error!(flow.name = %version.flow, secret = %sig.secret, "webhook signature secret is not in the secret store");
            return Err(EngineError::SignatureSecretMissing);
        };
        let lookup = |name: &str| call.head.header(name).map(str::to_owned);
        let now_secs = flowgate_core::now_ms() / 1000;
        match flowgate_auth::signature::verify_signature(sig, &secret, &lookup, body, now_secs) {
            Ok(delivery) => Ok(delivery.delivery_id),
            Err(flowgate_auth::SignatureError::InvalidSecret(why)) => {
                tracing::error!(flow.name = %version.flow, secret = %sig.secret, reason = why, "webhook signature secret in the secret store is malformed; store a valid one");
                let e = flowgate_auth::SignatureError::InvalidSecret(why);
                Err(flowgate_auth::AuthError::from(e).into())
            }
            Err(e) => {
                self.security().auth_failed(
                    call.client_ip,
                    call.head.path(),
                    "invalid webhook signature",
                );
                Err(flowgate_auth::AuthError::from(e).into())
            }
        }
    }

    /// Authenticates the caller under the flow's `[auth]` mode and checks
    /// its scopes; anonymous callers pass the per-address limit first.
    async fn authenticate_call(
        &self,
        call: &FlowCall<'_>,
        version: &LoadedVersion,
        notes: &mut CallNotes,
    ) -> Result<Principal> {
        let auth = &version.manifest().auth;
        let security = self.security();
        if auth.mode == AuthMode::None {
            let d = security.ip_limit.check(call.client_ip);
            if !d.allowed {
                notes.headers = d.headers();
                return Err(EngineError::RateLimited(
                    "too many requests from this address".into(),
                ));
            }
        }
        let principal = security
            .authenticate(
                auth.mode,
                call.head.header("authorization"),
                call.head.header("x-api-key"),
                call.client_ip,
                call.head.path(),
            )
            .await?;
        if let Err(missing) = flowgate_auth::scopes::has_scopes(&principal.scopes, &auth.scopes) {
            notes.caller = Some(principal.caller_key());
            return Err(flowgate_auth::AuthError::MissingScope(missing.0).into());
        }
        Ok(principal)
    }
}

/// The idempotency scope of a call: an explicit `Idempotency-Key` on
/// POST/PUT/PATCH, else the provider's delivery id. The fingerprint covers
/// everything the script sees of the request line: the same key with
/// another query string is another request.
fn idempotency(
    head: &dyn CallHead,
    version: &LoadedVersion,
    caller_key: &str,
    delivery_id: Option<&str>,
    body: &[u8],
) -> Result<Option<Idempotency>> {
    let method = head.method();
    let flow = version.flow.as_str().as_bytes();
    let scope = match head.header("idempotency-key") {
        Some(k) if matches!(method, "POST" | "PUT" | "PATCH") => {
            if !valid_idempotency_key(k) {
                return Err(invalid_idempotency_key());
            }
            Some(sha256_hex(&[
                b"key",
                caller_key.as_bytes(),
                flow,
                k.as_bytes(),
            ]))
        }
        None if head.has_header("idempotency-key") => return Err(invalid_idempotency_key()),
        _ => delivery_id.map(|d| sha256_hex(&[b"delivery", flow, d.as_bytes()])),
    };
    Ok(scope.map(|scope| Idempotency {
        scope,
        request_hash: sha256_hex(&[
            method.as_bytes(),
            head.path().as_bytes(),
            head.query().as_bytes(),
            body,
        ]),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::BTreeMap;

    /// A request head without any HTTP server.
    struct TestHead {
        method: &'static str,
        path: &'static str,
        query: &'static str,
        headers: Vec<(&'static str, &'static str)>,
    }

    impl CallHead for TestHead {
        fn method(&self) -> &str {
            self.method
        }
        fn path(&self) -> &str {
            self.path
        }
        fn query(&self) -> &str {
            self.query
        }
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
        }
        fn has_header(&self, name: &str) -> bool {
            self.header(name).is_some()
        }
        fn for_each_header(&self, visit: &mut dyn FnMut(&str, &[u8])) {
            for (n, v) in &self.headers {
                visit(n, v.as_bytes());
            }
        }
    }

    /// A fresh engine with `files` created and published as flow `name`.
    async fn published(name: &str, files: BTreeMap<String, String>) -> Engine {
        let engine = crate::queries::memory_engine();
        let created = engine
            .create_flow(name, FlowPackage { files })
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
        engine
            .publish(name, created.version, false)
            .await
            .unwrap_or_else(|e| panic!("publish: {e}"));
        engine
    }

    async fn engine_with(name: &str, auth: &str) -> Engine {
        let files = BTreeMap::from([
            (
                "flow.toml".to_owned(),
                format!(
                    "name = \"{name}\"\n[[trigger]]\nkind = \"http\"\nmethod = \"POST\"\npath = \"/greet/{{who}}\"\n[auth]\nmode = \"{auth}\"\n"
                ),
            ),
            (
                "main.rhai".to_owned(),
                r#"#{ hello: request.params.who, n: request.body.n * 2, q: request.query.x, secret_seen: "authorization" in request.headers }"#.to_owned(),
            ),
            (
                "input.schema.json".to_owned(),
                r#"{"type":"object","required":["n"],"properties":{"n":{"type":"integer"}}}"#
                    .to_owned(),
            ),
        ]);
        published(name, files).await
    }

    fn post_greet(query: &'static str, headers: Vec<(&'static str, &'static str)>) -> TestHead {
        TestHead {
            method: "POST",
            path: "/flows/greeter/greet/ada",
            query,
            headers,
        }
    }

    /// A `POST` of JSON to `path`, with no query.
    fn post_json(path: &'static str) -> TestHead {
        TestHead {
            method: "POST",
            path,
            query: "",
            headers: vec![("content-type", "application/json")],
        }
    }

    fn call<'a>(head: &'a TestHead, tail: &'a str) -> FlowCall<'a> {
        call_of(head, "greeter", tail, "req-1")
    }

    fn call_of<'a>(
        head: &'a TestHead,
        flow: &'a str,
        tail: &'a str,
        request_id: &str,
    ) -> FlowCall<'a> {
        FlowCall {
            head,
            flow,
            tail,
            client_ip: IpAddr::from([127, 0, 0, 1]),
            request_id: request_id.into(),
        }
    }

    #[tokio::test]
    async fn the_pipeline_runs_without_an_http_server() {
        let engine = engine_with("greeter", "none").await;
        let head = post_greet(
            "x=1",
            vec![
                ("content-type", "application/json"),
                ("authorization", "Bearer hidden"),
            ],
        );
        let mut notes = CallNotes::default();
        let answer = engine
            .call_flow(
                call(&head, "/greet/ada"),
                |_| async { Ok(br#"{"n": 21}"#.to_vec()) },
                &mut notes,
            )
            .await
            .unwrap_or_else(|e| panic!("call: {e}"));
        assert_eq!(answer.doc["status"], 200);
        assert_eq!(
            answer.body(),
            json!({"hello": "ada", "n": 42, "q": "1", "secret_seen": false})
        );
        assert!(answer.doc.get("body").is_none(), "the body is written once");
        assert_eq!(notes.flow, Some(("greeter".into(), Some(1))));
        // A schema flow's stored input has the body as sent too.
        let run = only_run(&engine, "greeter").await;
        assert_eq!(run.input["request"]["body"], json!({"n": 21}));
        assert_eq!(run.input["request"]["params"], json!({"who": "ada"}));
        assert_eq!(notes.caller.as_deref(), Some("anonymous:127.0.0.1"));

        // 405 names the methods the path takes; 422 carries the schema's errors.
        let get = TestHead {
            method: "GET",
            ..head
        };
        let err = engine
            .call_flow(
                call(&get, "/greet/ada"),
                |_| async { Ok(Vec::new()) },
                &mut CallNotes::default(),
            )
            .await;
        assert!(
            matches!(&err, Err(EngineError::MethodNotAllowed { allowed, .. }) if allowed == &["POST"]),
            "{err:?}"
        );
        let post = TestHead {
            method: "POST",
            ..get
        };
        let err = engine
            .call_flow(
                call(&post, "/greet/ada"),
                |_| async { Ok(br#"{"n": "x"}"#.to_vec()) },
                &mut CallNotes::default(),
            )
            .await;
        assert!(
            matches!(&err, Err(EngineError::Invalid { details, .. }) if details["errors"][0]["pointer"] == "/n"),
            "{err:?}"
        );
    }

    /// A flow without an input schema on `POST /echo`, run in `mode`.
    async fn echo_flow(name: &str, mode: &str) -> Engine {
        script_flow(
            name,
            mode,
            "#{ got: request.body, first: request.body.items[0] }",
        )
        .await
    }

    /// A flow without an input schema on `POST /echo` running `script` in `mode`.
    async fn script_flow(name: &str, mode: &str, script: &str) -> Engine {
        let files = BTreeMap::from([
            (
                "flow.toml".to_owned(),
                format!(
                    "name = \"{name}\"\n[[trigger]]\nkind = \"http\"\nmethod = \"POST\"\npath = \"/echo\"\nmode = \"{mode}\"\n[auth]\nmode = \"none\"\n"
                ),
            ),
            ("main.rhai".to_owned(), script.to_owned()),
        ]);
        published(name, files).await
    }

    /// `sent` posted by `head` to `flow`'s `/echo`, answered.
    async fn call_echo(
        engine: &Engine,
        head: &TestHead,
        flow: &str,
        request_id: &str,
        sent: impl Into<Vec<u8>>,
    ) -> Answer {
        let sent = sent.into();
        engine
            .call_flow(
                call_of(head, flow, "/echo", request_id),
                |_| async move { Ok(sent) },
                &mut CallNotes::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{flow} call: {e}"))
    }

    /// The one run of `flow`, read back from the store.
    async fn only_run(engine: &Engine, flow: &str) -> flowgate_store::Run {
        engine.store().flush_writes();
        let filter = flowgate_store::RunFilter {
            flow: Some(FlowName::parse(flow).unwrap_or_else(|e| panic!("{e}"))),
            status: None,
        };
        let page = engine
            .list_runs(filter, None, 10)
            .await
            .unwrap_or_else(|e| panic!("runs: {e}"));
        assert_eq!(page.items.len(), 1, "{:?}", page.items);
        page.items
            .into_iter()
            .next()
            .unwrap_or_else(|| unreachable!())
    }

    /// The one run of `flow` once queue workers have finished it.
    async fn drained_run(engine: &Engine, flow: &str) -> flowgate_store::Run {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let workers = crate::queue::spawn_workers(engine.clone(), shutdown);
        let mut done = None;
        for _ in 0..200 {
            let run = only_run(engine, flow).await;
            if run.status.is_final() {
                done = Some(run);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let _ = stop.send(true);
        for w in workers {
            let _ = w.await;
        }
        done.unwrap_or_else(|| panic!("the queued run of `{flow}` did not finish"))
    }

    #[tokio::test]
    async fn an_object_keyed_like_serde_internals_stays_an_object() {
        // With serde_json's `raw_value` feature, every `Value` parse read an
        // object whose one key is `$serde_json::private::RawValue` as the JSON
        // text in its string: the stored input of this body changed shape
        // when read back, and its 200 levels failed the read.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let sent = format!("{{\"$serde_json::private::RawValue\": \"{deep}\"}}");
        let expected = json!({ "$serde_json::private::RawValue": deep });
        for mode in ["sync", "async"] {
            let flow = format!("raw-{mode}");
            let engine = script_flow(&flow, mode, "#{ got: request.body }").await;
            let path: &'static str = Box::leak(format!("/flows/{flow}/echo").into_boxed_str());
            let answer = call_echo(&engine, &post_json(path), &flow, "req-raw", sent.clone()).await;
            let run = if mode == "sync" {
                assert_eq!(answer.body()["got"], expected);
                only_run(&engine, &flow).await
            } else {
                let run = drained_run(&engine, &flow).await;
                let body = run.response.clone().map(|r| r["body"].clone());
                assert_eq!(body, Some(json!({ "got": expected })), "{run:?}");
                run
            };
            let detail = engine
                .store()
                .get_run(run.id)
                .unwrap_or_else(|e| panic!("{mode}: the run does not read back: {e}"))
                .unwrap_or_else(|| panic!("{mode}: no run"));
            assert_eq!(detail.run.input["request"]["body"], expected, "{mode}");
        }
    }

    #[tokio::test]
    async fn a_json_body_reaches_the_script_and_the_stored_input_as_sent() {
        // Whitespace, a repeated key and a number too large for an integer:
        // the script and the stored input see what a JSON parser makes of
        // them, the stored input with its keys in the order they came.
        let sent = " {\"z\": 1, \"items\": [{\"a\": null}, 2.5], \"big\": 18446744073709551615,\n \"z\": 3} ";
        let expected = json!({"z": 3, "items": [{"a": null}, 2.5], "big": 18446744073709551615u64});
        for mode in ["sync", "async"] {
            let flow = format!("echo-{mode}");
            let engine = echo_flow(&flow, mode).await;
            let path: &'static str = Box::leak(format!("/flows/{flow}/echo").into_boxed_str());
            let head = TestHead {
                method: "POST",
                path,
                query: "k=v",
                headers: vec![("content-type", "application/json"), ("x-extra", "1")],
            };
            let answer = call_echo(&engine, &head, &flow, "req-9", sent).await;
            if mode == "sync" {
                assert_eq!(answer.body()["got"]["z"], 3, "{mode}");
                assert_eq!(answer.body()["first"], json!({"a": null}));
                assert_eq!(answer.body()["got"]["big"], 18446744073709551615.0);
            } else {
                assert_eq!(answer.doc["status"], 202);
                // A worker runs it from the stored input, read straight into
                // script values: the script sees what a sync run sees.
                let run = drained_run(&engine, &flow).await;
                assert_eq!(
                    run.status,
                    flowgate_core::run::RunStatus::Succeeded,
                    "{run:?}"
                );
                let body = run.response.map(|r| r["body"].clone()).unwrap_or_default();
                // (integers beyond i64 are floats to a script)
                let seen =
                    json!({"z": 3, "items": [{"a": null}, 2.5], "big": 18446744073709551615.0});
                assert_eq!(body["got"], seen, "{body}");
                assert_eq!(body["first"], json!({"a": null}));
            }
            let run = only_run(&engine, &flow).await;
            let input = &run.input;
            assert_eq!(input["request"]["body"], expected, "{mode}");
            assert_eq!(input["request"]["method"], "POST");
            assert_eq!(input["request"]["query"], json!({"k": "v"}));
            assert_eq!(input["request_id"], "req-9");
            assert_eq!(input["caller"]["kind"], "anonymous");
            let keys: Vec<&str> = input
                .as_object()
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            assert_eq!(keys, ["request", "caller", "trigger", "request_id"]);
            let request_keys: Vec<&str> = input["request"]
                .as_object()
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            assert_eq!(request_keys.last(), Some(&"body"), "{mode}");
            let body_keys: Vec<&str> = input["request"]["body"]
                .as_object()
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            assert_eq!(body_keys, ["z", "items", "big"], "{mode}");
        }
    }

    #[tokio::test]
    async fn a_deeply_nested_body_is_a_bad_request_and_a_deep_one_runs() {
        let engine = echo_flow("deep", "sync").await;
        let head = post_json("/flows/deep/echo");
        let nested =
            |depth: usize| format!("{{\"items\": {}{}}}", "[".repeat(depth), "]".repeat(depth));
        for (depth, runs) in [(126, true), (5_000, false)] {
            let sent = nested(depth);
            let answer = engine
                .call_flow(
                    call_of(&head, "deep", "/echo", "req-d"),
                    |_| async move { Ok(sent.into_bytes()) },
                    &mut CallNotes::default(),
                )
                .await;
            if runs {
                let doc = answer.map(|a| a.doc).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(doc["status"], 200, "{doc}");
                // Its record reads back though the stored document nests
                // deeper than the body did.
                let run = only_run(&engine, "deep").await;
                assert!(run.input["request"]["body"]["items"].is_array());
                let detail = engine
                    .run_detail(&run.id.to_string())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(detail.run.input, run.input);
                // Queued, it runs from its stored input as deep as it is.
                let queued = echo_flow("deep-async", "async").await;
                let head = post_json("/flows/deep-async/echo");
                let answer = call_echo(&queued, &head, "deep-async", "req-q", nested(depth)).await;
                assert_eq!(answer.doc["status"], 202);
                let run = drained_run(&queued, "deep-async").await;
                assert_eq!(
                    run.status,
                    flowgate_core::run::RunStatus::Succeeded,
                    "{run:?}"
                );
            } else {
                assert!(
                    matches!(
                        &answer,
                        Err(EngineError::BadRequest {
                            code: "invalid_json",
                            ..
                        })
                    ),
                    "{answer:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn json_a_value_would_refuse_is_refused_before_a_run_is_queued() {
        // A lone surrogate or an out-of-range number: refused up front in
        // both modes, so no stored input fails to parse when it is claimed.
        for mode in ["sync", "async"] {
            let flow = format!("strict-{mode}");
            let engine = echo_flow(&flow, mode).await;
            let path: &'static str = Box::leak(format!("/flows/{flow}/echo").into_boxed_str());
            let head = post_json(path);
            for sent in [r#"{"items": ["\ud800"]}"#, r#"{"items": [1e400]}"#] {
                let answer = engine
                    .call_flow(
                        call_of(&head, &flow, "/echo", "req-s"),
                        |_| async move { Ok(sent.as_bytes().to_vec()) },
                        &mut CallNotes::default(),
                    )
                    .await;
                assert!(
                    matches!(
                        &answer,
                        Err(EngineError::BadRequest {
                            code: "invalid_json",
                            ..
                        })
                    ),
                    "{mode} {sent}: {answer:?}"
                );
            }
            engine.store().flush_writes();
            let runs = engine
                .list_runs(flowgate_store::RunFilter::default(), None, 10)
                .await
                .unwrap_or_else(|e| panic!("runs: {e}"));
            assert!(runs.items.is_empty(), "{mode}: {:?}", runs.items);
        }
    }

    #[tokio::test]
    async fn credentials_are_checked_before_the_body_is_read() {
        let engine = engine_with("greeter", "api_key").await;
        let head = post_greet("", vec![("content-type", "application/json")]);
        let read = Cell::new(false);
        let err = engine
            .call_flow(
                call(&head, "/greet/ada"),
                |_| {
                    read.set(true);
                    async { Ok(b"{}".to_vec()) }
                },
                &mut CallNotes::default(),
            )
            .await;
        assert!(
            matches!(
                err,
                Err(EngineError::Auth(
                    flowgate_auth::AuthError::MissingCredentials
                ))
            ),
            "{err:?}"
        );
        assert!(!read.get(), "the body of an unauthenticated call was read");
    }

    #[test]
    fn pins() {
        assert_eq!(split_pin("/v2"), (Some(2), ""));
        assert_eq!(split_pin("/v12/invoices/3"), (Some(12), "/invoices/3"));
        assert_eq!(split_pin("/very"), (None, "/very"));
        assert_eq!(split_pin(""), (None, ""));
        assert_eq!(split_pin("/v"), (None, "/v"));
    }

    #[test]
    fn idempotency_keys() {
        assert!(valid_idempotency_key("abc-123"));
        assert!(!valid_idempotency_key(""));
        assert!(!valid_idempotency_key(&"a".repeat(256)));
        assert!(!valid_idempotency_key("tab\there"));
        assert!(!valid_idempotency_key("é"));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("application/cloudevents+json"));
        assert!(!is_json_content_type("text/plain"));
    }
}
