//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`.

use actix_web::{get, web, HttpResponse};

use crate::{ApiError, ApiResult, AppState};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}

/// The process is up.
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// The database answers.
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    match state.engine.ready().await {
        Ok(()) => {
            Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready", "database": "ok"})))
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::unavailable("the database is not reachable", 5).with_code("not_ready"))
        }
    }
}

/// Prometheus text format.
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.engine.export_gauges().await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.prometheus.render())
}
