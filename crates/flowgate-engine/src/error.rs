//! Errors of the application services, typed so the gateway can map each to
//! one HTTP status.

use serde_json::Value;

/// A service error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Unknown flow, version, run, key, user … (404).
    #[error("{0}")]
    NotFound(String),
    /// The version is retired (410).
    #[error("{0}")]
    Gone(String),
    /// A state conflict or uniqueness violation (409).
    #[error("{0}")]
    Conflict(String),
    /// Input refused, with optional structured details (422).
    #[error("{message}")]
    Invalid {
        /// Human explanation.
        message: String,
        /// Extra problem members (`file`, `line`, `column`, `errors`, `report` …).
        details: serde_json::Map<String, Value>,
    },
    /// A list query the store cannot answer, e.g. a stale or forged cursor (400).
    #[error("{0}")]
    BadQuery(String),
    /// The caller may not do this, with a stable code and extra problem
    /// members (403).
    #[error("{message}")]
    Forbidden {
        /// Stable machine-readable code (`scope_not_grantable`, …).
        code: &'static str,
        /// Human explanation.
        message: String,
        /// Extra problem members (`missing_scope`, …).
        details: serde_json::Map<String, Value>,
    },
    /// The input is larger than allowed (413).
    #[error("{0}")]
    TooLarge(String),
    /// Too much work in flight; retry after the given seconds (503).
    #[error("overloaded")]
    Overloaded {
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// The flow already runs as many runs as its share of the run pool
    /// allows (503 with `Retry-After`); other flows are unaffected.
    #[error("{detail}")]
    FlowAtCapacity {
        /// Human explanation.
        detail: String,
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// The caller already runs as many runs as one caller may (429 with `Retry-After`).
    #[error("{detail}")]
    CallerAtCapacity {
        /// Human explanation.
        detail: String,
        /// Suggested wait.
        retry_after_secs: u64,
    },
    /// A request with the same idempotency key is still being processed (409).
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    IdempotencyInFlight,
    /// The idempotency key was used before with a different request (422).
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    /// A malformed request: bad JSON, query string or header (400, with
    /// a stable code: `invalid_json`, `invalid_query`, …).
    #[error("{detail}")]
    BadRequest {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human explanation.
        detail: String,
    },
    /// The endpoint exists but not for this method (405 with `Allow`).
    #[error("{method} is not allowed here; use {}", allowed.join(", "))]
    MethodNotAllowed {
        /// The method sent.
        method: String,
        /// The methods the path takes, sorted.
        allowed: Vec<String>,
    },
    /// The body's media type is not one the flow takes (415; with
    /// `Accept: application/json` when JSON would be).
    #[error("{detail}")]
    UnsupportedMediaType {
        /// Human explanation.
        detail: String,
        /// Whether to answer `Accept: application/json`.
        accept_json: bool,
    },
    /// A rate limit refused the call (429; the limit's headers travel
    /// beside the error).
    #[error("{0}")]
    RateLimited(String),
    /// The caller's credentials or signature were refused (401/403, or 503
    /// when a dependency of authentication failed).
    #[error(transparent)]
    Auth(#[from] flowgate_auth::AuthError),
    /// A webhook's signature secret is not in the secret store (503: the
    /// provider retries later).
    #[error("the webhook signature secret is not in the secret store")]
    SignatureSecretMissing,
    /// A dependency is unavailable (503).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else (500; logged, not shown).
    #[error("internal: {0}")]
    Internal(String),
}

/// Result alias.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// A 422 without details.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            details: serde_json::Map::new(),
        }
    }

    /// A 422 pointing at a file position.
    pub fn invalid_at(message: impl Into<String>, file: &str, line: usize, column: usize) -> Self {
        let mut details = serde_json::Map::new();
        details.insert("file".into(), Value::from(file));
        details.insert("line".into(), Value::from(line));
        details.insert("column".into(), Value::from(column));
        Self::Invalid {
            message: message.into(),
            details,
        }
    }
}

impl From<flowgate_core::Error> for EngineError {
    fn from(e: flowgate_core::Error) -> Self {
        use flowgate_core::Error as E;
        match e {
            E::NotFound(m) => Self::NotFound(format!("{m} not found")),
            E::Conflict(m) => Self::Conflict(m),
            E::Invalid(m) => Self::invalid(m),
            E::Unavailable(m) => Self::Unavailable(m),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<flowgate_store::StoreError> for EngineError {
    fn from(e: flowgate_store::StoreError) -> Self {
        flowgate_core::Error::from(e).into()
    }
}

impl From<tokio::task::JoinError> for EngineError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Internal(format!("background task failed: {e}"))
    }
}

impl From<flowgate_script::RuntimeError> for EngineError {
    fn from(e: flowgate_script::RuntimeError) -> Self {
        match e {
            flowgate_script::RuntimeError::Overloaded { retry_after_secs } => {
                Self::Overloaded { retry_after_secs }
            }
            other => Self::Internal(other.to_string()),
        }
    }
}
