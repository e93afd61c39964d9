//! Flow endpoints: `{METHOD} /flows/{flow}{path}` (live version) and
//! `{METHOD} /flows/{flow}/v{n}{path}` (pinned). The order of checks is the
//! contract of SPEC §5: resolve (404/410) → trigger and method (404/405) →
//! credentials or signature (401/403) → rate limit (429) → body size (413) →
//! content type (415) → JSON (400) → schema (422) → idempotency (409/422) → run.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use flowgate_core::manifest::{EndpointTrigger, Trigger};
use flowgate_core::run::TriggerKind;
use flowgate_core::FlowName;
use flowgate_engine::invoke::{CallerInfo, Idempotency, Invocation, RunRequest, TriggerInfo};
use flowgate_engine::LoadedVersion;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::audit::{note_caller, note_flow};
use crate::middleware::current_request_id;
use crate::{ApiError, ApiResult, AppState};

/// Longest accepted path.
const MAX_PATH: usize = 2048;
/// Longest accepted single header value.
const MAX_HEADER_VALUE: usize = 8192;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // A scope's static prefix is a plain string comparison, so other paths
    // skip the flow pattern without running it.
    cfg.service(
        web::scope("/flows")
            .service(web::resource("/{flow}{tail:.*}").route(web::route().to(invoke))),
    );
}

/// Headers a script never sees.
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

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn resolve_target(
    state: &AppState,
    req: &HttpRequest,
    flow_raw: &str,
    tail: &str,
) -> ApiResult<Target> {
    let flow = FlowName::parse(flow_raw)
        .map_err(|_| ApiError::not_found(format!("flow `{flow_raw}` does not exist")))?;
    let (pin, rest) = split_pin(tail);
    let version = state.engine.registry().resolve(&flow, pin).await?;
    note_flow(req, flow.as_str(), u32::try_from(version.number).ok());
    let method = req.method().as_str();
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
        Err(ApiError::not_found(format!(
            "flow `{flow}` has no endpoint at `{}`",
            if rest.is_empty() { "/" } else { rest }
        )))
    } else {
        allowed.sort();
        allowed.dedup();
        Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed here; use {}", allowed.join(", ")),
        )
        .with_header("allow", allowed.join(", ")))
    }
}

async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> ApiResult<web::Bytes> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than this flow's limit of {limit} bytes"),
        )
    };
    if let Some(len) = header(req, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        if len > limit {
            return Err(too_large());
        }
    }
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "bad_body",
                format!("the request body could not be read: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
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

/// Bodies up to this size are parsed and validated on the HTTP worker; larger
/// ones on the blocking pool, so no body keeps an I/O thread busy.
const INLINE_PARSE_BYTES: usize = 8 * 1024;

/// Parses the body per SPEC §5 and validates it against the input schema,
/// off the HTTP worker when the body is large.
async fn parse_body(
    req: &HttpRequest,
    version: &Arc<LoadedVersion>,
    body: &web::Bytes,
) -> ApiResult<Value> {
    let ct = header(req, "content-type").map(str::to_owned);
    if body.len() <= INLINE_PARSE_BYTES {
        return parse_body_now(ct.as_deref(), version, body);
    }
    let (version, body) = (Arc::clone(version), body.clone());
    tokio::task::spawn_blocking(move || parse_body_now(ct.as_deref(), &version, &body))
        .await
        .map_err(|e| ApiError::internal(format!("body validation failed: {e}")))?
}

fn parse_body_now(ct: Option<&str>, version: &LoadedVersion, body: &[u8]) -> ApiResult<Value> {
    let json_ct = ct.is_some_and(is_json_content_type);
    if version.input_schema.is_some() && !json_ct && !(body.is_empty() && ct.is_none()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "this flow takes application/json only",
        )
        .with_header("accept", "application/json"));
    }
    let value = if body.is_empty() {
        Value::Null
    } else if json_ct {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
        })?
    } else {
        match std::str::from_utf8(body) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "the body is not UTF-8 text",
                ))
            }
        }
    };
    if let Some(schema) = &version.input_schema {
        let errors: Vec<Value> = schema
            .iter_errors(&value)
            .take(100)
            .map(|e| json!({"pointer": e.instance_path().as_str(), "detail": e.to_string()}))
            .collect();
        if !errors.is_empty() {
            return Err(ApiError::unprocessable(format!(
                "the body does not match the input schema ({} problem{})",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            ))
            .with("errors", Value::Array(errors)));
        }
    }
    Ok(value)
}

fn run_request(req: &HttpRequest, target: &Target, body: Value) -> ApiResult<RunRequest> {
    let query: std::collections::BTreeMap<String, String> =
        web::Query::<std::collections::BTreeMap<String, String>>::from_query(req.query_string())
            .map_err(|e| {
                ApiError::bad_request("invalid_query", format!("the query string is invalid: {e}"))
            })?
            .into_inner();
    let generic_sig = target
        .endpoint
        .signature
        .as_ref()
        .map(|s| s.header.clone())
        .unwrap_or_default();
    let mut headers = Map::new();
    for (name, value) in req.headers() {
        let n = name.as_str();
        if HIDDEN_HEADERS.contains(&n) || n == generic_sig {
            continue;
        }
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(n) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            _ => {
                headers.insert(n.to_owned(), Value::String(v));
            }
        }
    }
    Ok(RunRequest {
        method: req.method().as_str().to_owned(),
        path: target.path.clone(),
        params: target.params.clone(),
        query,
        headers,
        body,
    })
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

/// Builds the HTTP response from a stored or fresh `{status, headers, body, problem?}` document.
fn response_from_doc(mut doc: Value) -> HttpResponse {
    let status = doc
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut res = HttpResponse::build(status);
    if let Some(Value::Object(h)) = doc.get("headers") {
        for (k, v) in h {
            let lk = k.to_ascii_lowercase();
            if matches!(
                lk.as_str(),
                "content-length"
                    | "transfer-encoding"
                    | "connection"
                    | "x-request-id"
                    | "content-type"
            ) {
                continue;
            }
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::try_from(lk.as_str()),
                v.as_str().map(HeaderValue::try_from),
            ) {
                res.insert_header((name, value));
            }
        }
    }
    let problem = doc.get("problem").and_then(Value::as_bool).unwrap_or(false);
    let body = doc.get_mut("body").map(Value::take).unwrap_or(Value::Null);
    if problem {
        res.content_type(crate::error::PROBLEM_JSON);
        let mut b = body;
        b["request_id"] = Value::String(current_request_id());
        res.body(b.to_string())
    } else {
        res.content_type("application/json");
        res.body(body.to_string())
    }
}

async fn invoke(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mut extra_headers: Vec<(String, String)> = Vec::new();
    let (flow_raw, tail) = path.into_inner();
    let mut res = match handle(&req, &flow_raw, &tail, payload, &state, &mut extra_headers).await {
        Ok(r) => r,
        Err(e) => actix_web::ResponseError::error_response(&e),
    };
    for (k, v) in extra_headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            res.headers_mut().insert(k, v);
        }
    }
    res
}

async fn handle(
    req: &HttpRequest,
    flow_raw: &str,
    tail: &str,
    payload: web::Payload,
    state: &AppState,
    extra_headers: &mut Vec<(String, String)>,
) -> ApiResult<HttpResponse> {
    if req.path().len() > MAX_PATH {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the path is longer than {MAX_PATH} characters"),
        ));
    }
    if req
        .headers()
        .iter()
        .any(|(_, v)| v.len() > MAX_HEADER_VALUE)
    {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header_too_large",
            format!("a header value is longer than {MAX_HEADER_VALUE} bytes"),
        ));
    }
    let engine = &state.engine;
    let ip = crate::routes::admin::client_ip(req, state);
    let target = resolve_target(state, req, flow_raw, tail).await?;
    let version = target.version.clone();
    let manifest = version.manifest();
    let limit = manifest.limits.max_body_bytes;
    // A rate-limited flow states its policy on every response, also on those
    // refused before the caller is known (the full `RateLimit` follows below).
    if let Some(rate) = &manifest.limits.rate {
        *extra_headers = vec![flowgate_auth::ratelimit::policy_header(
            flowgate_auth::ratelimit::FLOW_POLICY,
            rate.count,
            rate.window_secs,
        )];
    }

    // Credentials: a signed webhook proves itself with its signature; other
    // endpoints use the flow's [auth] mode.
    let (principal, body_bytes, delivery_id) = if let (TriggerKind::Webhook, Some(sig)) =
        (target.trigger_kind, &target.endpoint.signature)
    {
        let body = read_body(req, payload, limit).await?;
        let secret = engine.webhook_secret(&sig.secret).await?;
        let Some(secret) = secret else {
            tracing::error!(flow.name = %version.flow, secret = %sig.secret, "webhook signature secret is not in the secret store");
            return Err(ApiError::unavailable(
                "this webhook cannot be verified right now; the provider should retry later",
                60,
            )
            .with_code("signature_secret_missing"));
        };
        let lookup = |name: &str| header(req, name).map(str::to_owned);
        let now_secs = flowgate_core::now_ms() / 1000;
        match flowgate_auth::signature::verify_signature(sig, &secret, &lookup, &body, now_secs) {
            Ok(delivery) => {
                let p = flowgate_auth::Principal {
                    kind: flowgate_auth::PrincipalKind::Signature,
                    id: sig.scheme.as_str().to_owned(),
                    scopes: Vec::new(),
                };
                (p, body, delivery.delivery_id)
            }
            Err(flowgate_auth::SignatureError::InvalidSecret(why)) => {
                tracing::error!(flow.name = %version.flow, secret = %sig.secret, reason = why, "webhook signature secret in the secret store is malformed; store a valid one");
                let e = flowgate_auth::SignatureError::InvalidSecret(why);
                return Err(flowgate_auth::AuthError::from(e).into());
            }
            Err(e) => {
                engine
                    .security()
                    .auth_failed(ip, req.path(), "invalid webhook signature");
                return Err(flowgate_auth::AuthError::from(e).into());
            }
        }
    } else {
        if manifest.auth.mode == flowgate_core::manifest::AuthMode::None {
            let d = engine.security().ip_limit.check(ip);
            if !d.allowed {
                *extra_headers = d.headers();
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests from this address",
                ));
            }
        }
        let principal = match engine
            .security()
            .authenticate(
                manifest.auth.mode,
                header(req, "authorization"),
                header(req, "x-api-key"),
                ip,
            )
            .await
        {
            Ok(p) => p,
            Err(e) => {
                if e.http_status() == 401 {
                    engine
                        .security()
                        .auth_failed(ip, req.path(), &e.to_string());
                }
                return Err(e.into());
            }
        };
        if let Err(missing) =
            flowgate_auth::scopes::has_scopes(&principal.scopes, &manifest.auth.scopes)
        {
            note_caller(req, principal.caller_key());
            return Err(flowgate_auth::AuthError::MissingScope(missing.0).into());
        }
        let body = read_body(req, payload, limit).await?;
        (principal, body, None)
    };
    let caller_key = principal.caller_key();
    note_caller(req, caller_key.clone());

    if let Some(d) = engine
        .security()
        .check_rate(version.flow.as_str(), &manifest.limits, &caller_key)
        .await
    {
        *extra_headers = d.headers();
        if !d.allowed {
            engine
                .security()
                .rate_limited(&caller_key, version.flow.as_str());
            let raw = manifest.limits.rate.as_ref().map_or("", |r| r.raw.as_str());
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("this flow allows {raw} per caller"),
            ));
        }
    }

    let body = parse_body(req, &version, &body_bytes).await?;

    // Idempotency: explicit keys on POST/PUT/PATCH, and provider delivery ids.
    let method = req.method().as_str().to_owned();
    let idem_key = match header(req, "idempotency-key") {
        Some(k) if matches!(method.as_str(), "POST" | "PUT" | "PATCH") => {
            if !valid_idempotency_key(k) {
                return Err(ApiError::bad_request(
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1–255 printable ASCII characters",
                ));
            }
            Some(sha256_hex(&[
                b"key",
                caller_key.as_bytes(),
                version.flow.as_str().as_bytes(),
                k.as_bytes(),
            ]))
        }
        None if req.headers().contains_key("idempotency-key") => {
            return Err(ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1–255 printable ASCII characters",
            ))
        }
        _ => delivery_id
            .as_ref()
            .map(|d| sha256_hex(&[b"delivery", version.flow.as_str().as_bytes(), d.as_bytes()])),
    };
    // The fingerprint covers everything the script sees of the request line:
    // the same key with another query string is another request.
    let idempotency = idem_key.map(|scope| Idempotency {
        scope,
        request_hash: sha256_hex(&[
            method.as_bytes(),
            req.path().as_bytes(),
            req.query_string().as_bytes(),
            &body_bytes,
        ]),
    });
    let trigger_info = match target.trigger_kind {
        TriggerKind::Webhook => TriggerInfo::Webhook { delivery_id },
        _ => TriggerInfo::Http,
    };
    let inv = Invocation {
        version: version.clone(),
        trigger: target.trigger_kind,
        request: run_request(req, &target, body)?,
        caller: CallerInfo::of(&principal),
        trigger_info,
        request_id: current_request_id(),
        idempotency_key: None,
    };
    let answer = engine
        .invoke(inv, target.endpoint.mode, idempotency)
        .await?;
    let mut res = response_from_doc(answer.doc);
    if answer.replayed {
        res.headers_mut().insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

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
