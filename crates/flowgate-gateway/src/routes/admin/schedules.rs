//! `GET /admin/v1/schedules`: each scheduled live flow with its expression,
//! zone, next five due times and its last ticks.

use actix_web::{get, web, HttpRequest, HttpResponse};

use super::dto::{ScheduleList, ScheduleOut, TickOut};
use super::{authorize, store_call};
use crate::{ApiError, ApiResult, AppState};

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
    let live = state.engine.live_flows().await?;
    let now = chrono::Utc::now();
    let mut items: Vec<ScheduleOut> = Vec::new();
    for (flow, version) in live {
        let Some(s) = version.manifest().schedule() else {
            continue;
        };
        let spec = flowgate_scheduler::CronSpec::parse(&s.cron, &s.timezone)
            .map_err(ApiError::internal)?;
        let next: Vec<String> = spec
            .next_n(now, 5)
            .into_iter()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .collect();
        let f2 = flow.clone();
        let ticks = store_call(&state, move |st| st.list_ticks(&f2, 10)).await?;
        items.push(ScheduleOut {
            flow: flow.to_string(),
            version: version.number,
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            next,
            last_ticks: ticks.iter().map(TickOut::from).collect(),
        });
    }
    Ok(HttpResponse::Ok().json(ScheduleList {
        items,
        next_cursor: None,
    }))
}
