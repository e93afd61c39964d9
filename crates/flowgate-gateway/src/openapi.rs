//! The admin API's own OpenAPI document, generated with utoipa from the
//! handlers (`GET /admin/v1/openapi.json`, `flowgate openapi export`).

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
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

/// The admin API document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Flowgate admin API", version = "1", description = "Manage flows, versions, runs, keys, secrets, users, schedules and the audit log. Every error is an RFC 9457 problem; the `admin` scope grants every other scope."),
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
        admin::console::check_package, admin::console::script_api, admin::console::test_package,
        admin::console::diff_versions, admin::console::run_fixture,
        console::session::sign_in, console::session::get_session, console::session::sign_out,
        events::publish_event,
    ),
    components(responses(Problem), schemas(Problem)),
    modifiers(&Security),
    tags(
        (name = "flows", description = "Flows and versions"),
        (name = "runs", description = "Runs"),
        (name = "keys", description = "API keys"),
        (name = "secrets", description = "Secret store"),
        (name = "users", description = "Identity store"),
        (name = "schedules", description = "Cron schedules"),
        (name = "audit", description = "Audit log"),
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
