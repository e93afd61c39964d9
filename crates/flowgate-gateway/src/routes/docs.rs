//! Partner documentation: OpenAPI 3.1 per flow version, one document of all
//! live flows, and an HTML portal that works offline (no external assets).

use actix_web::{get, web, HttpResponse};
use flowgate_engine::docs::flow_doc;
use flowgate_engine::{LiveState, VersionStatus};

use crate::{ApiError, ApiResult, AppState};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(version_openapi)
        .service(live_openapi)
        .service(docs_index)
        .service(docs_version);
}

fn parse_version_file(file: &str) -> Option<i64> {
    let n = file.strip_prefix('v')?.strip_suffix(".json")?;
    if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

async fn documented_version(
    state: &AppState,
    flow: &str,
    n: i64,
) -> ApiResult<(std::sync::Arc<flowgate_engine::LoadedVersion>, bool)> {
    let name = flowgate_core::FlowName::parse(flow)
        .map_err(|_| ApiError::not_found(format!("flow `{flow}` does not exist")))?;
    let live = match state.engine.registry().live_state(&name).await? {
        LiveState::Unknown | LiveState::Disabled => {
            return Err(ApiError::not_found(format!("flow `{flow}` does not exist")))
        }
        LiveState::Live(l) => Some(l),
        LiveState::NotLive => None,
    };
    let v = state
        .engine
        .registry()
        .version(&name, n)
        .await?
        .filter(|v| v.status != VersionStatus::Draft)
        .ok_or_else(|| {
            ApiError::not_found(format!("flow `{flow}` has no published version {n}"))
        })?;
    Ok((v, live == Some(n)))
}

/// OpenAPI 3.1 of one flow version at its pinned path.
#[get("/openapi/flows/{flow}/{file}")]
async fn version_openapi(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let (flow, file) = path.into_inner();
    let n = parse_version_file(&file)
        .ok_or_else(|| ApiError::not_found("use /openapi/flows/{flow}/v{n}.json"))?;
    let (v, live) = documented_version(&state, &flow, n).await?;
    let doc =
        flowgate_docs::flow_version_openapi(&flow_doc(&v, live), &state.engine.config().public_url);
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.to_string()))
}

/// OpenAPI 3.1 of all live flows at their live paths.
#[get("/openapi.json")]
async fn live_openapi(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let live = state.engine.live_flows().await?;
    let docs: Vec<_> = live.iter().map(|(_, v)| flow_doc(v, true)).collect();
    let doc = flowgate_docs::live_openapi(&docs, &state.engine.config().public_url);
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.to_string()))
}

/// The documentation portal: every live flow and the event catalogue.
#[get("/docs")]
async fn docs_index(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let live = state.engine.live_flows().await?;
    let mut published: Vec<Vec<i64>> = Vec::new();
    for (name, _) in &live {
        published.push(state.engine.published_versions(name).await?);
    }
    let docs: Vec<_> = live.iter().map(|(_, v)| flow_doc(v, true)).collect();
    let summaries: Vec<flowgate_docs::html::FlowSummary<'_>> = docs
        .iter()
        .zip(published)
        .map(|(d, versions)| flowgate_docs::html::FlowSummary { live: *d, versions })
        .collect();
    let catalogue = flowgate_docs::events::event_catalogue(&docs);
    let html = flowgate_docs::html::docs_index_html(&summaries, &catalogue);
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

/// The page of one flow version, with its compatibility against the live version.
#[get("/docs/flows/{flow}/{version}")]
async fn docs_version(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let (flow, version) = path.into_inner();
    let n = version
        .strip_prefix('v')
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or_else(|| ApiError::not_found("use /docs/flows/{flow}/v{n}"))?;
    let (v, live) = documented_version(&state, &flow, n).await?;
    let doc = flow_doc(&v, live);
    let openapi = flowgate_docs::flow_version_openapi(&doc, &state.engine.config().public_url);
    let name = v.flow.clone();
    // Against the live version; the live version itself against the published
    // version before it (what its publish reported).
    let base = state.engine.compatibility_base(&name, n).await?;
    let compat = match base {
        Some(b) => state.engine.registry().version(&name, b).await?,
        None => None,
    };
    let report = compat
        .as_ref()
        .map(|old| flowgate_docs::compare(&flow_doc(old, true), &doc));
    let html = flowgate_docs::html::docs_version_html(&doc, &openapi, report.as_ref());
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}
