//! The admin API under `/admin/v1` (SPEC §5). Every handler authorizes with
//! [`authorize`] and the scope its operation needs; `admin` grants all. A
//! console session cookie is accepted in place of a key (see
//! [`crate::routes::console::session`]).

pub mod audit;
pub mod console;
pub mod dto;
pub mod flows;
pub mod keys;
pub mod runs;
pub mod schedules;
pub mod secrets;
pub mod users;

use actix_web::{web, HttpRequest};
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
    console::configure(cfg);
}

/// Authenticates an admin call and checks one scope.
pub async fn authorize(req: &HttpRequest, state: &AppState, scope: &str) -> ApiResult<Principal> {
    // The console's session cookie (with its CSRF check), when no header credential is sent.
    if let Some(p) = crate::routes::console::session::admin_principal(req, state, scope).await? {
        return Ok(p);
    }
    let ip = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let principal = match state
        .engine
        .security()
        .authenticate_admin(header("authorization"), header("x-api-key"), ip)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            if e.http_status() == 401 {
                state
                    .engine
                    .security()
                    .auth_failed(ip, req.path(), &e.to_string());
            }
            return Err(e.into());
        }
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

/// Like [`store_call`] for list queries: the only input the store can refuse
/// there is the cursor, so a refusal is a bad query (400), not a bad body.
pub async fn list_call<R: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&flowgate_store::Store) -> flowgate_store::Result<R> + Send + 'static,
) -> ApiResult<R> {
    match state.engine.store().call(f).await {
        Err(flowgate_store::StoreError::Invalid(m)) => {
            Err(ApiError::bad_request("invalid_query", m))
        }
        other => other.map_err(|e| ApiError::from(flowgate_engine::EngineError::from(e))),
    }
}

/// Runs a blocking store call off the async workers, mapping its errors.
pub async fn store_call<R: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&flowgate_store::Store) -> flowgate_store::Result<R> + Send + 'static,
) -> ApiResult<R> {
    state
        .engine
        .store()
        .call(f)
        .await
        .map_err(|e| ApiError::from(flowgate_engine::EngineError::from(e)))
}
