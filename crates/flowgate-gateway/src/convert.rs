//! Conversions from service errors to problems.

use actix_web::http::StatusCode;
use flowgate_auth::AuthError;
use flowgate_engine::EngineError;
use serde_json::Value;

use crate::ApiError;

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(m) => ApiError::not_found(m),
            EngineError::Gone(m) => ApiError::new(StatusCode::GONE, "gone", m),
            EngineError::Conflict(m) => ApiError::conflict(m),
            EngineError::Invalid { message, details } => {
                let mut err = ApiError::unprocessable(message);
                for (k, v) in details {
                    err = err.with(&k, v);
                }
                err
            }
            EngineError::BadQuery(m) => ApiError::bad_request("invalid_query", m),
            EngineError::Forbidden {
                code,
                message,
                details,
            } => {
                let mut err = ApiError::new(StatusCode::FORBIDDEN, code, message);
                for (k, v) in details {
                    err = err.with(&k, v);
                }
                err
            }
            EngineError::TooLarge(m) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m)
            }
            EngineError::Overloaded { retry_after_secs } => {
                ApiError::unavailable("the server is at capacity; retry shortly", retry_after_secs)
                    .with_code("overloaded")
            }
            EngineError::FlowAtCapacity {
                detail,
                retry_after_secs,
            } => ApiError::unavailable(detail, retry_after_secs).with_code("flow_at_capacity"),
            EngineError::CallerAtCapacity {
                detail,
                retry_after_secs,
            } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_concurrent_runs",
                detail,
            )
            .with_header("retry-after", retry_after_secs.max(1).to_string()),
            e @ EngineError::IdempotencyInFlight => ApiError::conflict(e.to_string())
                .with_code("idempotency_in_flight")
                .with_header("retry-after", "1"),
            e @ EngineError::IdempotencyKeyReused => {
                ApiError::unprocessable(e.to_string()).with_code("idempotency_key_reused")
            }
            EngineError::BadRequest { code, detail } => ApiError::bad_request(code, detail),
            EngineError::MethodNotAllowed { method, allowed } => {
                let allow = allowed.join(", ");
                ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{method} is not allowed here; use {allow}"),
                )
                .with_header("allow", allow)
            }
            EngineError::UnsupportedMediaType {
                detail,
                accept_json,
            } => {
                let err = ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    detail,
                );
                if accept_json {
                    err.with_header("accept", "application/json")
                } else {
                    err
                }
            }
            EngineError::RateLimited(m) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", m)
            }
            EngineError::Auth(e) => e.into(),
            EngineError::SignatureSecretMissing => ApiError::unavailable(
                "this webhook cannot be verified right now; the provider should retry later",
                60,
            )
            .with_code("signature_secret_missing"),
            EngineError::Unavailable(m) => {
                tracing::warn!(error = %m, "dependency unavailable");
                ApiError::unavailable("the server is temporarily unable to handle this request", 2)
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
        if status.is_server_error() {
            return match e {
                AuthError::Unavailable(m) => {
                    tracing::warn!(error = %m, "authentication dependency unavailable");
                    ApiError::unavailable("authentication is temporarily unavailable", 2)
                }
                // The operator's misconfiguration, answered like a missing
                // secret (the caller logs which flow and secret).
                e @ AuthError::InvalidSignature(flowgate_auth::SignatureError::InvalidSecret(_)) => {
                    ApiError::unavailable(
                        "this webhook cannot be verified right now; the provider should retry later",
                        60,
                    )
                    .with_code(e.code())
                }
                other => ApiError::internal(other),
            };
        }
        let detail = match &e {
            AuthError::MissingCredentials => {
                "send credentials as `Authorization: Bearer <key or token>` or `X-API-Key: <key>`"
                    .to_owned()
            }
            other => other.to_string(),
        };
        let mut err = ApiError::new(status, e.code(), detail);
        if let AuthError::MissingScope(s) = &e {
            err = err.with("missing_scope", Value::from(s.as_str()));
        }
        if let Some(w) = e.www_authenticate() {
            err = err.with_header("www-authenticate", w);
        }
        if let Some(r) = e.retry_after_secs() {
            err = err.with_header("retry-after", r.to_string());
        }
        err
    }
}
