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
    let path: String = req.path().chars().take(1024).collect();
    let idempotency_key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(255).collect::<String>());
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
