//! `/admin/v1/keys…`: create (the secret is shown once), list and revoke API keys.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{authorize, store_call};
use crate::{ApiError, ApiResult, AppState};

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

/// Validates a key request; shared with `flowgate keys create`.
pub fn validate_key_request(name: &str, scopes: &[String]) -> ApiResult<()> {
    if name.trim().is_empty() || name.chars().count() > 128 {
        return Err(ApiError::unprocessable("`name` must be 1–128 characters"));
    }
    if scopes.is_empty() {
        return Err(ApiError::unprocessable(
            "`scopes` must name at least one scope",
        ));
    }
    if let Some(bad) = scopes
        .iter()
        .find(|s| !flowgate_core::manifest::is_valid_scope(s))
    {
        return Err(ApiError::unprocessable(format!(
            "`{bad}` is not a valid scope"
        )));
    }
    Ok(())
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
    validate_key_request(&input.name, &input.scopes)?;
    // A key grants at most what its creator holds (`admin` holds all).
    if let Err(missing) = flowgate_auth::scopes::has_scopes(&creator.scopes, &input.scopes) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "scope_not_grantable",
            format!(
                "a key can only grant scopes its creator holds; you do not hold `{}`",
                missing.0
            ),
        )
        .with("missing_scope", serde_json::Value::from(missing.0)));
    }
    let expires_at = match &input.expires_at {
        None => None,
        Some(t) => {
            let at = chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    ApiError::unprocessable(format!("`expires_at` `{t}` is not an RFC 3339 time"))
                })?
                .timestamp_millis();
            if at <= flowgate_core::now_ms() {
                return Err(ApiError::unprocessable("`expires_at` is in the past"));
            }
            Some(at)
        }
    };
    let name = input.name.clone();
    let scopes = input.scopes.clone();
    let store = state.engine.store().clone();
    let created = tokio::task::spawn_blocking(move || {
        flowgate_engine::security::create_api_key_blocking(&store, &name, &scopes, expires_at)
    })
    .await
    .map_err(ApiError::internal)??;
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
    let keys = store_call(&state, |s| s.list_keys()).await?;
    Ok(HttpResponse::Ok().json(KeyList {
        items: keys
            .into_iter()
            .map(|k| KeyOut {
                id: k.id.to_string(),
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
    let id = path.into_inner();
    let id2 = id.clone();
    let found = store_call(&state, move |s| s.revoke_key(&id2)).await?;
    if !found {
        return Err(ApiError::not_found(format!("key `{id}` does not exist")));
    }
    state.engine.security().evict_key(&id);
    state.engine.end_sessions_of_key(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}
