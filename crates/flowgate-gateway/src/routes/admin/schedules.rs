//! `GET /admin/v1/schedules`: each scheduled live flow with its expression,
//! zone, next five due times and its last ticks.

use actix_web::{get, web, HttpRequest, HttpResponse};

use super::authorize;
use super::dto::{ScheduleList, ScheduleOut, TickOut};
use crate::{ApiResult, AppState};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_schedules);
}

/// Scheduled flows.
#[utoipa::path(get, path = "/admin/v1/schedules", operation_id = "list_schedules", tag = "schedules",
    responses((status = 200, body = ScheduleList, description = "Scheduled live flows")),
    security(("bearer" = ["flows:read"])))]
#[get("/admin/v1/schedules")]
pub async fn list_schedules(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:read").await?;
    let schedules = state.engine.list_schedules(chrono::Utc::now()).await?;
    let items = schedules
        .into_iter()
        .map(|s| ScheduleOut {
            flow: s.flow.to_string(),
            version: s.version,
            cron: s.cron,
            timezone: s.timezone,
            next: s
                .next
                .iter()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .collect(),
            last_ticks: s.last_ticks.iter().map(TickOut::from).collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(ScheduleList {
        items,
        next_cursor: None,
    }))
}
