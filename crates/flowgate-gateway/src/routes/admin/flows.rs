//! `/admin/v1/flows…`: flows, versions, publish, rollback, retire, dry run, run now.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use flowgate_core::FlowPackage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use utoipa::ToSchema;

use super::{authorize, PageQuery};
use crate::audit::note_flow;
use crate::{ApiError, ApiResult, AppState};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_flows)
        .service(create_flow)
        .service(get_flow)
        .service(disable_flow)
        .service(create_version)
        .service(get_version)
        .service(publish_version)
        .service(rollback_flow)
        .service(retire_version)
        .service(dry_run_version)
        .service(run_flow);
}

/// A flow package, file by file.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageIn {
    /// Path inside the package → UTF-8 content (`flow.toml`, `main.rhai`, `input.schema.json`, `tests/x.json`).
    pub files: BTreeMap<String, String>,
}

/// A stored draft version.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionCreatedOut {
    /// Flow name.
    pub flow: String,
    /// Version number.
    pub version: i64,
    /// `draft`.
    #[schema(pattern = "^draft$")]
    pub status: String,
    /// Content hash of the package.
    pub sha256: String,
}

impl From<flowgate_engine::flows::VersionCreated> for VersionCreatedOut {
    fn from(v: flowgate_engine::flows::VersionCreated) -> Self {
        Self {
            flow: v.flow,
            version: v.version,
            status: v.status.to_owned(),
            sha256: v.sha256,
        }
    }
}

/// Answer to retire.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetiredOut {
    /// Flow name.
    pub flow: String,
    /// The retired version.
    pub version: u32,
    /// `retired`.
    #[schema(pattern = "^retired$")]
    pub status: String,
}

/// A flow in lists.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowOut {
    /// Name.
    pub name: String,
    /// Disabled flows answer 404.
    pub disabled: bool,
    /// Live version.
    pub live_version: Option<u32>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A page of flows.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowList {
    /// Flows.
    pub items: Vec<FlowOut>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// Version metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionOut {
    /// Number.
    pub version: u32,
    /// `draft`, `published` or `retired`.
    pub status: String,
    /// Content hash.
    pub sha256: String,
    /// Whether it is the live version.
    pub live: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub published_at: Option<String>,
    /// RFC 3339.
    pub retired_at: Option<String>,
}

/// One flow with its versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowDetailOut {
    /// Name.
    pub name: String,
    /// Disabled flag.
    pub disabled: bool,
    /// Live version.
    pub live_version: Option<u32>,
    /// Versions, oldest first.
    pub versions: Vec<VersionOut>,
}

/// One version with its source files.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDetailOut {
    /// Flow.
    pub flow: String,
    /// Metadata.
    #[serde(flatten)]
    pub info: VersionOut,
    /// The package files.
    pub files: BTreeMap<String, String>,
}

/// `POST …/publish` body (optional).
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PublishIn {
    /// Publish even when the compatibility report finds breaking changes.
    #[serde(default)]
    pub force: bool,
}

/// `POST …/rollback` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackIn {
    /// The published version to make live.
    #[serde(deserialize_with = "super::dto::integer")]
    #[schema(minimum = 1)]
    pub version: i64,
}

/// Answer to publish and rollback.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveChangeOut {
    /// Flow.
    pub flow: String,
    /// Version now live.
    pub live_version: i64,
    /// Version live before.
    pub previous_live_version: Option<i64>,
    /// Compatibility report against the previous live version (`breaking`, `non_breaking`).
    #[schema(value_type = Option<Object>)]
    pub compatibility: Option<Value>,
}

impl From<flowgate_engine::flows::LiveChange> for LiveChangeOut {
    fn from(c: flowgate_engine::flows::LiveChange) -> Self {
        Self {
            flow: c.flow,
            live_version: c.live_version,
            previous_live_version: c.previous_live_version,
            compatibility: c.compatibility,
        }
    }
}

/// `202` answer of asynchronous operations.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunAccepted {
    /// Id of the queued run.
    pub run_id: String,
}

/// `POST …/dry-run` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunIn {
    /// The request as in fixtures (`method`, `path`, `params`, `query`, `headers`, `body`);
    /// missing members get defaults (`POST`, empty maps, a null body).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub request: Option<Map<String, Value>>,
    /// The caller map (default: an admin caller).
    #[schema(value_type = Option<Object>)]
    pub caller: Option<Map<String, Value>>,
    /// The trigger map (default: the version's first trigger kind).
    #[schema(value_type = Option<Object>)]
    pub trigger: Option<Map<String, Value>>,
    /// Mocked outbound responses; calls without a mock are refused.
    #[serde(default)]
    pub http: Vec<MockIn>,
    /// Secret values the run sees, by name. A dry run never reads the secret
    /// store: `secrets::get` of any other name is `()`.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

/// One mocked outbound response of a dry run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MockIn {
    /// Method to match (case-insensitive); default `GET`.
    pub method: Option<String>,
    /// URL to match exactly (query included, when the call has one).
    pub url: String,
    /// Status to answer; default 200.
    #[serde(default, deserialize_with = "super::dto::optional_integer")]
    #[schema(minimum = 100, maximum = 599)]
    pub status: Option<u16>,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body (JSON; a string is sent as text).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub body: Value,
}

impl DryRunIn {
    fn into_request(self) -> ApiResult<flowgate_engine::dryrun::DryRunRequest> {
        let mut http = Vec::with_capacity(self.http.len());
        for m in self.http {
            let status = m.status.unwrap_or(200);
            if !(100..=599).contains(&status) {
                return Err(ApiError::unprocessable(format!(
                    "mock status {status} is not an HTTP status (100–599)"
                )));
            }
            http.push(flowgate_engine::dryrun::MockResponse {
                method: m.method.unwrap_or_else(|| "GET".to_owned()),
                url: m.url,
                status,
                headers: m.headers,
                body: m.body,
            });
        }
        Ok(flowgate_engine::dryrun::DryRunRequest {
            request: self.request.map_or(Value::Null, Value::Object),
            caller: self.caller.map(Value::Object),
            trigger: self.trigger.map(Value::Object),
            http,
            secrets: self.secrets,
        })
    }
}

/// Dry-run result.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunOut {
    /// The response the caller would have got.
    pub response: DryRunResponseOut,
    /// Log lines, secrets redacted.
    pub logs: Vec<DryRunLogOut>,
    /// Intended changes; nothing was committed.
    pub changes: DryRunChangesOut,
    /// `METHOD url` of every outbound call that had no mock (each was refused).
    pub unmatched_http: Vec<String>,
    /// Run time in milliseconds.
    pub duration_ms: u64,
}

/// The response part of a dry run.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunResponseOut {
    /// HTTP status.
    pub status: u16,
    /// Headers the script set.
    pub headers: BTreeMap<String, String>,
    /// The body; a problem document when the run failed.
    #[schema(value_type = Object)]
    pub body: Value,
    /// Why the run failed (only when it failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One log line of a dry run.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunLogOut {
    /// RFC 3339.
    pub time: String,
    /// `trace`, `info`, `warn`, `error`.
    pub level: String,
    /// Text.
    pub message: String,
}

/// What a dry run would have changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunChangesOut {
    /// User operations in order: `{op: create|update|set_status|delete, user, changes?}`.
    #[schema(value_type = Vec<Object>)]
    pub users: Vec<Value>,
    /// kv key → new value (`null` when deleted).
    #[schema(value_type = Object)]
    pub kv: Map<String, Value>,
    /// Events the run emitted.
    pub events: Vec<DryRunEventOut>,
}

/// An event a dry run emitted.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunEventOut {
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Payload.
    #[schema(value_type = Object)]
    pub data: Value,
}

impl From<flowgate_engine::dryrun::DryRunOutcome> for DryRunOut {
    fn from(o: flowgate_engine::dryrun::DryRunOutcome) -> Self {
        Self {
            response: DryRunResponseOut {
                status: o.response.status,
                headers: o.response.headers,
                body: o.response.body,
                error: o.response.error,
            },
            logs: o
                .logs
                .into_iter()
                .map(|l| DryRunLogOut {
                    time: flowgate_core::rfc3339(l.time),
                    level: l.level.as_str().to_owned(),
                    message: l.message,
                })
                .collect(),
            changes: DryRunChangesOut {
                users: o.changes.users,
                kv: o.changes.kv,
                events: o
                    .changes
                    .events
                    .into_iter()
                    .map(|e| DryRunEventOut {
                        kind: e.kind,
                        data: e.data,
                    })
                    .collect(),
            },
            unmatched_http: o.unmatched_http,
            duration_ms: o.duration_ms,
        }
    }
}

fn flow_out(f: flowgate_engine::queries::FlowRecord) -> FlowOut {
    FlowOut {
        name: f.name.to_string(),
        disabled: f.disabled,
        live_version: f.live_version,
        created_at: flowgate_core::rfc3339(f.created_at),
        updated_at: flowgate_core::rfc3339(f.updated_at),
    }
}

fn version_out(v: &flowgate_engine::queries::VersionInfo, live: Option<u32>) -> VersionOut {
    VersionOut {
        version: v.version,
        status: v.status.as_str().to_owned(),
        sha256: v.sha256.clone(),
        live: live == Some(v.version),
        created_at: flowgate_core::rfc3339(v.created_at),
        published_at: v.published_at.map(flowgate_core::rfc3339),
        retired_at: v.retired_at.map(flowgate_core::rfc3339),
    }
}

/// List flows.
#[utoipa::path(get, path = "/admin/v1/flows", operation_id = "list_flows", tag = "flows",
    params(PageQuery),
    responses((status = 200, body = FlowList, description = "OK"), (status = 401, response = crate::openapi::Problem)),
    security(("bearer" = ["flows:read"])))]
#[get("/admin/v1/flows")]
pub async fn list_flows(
    req: HttpRequest,
    q: web::Query<PageQuery>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:read").await?;
    let limit = q.limit()?;
    let page = state.engine.list_flows(q.cursor.clone(), limit).await?;
    Ok(HttpResponse::Ok().json(FlowList {
        items: page.items.into_iter().map(flow_out).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Create a flow with its first draft version.
#[utoipa::path(post, path = "/admin/v1/flows", operation_id = "create_flow", tag = "flows",
    request_body = PackageIn,
    responses((status = 201, body = VersionCreatedOut, description = "Created"), (status = 409, response = crate::openapi::Problem), (status = 422, response = crate::openapi::Problem)),
    security(("bearer" = ["flows:write"])))]
#[post("/admin/v1/flows")]
pub async fn create_flow(
    req: HttpRequest,
    body: crate::extract::Json<PackageIn>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:write").await?;
    let package = FlowPackage {
        files: body.into_inner().files,
    };
    let name = flowgate_engine::flows::package_flow_name(&package)?;
    note_flow(&req, &name, Some(1));
    let created = state.engine.create_flow(&name, package).await?;
    Ok(HttpResponse::Created().json(VersionCreatedOut::from(created)))
}

/// One flow with its versions.
#[utoipa::path(get, path = "/admin/v1/flows/{flow}", operation_id = "get_flow", tag = "flows",
    params(("flow" = String, Path, description = "Flow name")),
    responses((status = 200, body = FlowDetailOut, description = "OK"), (status = 404, response = crate::openapi::Problem)),
    security(("bearer" = ["flows:read"])))]
#[get("/admin/v1/flows/{flow}")]
pub async fn get_flow(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:read").await?;
    note_flow(&req, &path, None);
    let detail = state.engine.flow_detail(&path).await?;
    let flow = detail.flow;
    let versions = detail.versions;
    Ok(HttpResponse::Ok().json(FlowDetailOut {
        name: flow.name.to_string(),
        disabled: flow.disabled,
        live_version: flow.live_version,
        versions: versions
            .iter()
            .map(|v| version_out(v, flow.live_version))
            .collect(),
    }))
}

/// Disable a flow (its URLs answer 404; its schedule stops).
#[utoipa::path(delete, path = "/admin/v1/flows/{flow}", operation_id = "disable_flow", tag = "flows",
    params(("flow" = String, Path, description = "Flow name")),
    responses((status = 204, description = "No content"), (status = 404, response = crate::openapi::Problem)),
    security(("bearer" = ["flows:write"])))]
#[delete("/admin/v1/flows/{flow}")]
pub async fn disable_flow(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:write").await?;
    note_flow(&req, &path, None);
    state.engine.disable(&path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Upload a new draft version.
#[utoipa::path(post, path = "/admin/v1/flows/{flow}/versions", operation_id = "create_version", tag = "flows",
    params(("flow" = String, Path, description = "Flow name")),
    request_body = PackageIn,
    responses((status = 201, body = VersionCreatedOut, description = "Created"), (status = 404, response = crate::openapi::Problem), (status = 422, response = crate::openapi::Problem)),
    security(("bearer" = ["flows:write"])))]
#[post("/admin/v1/flows/{flow}/versions")]
pub async fn create_version(
    req: HttpRequest,
    path: web::Path<String>,
    body: crate::extract::Json<PackageIn>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:write").await?;
    note_flow(&req, &path, None);
    let created = state
        .engine
        .create_version(
            &path,
            FlowPackage {
                files: body.into_inner().files,
            },
        )
        .await?;
    Ok(HttpResponse::Created().json(VersionCreatedOut::from(created)))
}

/// One version with its source.
#[utoipa::path(get, path = "/admin/v1/flows/{flow}/versions/{n}", operation_id = "get_version", tag = "flows",
    params(("flow" = String, Path, description = "Flow name"), ("n" = u32, Path, description = "Version number")),
    responses((status = 200, body = VersionDetailOut, description = "OK"), (status = 404, response = crate::openapi::Problem)),
    security(("bearer" = ["flows:read"])))]
#[get("/admin/v1/flows/{flow}/versions/{n}")]
pub async fn get_version(
    req: HttpRequest,
    path: web::Path<(String, u32)>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:read").await?;
    let (name, n) = path.into_inner();
    note_flow(&req, &name, Some(n));
    let detail = state.engine.version_detail(&name, n).await?;
    let v = detail.version;
    let live = detail.live_version;
    Ok(HttpResponse::Ok().json(VersionDetailOut {
        flow: v.info.flow.to_string(),
        info: version_out(&v.info, live),
        files: v.package.files,
    }))
}

/// Publish a version and make it live.
#[utoipa::path(post, path = "/admin/v1/flows/{flow}/versions/{n}/publish", operation_id = "publish_version", tag = "flows",
    params(("flow" = String, Path, description = "Flow name"), ("n" = u32, Path, description = "Version number")),
    request_body(content = Option<PublishIn>),
    responses((status = 200, body = LiveChangeOut, description = "OK"), (status = 404, response = crate::openapi::Problem), (status = 409, response = crate::openapi::Problem), (status = 422, response = crate::openapi::Problem)),
    security(("bearer" = ["flows:publish"])))]
#[post("/admin/v1/flows/{flow}/versions/{n}/publish")]
pub async fn publish_version(
    req: HttpRequest,
    path: web::Path<(String, u32)>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:publish").await?;
    let (name, n) = path.into_inner();
    note_flow(&req, &name, Some(n));
    let input: PublishIn = if body.iter().all(u8::is_ascii_whitespace) {
        PublishIn::default()
    } else {
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
        })?;
        if v.is_null() {
            PublishIn::default()
        } else {
            crate::extract::object_from_value(v)?
        }
    };
    let change = state
        .engine
        .publish(&name, i64::from(n), input.force)
        .await?;
    Ok(HttpResponse::Ok().json(LiveChangeOut::from(change)))
}

/// Move "live" back to an earlier published version.
#[utoipa::path(post, path = "/admin/v1/flows/{flow}/rollback", operation_id = "rollback_flow", tag = "flows",
    params(("flow" = String, Path, description = "Flow name")),
    request_body = RollbackIn,
    responses((status = 200, body = LiveChangeOut, description = "OK"), (status = 404, response = crate::openapi::Problem), (status = 409, response = crate::openapi::Problem)),
    security(("bearer" = ["flows:publish"])))]
#[post("/admin/v1/flows/{flow}/rollback")]
pub async fn rollback_flow(
    req: HttpRequest,
    path: web::Path<String>,
    body: crate::extract::Json<RollbackIn>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:publish").await?;
    note_flow(&req, &path, u32::try_from(body.version).ok());
    let change = state.engine.rollback(&path, body.version).await?;
    Ok(HttpResponse::Ok().json(LiveChangeOut::from(change)))
}

/// Retire a version (its pinned URL answers 410).
#[utoipa::path(post, path = "/admin/v1/flows/{flow}/versions/{n}/retire", operation_id = "retire_version", tag = "flows",
    params(("flow" = String, Path, description = "Flow name"), ("n" = u32, Path, description = "Version number")),
    responses((status = 200, body = RetiredOut, description = "OK"), (status = 404, response = crate::openapi::Problem), (status = 409, response = crate::openapi::Problem)),
    security(("bearer" = ["flows:publish"])))]
#[post("/admin/v1/flows/{flow}/versions/{n}/retire")]
pub async fn retire_version(
    req: HttpRequest,
    path: web::Path<(String, u32)>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:publish").await?;
    let (name, n) = path.into_inner();
    note_flow(&req, &name, Some(n));
    state.engine.retire(&name, i64::from(n)).await?;
    Ok(HttpResponse::Ok().json(RetiredOut {
        flow: name,
        version: n,
        status: "retired".to_owned(),
    }))
}

/// Run a version without committing side effects.
#[utoipa::path(post, path = "/admin/v1/flows/{flow}/versions/{n}/dry-run", operation_id = "dry_run_version", tag = "flows",
    params(("flow" = String, Path, description = "Flow name"), ("n" = u32, Path, description = "Version number")),
    request_body = DryRunIn,
    responses((status = 200, body = DryRunOut, description = "OK"), (status = 404, response = crate::openapi::Problem), (status = 422, response = crate::openapi::Problem), (status = 503, response = crate::openapi::Problem)),
    security(("bearer" = ["flows:write"])))]
#[post("/admin/v1/flows/{flow}/versions/{n}/dry-run")]
pub async fn dry_run_version(
    req: HttpRequest,
    path: web::Path<(String, u32)>,
    body: crate::extract::Json<DryRunIn>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:write").await?;
    let (name, n) = path.into_inner();
    note_flow(&req, &name, Some(n));
    let input = body.into_inner().into_request()?;
    let out = state.engine.dry_run(&name, i64::from(n), input).await?;
    Ok(HttpResponse::Ok().json(DryRunOut::from(out)))
}

/// Run the live version now (async).
#[utoipa::path(post, path = "/admin/v1/flows/{flow}/run", operation_id = "run_flow", tag = "flows",
    params(("flow" = String, Path, description = "Flow name")),
    request_body(content = Option<serde_json::Value>, description = "Optional JSON body (any value) the run sees as `request.body`"),
    responses((status = 202, body = RunAccepted, description = "Accepted"), (status = 404, response = crate::openapi::Problem)),
    security(("bearer" = ["runs:write"])))]
#[post("/admin/v1/flows/{flow}/run")]
pub async fn run_flow(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let principal = authorize(&req, &state, "runs:write").await?;
    note_flow(&req, &path, None);
    let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
        })?
    };
    let caller = flowgate_engine::invoke::CallerInfo::admin(&principal);
    let id = state.engine.run_now(&path, caller, input).await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("location", format!("/admin/v1/runs/{id}")))
        .json(RunAccepted {
            run_id: id.to_string(),
        }))
}
