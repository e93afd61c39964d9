//! `ApiError`: the one place where errors become HTTP responses, rendered as
//! RFC 9457 `application/problem+json` with a stable `code` and the request id.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Map, Value};
use std::fmt;

use crate::middleware::current_request_id;

/// Media type of problem responses.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answered to an HTTP caller.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`not_found`, `invalid_json`, …).
    pub code: &'static str,
    /// Human explanation for this occurrence; never holds secrets.
    pub detail: String,
    /// Extra members (`errors`, `missing_scope`, …).
    pub extra: Map<String, Value>,
    /// Extra headers (`WWW-Authenticate`, `Retry-After`, rate-limit headers).
    pub headers: Vec<(String, String)>,
    /// The request id, when the error is rendered outside the request's task.
    pub request_id: Option<String>,
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A problem with the given status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            extra: Map::new(),
            headers: Vec::new(),
            request_id: None,
        }
    }
    /// Pins the request id (for errors rendered outside the request's task).
    pub fn with_request_id(mut self, id: String) -> Self {
        self.request_id = Some(id);
        self
    }
    /// 400 with code `bad_request` unless another is given.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }
    /// 404 `not_found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }
    /// 409 `conflict`.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }
    /// 422 `validation_failed`.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            detail,
        )
    }
    /// 500 with an opaque detail; the cause is logged once here.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(request_id = %current_request_id(), error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the server failed to handle this request; quote the request id when reporting it",
        )
    }
    /// 503 with `Retry-After`.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
            .with_header("retry-after", retry_after_secs.max(1).to_string())
    }
    /// Adds a member to the problem body.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }
    /// Adds a response header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
    /// Overrides the code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// The problem document.
    pub fn body(&self) -> Value {
        let mut doc = json!({
            "type": flowgate_core::problem::problem_type(self.code),
            "title": flowgate_core::problem::title_of(self.status.as_u16()),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
            "request_id": self.request_id.clone().unwrap_or_else(current_request_id),
        });
        if let Value::Object(m) = &mut doc {
            for (k, v) in &self.extra {
                m.insert(k.clone(), v.clone());
            }
        }
        doc
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.content_type(PROBLEM_JSON);
        if let Some(id) = &self.request_id {
            if let Ok(v) = HeaderValue::try_from(id.as_str()) {
                res.insert_header((HeaderName::from_static("x-request-id"), v));
            }
        }
        for (k, v) in &self.headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::try_from(k.as_str()),
                HeaderValue::try_from(v.as_str()),
            ) {
                res.insert_header((k, v));
            }
        }
        res.body(self.body().to_string())
    }
}

impl From<flowgate_core::Error> for ApiError {
    fn from(e: flowgate_core::Error) -> Self {
        use flowgate_core::Error as E;
        match e {
            E::NotFound(what) => Self::not_found(format!("{what} not found")),
            E::Conflict(m) => Self::conflict(m),
            E::Invalid(m) => Self::unprocessable(m),
            E::Unavailable(m) => {
                tracing::warn!(error = %m, "dependency unavailable");
                Self::unavailable("the server is temporarily unable to handle this request", 1)
            }
            other => Self::internal(other),
        }
    }
}

/// Maps actix's own extractor and routing errors to problems.
pub fn json_error_handler(
    err: actix_web::error::JsonPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let api = match &err {
        J::OverflowKnownLength { .. } | J::Overflow { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        ),
        J::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ),
        J::Deserialize(e) if e.is_data() => {
            ApiError::unprocessable(format!("the body does not have the expected shape: {e}"))
        }
        J::Deserialize(e) => {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
        }
        other => ApiError::bad_request("bad_request", other.to_string()),
    };
    actix_web::error::InternalError::from_response(err, api.error_response()).into()
}

/// Maps query-string errors to 400 problems.
pub fn query_error_handler(
    err: actix_web::error::QueryPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    let api = ApiError::bad_request(
        "invalid_query",
        format!("the query string is invalid: {err}"),
    );
    actix_web::error::InternalError::from_response(err, api.error_response()).into()
}

/// Maps path errors to 404 problems.
pub fn path_error_handler(
    err: actix_web::error::PathError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    let api = ApiError::not_found(format!("no such resource: {err}"));
    actix_web::error::InternalError::from_response(err, api.error_response()).into()
}
