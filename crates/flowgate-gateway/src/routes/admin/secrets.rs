//! `/admin/v1/secrets…`: write, list (names only) and delete secrets. No API
//! ever returns a secret value.

use actix_web::{delete, get, put, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::authorize;
use crate::{ApiResult, AppState};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_secrets)
        .service(get_secret)
        .service(put_secret)
        .service(delete_secret);
}

/// `PUT /admin/v1/secrets/{name}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretIn {
    /// The value (stored encrypted).
    pub value: String,
}

/// A secret's metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretOut {
    /// Name.
    pub name: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A list of secret names.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretList {
    /// Secrets.
    pub items: Vec<SecretOut>,
    /// Always null.
    pub next_cursor: Option<String>,
}

/// List secret names.
#[utoipa::path(get, path = "/admin/v1/secrets", operation_id = "list_secrets", tag = "secrets",
    responses((status = 200, body = SecretList, description = "OK")),
    security(("bearer" = ["secrets:write"])))]
#[get("/admin/v1/secrets")]
pub async fn list_secrets(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "secrets:write").await?;
    let items = state.engine.list_secrets().await?;
    Ok(HttpResponse::Ok().json(SecretList {
        items: items
            .into_iter()
            .map(|m| SecretOut {
                name: m.name,
                updated_at: flowgate_core::rfc3339(m.updated_at),
            })
            .collect(),
        next_cursor: None,
    }))
}

/// A secret's metadata (never its value).
#[utoipa::path(get, path = "/admin/v1/secrets/{name}", operation_id = "get_secret", tag = "secrets",
    params(("name" = String, Path, description = "Secret name", pattern = r"^[A-Za-z0-9_.-]{1,128}$")),
    responses((status = 200, body = SecretOut, description = "OK"), (status = 404, response = crate::openapi::Problem)),
    security(("bearer" = ["secrets:write"])))]
#[get("/admin/v1/secrets/{name}")]
pub async fn get_secret(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "secrets:write").await?;
    let m = state.engine.secret_info(&path).await?;
    Ok(HttpResponse::Ok().json(SecretOut {
        name: m.name,
        updated_at: flowgate_core::rfc3339(m.updated_at),
    }))
}

/// Create or replace a secret.
#[utoipa::path(put, path = "/admin/v1/secrets/{name}", operation_id = "put_secret", tag = "secrets",
    params(("name" = String, Path, description = "Secret name", pattern = r"^[A-Za-z0-9_.-]{1,128}$")),
    request_body = SecretIn,
    responses((status = 204, description = "No content"), (status = 422, response = crate::openapi::Problem)),
    security(("bearer" = ["secrets:write"])))]
#[put("/admin/v1/secrets/{name}")]
pub async fn put_secret(
    req: HttpRequest,
    path: web::Path<String>,
    body: crate::extract::Json<SecretIn>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "secrets:write").await?;
    let value = flowgate_core::SecretString::new(body.into_inner().value);
    state.engine.put_secret(&path, value).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete a secret.
#[utoipa::path(delete, path = "/admin/v1/secrets/{name}", operation_id = "delete_secret", tag = "secrets",
    params(("name" = String, Path, description = "Secret name", pattern = r"^[A-Za-z0-9_.-]{1,128}$")),
    responses((status = 204, description = "No content"), (status = 404, response = crate::openapi::Problem)),
    security(("bearer" = ["secrets:write"])))]
#[delete("/admin/v1/secrets/{name}")]
pub async fn delete_secret(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "secrets:write").await?;
    state.engine.delete_secret(&path).await?;
    Ok(HttpResponse::NoContent().finish())
}
