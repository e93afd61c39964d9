//! `GET /admin/v1/audit`: query the audit log.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::authorize;
use super::dto::{AuditList, AuditOut};
use crate::{ApiError, ApiResult, AppState};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_audit);
}

/// Filters of the audit query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this flow.
    pub flow: Option<String>,
    /// Only this caller (`api_key:<id>`, `oauth2:<sub>`, …).
    pub caller: Option<String>,
    /// Only this HTTP status.
    #[param(minimum = 100, maximum = 599)]
    pub status: Option<u16>,
    /// From this time (RFC 3339, inclusive).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Until this time (RFC 3339, exclusive).
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Page size (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

fn time(field: &str, v: &Option<String>) -> ApiResult<Option<i64>> {
    v.as_ref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.timestamp_millis())
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("`{field}` `{t}` is not an RFC 3339 time"),
                    )
                })
        })
        .transpose()
}

/// Audit entries, newest first.
#[utoipa::path(get, path = "/admin/v1/audit", operation_id = "list_audit", tag = "audit",
    params(AuditQuery),
    responses((status = 200, body = AuditList, description = "Audit entries, newest first"), (status = 400, response = crate::openapi::Problem)),
    security(("bearer" = ["audit:read"])))]
#[get("/admin/v1/audit")]
pub async fn list_audit(
    req: HttpRequest,
    q: web::Query<AuditQuery>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "audit:read").await?;
    let limit = super::page_limit(q.limit, 100)?;
    if q.status.is_some_and(|s| !(100..=599).contains(&s)) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "`status` must be an HTTP status (100–599)",
        ));
    }
    let filter = flowgate_engine::queries::AuditFilter {
        flow: q.flow.clone(),
        caller: q.caller.clone(),
        status: q.status,
        since: time("since", &q.since)?,
        until: time("until", &q.until)?,
    };
    let page = state
        .engine
        .query_audit(filter, q.cursor.clone(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(AuditList {
        items: page.items.iter().map(AuditOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}
