//! Admin endpoints the console's editor and run pages use (SPEC §8):
//! package check, the script API catalogue, fixtures run on the server, the
//! diff between two versions, and a run as a fixture. The services are the
//! engine's ([`flowgate_engine::check`], [`flowgate_engine::console`]).

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::authorize;
use super::flows::PackageIn;
use crate::audit::note_flow;
use crate::{ApiResult, AppState};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(check_package)
        .service(script_api)
        .service(test_package)
        .service(diff_versions)
        .service(run_fixture);
}

/// One problem of a package.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemOut {
    /// File inside the package.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// `error`.
    pub severity: String,
    /// What is wrong.
    pub message: String,
}

impl From<flowgate_engine::check::Problem> for ProblemOut {
    fn from(p: flowgate_engine::check::Problem) -> Self {
        Self {
            file: p.file,
            line: p.line,
            column: p.column,
            severity: serde_json::to_value(p.severity)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "error".into()),
            message: p.message,
        }
    }
}

/// The problems of a package (empty when it is fine).
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckOut {
    /// Problems in file order.
    pub problems: Vec<ProblemOut>,
}

/// A parameter of a host function.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScriptApiParamOut {
    /// Name.
    pub name: String,
    /// `string`, `int`, `float`, `bool`, `map`, `array`, `any`.
    #[serde(rename = "type")]
    pub ty: String,
}

/// One function or variable of the script API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScriptApiItemOut {
    /// As scripts write it: `users::find_by_email`, `respond`, `request`.
    pub name: String,
    /// `users`, `http`, …; empty for global functions and variables.
    pub namespace: String,
    /// `function` or `variable`.
    pub kind: String,
    /// `users::find_by_email(email: string) -> map | ()`.
    pub signature: String,
    /// Parameters in order.
    pub params: Vec<ScriptApiParamOut>,
    /// Return type (a variable's type).
    pub returns: String,
    /// One line of documentation.
    pub doc: String,
}

/// The script API catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScriptApiOut {
    /// Variables, then host functions in registration order.
    pub items: Vec<ScriptApiItemOut>,
}

/// The result of one fixture.
#[derive(Debug, Serialize, ToSchema)]
pub struct FixtureResultOut {
    /// `tests/<name>.json`.
    pub file: String,
    /// The fixture's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Readable differences (empty when it passed).
    pub differences: Vec<String>,
    /// The run's log lines, `[level] message`.
    pub logs: Vec<String>,
}

/// The fixtures of a package, run on the server.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestOut {
    /// Passed fixtures.
    pub passed: usize,
    /// Failed fixtures.
    pub failed: usize,
    /// Each fixture in file order.
    pub results: Vec<FixtureResultOut>,
}

/// `?from=&to=` of the diff.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// Older version (default: the live one, or the one before `to`).
    pub from: Option<i64>,
    /// Newer version (default: the latest).
    pub to: Option<i64>,
}

/// One file of a diff.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileDiffOut {
    /// Path inside the package.
    pub name: String,
    /// `added`, `removed`, `modified` or `unchanged`.
    pub status: String,
    /// Content in `from` (null when absent).
    pub from: Option<String>,
    /// Content in `to` (null when absent).
    pub to: Option<String>,
}

/// One change of the compatibility report.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompatChangeOut {
    /// Whether it can break existing partners.
    pub breaking: bool,
    /// What changed (`endpoint_removed`, `auth_mode_changed`, …).
    pub kind: String,
    /// Where.
    pub location: String,
    /// Explanation.
    pub detail: String,
}

/// The OpenAPI compatibility of two versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompatibilityOut {
    /// Whether any change is breaking.
    pub breaking: bool,
    /// Breaking changes first.
    pub changes: Vec<CompatChangeOut>,
}

/// Two versions compared.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiffOut {
    /// Older version.
    pub from: i64,
    /// Newer version.
    pub to: i64,
    /// Every file of either version.
    pub files: Vec<FileDiffOut>,
    /// Compatibility of their OpenAPI documents.
    pub compatibility: CompatibilityOut,
}

fn text_of<T: Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Check a package: script compile errors, manifest errors (unknown keys
/// too), JSON and JSON Schema errors, fixture shape errors, each with file,
/// line and column. Reads no database; meant to be called while typing.
#[utoipa::path(post, path = "/admin/v1/check", operation_id = "check_package", tag = "console",
    request_body = PackageIn,
    responses((status = 200, body = CheckOut, description = "The problems (empty when the package is fine)"),
        (status = 400, response = crate::openapi::Problem), (status = 401, response = crate::openapi::Problem),
        (status = 403, response = crate::openapi::Problem), (status = 413, response = crate::openapi::Problem),
        (status = 415, response = crate::openapi::Problem), (status = 422, response = crate::openapi::Problem)),
    security(("bearer" = ["flows:read"]), ("session" = ["flows:read"])))]
#[post("/admin/v1/check")]
pub async fn check_package(
    req: HttpRequest,
    body: crate::extract::Json<PackageIn>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:read").await?;
    let problems = state.engine.check_package(&body.files);
    Ok(HttpResponse::Ok().json(CheckOut {
        problems: problems.into_iter().map(ProblemOut::from).collect(),
    }))
}

/// The script API: the variables every script sees and every host function
/// the engine registers, with signature and documentation.
#[utoipa::path(get, path = "/admin/v1/script-api", operation_id = "get_script_api", tag = "console",
    responses((status = 200, body = ScriptApiOut, description = "The catalogue"),
        (status = 401, response = crate::openapi::Problem), (status = 403, response = crate::openapi::Problem)),
    security(("bearer" = ["flows:read"]), ("session" = ["flows:read"])))]
#[get("/admin/v1/script-api")]
pub async fn script_api(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:read").await?;
    let items = state
        .engine
        .script_api()
        .into_iter()
        .map(|e| ScriptApiItemOut {
            kind: text_of(e.kind),
            params: e
                .params
                .into_iter()
                .map(|p| ScriptApiParamOut {
                    name: p.name,
                    ty: p.ty,
                })
                .collect(),
            name: e.name,
            namespace: e.namespace,
            signature: e.signature,
            returns: e.returns,
            doc: e.doc,
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-cache"))
        .json(ScriptApiOut { items }))
}

/// Run a package's fixtures (`tests/*.json`) on the server, as `flowgate test`
/// does: offline, in-memory store, HTTP mocks. A package that does not parse
/// or compile answers 422 with its `problems`.
#[utoipa::path(post, path = "/admin/v1/test", operation_id = "test_package", tag = "console",
    request_body = PackageIn,
    responses((status = 200, body = TestOut, description = "Each fixture's result"),
        (status = 400, response = crate::openapi::Problem), (status = 401, response = crate::openapi::Problem),
        (status = 403, response = crate::openapi::Problem), (status = 413, response = crate::openapi::Problem),
        (status = 415, response = crate::openapi::Problem),
        (status = 422, response = crate::openapi::Problem),
        (status = 503, response = crate::openapi::Problem)),
    security(("bearer" = ["flows:write"]), ("session" = ["flows:write"])))]
#[post("/admin/v1/test")]
pub async fn test_package(
    req: HttpRequest,
    body: crate::extract::Json<PackageIn>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:write").await?;
    let report = state.engine.test_package(body.into_inner().files).await?;
    Ok(HttpResponse::Ok().json(TestOut {
        passed: report.passed,
        failed: report.failed,
        results: report
            .results
            .into_iter()
            .map(|r| FixtureResultOut {
                file: r.file,
                name: r.name,
                passed: r.passed,
                differences: r.differences,
                logs: r.logs,
            })
            .collect(),
    }))
}

/// Compare two versions of a flow: every file, and the compatibility report
/// of their OpenAPI documents.
#[utoipa::path(get, path = "/admin/v1/flows/{flow}/diff", operation_id = "diff_versions", tag = "flows",
    params(("flow" = String, Path, description = "Flow name"), DiffQuery),
    responses((status = 200, body = DiffOut, description = "The diff"),
        (status = 400, response = crate::openapi::Problem), (status = 401, response = crate::openapi::Problem),
        (status = 403, response = crate::openapi::Problem), (status = 404, response = crate::openapi::Problem)),
    security(("bearer" = ["flows:read"]), ("session" = ["flows:read"])))]
#[get("/admin/v1/flows/{flow}/diff")]
pub async fn diff_versions(
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<DiffQuery>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "flows:read").await?;
    note_flow(&req, &path, None);
    let d = state.engine.version_diff(&path, q.from, q.to).await?;
    Ok(HttpResponse::Ok().json(DiffOut {
        from: d.from,
        to: d.to,
        files: d
            .files
            .into_iter()
            .map(|f| FileDiffOut {
                name: f.name,
                status: text_of(f.status),
                from: f.from,
                to: f.to,
            })
            .collect(),
        compatibility: CompatibilityOut {
            breaking: d.compatibility.breaking,
            changes: d
                .compatibility
                .changes
                .into_iter()
                .map(|c| CompatChangeOut {
                    breaking: c.breaking,
                    kind: c.kind.as_str().unwrap_or_default().to_owned(),
                    location: c.location,
                    detail: c.detail,
                })
                .collect(),
        },
    }))
}

/// A run as a fixture (`tests/*.json`): its request, caller and trigger, its
/// outbound calls as HTTP mocks and its response as the expectation, so
/// `flowgate test` reproduces it offline. Secrets the flow reads get the
/// placeholder value `test-value`.
#[utoipa::path(get, path = "/admin/v1/runs/{id}/fixture", operation_id = "get_run_fixture", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = Object, description = "A fixture (SPEC §6a)"),
        (status = 401, response = crate::openapi::Problem), (status = 403, response = crate::openapi::Problem),
        (status = 404, response = crate::openapi::Problem)),
    security(("bearer" = ["runs:read"]), ("session" = ["runs:read"])))]
#[get("/admin/v1/runs/{id}/fixture")]
pub async fn run_fixture(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "runs:read").await?;
    let fixture: Value = state.engine.run_fixture(&path).await?;
    Ok(HttpResponse::Ok().json(fixture))
}
