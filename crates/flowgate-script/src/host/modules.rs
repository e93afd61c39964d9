//! The namespaces of the script API (SPEC §4), one [`HostModule`] each.

use base64::Engine as _;
use flowgate_core::event::EmittedEvent;
use flowgate_core::run::LogLevel;
use flowgate_core::user::{NewUser, UserFilter, UserStatus};
use flowgate_core::UserId;
use hmac::{Hmac, KeyInit, Mac};
use rhai::{Array, Dynamic, EvalAltResult, ImmutableString, Map, INT};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::context::{
    check_deadline, runtime_error, terminate, terminate_timeout, with_ctx, with_host, Terminal,
};
use super::context::{dynamic_of, json_of, limit_exceeded, retain};
use super::HostModule;
use crate::api::ApiBuilder;
use crate::http::{host_allowed, redact_url_query, HttpError, OutboundRequest, OutboundResponse};
use crate::outcome::{FlowResponse, HttpCallRecord, MAX_RECORDED_BODY_BYTES};

type RResult<T> = Result<T, Box<EvalAltResult>>;

fn status_arg(status: INT) -> RResult<u16> {
    u16::try_from(status)
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| runtime_error(format!("status {status} must be between 100 and 599")))
}

fn respond(status: INT, body: Dynamic, headers: Option<Map>) -> RResult<Dynamic> {
    let status = status_arg(status)?;
    let mut hs = BTreeMap::new();
    for (k, v) in headers.unwrap_or_default() {
        let name = k.to_ascii_lowercase();
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b));
        if !ok {
            return Err(runtime_error(format!("respond: invalid header name `{k}`")));
        }
        let value = v.to_string();
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(runtime_error(format!(
                "respond: header `{k}` contains a line break"
            )));
        }
        hs.insert(name, value);
    }
    let resp = FlowResponse {
        status,
        headers: hs,
        body: json_of(&body)?.into(),
    };
    with_ctx(|c| c.terminal = Some(Terminal::Respond(resp)))?;
    Err(terminate())
}

/// Global functions: `respond(status, body[, headers])`, `fail(status, code, detail)`.
pub struct CoreModule;

impl HostModule for CoreModule {
    fn namespace(&self) -> &'static str {
        ""
    }
    fn register(&self, api: &mut ApiBuilder<'_>) {
        let mut g = api.namespace("");
        g.function(
            "respond",
            &[("status", "int"), ("body", "any")],
            "never",
            "Ends the run and answers with this status and body (sent as JSON).",
            |status: INT, body: Dynamic| respond(status, body, None),
        );
        g.function(
            "respond",
            &[("status", "int"), ("body", "any"), ("headers", "map")],
            "never",
            "Ends the run and answers with this status, body and extra response headers.",
            |status: INT, body: Dynamic, headers: Map| respond(status, body, Some(headers)),
        );
        g.function(
            "fail",
            &[("status", "int"), ("code", "string"), ("detail", "any")],
            "never",
            "Ends the run with a problem answer: status (400-599), machine-readable code and detail.",
            |status: INT, code: ImmutableString, detail: Dynamic| -> RResult<Dynamic> {
                let status = status_arg(status)?;
                if status < 400 {
                    return Err(runtime_error(format!(
                        "fail: status {status} must be 400 or higher"
                    )));
                }
                let detail = if detail.is_string() {
                    detail.into_string().unwrap_or_default()
                } else {
                    detail.to_string()
                };
                with_ctx(|c| {
                    let detail = c.redact(&detail);
                    c.terminal = Some(Terminal::Fail {
                        status,
                        code: code.to_string(),
                        detail,
                    });
                })?;
                Err(terminate())
            },
        );
        g.function(
            "parse_json",
            &[("text", "string")],
            "any",
            "Parses JSON text (any value; null becomes ()); nesting is bounded like every value.",
            parse_json,
        );
        g.function(
            "to_json",
            &[("value", "map")],
            "string",
            "The map as JSON text.",
            |m: Map| -> RResult<String> { Ok(json_of(&Dynamic::from_map(m))?.to_string()) },
        );
        g.function(
            "to_json",
            &[("value", "array")],
            "string",
            "The array as JSON text.",
            |a: Array| -> RResult<String> { Ok(json_of(&Dynamic::from_array(a))?.to_string()) },
        );
    }
}

fn parse_json(text: ImmutableString) -> RResult<Dynamic> {
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => dynamic_of(&v),
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => Err(limit_exceeded(
            "value_depth",
            "parse_json: the JSON text is nested too deeply",
        )),
        Err(e) => Err(runtime_error(format!("parse_json: invalid JSON: {e}"))),
    }
}

/// `log::trace|info|warn|error(message)`.
pub struct LogModule;

impl HostModule for LogModule {
    fn namespace(&self) -> &'static str {
        "log"
    }
    fn register(&self, api: &mut ApiBuilder<'_>) {
        let mut m = api.namespace("log");
        for (name, level, doc) in [
            (
                "trace",
                LogLevel::Trace,
                "Writes a trace line to the run log (maps and arrays as JSON).",
            ),
            (
                "info",
                LogLevel::Info,
                "Writes an info line to the run log (maps and arrays as JSON).",
            ),
            (
                "warn",
                LogLevel::Warn,
                "Writes a warning to the run log (maps and arrays as JSON).",
            ),
            (
                "error",
                LogLevel::Error,
                "Writes an error line to the run log (maps and arrays as JSON).",
            ),
        ] {
            m.function(
                name,
                &[("message", "any")],
                "()",
                doc,
                move |msg: Dynamic| -> RResult<()> {
                    let text = if msg.is_string() {
                        msg.into_string().unwrap_or_default()
                    } else {
                        json_of(&msg)?.to_string()
                    };
                    with_ctx(|c| c.log(level, &text))
                },
            );
        }
    }
}

fn parse_user_id(op: &str, id: &str) -> RResult<UserId> {
    UserId::parse(id)
        .map_err(|_| runtime_error(format!("users::{op}: `{id}` is not a valid user id")))
}

fn repo_err(op: &str, e: flowgate_core::Error) -> Box<EvalAltResult> {
    runtime_error(format!("users::{op}: {e}"))
}

fn user_or_unit(u: Option<flowgate_core::user::User>) -> RResult<Dynamic> {
    u.map_or(Ok(Dynamic::UNIT), |u| dynamic_of(&u.to_json()))
}

/// `users::get|find_by_email|find_by_external_id|find|create|update|set_status|delete`.
pub struct UsersModule;

impl HostModule for UsersModule {
    fn namespace(&self) -> &'static str {
        "users"
    }
    fn register(&self, api: &mut ApiBuilder<'_>) {
        let mut m = api.namespace("users");
        m.function(
            "get",
            &[("id", "string")],
            "map | ()",
            "The user with this id, or () when there is none (or the id is not a user id).",
            |id: ImmutableString| -> RResult<Dynamic> {
                let Ok(id) = UserId::parse(&id) else {
                    return Ok(Dynamic::UNIT);
                };
                let users = with_host(|c| c.host.users.clone())?;
                users
                    .get_user(id)
                    .map_err(|e| repo_err("get", e))
                    .and_then(user_or_unit)
            },
        );
        m.function(
            "find_by_email",
            &[("email", "string")],
            "map | ()",
            "The user with this email (case-insensitive), or ().",
            |email: ImmutableString| -> RResult<Dynamic> {
                let users = with_host(|c| c.host.users.clone())?;
                users
                    .find_user_by_email(&email)
                    .map_err(|e| repo_err("find_by_email", e))
                    .and_then(user_or_unit)
            },
        );
        m.function(
            "find_by_external_id",
            &[("system", "string"), ("id", "string")],
            "map | ()",
            "The user whose external_ids[system] is id, or ().",
            |system: ImmutableString, id: ImmutableString| -> RResult<Dynamic> {
                let users = with_host(|c| c.host.users.clone())?;
                users
                    .find_user_by_external_id(&system, &id)
                    .map_err(|e| repo_err("find_by_external_id", e))
                    .and_then(user_or_unit)
            },
        );
        let find = |filter: Map, limit: INT| -> RResult<Array> {
            let filter = UserFilter::from_json(&json_of(&Dynamic::from_map(filter))?)
                .map_err(|e| repo_err("find", e))?;
            let limit = usize::try_from(limit.clamp(1, 1000)).unwrap_or(100);
            let users = with_host(|c| c.host.users.clone())?;
            let found = users
                .find_users(&filter, limit)
                .map_err(|e| repo_err("find", e))?;
            found.iter().map(|u| dynamic_of(&u.to_json())).collect()
        };
        m.function(
            "find",
            &[("filter", "map"), ("limit", "int")],
            "array",
            "Users matching the filter (e.g. #{ status: \"active\", \"attributes.plan\": \"pro\" }), at most limit (1-1000).", find);
        m.function(
            "find",
            &[("filter", "map")],
            "array",
            "Users matching the filter, at most 100.",
            move |filter: Map| find(filter, 100),
        );
        m.function(
            "create",
            &[("fields", "map")],
            "map",
            "Creates a user (email required; display_name, status, attributes, external_ids) and returns it.", |fields: Map| -> RResult<Dynamic> {
            let new = NewUser::from_json(&json_of(&Dynamic::from_map(fields))?)
                .map_err(|e| repo_err("create", e))?;
            let users = with_host(|c| c.host.users.clone())?;
            let u = users.create_user(new).map_err(|e| repo_err("create", e))?;
            dynamic_of(&u.to_json())
        });
        m.function(
            "update",
            &[("id", "string"), ("patch", "map")],
            "map",
            "Applies a JSON merge patch to the user (() removes a key) and returns the stored user.",
            |id: ImmutableString, patch: Map| -> RResult<Dynamic> {
                let id = parse_user_id("update", &id)?;
                let users = with_host(|c| c.host.users.clone())?;
                let u = users
                    .update_user(id, &json_of(&Dynamic::from_map(patch))?)
                    .map_err(|e| repo_err("update", e))?;
                dynamic_of(&u.to_json())
            },
        );
        m.function(
            "set_status",
            &[("id", "string"), ("status", "string")],
            "map",
            "Sets the status (active, suspended, disabled) and returns the stored user.",
            |id: ImmutableString, status: ImmutableString| -> RResult<Dynamic> {
                let id = parse_user_id("set_status", &id)?;
                let status = UserStatus::parse(&status).map_err(|e| repo_err("set_status", e))?;
                let users = with_host(|c| c.host.users.clone())?;
                let u = users
                    .set_user_status(id, status)
                    .map_err(|e| repo_err("set_status", e))?;
                dynamic_of(&u.to_json())
            },
        );
        m.function(
            "delete",
            &[("id", "string")],
            "bool",
            "Deletes the user; true when one was removed.",
            |id: ImmutableString| -> RResult<bool> {
                let Ok(id) = UserId::parse(&id) else {
                    return Ok(false);
                };
                let users = with_host(|c| c.host.users.clone())?;
                users.delete_user(id).map_err(|e| repo_err("delete", e))
            },
        );
    }
}

/// Options of `http::get/post`: `headers`, `query`, `timeout_ms`.
fn http_call(
    method: &str,
    url: &str,
    body: Option<Dynamic>,
    options: Option<Map>,
) -> RResult<Dynamic> {
    let opts = options.unwrap_or_default();
    for k in opts.keys() {
        if !matches!(k.as_str(), "headers" | "query" | "timeout_ms") {
            return Err(runtime_error(format!(
                "http: unknown option `{k}` (use headers, query, timeout_ms)"
            )));
        }
    }
    let mut parsed = url::Url::parse(url)
        .map_err(|_| runtime_error(format!("http: invalid URL `{}`", redact_url_query(url))))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(runtime_error(format!(
            "http: only http and https URLs are allowed, not `{}`",
            redact_url_query(url)
        )));
    }
    if let Some(q) = opts.get("query") {
        let q = q
            .read_lock::<Map>()
            .map(|m| m.clone())
            .ok_or_else(|| runtime_error("http: `query` must be a map"))?;
        let mut pairs = parsed.query_pairs_mut();
        for (k, v) in q {
            let v = if v.is_string() {
                v.into_string().unwrap_or_default()
            } else {
                v.to_string()
            };
            pairs.append_pair(&k, &v);
        }
    }
    let mut headers = BTreeMap::new();
    if let Some(h) = opts.get("headers") {
        let h = h
            .read_lock::<Map>()
            .map(|m| m.clone())
            .ok_or_else(|| runtime_error("http: `headers` must be a map"))?;
        for (k, v) in h {
            let v = if v.is_string() {
                v.into_string().unwrap_or_default()
            } else {
                v.to_string()
            };
            headers.insert(k.to_ascii_lowercase(), v);
        }
    }
    let body = match body {
        None => None,
        Some(b) if b.is_unit() => None,
        Some(b) if b.is_string() => Some(b.into_string().unwrap_or_default().into_bytes()),
        Some(b) => {
            headers
                .entry("content-type".into())
                .or_insert_with(|| "application/json".into());
            Some(json_of(&b)?.to_string().into_bytes())
        }
    };
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let (client, allowed, defaults, remaining) = with_host(|c| {
        (
            c.host.http.clone(),
            host_allowed(&host, &c.http_allow),
            c.http.clone(),
            c.deadline.saturating_duration_since(Instant::now()),
        )
    })?;
    let method = method.to_ascii_uppercase();
    let url = parsed.to_string();
    if !allowed {
        let msg = format!("http: {}", HttpError::NotAllowed(host));
        record_call(&method, &url, 0, Err(&msg))?;
        return Err(runtime_error(msg));
    }
    let asked = match opts.get("timeout_ms") {
        Some(t) => Duration::from_millis(
            u64::try_from(
                t.as_int()
                    .map_err(|_| runtime_error("http: `timeout_ms` must be an integer"))?,
            )
            .unwrap_or(0),
        ),
        None => defaults.timeout,
    };
    let call_limit = asked.min(defaults.max_timeout);
    let timeout = call_limit.min(remaining);
    if remaining.is_zero() {
        // The run's own deadline has passed: the run times out (504), it does not fail.
        return Err(terminate_timeout());
    }
    if timeout.is_zero() {
        return Err(runtime_error("http: `timeout_ms` must be positive"));
    }
    let req = OutboundRequest {
        method: method.clone(),
        url: url.clone(),
        headers,
        body,
        timeout,
        allow_private: defaults.allow_private_hosts,
        max_response_bytes: defaults.max_response_bytes,
    };
    let started = Instant::now();
    let sent = client.send(req);
    let took = started.elapsed();
    let resp = match sent {
        Ok(r) => {
            record_call(&method, &url, took.as_millis(), Ok(&r))?;
            r
        }
        Err(e) => {
            let msg = format!("http: {e}");
            record_call(&method, &url, took.as_millis(), Err(&msg))?;
            // When the run's deadline cut the call short, the deadline wins.
            let cut_by_run = timeout < call_limit && matches!(e, HttpError::Timeout { .. });
            if cut_by_run || check_deadline() {
                return Err(terminate_timeout());
            }
            return Err(runtime_error(msg));
        }
    };
    let mut out = Map::new();
    out.insert("status".into(), Dynamic::from_int(INT::from(resp.status)));
    let mut hs = Map::new();
    for (k, v) in resp.headers {
        hs.insert(k.into(), Dynamic::from(v));
    }
    out.insert("headers".into(), Dynamic::from_map(hs));
    out.insert("body".into(), dynamic_of(&resp.body)?);
    Ok(Dynamic::from_map(out))
}

/// Most outbound calls kept in a run's record (later ones still run, unrecorded).
const MAX_RECORDED_CALLS: usize = 200;

/// Appends one outbound call to the run's record, redacted.
fn record_call(
    method: &str,
    url: &str,
    took_ms: u128,
    result: Result<&OutboundResponse, &str>,
) -> RResult<()> {
    with_ctx(|c| {
        if c.http_calls.len() >= MAX_RECORDED_CALLS {
            return 0;
        }
        let (status, response_body, error) = match result {
            Ok(r) => {
                let body = if r.body.is_null() {
                    None
                } else {
                    let size = crate::convert::json_len(&r.body);
                    (size <= MAX_RECORDED_BODY_BYTES).then(|| c.redact_json(&r.body))
                };
                (Some(r.status), body, None)
            }
            Err(msg) => (None, None, Some(c.redact(msg))),
        };
        let record = HttpCallRecord {
            method: method.to_owned(),
            url: c.redact(&redact_url_query(url)),
            status,
            duration_ms: u64::try_from(took_ms).unwrap_or(u64::MAX),
            response_body,
            error,
        };
        let size = record.url.len()
            + record.error.as_ref().map_or(0, String::len)
            + record
                .response_body
                .as_ref()
                .and_then(|b| serde_json::to_vec(b).ok())
                .map_or(0, |b| b.len());
        c.http_calls.push(record);
        size
    })
    .and_then(retain)
}

/// `http::get(url[, options])`, `http::post(url, body[, options])`, `http::request(map)`.
pub struct HttpModule;

impl HostModule for HttpModule {
    fn namespace(&self) -> &'static str {
        "http"
    }
    fn register(&self, api: &mut ApiBuilder<'_>) {
        let mut m = api.namespace("http");
        m.function(
            "get",
            &[("url", "string")],
            "map",
            "GET url; returns #{ status, headers, body } for any status (JSON bodies parsed).",
            |url: ImmutableString| http_call("GET", &url, None, None),
        );
        m.function(
            "get",
            &[("url", "string"), ("options", "map")],
            "map",
            "GET url with options #{ headers, query, timeout_ms }; returns #{ status, headers, body }.", |url: ImmutableString, o: Map| {
            http_call("GET", &url, None, Some(o))
        });
        m.function(
            "post",
            &[("url", "string"), ("body", "any")],
            "map",
            "POST body (maps and arrays as JSON, strings as text); returns #{ status, headers, body }.", |url: ImmutableString, body: Dynamic| {
            http_call("POST", &url, Some(body), None)
        });
        m.function(
            "post",
            &[("url", "string"), ("body", "any"), ("options", "map")],
            "map",
            "POST body with options #{ headers, query, timeout_ms }; returns #{ status, headers, body }.", |url: ImmutableString, body: Dynamic, o: Map| {
            http_call("POST", &url, Some(body), Some(o))
        });
        m.function(
            "request",
            &[("spec", "map")],
            "map",
            "Any method: #{ method, url, headers, query, body, timeout_ms }; returns #{ status, headers, body }.", |spec: Map| -> RResult<Dynamic> {
            let mut opts = Map::new();
            let mut method = "GET".to_string();
            let mut url = None;
            let mut body = None;
            for (k, v) in spec {
                match k.as_str() {
                    "method" => method = v.to_string(),
                    "url" => url = Some(v.to_string()),
                    "body" => body = Some(v),
                    "headers" | "query" | "timeout_ms" => {
                        opts.insert(k, v);
                    }
                    other => {
                        return Err(runtime_error(format!(
                            "http::request: unknown key `{other}` (use method, url, headers, query, body, timeout_ms)"
                        )))
                    }
                }
            }
            let url = url.ok_or_else(|| runtime_error("http::request: `url` is required"))?;
            let ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic());
            if !ok {
                return Err(runtime_error(format!("http::request: invalid method `{method}`")));
            }
            http_call(&method, &url, body, Some(opts))
        });
    }
}

/// `secrets::get(name)`.
pub struct SecretsModule;

impl HostModule for SecretsModule {
    fn namespace(&self) -> &'static str {
        "secrets"
    }
    fn register(&self, api: &mut ApiBuilder<'_>) {
        let mut m = api.namespace("secrets");
        m.function(
            "get",
            &[("name", "string")],
            "string | ()",
            "The secret named name, or () when it is not set; its value is redacted from logs and errors.", |name: ImmutableString| -> RResult<Dynamic> {
            let repo = with_host(|c| c.host.secrets.clone())?;
            let v = repo
                .secret_get(&name)
                .map_err(|e| runtime_error(format!("secrets::get: {e}")))?;
            match v {
                None => Ok(Dynamic::UNIT),
                Some(s) => {
                    let value = s.expose().to_owned();
                    with_ctx(|c| c.add_secret(&value))?;
                    Ok(Dynamic::from(value))
                }
            }
        });
    }
}

const MAX_KV_KEY: usize = 256;
const MAX_KV_VALUE: usize = 64 * 1024;

fn kv_key(key: &str) -> RResult<()> {
    if key.is_empty() || key.len() > MAX_KV_KEY {
        return Err(runtime_error(format!(
            "kv: keys must be 1 to {MAX_KV_KEY} bytes long"
        )));
    }
    Ok(())
}

fn kv_set(key: &str, value: &Dynamic, ttl: Option<INT>) -> RResult<()> {
    kv_key(key)?;
    let v = json_of(value)?;
    if v.to_string().len() > MAX_KV_VALUE {
        return Err(runtime_error(format!(
            "kv::set: the value of `{key}` is larger than {MAX_KV_VALUE} bytes"
        )));
    }
    let ttl = match ttl {
        None => None,
        Some(t) if t > 0 => u64::try_from(t).ok(),
        Some(t) => {
            return Err(runtime_error(format!(
                "kv::set: ttl_seconds {t} must be positive"
            )))
        }
    };
    let (kv, flow) = with_host(|c| (c.host.kv.clone(), c.host.flow.clone()))?;
    kv.kv_set(&flow, key, &v, ttl)
        .map_err(|e| runtime_error(format!("kv::set: {e}")))
}

/// `kv::get|set|delete`, scoped to the flow.
pub struct KvModule;

impl HostModule for KvModule {
    fn namespace(&self) -> &'static str {
        "kv"
    }
    fn register(&self, api: &mut ApiBuilder<'_>) {
        let mut m = api.namespace("kv");
        m.function(
            "get",
            &[("key", "string")],
            "any",
            "The flow's stored value for key, or ().",
            |key: ImmutableString| -> RResult<Dynamic> {
                kv_key(&key)?;
                let (kv, flow) = with_host(|c| (c.host.kv.clone(), c.host.flow.clone()))?;
                let v = kv
                    .kv_get(&flow, &key)
                    .map_err(|e| runtime_error(format!("kv::get: {e}")))?;
                v.as_ref().map_or(Ok(Dynamic::UNIT), dynamic_of)
            },
        );
        m.function(
            "set",
            &[("key", "string"), ("value", "any")],
            "()",
            "Stores a JSON value (up to 64 KiB) under key (1-256 bytes) for this flow.",
            |key: ImmutableString, value: Dynamic| kv_set(&key, &value, None),
        );
        m.function(
            "set",
            &[("key", "string"), ("value", "any"), ("ttl_seconds", "int")],
            "()",
            "Stores a value under key that expires after ttl_seconds.",
            |key: ImmutableString, value: Dynamic, ttl: INT| kv_set(&key, &value, Some(ttl)),
        );
        m.function(
            "delete",
            &[("key", "string")],
            "bool",
            "Deletes key; true when it existed.",
            |key: ImmutableString| -> RResult<bool> {
                kv_key(&key)?;
                let (kv, flow) = with_host(|c| (c.host.kv.clone(), c.host.flow.clone()))?;
                kv.kv_delete(&flow, &key)
                    .map_err(|e| runtime_error(format!("kv::delete: {e}")))
            },
        );
    }
}

/// `events::emit(type, data)`.
pub struct EventsModule;

impl HostModule for EventsModule {
    fn namespace(&self) -> &'static str {
        "events"
    }
    fn register(&self, api: &mut ApiBuilder<'_>) {
        let mut m = api.namespace("events");
        m.function(
            "emit",
            &[("type", "string"), ("data", "any")],
            "()",
            "Emits an event (dotted lower-case type, not user.*, security.* or flow.*), delivered only if the run succeeds.",
            |kind: ImmutableString, data: Dynamic| -> RResult<()> {
                if !flowgate_core::manifest::is_valid_event_type(&kind) {
                    return Err(runtime_error(format!(
                    "events::emit: `{kind}` is not a valid event type (dotted lower-case words)"
                )));
                }
                if flowgate_core::event::is_reserved_event_type(&kind) {
                    return Err(runtime_error(format!(
                        "events::emit: `{kind}` is a system event type and cannot be emitted by flows"
                    )));
                }
                let data = json_of(&data)?;
                let size = crate::convert::json_len(&data);
                if size > flowgate_core::event::MAX_EVENT_DATA_BYTES {
                    return Err(limit_exceeded(
                        "event_size",
                        format!(
                            "events::emit: the data of `{kind}` is larger than {} bytes",
                            flowgate_core::event::MAX_EVENT_DATA_BYTES
                        ),
                    ));
                }
                with_ctx(|c| {
                    if c.events.len() >= c.max_events {
                        return Err(runtime_error(format!(
                            "events::emit: a run may emit at most {} events",
                            c.max_events
                        )));
                    }
                    c.events.push(EmittedEvent {
                        kind: kind.to_string(),
                        data,
                    });
                    Ok(())
                })??;
                retain(size + kind.len())
            },
        );
    }
}

/// `crypto::sha256|hmac_sha256|uuid|random_token`.
pub struct CryptoModule;

impl HostModule for CryptoModule {
    fn namespace(&self) -> &'static str {
        "crypto"
    }
    fn register(&self, api: &mut ApiBuilder<'_>) {
        let mut m = api.namespace("crypto");
        m.function(
            "sha256",
            &[("text", "string")],
            "string",
            "SHA-256 of the text, lower-case hex.",
            |s: ImmutableString| -> String { hex::encode(Sha256::digest(s.as_bytes())) },
        );
        m.function(
            "hmac_sha256",
            &[("key", "string"), ("message", "string")],
            "string",
            "HMAC-SHA256 of message with key, lower-case hex.",
            |key: ImmutableString, msg: ImmutableString| -> RResult<String> {
                let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
                    .map_err(|e| runtime_error(format!("crypto::hmac_sha256: {e}")))?;
                mac.update(msg.as_bytes());
                Ok(hex::encode(mac.finalize().into_bytes()))
            },
        );
        m.function(
            "uuid",
            &[],
            "string",
            "A random UUID (v4).",
            || -> String { uuid::Uuid::new_v4().to_string() },
        );
        m.function(
            "random_token",
            &[("bytes", "int")],
            "string",
            "bytes (1-1024) random bytes as URL-safe base64 without padding.",
            |bytes: INT| -> RResult<String> {
                let n = usize::try_from(bytes)
                    .ok()
                    .filter(|n| (1..=1024).contains(n))
                    .ok_or_else(|| {
                        runtime_error(format!(
                            "crypto::random_token: {bytes} must be between 1 and 1024"
                        ))
                    })?;
                let mut buf = vec![0u8; n];
                rand::fill(&mut buf[..]);
                Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
            },
        );
    }
}

/// `base64::encode|decode`.
pub struct Base64Module;

impl HostModule for Base64Module {
    fn namespace(&self) -> &'static str {
        "base64"
    }
    fn register(&self, api: &mut ApiBuilder<'_>) {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let mut m = api.namespace("base64");
        m.function(
            "encode",
            &[("text", "string")],
            "string",
            "Standard base64 of the text's UTF-8 bytes.",
            |s: ImmutableString| -> String { STANDARD.encode(s.as_bytes()) },
        );
        m.function(
            "decode",
            &[("text", "string")],
            "string",
            "Decodes base64 (standard or URL-safe, padded or not) into UTF-8 text.",
            |s: ImmutableString| -> RResult<String> {
                let s = s.trim();
                let bytes = STANDARD
                    .decode(s)
                    .or_else(|_| STANDARD_NO_PAD.decode(s))
                    .or_else(|_| URL_SAFE.decode(s))
                    .or_else(|_| URL_SAFE_NO_PAD.decode(s))
                    .map_err(|_| runtime_error("base64::decode: the input is not valid base64"))?;
                String::from_utf8(bytes).map_err(|_| {
                    runtime_error("base64::decode: the decoded bytes are not UTF-8 text")
                })
            },
        );
    }
}

/// `time::now|now_ms|parse|format`.
pub struct TimeModule;

impl HostModule for TimeModule {
    fn namespace(&self) -> &'static str {
        "time"
    }
    fn register(&self, api: &mut ApiBuilder<'_>) {
        let mut m = api.namespace("time");
        m.function(
            "now",
            &[],
            "string",
            "The current time, RFC 3339 in UTC.",
            || -> String { flowgate_core::rfc3339(flowgate_core::now_ms()) },
        );
        m.function(
            "now_ms",
            &[],
            "int",
            "The current time in epoch milliseconds.",
            || -> INT { flowgate_core::now_ms() },
        );
        m.function(
            "parse",
            &[("time", "string")],
            "int",
            "Parses an RFC 3339 time into epoch milliseconds.",
            |s: ImmutableString| -> RResult<INT> {
                chrono::DateTime::parse_from_rfc3339(s.trim())
                    .map(|d| d.timestamp_millis())
                    .map_err(|e| {
                        runtime_error(format!("time::parse: `{s}` is not an RFC 3339 time: {e}"))
                    })
            },
        );
        m.function(
            "format",
            &[("ms", "int"), ("format", "string")],
            "string",
            "Formats epoch milliseconds in UTC with strftime syntax.",
            |ms: INT, fmt: ImmutableString| -> RResult<String> {
                use chrono::format::{Item, StrftimeItems};
                use std::fmt::Write as _;
                if StrftimeItems::new(&fmt).any(|i| matches!(i, Item::Error)) {
                    return Err(runtime_error(format!(
                        "time::format: invalid format `{fmt}`"
                    )));
                }
                let dt = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
                    .ok_or_else(|| runtime_error(format!("time::format: {ms} is out of range")))?;
                let mut out = String::new();
                write!(out, "{}", dt.format(&fmt))
                    .map_err(|_| runtime_error(format!("time::format: invalid format `{fmt}`")))?;
                Ok(out)
            },
        );
    }
}
