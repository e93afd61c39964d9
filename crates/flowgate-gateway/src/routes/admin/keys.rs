//! `/admin/v1/keys…`: create (the secret is shown once), list and revoke API keys.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::authorize;
use crate::{ApiResult, AppState};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_keys)
        .service(create_key)
        .service(revoke_key);
}

/// `POST /admin/v1/keys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    /// Human name (1–128 characters, not only white space).
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub name: String,
    /// Granted scopes (`admin`, `flows:read`, …; lower-case letters, digits, `:_.-`).
    #[schema(schema_with = scopes_schema)]
    pub scopes: Vec<String>,
    /// Optional expiry (RFC 3339, in the future).
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// `scopes`: at least one, each as `flowgate_core::manifest::is_valid_scope` checks.
fn scopes_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[a-z0-9][a-z0-9:_.-]{0,63}$")),
        )
        .min_items(Some(1))
        .build()
}

/// A created key, with its secret shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyCreatedOut {
    /// Key id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Expiry (RFC 3339).
    pub expires_at: Option<String>,
    /// The whole key; store it now, it is never shown again.
    pub key: String,
}

/// A listed key (no secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyOut {
    /// Key id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub last_used_at: Option<String>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    /// Revoked keys never authenticate.
    pub revoked: bool,
}

/// A list of keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Keys.
    pub items: Vec<KeyOut>,
    /// Always null (keys are few).
    pub next_cursor: Option<String>,
}

/// Create an API key.
#[utoipa::path(post, path = "/admin/v1/keys", operation_id = "create_key", tag = "keys",
    request_body = KeyIn,
    responses((status = 201, body = KeyCreatedOut, description = "Created"), (status = 403, response = crate::openapi::Problem), (status = 422, response = crate::openapi::Problem)),
    security(("bearer" = ["keys:manage"])))]
#[post("/admin/v1/keys")]
pub async fn create_key(
    req: HttpRequest,
    body: crate::extract::Json<KeyIn>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let creator = authorize(&req, &state, "keys:manage").await?;
    let input = body.into_inner();
    let created = state
        .engine
        .create_key(
            &creator.scopes,
            flowgate_engine::keys::KeyRequest {
                name: input.name,
                scopes: input.scopes,
                expires_at: input.expires_at,
            },
        )
        .await?;
    Ok(HttpResponse::Created().json(KeyCreatedOut {
        id: created.id,
        name: created.name,
        scopes: created.scopes,
        expires_at: created.expires_at.map(flowgate_core::rfc3339),
        key: created.key.expose().to_owned(),
    }))
}

/// List API keys (never their secrets).
#[utoipa::path(get, path = "/admin/v1/keys", operation_id = "list_keys", tag = "keys",
    responses((status = 200, body = KeyList, description = "OK")),
    security(("bearer" = ["keys:manage"])))]
#[get("/admin/v1/keys")]
pub async fn list_keys(req: HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "keys:manage").await?;
    let keys = state.engine.list_keys().await?;
    Ok(HttpResponse::Ok().json(KeyList {
        items: keys
            .into_iter()
            .map(|k| KeyOut {
                id: k.id,
                name: k.name,
                scopes: k.scopes,
                created_at: flowgate_core::rfc3339(k.created_at),
                last_used_at: k.last_used_at.map(flowgate_core::rfc3339),
                expires_at: k.expires_at.map(flowgate_core::rfc3339),
                revoked: k.revoked,
            })
            .collect(),
        next_cursor: None,
    }))
}

/// Revoke an API key (effective at once on this node).
#[utoipa::path(delete, path = "/admin/v1/keys/{id}", operation_id = "revoke_key", tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204, description = "No content"), (status = 404, response = crate::openapi::Problem)),
    security(("bearer" = ["keys:manage"])))]
#[delete("/admin/v1/keys/{id}")]
pub async fn revoke_key(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    authorize(&req, &state, "keys:manage").await?;
    state.engine.revoke_key(&path).await?;
    Ok(HttpResponse::NoContent().finish())
}
