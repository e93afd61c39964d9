//! Flow endpoints: `{METHOD} /flows/{flow}{path}` (live version) and
//! `{METHOD} /flows/{flow}/v{n}{path}` (pinned). This adapter checks the
//! request's size limits, hands the head and a body reader to the engine's
//! invocation pipeline ([`flowgate_engine::call`], which keeps the order of
//! checks SPEC §5 fixes) and renders its answer or problem.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use flowgate_engine::call::{CallHead, CallNotes, FlowCall};
use flowgate_engine::EngineError;
use futures_util::StreamExt;
use serde_json::Value;

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
    // skip the flow endpoints without looking further; the rest of the path
    // is split by `flow_and_tail`, not by a route pattern (a pattern with
    // parameters is a regular expression, run on every call).
    cfg.service(web::scope("/flows").default_service(web::to(invoke)));
}

/// The route of the flow endpoints, as metrics and logs name it.
pub(crate) const FLOW_ROUTE: &str = "/flows/{flow}{tail:.*}";

/// Whether `path` is a flow endpoint's (`/flows/` and a name): those are
/// routed by [`flow_and_tail`], not by a pattern actix could name.
pub(crate) fn is_flow_path(path: &str) -> bool {
    path.strip_prefix("/flows").and_then(split_flow).is_some()
}

/// `/{flow}{tail}` after the `/flows` prefix, as sent: the flow's name (a
/// non-empty segment) and the rest of the path. `None` when there is no name.
fn split_flow(rest: &str) -> Option<(&str, &str)> {
    let rest = rest.strip_prefix('/')?;
    let end = rest.find('/').unwrap_or(rest.len());
    (end > 0).then(|| rest.split_at(end))
}

/// [`split_flow`], both parts percent-decoded as a route's parameters would be.
fn flow_and_tail(rest: &str) -> Option<(String, String)> {
    thread_local! {
        static DECODE: actix_router::Quoter = actix_router::Quoter::new(b"", b"");
    }
    let (flow, tail) = split_flow(rest)?;
    let decode = |s: &str| {
        DECODE.with(|q| q.requote(s.as_bytes())).map_or_else(
            || s.to_owned(),
            |b| String::from_utf8_lossy(&b).into_owned(),
        )
    };
    Some((decode(flow), decode(tail)))
}

/// The request head as the pipeline reads it.
struct Head<'a>(&'a HttpRequest);

impl CallHead for Head<'_> {
    fn method(&self) -> &str {
        self.0.method().as_str()
    }
    fn path(&self) -> &str {
        self.0.path()
    }
    fn query(&self) -> &str {
        self.0.query_string()
    }
    fn header(&self, name: &str) -> Option<&str> {
        let value = match known_header(name) {
            Some(h) => self.0.headers().get(&h),
            None => self.0.headers().get(name),
        };
        value.and_then(|v| v.to_str().ok())
    }
    fn has_header(&self, name: &str) -> bool {
        match known_header(name) {
            Some(h) => self.0.headers().contains_key(&h),
            None => self.0.headers().contains_key(name),
        }
    }
    fn for_each_header(&self, visit: &mut dyn FnMut(&str, &[u8])) {
        for (name, value) in self.0.headers() {
            visit(name.as_str(), value.as_bytes());
        }
    }
}

/// The headers the pipeline reads on every call, as names that need no
/// parsing (a `&str` is parsed into a header name on every lookup).
fn known_header(name: &str) -> Option<HeaderName> {
    use actix_web::http::header;
    Some(match name {
        "content-type" => header::CONTENT_TYPE,
        "authorization" => header::AUTHORIZATION,
        "x-api-key" => HeaderName::from_static("x-api-key"),
        "idempotency-key" => HeaderName::from_static("idempotency-key"),
        _ => return None,
    })
}

/// Reads the body, refusing one over `limit` bytes as soon as that is known.
async fn read_body(
    declared_len: Option<usize>,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, EngineError> {
    let too_large = || {
        EngineError::TooLarge(format!(
            "the request body is larger than this flow's limit of {limit} bytes"
        ))
    };
    if declared_len.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(declared_len.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| EngineError::BadRequest {
            code: "bad_body",
            detail: format!("the request body could not be read: {e}"),
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Builds the HTTP response from a stored or fresh `{status, headers, body, problem?}`
/// document, its body from `body_json` when the engine wrote it already.
fn response_from_doc(mut doc: Value, body_json: Option<String>) -> HttpResponse {
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
    if let (Some(text), false) = (body_json, problem) {
        res.content_type("application/json");
        return res.body(text.into_bytes());
    }
    let body = doc.get_mut("body").map(Value::take).unwrap_or(Value::Null);
    if problem {
        res.content_type(crate::error::PROBLEM_JSON);
        let mut b = body;
        b["request_id"] = Value::String(current_request_id());
        res.body(json_bytes(&b))
    } else {
        res.content_type("application/json");
        res.body(json_bytes(&body))
    }
}

/// A JSON document's text, written straight into bytes (not through
/// `Display`'s formatter).
fn json_bytes(v: &Value) -> Vec<u8> {
    // Writing a `Value` cannot fail: its map keys are strings.
    serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec())
}

async fn invoke(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some((flow, tail)) = flow_and_tail(req.match_info().unprocessed()) else {
        return crate::server::not_found(req).await;
    };
    let mut notes = CallNotes::default();
    let answer = match check_size(&req) {
        Ok(()) => {
            let call = FlowCall {
                head: &Head(&req),
                flow: &flow,
                tail: &tail,
                client_ip: crate::routes::admin::client_ip(&req, &state),
                request_id: current_request_id(),
            };
            let declared_len = req
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            state
                .engine
                .call_flow(
                    call,
                    |limit| read_body(declared_len, payload, limit),
                    &mut notes,
                )
                .await
                .map_err(ApiError::from)
        }
        Err(e) => Err(e),
    };
    if let Some((flow, version)) = &notes.flow {
        note_flow(&req, flow, *version);
    }
    if let Some(caller) = notes.caller {
        note_caller(&req, caller);
    }
    let mut res = match answer {
        Ok(answer) => {
            let mut res = response_from_doc(answer.doc, answer.body_json);
            if answer.replayed {
                res.headers_mut().insert(
                    HeaderName::from_static("idempotent-replayed"),
                    HeaderValue::from_static("true"),
                );
            }
            res
        }
        Err(e) => actix_web::ResponseError::error_response(&e),
    };
    for (k, v) in notes.headers {
        if let Ok(v) = HeaderValue::try_from(v) {
            res.headers_mut().insert(HeaderName::from_static(k), v);
        }
    }
    Ok(res)
}

/// The size limits of the request line and headers (414/431).
fn check_size(req: &HttpRequest) -> ApiResult<()> {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::flow_and_tail;

    fn split(rest: &str) -> Option<(String, String)> {
        flow_and_tail(rest)
    }

    #[test]
    fn the_path_after_flows_splits_into_name_and_tail() {
        let pair = |a: &str, b: &str| Some((a.to_owned(), b.to_owned()));
        assert_eq!(split("/greet"), pair("greet", ""));
        assert_eq!(split("/greet/"), pair("greet", "/"));
        assert_eq!(split("/greet/v2/orders/7"), pair("greet", "/v2/orders/7"));
        // Decoded like a route parameter would be, `%2F` included.
        assert_eq!(split("/gr%65et/a%20b%2Fc"), pair("greet", "/a b/c"));
        assert_eq!(split(""), None);
        assert_eq!(split("/"), None);
        assert_eq!(split("//x"), None);
        for (path, flow) in [
            ("/flows/greet", true),
            ("/flows/greet/v2/x", true),
            ("/flows/", false),
            ("/flows//x", false),
            ("/flows", false),
            ("/flowsx/y", false),
        ] {
            assert_eq!(super::is_flow_path(path), flow, "{path}");
            let rest = path.strip_prefix("/flows").unwrap_or("");
            assert_eq!(split(rest).is_some(), flow, "{path}");
        }
    }
}
