//! `/admin/v1/runs…`: list, inspect and replay runs.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use flowgate_core::run::RunStatus;
use serde::Deserialize;

use super::authorize;
use super::dto::{RunDetailOut, RunList, RunOut};
use super::flows::RunAccepted;
use crate::audit::note_flow;
use crate::{ApiError, ApiResult, AppState};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_runs).service(get_run).service(replay_run);
}

/// Filters of `GET /admin/v1/runs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Only this flow.
    #[param(pattern = r"^[a-z0-9][a-z0-9-]{0,62}$")]
    pub flow: Option<String>,
    /// Only this status (`queued`, `running`, `succeeded`, `failed`, `dead`).
    #[param(pattern = "^(queued|running|succeeded|failed|dead)$")]
    pub status: Option<String>,
    /// Page size (1–500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

/// List runs, newest first.
#[utoipa::path(get, path = "/admin/v1/runs", operation_id = "list_runs", tag = "runs",
    params(RunQuery),
    responses((status = 200, body = RunList, description = "Runs, newest first"), (status = 400, response = crate::openapi::Problem)),
    security(("bearer" = ["runs:read"])))]
#[get("/admin/v1/runs")]
pub async fn list_runs(
    req: HttpRequest,
    q: web::Query<RunQuery>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "runs:read").await?;
    let limit = super::page_limit(q.limit, 50)?;
    let flow = match &q.flow {
        None => None,
        Some(f) => Some(
            flowgate_core::FlowName::parse(f)
                .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?,
        ),
    };
    let status = match &q.status {
        None => None,
        Some(s) => Some(
            RunStatus::parse(s)
                .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?,
        ),
    };
    let filter = flowgate_engine::queries::RunFilter { flow, status };
    let page = state
        .engine
        .list_runs(filter, q.cursor.clone(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(RunList {
        items: page.items.iter().map(RunOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One run with its logs and attempts.
#[utoipa::path(get, path = "/admin/v1/runs/{id}", operation_id = "get_run", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = RunDetailOut, description = "The run with its logs and attempts"), (status = 404, response = crate::openapi::Problem)),
    security(("bearer" = ["runs:read"])))]
#[get("/admin/v1/runs/{id}")]
pub async fn get_run(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "runs:read").await?;
    let detail = state.engine.run_detail(&path).await?;
    note_flow(&req, detail.run.flow.as_str(), Some(detail.run.version));
    Ok(HttpResponse::Ok().json(RunDetailOut::from(&detail)))
}

/// Queue a fresh attempt of a run with its original input.
#[utoipa::path(post, path = "/admin/v1/runs/{id}/replay", operation_id = "replay_run", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 202, body = RunAccepted, description = "Accepted"), (status = 404, response = crate::openapi::Problem)),
    security(("bearer" = ["runs:write"])))]
#[post("/admin/v1/runs/{id}/replay")]
pub async fn replay_run(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "runs:write").await?;
    let id = state.engine.replay(&path).await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("location", format!("/admin/v1/runs/{id}")))
        .json(RunAccepted {
            run_id: id.to_string(),
        }))
}
