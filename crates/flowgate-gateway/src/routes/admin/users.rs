//! `/admin/v1/users…`: the identity store. Every change emits the matching
//! user lifecycle event (the store writes it in the same transaction).

use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use flowgate_engine::users::UserQuery as UserFilters;
use serde::Deserialize;
use serde_json::Value;

use super::authorize;
use super::dto::{UserList, UserOut};
use crate::{ApiError, ApiResult, AppState};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_users)
        .service(create_user)
        .service(get_user)
        .service(update_user)
        .service(delete_user);
}

/// Filters of `GET /admin/v1/users`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Exact email (ignoring case).
    pub email: Option<String>,
    /// Status.
    #[param(pattern = "^(active|suspended|disabled)$")]
    pub status: Option<String>,
    /// Page size (1–500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

/// `POST /admin/v1/users` body.
#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    /// Email, unique ignoring case: one `@` with text on both sides, no white space.
    #[schema(max_length = 320, pattern = r"^[^\s@]+@[^\s@]+$")]
    pub email: String,
    /// Display name.
    pub display_name: Option<String>,
    /// `active` (default), `suspended` or `disabled`.
    #[schema(pattern = "^(active|suspended|disabled)$")]
    pub status: Option<String>,
    /// Free-form attributes.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Map<String, Value>>,
    /// System name → id in that system.
    #[schema(value_type = Option<Object>)]
    pub external_ids: Option<serde_json::Map<String, Value>>,
}

/// List users (optionally by email or status).
#[utoipa::path(get, path = "/admin/v1/users", operation_id = "list_users", tag = "users",
    params(UserQuery),
    responses((status = 200, body = UserList, description = "Users")),
    security(("bearer" = ["users:read"])))]
#[get("/admin/v1/users")]
pub async fn list_users(
    req: HttpRequest,
    q: web::Query<UserQuery>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "users:read").await?;
    let limit = super::page_limit(q.limit, 50)?;
    let filters = UserFilters {
        email: q.email.clone(),
        status: q.status.clone(),
    };
    let page = state
        .engine
        .list_users(filters, q.cursor.clone(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(UserList {
        items: page.items.iter().map(UserOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Create a user.
#[utoipa::path(post, path = "/admin/v1/users", operation_id = "create_user", tag = "users",
    request_body = UserIn,
    responses((status = 201, body = UserOut, description = "Created"), (status = 409, response = crate::openapi::Problem), (status = 422, response = crate::openapi::Problem)),
    security(("bearer" = ["users:write"])))]
#[post("/admin/v1/users")]
pub async fn create_user(
    req: HttpRequest,
    body: crate::extract::Json<UserIn>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "users:write").await?;
    let body = serde_json::to_value(body.into_inner()).map_err(ApiError::internal)?;
    let user = state.engine.create_user(&body).await?;
    Ok(HttpResponse::Created().json(UserOut::from(&user)))
}

/// One user.
#[utoipa::path(get, path = "/admin/v1/users/{id}", operation_id = "get_user", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = UserOut, description = "OK"), (status = 404, response = crate::openapi::Problem)),
    security(("bearer" = ["users:read"])))]
#[get("/admin/v1/users/{id}")]
pub async fn get_user(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "users:read").await?;
    let user = state.engine.get_user(&path).await?;
    Ok(HttpResponse::Ok().json(UserOut::from(&user)))
}

/// Change a user with a JSON merge patch (RFC 7396).
#[utoipa::path(patch, path = "/admin/v1/users/{id}", operation_id = "update_user", tag = "users",
    params(("id" = String, Path, description = "User id")),
    request_body(content = Object, content_type = "application/merge-patch+json"),
    responses((status = 200, body = UserOut, description = "OK"), (status = 404, response = crate::openapi::Problem), (status = 409, response = crate::openapi::Problem), (status = 422, response = crate::openapi::Problem)),
    security(("bearer" = ["users:write"])))]
#[patch("/admin/v1/users/{id}")]
pub async fn update_user(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "users:write").await?;
    let patch: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    let user = state.engine.update_user(&path, patch).await?;
    Ok(HttpResponse::Ok().json(UserOut::from(&user)))
}

/// Delete a user.
#[utoipa::path(delete, path = "/admin/v1/users/{id}", operation_id = "delete_user", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "No content"), (status = 404, response = crate::openapi::Problem)),
    security(("bearer" = ["users:write"])))]
#[delete("/admin/v1/users/{id}")]
pub async fn delete_user(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "users:write").await?;
    state.engine.delete_user(&path).await?;
    Ok(HttpResponse::NoContent().finish())
}
