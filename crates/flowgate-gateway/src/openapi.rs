//! The admin API's own OpenAPI document, generated with utoipa from the
//! handlers (`GET /admin/v1/openapi.json`, `flowgate openapi export`).

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Required, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use crate::routes::{admin, console, events};

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema, ToResponse)]
#[response(
    description = "A problem (RFC 9457)",
    content_type = "application/problem+json"
)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the status.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
    /// The request id (also in `X-Request-Id`).
    pub request_id: String,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("An admin API key (`fgk_…`) or, only when `oauth2.admin_issuer` is configured, an access token of that issuer and `oauth2.admin_audience` (never the partners' tokens). `X-API-Key: <key>` works too. `POST /events` takes the partners' credentials instead (API keys, or tokens of `oauth2.issuer`). Missing or wrong credentials get 401 before the body is read.")).build()),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "flowgate_session",
                "The console's session cookie (`POST /console/session`), with the scopes of the key that opened it. Every admin endpoint accepts it; POST, PUT, PATCH and DELETE made with it need the session's `X-CSRF-Token` header (403 `csrf_failed` otherwise).",
            ))),
        );
    }
}

/// One problem answer of the admin API: status, component name, description
/// and the headers it always carries.
struct ProblemKind {
    status: u16,
    name: &'static str,
    description: &'static str,
    /// Headers: (name, description, always sent).
    headers: &'static [(&'static str, &'static str, bool)],
}

/// Every problem status the admin API answers. Handlers name the statuses
/// specific to them (`response = Problem`, e.g. 409); [`StandardProblems`]
/// adds the ones that follow from the operation's shape and renames every
/// problem `$ref` to the component of its status.
const PROBLEMS: &[ProblemKind] = &[
    ProblemKind { status: 400, name: "BadRequest", description: "Malformed request: a query parameter out of range or of the wrong type (code `invalid_query`), or a body that is not valid JSON (code `invalid_json`).", headers: &[] },
    ProblemKind { status: 401, name: "Unauthorized", description: "Missing or invalid credentials.", headers: &[("WWW-Authenticate", "The challenge: `Bearer realm=\"flowgate\"`, with `error=\"invalid_token\"` when credentials were sent.", true)] },
    ProblemKind { status: 401, name: "SessionEnded", description: "No console session, or it has ended; sign in again (`POST /console/session`).", headers: &[] },
    ProblemKind { status: 403, name: "Forbidden", description: "Valid credentials without the scope this operation needs (`missing_scope` names it), or a console-session call without its `X-CSRF-Token` (code `csrf_failed`).", headers: &[("WWW-Authenticate", "For a missing scope: `Bearer realm=\"flowgate\", error=\"insufficient_scope\", scope=\"…\"`.", false)] },
    ProblemKind { status: 404, name: "NotFound", description: "The resource named in the path does not exist.", headers: &[] },
    ProblemKind { status: 408, name: "RequestTimeout", description: "The request body did not arrive in full within the server's body deadline (`server.body_timeout_secs`; code `request_timeout`).", headers: &[] },
    ProblemKind { status: 409, name: "Conflict", description: "The request conflicts with the resource's current state.", headers: &[] },
    ProblemKind { status: 413, name: "PayloadTooLarge", description: "The request body is larger than the server accepts (1 MiB).", headers: &[] },
    ProblemKind { status: 415, name: "UnsupportedMediaType", description: "The body is not sent as `application/json`.", headers: &[] },
    ProblemKind { status: 422, name: "UnprocessableContent", description: "The body is JSON but not of the expected shape, or fails validation (the problem says where).", headers: &[] },
    ProblemKind { status: 429, name: "TooManyRequests", description: "Too many failed authentication attempts from this address; retry after `Retry-After` seconds.", headers: &[("Retry-After", "Seconds to wait.", true)] },
    ProblemKind { status: 503, name: "ServiceUnavailable", description: "The database or another dependency is temporarily unavailable; retry after `Retry-After` seconds.", headers: &[("Retry-After", "Seconds to wait.", true)] },
];

fn problem_response(p: &ProblemKind) -> Response {
    let mut r = ResponseBuilder::new().description(p.description).content(
        crate::error::PROBLEM_JSON,
        Content::new(Some(Ref::from_schema_name("Problem"))),
    );
    for (name, description, always) in p.headers {
        let mut h = Header::new(ObjectBuilder::new().schema_type(Type::String));
        h.description = Some((*description).to_owned());
        if *always {
            // utoipa's `Header` has no `required` field; OpenAPI's has, and
            // schemathesis checks that required headers are sent.
            let mut ext = Extensions::default();
            ext.insert("required".to_owned(), serde_json::Value::Bool(true));
            h.extensions = Some(ext);
        }
        r = r.header(*name, h);
    }
    r.build()
}

/// Adds the problem answers every admin operation can give, by rule, so no
/// handler can forget one:
/// - every operation authenticates: 401, 403, 429 (failed-authentication
///   throttle) and 503 (store unavailable);
/// - a path parameter: 404 (also for one that does not parse);
/// - query parameters or a request body: 400;
/// - a request body: 413 and 422; a required (JSON-extracted) body: 415.
///
/// Statuses a handler lists itself keep their place and get the component
/// of their status. The test `every_admin_status_is_documented` checks the
/// rules against the running server.
struct StandardProblems;

impl StandardProblems {
    fn apply(op: &mut Operation) {
        let params = op.parameters.as_deref().unwrap_or_default();
        let in_path = params
            .iter()
            .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path));
        let in_query = params
            .iter()
            .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query));
        let (body, body_required) = match &op.request_body {
            Some(RefOr::T(b)) => (true, b.required == Some(Required::True)),
            Some(RefOr::Ref(_)) => (true, true),
            None => (false, false),
        };
        let mut wanted = vec![401, 403, 429, 503];
        if in_path {
            wanted.push(404);
        }
        if in_query || body {
            wanted.push(400);
        }
        if body {
            wanted.extend([408, 413, 422]);
        }
        if body_required {
            wanted.push(415);
        }
        // Operations reached with the console session only answer 401
        // without a `WWW-Authenticate` challenge.
        let session_only = serde_json::to_value(&op.security).is_ok_and(|v| {
            let text = v.to_string();
            text.contains("\"session\"") && !text.contains("\"bearer\"")
        });
        let responses = &mut op.responses.responses;
        for p in PROBLEMS {
            if p.status == 401 && (p.name == "SessionEnded") != session_only {
                continue;
            }
            let key = p.status.to_string();
            if wanted.contains(&p.status) || responses.contains_key(&key) {
                responses.insert(key, RefOr::Ref(Ref::from_response_name(p.name)));
            }
        }
    }
}

impl Modify for StandardProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                Self::apply(op);
            }
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        components.responses.remove("Problem");
        for p in PROBLEMS {
            components
                .responses
                .insert(p.name.to_owned(), RefOr::T(problem_response(p)));
        }
    }
}

/// The admin API document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Flowgate admin API", version = "1", description = "Manage flows, versions, runs, keys, secrets, users, schedules, the audit log and the cluster's nodes. Every error is an RFC 9457 problem; the `admin` scope grants every other scope."),
    paths(
        admin::flows::list_flows, admin::flows::create_flow, admin::flows::get_flow, admin::flows::disable_flow,
        admin::flows::create_version, admin::flows::get_version, admin::flows::publish_version,
        admin::flows::rollback_flow, admin::flows::retire_version, admin::flows::dry_run_version, admin::flows::run_flow,
        admin::runs::list_runs, admin::runs::get_run, admin::runs::replay_run,
        admin::keys::list_keys, admin::keys::create_key, admin::keys::revoke_key,
        admin::secrets::list_secrets, admin::secrets::get_secret, admin::secrets::put_secret, admin::secrets::delete_secret,
        admin::users::list_users, admin::users::create_user, admin::users::get_user, admin::users::update_user, admin::users::delete_user,
        admin::schedules::list_schedules,
        admin::audit::list_audit,
        admin::cluster::get_cluster,
        admin::console::check_package, admin::console::script_api, admin::console::test_package,
        admin::console::diff_versions, admin::console::run_fixture,
        console::session::sign_in, console::session::get_session, console::session::sign_out,
        events::publish_event,
    ),
    components(responses(Problem), schemas(Problem)),
    modifiers(&Security, &StandardProblems),
    tags(
        (name = "flows", description = "Flows and versions"),
        (name = "runs", description = "Runs"),
        (name = "keys", description = "API keys"),
        (name = "secrets", description = "Secret store"),
        (name = "users", description = "Identity store"),
        (name = "schedules", description = "Cron schedules"),
        (name = "audit", description = "Audit log"),
        (name = "cluster", description = "Nodes sharing the database"),
        (name = "events", description = "Events"),
        (name = "console", description = "The analyst console: sessions, package checks, script API, server-side fixtures"),
    )
)]
pub struct AdminApi;

/// The document as pretty JSON (what `openapi/admin.json` holds).
pub fn admin_openapi_json() -> String {
    let mut doc = AdminApi::openapi();
    doc.info.version = "1".into();
    doc.to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The `Allow` header of a 405 on `path` (a route template): the methods
/// the admin document lists for it, else `GET` (the other fixed routes).
pub(crate) fn allowed_methods(path: &str) -> String {
    static ALLOW: std::sync::LazyLock<std::collections::BTreeMap<String, String>> =
        std::sync::LazyLock::new(|| {
            AdminApi::openapi()
                .paths
                .paths
                .into_iter()
                .map(|(path, item)| {
                    let methods: Vec<&str> = [
                        ("GET", item.get.is_some()),
                        ("POST", item.post.is_some()),
                        ("PUT", item.put.is_some()),
                        ("PATCH", item.patch.is_some()),
                        ("DELETE", item.delete.is_some()),
                    ]
                    .into_iter()
                    .filter_map(|(m, on)| on.then_some(m))
                    .collect();
                    (path, methods.join(", "))
                })
                .collect()
        });
    ALLOW.get(path).cloned().unwrap_or_else(|| "GET".to_owned())
}

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_openapi);
}

/// `GET /admin/v1/openapi.json`.
#[get("/admin/v1/openapi.json")]
async fn get_openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(admin_openapi_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document and the router name the same admin paths, and every
    /// operation documents the problems its shape implies.
    #[test]
    fn document_and_router_agree() {
        let doc = AdminApi::openapi();
        let documented: std::collections::BTreeSet<&str> =
            doc.paths.paths.keys().map(String::as_str).collect();
        let routed: std::collections::BTreeSet<&str> = crate::server::KNOWN_PATHS
            .iter()
            .copied()
            .filter(|p| p.starts_with("/admin/v1/") && *p != "/admin/v1/openapi.json")
            .chain(["/events", "/console/session"])
            .collect();
        assert_eq!(documented, routed);
        let json: serde_json::Value =
            serde_json::from_str(&admin_openapi_json()).expect("document is JSON");
        for (path, item) in json["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                for status in ["401", "403", "429", "503"] {
                    assert!(
                        op["responses"].get(status).is_some(),
                        "{method} {path} lacks {status}"
                    );
                }
                if path.contains('{') {
                    assert!(
                        op["responses"].get("404").is_some(),
                        "{method} {path} lacks 404"
                    );
                }
            }
        }
        assert!(json["components"]["responses"].get("Problem").is_none());
    }
}
