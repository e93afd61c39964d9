//! `/console/session`: sign in with an API key, read the session, sign out;
//! and [`admin_principal`], through which the admin API accepts the session
//! cookie (with the key's scopes) and demands the CSRF token on
//! state-changing calls.

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use flowgate_auth::Principal;
use flowgate_engine::sessions::{SessionInfo, MAX_LIFETIME};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::note_caller;
use crate::{ApiError, ApiResult, AppState};

/// Name of the session cookie.
pub const COOKIE: &str = "flowgate_session";
/// Header carrying the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// `POST /console/session` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInIn {
    /// An API key (`fgk_…`).
    pub key: String,
}

/// A console session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOut {
    /// Send it as `X-CSRF-Token` on every POST, PUT, PATCH and DELETE made with the cookie.
    pub csrf_token: String,
    /// The key's scopes (what the session may do).
    pub scopes: Vec<String>,
    /// The key's name.
    pub key_name: String,
    /// The session's absolute end (RFC 3339).
    pub expires_at: String,
    /// The session ends after this many seconds without a request.
    pub idle_timeout_seconds: u64,
}

impl From<&SessionInfo> for SessionOut {
    fn from(s: &SessionInfo) -> Self {
        Self {
            csrf_token: s.csrf_token.clone(),
            scopes: s.scopes.clone(),
            key_name: s.key_name.clone(),
            expires_at: flowgate_core::rfc3339(s.expires_at),
            idle_timeout_seconds: s.idle_timeout_seconds,
        }
    }
}

/// The session cookie's value, if the request carries one.
pub fn session_cookie(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

/// The `Set-Cookie` value for a session id (`Secure` when the server's
/// public URL is https; an empty value with `max_age` 0 clears the cookie).
pub fn set_cookie_value(public_url: &str, value: &str, max_age: u64) -> String {
    let secure = if public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
}

fn set_cookie(state: &AppState, value: &str, max_age: u64) -> String {
    set_cookie_value(&state.engine.config().public_url, value, max_age)
}

fn ended() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "session_ended",
        "there is no console session or it has ended; sign in again",
    )
}

fn csrf_failed() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_failed",
        "calls that change state with the session cookie need the session's token in `X-CSRF-Token`",
    )
}

/// Whether a method changes state (needs the CSRF token with a cookie).
fn state_changing(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The valid session of the request, checking the CSRF token when the method
/// changes state: `Ok(None)` when there is no session cookie.
async fn request_session(req: &HttpRequest, state: &AppState) -> ApiResult<Option<SessionInfo>> {
    let Some(id) = session_cookie(req) else {
        return Ok(None);
    };
    let info = state.engine.session(&id).await?.ok_or_else(ended)?;
    if state_changing(req.method()) {
        let presented = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !info.csrf_matches(presented) {
            return Err(csrf_failed());
        }
    }
    Ok(Some(info))
}

/// Authenticates an admin call by its console session, when it has one and no
/// `Authorization`/`X-API-Key` header (those take precedence and need no CSRF
/// token). Checks the CSRF token; the caller checks the scope. `Ok(None)`
/// means "no session: authenticate the header credentials instead".
pub async fn session_principal(
    req: &HttpRequest,
    state: &AppState,
) -> ApiResult<Option<Principal>> {
    let h = req.headers();
    if h.contains_key("authorization") || h.contains_key("x-api-key") {
        return Ok(None);
    }
    Ok(request_session(req, state)
        .await?
        .map(|info| info.principal()))
}

/// Sign in to the console with an API key.
#[utoipa::path(post, path = "/console/session", operation_id = "create_console_session", tag = "console",
    request_body = SignInIn,
    responses(
        (status = 200, body = SessionOut, description = "Signed in; the session id is in the `flowgate_session` cookie (HttpOnly, SameSite=Strict, Secure over HTTPS)",
            headers(("set-cookie" = String, description = "`flowgate_session=…; HttpOnly; SameSite=Strict; Path=/`"))),
        (status = 400, response = crate::openapi::Problem),
        (status = 401, response = crate::openapi::Problem),
        (status = 422, response = crate::openapi::Problem),
        (status = 429, response = crate::openapi::Problem),
        (status = 503, response = crate::openapi::Problem)),
    security(()))]
pub async fn sign_in(
    req: HttpRequest,
    body: crate::extract::Json<SignInIn>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let ip = crate::routes::admin::client_ip(&req, &state);
    let session = state.engine.sign_in(&body.key, ip, req.path()).await?;
    note_caller(&req, session.info.principal().caller_key());
    Ok(HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::SET_COOKIE,
            set_cookie(&state, session.id.expose(), MAX_LIFETIME.as_secs()),
        ))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(SessionOut::from(&session.info)))
}

/// The current console session (the same CSRF token as at sign-in).
#[utoipa::path(get, path = "/console/session", operation_id = "get_console_session", tag = "console",
    responses(
        (status = 200, body = SessionOut, description = "The session"),
        (status = 401, response = crate::openapi::Problem)),
    security(("session" = [])))]
pub async fn get_session(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let info = request_session(&req, &state).await?.ok_or_else(ended)?;
    note_caller(&req, info.principal().caller_key());
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(SessionOut::from(&info)))
}

/// Sign out: the session ends on the server too.
#[utoipa::path(delete, path = "/console/session", operation_id = "delete_console_session", tag = "console",
    params(("X-CSRF-Token" = String, Header, description = "The session's CSRF token")),
    responses(
        (status = 204, description = "Signed out; the cookie is cleared"),
        (status = 401, response = crate::openapi::Problem),
        (status = 403, response = crate::openapi::Problem)),
    security(("session" = [])))]
pub async fn sign_out(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let info = request_session(&req, &state).await?.ok_or_else(ended)?;
    note_caller(&req, info.principal().caller_key());
    if let Some(id) = session_cookie(&req) {
        state.engine.sign_out(&id).await?;
    }
    Ok(HttpResponse::NoContent()
        .insert_header((
            actix_web::http::header::SET_COOKIE,
            set_cookie(&state, "", 0),
        ))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_flags() {
        let plain = set_cookie_value("http://127.0.0.1:8080", "abc", 60);
        assert_eq!(
            plain,
            "flowgate_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
        let tls = set_cookie_value("https://flowgate.example", "abc", 60);
        assert!(tls.ends_with("; Secure"), "{tls}");
    }

    #[test]
    fn only_state_changing_methods_need_the_token() {
        assert!(!state_changing(&Method::GET));
        assert!(!state_changing(&Method::HEAD));
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(state_changing(&m), "{m}");
        }
    }
}
