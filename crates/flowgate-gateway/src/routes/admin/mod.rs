//! The admin API under `/admin/v1` (SPEC §5). [`require_credentials`]
//! authenticates every request before its body is read; every handler then
//! checks the scope its operation needs with [`authorize`]; `admin` grants all.
//! A console session cookie is accepted in place of a key (see
//! [`crate::routes::console::session`]).

pub mod audit;
pub mod cluster;
pub mod console;
pub mod dto;
pub mod flows;
pub mod keys;
pub mod runs;
pub mod schedules;
pub mod secrets;
pub mod users;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, ResponseError};
use flowgate_auth::Principal;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr};

use crate::audit::note_caller;
use crate::{ApiError, ApiResult, AppState};

/// Registers every admin route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    flows::configure(cfg);
    runs::configure(cfg);
    keys::configure(cfg);
    secrets::configure(cfg);
    users::configure(cfg);
    schedules::configure(cfg);
    audit::configure(cfg);
    cluster::configure(cfg);
    console::configure(cfg);
}

/// Paths under `/admin/v1` that answer without credentials.
pub const PUBLIC_ADMIN_PATHS: &[&str] = &["/admin/v1/openapi.json"];

/// Who may call a path: the admin API's credentials, the partners' (for
/// `POST /events`), or anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Realm {
    Admin,
    Partner,
}

fn realm_of(path: &str) -> Option<Realm> {
    if path == "/events" || path.starts_with("/events/") {
        Some(Realm::Partner)
    } else if (path == "/admin/v1" || path.starts_with("/admin/v1/"))
        && !PUBLIC_ADMIN_PATHS.contains(&path)
    {
        Some(Realm::Admin)
    } else {
        None
    }
}

/// The caller the guard authenticated, for the handler's scope check.
#[derive(Debug, Clone)]
struct Authenticated(Principal);

/// Middleware: authenticates every admin (and `POST /events`) request before
/// routing, extractors or bodies, so an anonymous or wrongly credentialed
/// caller gets 401 and never a 400/422 describing a schema. Handlers then
/// check their scope with [`authorize`].
pub async fn require_credentials(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // The router matches the decoded path: guard the same one.
    let realm = realm_of(req.match_info().as_str());
    if let (Some(realm), Some(state)) = (realm, req.app_data::<web::Data<AppState>>().cloned()) {
        let result = match realm {
            Realm::Admin => authenticate_admin(req.request(), &state).await,
            Realm::Partner => authenticate_partner(req.request(), &state).await,
        };
        match result {
            Ok(p) => {
                req.extensions_mut().insert(Authenticated(p));
            }
            Err(e) => {
                let res = e.error_response();
                return Ok(req.into_response(res).map_into_boxed_body());
            }
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

/// The client's address (the peer, or a trusted proxy's `X-Forwarded-For`).
pub fn client_ip(req: &HttpRequest, state: &AppState) -> IpAddr {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let forwarded = req
        .headers()
        .get_all(actix_web::http::header::X_FORWARDED_FOR)
        .filter_map(|v| v.to_str().ok());
    state.engine.security().client_ip(peer, forwarded)
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The one entry point of admin authentication: `Authorization: Bearer` /
/// `X-API-Key` with an admin API key (or, when configured, a token of the
/// separate admin issuer). Other credentials (e.g. a console session) are
/// added here, so every admin route accepts the same ones.
pub async fn authenticate_admin(req: &HttpRequest, state: &AppState) -> ApiResult<Principal> {
    // The console's session cookie (with its CSRF check), when no header credential is sent.
    if let Some(p) = crate::routes::console::session::session_principal(req, state).await? {
        return Ok(p);
    }
    let ip = client_ip(req, state);
    state
        .engine
        .security()
        .authenticate_admin(
            header(req, "authorization"),
            header(req, "x-api-key"),
            ip,
            req.path(),
        )
        .await
        .map_err(Into::into)
}

/// Authentication of partner-facing endpoints outside the flows
/// (`POST /events`): API keys and the partners' OAuth2 tokens.
pub async fn authenticate_partner(req: &HttpRequest, state: &AppState) -> ApiResult<Principal> {
    let ip = client_ip(req, state);
    state
        .engine
        .security()
        .authenticate(
            flowgate_core::manifest::AuthMode::Any,
            header(req, "authorization"),
            header(req, "x-api-key"),
            ip,
            req.path(),
        )
        .await
        .map_err(Into::into)
}

/// The caller of an admin call, checked for one scope. Authenticated by
/// [`require_credentials`] before the body was read; authenticates here
/// when a route is reached without the guard.
pub async fn authorize(req: &HttpRequest, state: &AppState, scope: &str) -> ApiResult<Principal> {
    let known = req.extensions().get::<Authenticated>().map(|a| a.0.clone());
    let principal = match known {
        Some(p) => p,
        None if realm_of(req.match_info().as_str()) == Some(Realm::Partner) => {
            authenticate_partner(req, state).await?
        }
        None => authenticate_admin(req, state).await?,
    };
    note_caller(req, principal.caller_key());
    flowgate_auth::scopes::has_scopes(&principal.scopes, &[scope])
        .map_err(|m| ApiError::from(flowgate_auth::AuthError::MissingScope(m.0)))?;
    Ok(principal)
}

/// `?limit=&cursor=` of list endpoints.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size (1–500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page size, checked.
    pub fn limit(&self) -> ApiResult<usize> {
        page_limit(self.limit, 50)
    }
}

/// Checks a `limit` query parameter (1–500), defaulting to `default`.
pub fn page_limit(limit: Option<usize>, default: usize) -> ApiResult<usize> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "invalid_query",
            format!("limit {n} must be between 1 and 500"),
        )),
    }
}
