//! Cross-cutting middleware: request ids, panic containment, access metrics.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};
use futures_util::FutureExt;
use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use crate::error::ApiError;

/// Header carrying the request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT_REQUEST_ID: String;
}

/// The id of the request being handled on this task (empty outside a request).
pub fn current_request_id() -> String {
    CURRENT_REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_default()
}

/// A request id we accept from callers: 1–128 visible ASCII characters.
fn acceptable_request_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// The `method` label of request metrics: the standard methods, and `other`
/// for anything a caller makes up (labels must not grow with input).
pub fn method_label(m: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(k, _)| k == m)
        .map_or("other", |(_, name)| name)
}

/// Assigns or echoes `X-Request-Id`, contains panics as 500 problems, and
/// records request counts and latency by route and status.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| acceptable_request_id(s))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = method_label(req.method());
    // Written back on the answer; the accepted id is visible ASCII, so it is
    // a header value as it stands.
    let id_header = HeaderValue::try_from(id.as_str()).ok();
    let flow_call = crate::routes::invoke::is_flow_path(req.path());
    let fut = async move {
        match AssertUnwindSafe(next.call(req)).catch_unwind().await {
            Ok(Ok(res)) => Ok(res.map_into_boxed_body()),
            Ok(Err(e)) => Err(e),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                let err = ApiError::internal(format!("handler panicked: {msg}"))
                    .with_request_id(current_request_id());
                metrics::counter!("flowgate_http_panics_total").increment(1);
                Err(Error::from(err))
            }
        }
    };
    let mut res = CURRENT_REQUEST_ID.scope(id.clone(), fut).await?;
    // Responses actix makes on its own (a resource's 405, a bare 404) carry no
    // body type: give them the same problem+json shape as ours.
    if res.status().as_u16() >= 400 && !res.headers().contains_key(CONTENT_TYPE) {
        let err = CURRENT_REQUEST_ID.sync_scope(id.clone(), || {
            let status = res.status();
            let (code, detail) = match status.as_u16() {
                404 => (
                    "not_found",
                    format!(
                        "no route for {} {}",
                        res.request().method(),
                        res.request().path()
                    ),
                ),
                405 => (
                    "method_not_allowed",
                    format!(
                        "{} is not allowed on {}",
                        res.request().method(),
                        res.request().path()
                    ),
                ),
                _ => (
                    "error",
                    flowgate_core::problem::title_of(status.as_u16()).to_owned(),
                ),
            };
            ApiError::new(status, code, detail).error_response()
        });
        let (req, old) = res.into_parts();
        let mut new = err;
        for (k, v) in old.headers() {
            if !new.headers().contains_key(k) {
                new.headers_mut().insert(k.clone(), v.clone());
            }
        }
        res = ServiceResponse::new(req, new);
    }
    if let Some(value) = id_header {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    // Flow endpoints are the scope's default service: no pattern of their own.
    let route: Cow<'static, str> = if flow_call {
        Cow::Borrowed(crate::routes::invoke::FLOW_ROUTE)
    } else {
        res.request()
            .match_pattern()
            .map_or(Cow::Borrowed("unmatched"), Cow::Owned)
    };
    let status = res.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    tracing::debug!(request_id = %id, http.method = %method, http.route = %route, http.status = %status, duration_ms = (elapsed * 1000.0) as u64, "request");
    record_request(method, route, status, elapsed);
    Ok(res)
}

/// Counts a request and records its latency. The labelled handles are built
/// and looked up in the recorder once per method, route and status on each
/// thread, not once per request. The combinations are bounded: methods are
/// [`method_label`]'s, routes the server's patterns (or `unmatched`), statuses
/// three digits.
fn record_request(method: &'static str, route: Cow<'static, str>, status: u16, elapsed: f64) {
    type Handles = (metrics::Counter, metrics::Histogram);
    type Key = (&'static str, Cow<'static, str>, u16);
    thread_local! {
        static HANDLES: std::cell::RefCell<std::collections::HashMap<Key, Handles>> =
            std::cell::RefCell::default();
    }
    HANDLES.with_borrow_mut(|handles| {
        let (count, latency) = handles
            .entry((method, route, status))
            .or_insert_with_key(|(method, route, status)| {
                let (route, status) = (route.to_string(), status.to_string());
                (
                    metrics::counter!("flowgate_http_requests_total", "method" => *method, "route" => route.clone(), "status" => status.clone()),
                    metrics::histogram!("flowgate_http_request_duration_seconds", "method" => *method, "route" => route, "status" => status),
                )
            });
        count.increment(1);
        latency.record(elapsed);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, web, App, HttpResponse};

    async fn boom() -> HttpResponse {
        let v: Vec<u8> = Vec::new();
        HttpResponse::Ok().body(format!("{}", v[3]))
    }

    async fn fine() -> HttpResponse {
        HttpResponse::Ok().body("fine")
    }

    #[actix_web::test]
    async fn made_up_methods_share_one_label() {
        use actix_web::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for m in ["FOO", "BREW", "get"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(method_label(&m), "other");
        }
    }

    #[actix_web::test]
    async fn a_panicking_handler_becomes_a_500_problem_and_the_server_keeps_serving() {
        let app = test::init_service(
            App::new()
                .route("/boom", web::get().to(boom))
                .route("/fine", web::get().to(fine))
                .wrap(actix_web::middleware::from_fn(request_context)),
        )
        .await;
        let req = test::TestRequest::get()
            .uri("/boom")
            .insert_header(("x-request-id", "r-1"))
            .to_request();
        let res = test::try_call_service(&app, req).await;
        let res = match res {
            Ok(r) => r.into_parts().1,
            Err(e) => e.error_response(),
        };
        assert_eq!(res.status().as_u16(), 500);
        assert_eq!(
            res.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/problem+json"[..])
        );
        assert_eq!(
            res.headers().get("x-request-id").map(|v| v.as_bytes()),
            Some(&b"r-1"[..])
        );
        let body = actix_web::body::to_bytes(res.into_body())
            .await
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(v["code"], "internal_error");
        assert_eq!(v["request_id"], "r-1");
        assert!(
            !v["detail"]
                .as_str()
                .unwrap_or("")
                .contains("index out of bounds"),
            "no internals leak: {v}"
        );
        // The same service keeps answering.
        let res =
            test::call_service(&app, test::TestRequest::get().uri("/fine").to_request()).await;
        assert_eq!(res.status().as_u16(), 200);
    }
}
