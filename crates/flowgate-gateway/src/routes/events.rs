//! `POST /events`: external systems publish an event (scope `events:publish`).

use actix_web::{post, web, HttpRequest, HttpResponse};
use flowgate_engine::events::PublishEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::routes::admin::authorize;
use crate::{ApiResult, AppState};

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(publish_event);
}

/// An event to publish.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// Dotted type, e.g. `crm.contact_changed` (at most 128 characters; `user.*`,
    /// `security.*` and `flow.*` are reserved for the system).
    #[serde(rename = "type")]
    #[schema(max_length = 128, pattern = r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")]
    pub kind: String,
    /// Who produced it (default: the caller).
    #[schema(min_length = 1, max_length = 256)]
    pub source: Option<String>,
    /// The producer's id; a repeated id from the same source is stored once.
    #[schema(min_length = 1, max_length = 256)]
    pub id: Option<String>,
    /// Payload: any JSON value (flows see it as `event.data`).
    #[schema(value_type = serde_json::Value)]
    pub data: Value,
}

/// The stored event's id.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventAccepted {
    /// Server id of the stored event.
    pub event_id: String,
}

/// Publish an event; it is delivered at least once to every subscribed flow.
#[utoipa::path(post, path = "/events", operation_id = "publish_event", tag = "events",
    request_body = EventIn,
    responses((status = 202, body = EventAccepted, description = "Accepted"), (status = 400, response = crate::openapi::Problem), (status = 401, response = crate::openapi::Problem), (status = 403, response = crate::openapi::Problem), (status = 422, response = crate::openapi::Problem)),
    security(("bearer" = ["events:publish"])))]
#[post("/events")]
pub async fn publish_event(
    req: HttpRequest,
    body: crate::extract::Json<EventIn>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let principal = authorize(&req, &state, "events:publish").await?;
    let input = body.into_inner();
    let id = state
        .engine
        .publish_event(
            &principal.caller_key(),
            PublishEvent {
                kind: input.kind,
                source: input.source,
                id: input.id,
                data: input.data,
            },
        )
        .await?;
    Ok(HttpResponse::Accepted().json(EventAccepted {
        event_id: id.to_string(),
    }))
}
