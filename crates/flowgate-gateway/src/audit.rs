//! Audit middleware: one entry per API interaction (flow calls, events, admin
//! calls), accepted or refused, handed to the engine's batched writer.
//! Handlers add who called and which flow version through [`note_caller`] and
//! [`note_flow`]; credentials never reach the entry.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, HttpRequest};
use flowgate_engine::queries::AuditEntry;
use std::time::Instant;

use crate::middleware::current_request_id;
use crate::AppState;

/// A header looked up by name on every audited call: a static name is not
/// parsed (and copied) again each time.
const IDEMPOTENCY_KEY: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("idempotency-key");

#[derive(Clone, Default)]
struct AuditCtx {
    caller: Option<String>,
    flow: Option<String>,
    version: Option<u32>,
}

/// Records the authenticated caller (`kind:id`).
pub fn note_caller(req: &HttpRequest, caller: String) {
    let mut ext = req.extensions_mut();
    let ctx = ext.get_mut::<AuditCtx>();
    match ctx {
        Some(c) => c.caller = Some(caller),
        None => {
            ext.insert(AuditCtx {
                caller: Some(caller),
                ..AuditCtx::default()
            });
        }
    }
}

/// Records the flow and version a call concerned.
pub fn note_flow(req: &HttpRequest, flow: &str, version: Option<u32>) {
    let mut ext = req.extensions_mut();
    match ext.get_mut::<AuditCtx>() {
        Some(c) => {
            c.flow = Some(flow.to_owned());
            c.version = version.or(c.version);
        }
        None => {
            ext.insert(AuditCtx {
                flow: Some(flow.to_owned()),
                version,
                ..AuditCtx::default()
            });
        }
    }
}

fn audited(path: &str) -> bool {
    path.starts_with("/flows/")
        || path.starts_with("/admin/")
        || path == "/events"
        || path == "/console/session"
}

/// Writes the audit entry after the response is known.
pub async fn audit_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if !audited(req.path()) {
        return next.call(req).await;
    }
    let started = Instant::now();
    let time = flowgate_core::now_ms();
    let method = req.method().to_string();
    let path = prefix_chars(req.path(), 1024).to_owned();
    let idempotency_key = req
        .headers()
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(|s| prefix_chars(s, 255).to_owned());
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let res = next.call(req).await;
    let status = match &res {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    if let Some(state) = state {
        let ctx = match &res {
            Ok(r) => r
                .request()
                .extensions()
                .get::<AuditCtx>()
                .cloned()
                .unwrap_or_default(),
            Err(_) => AuditCtx::default(),
        };
        state.engine.audit().record(AuditEntry {
            time,
            request_id: current_request_id(),
            caller: ctx.caller,
            flow: ctx.flow,
            version: ctx.version,
            method,
            path,
            status,
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            idempotency_key,
        });
    }
    res
}

/// The first `n` characters of `s` (all of it when shorter), borrowed: a
/// slice up to a character boundary, not a string built char by char.
fn prefix_chars(s: &str, n: usize) -> &str {
    if s.len() <= n {
        // No more bytes than `n`, so no more characters.
        return s;
    }
    match s.char_indices().nth(n) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_chars;

    #[test]
    fn prefixes_end_on_a_character() {
        assert_eq!(prefix_chars("abc", 5), "abc");
        assert_eq!(prefix_chars("abc", 2), "ab");
        assert_eq!(prefix_chars("ééé", 2), "éé");
        assert_eq!(prefix_chars("ééé", 3), "ééé");
        assert_eq!(prefix_chars("", 0), "");
    }
}
