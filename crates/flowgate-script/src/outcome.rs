//! What goes into a run and what comes out of it.

use flowgate_core::event::EmittedEvent;
use flowgate_core::run::LogLine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

use crate::body::{JsonBody, StoredMaps};
use crate::reads::InputReads;

/// The maps a script sees (SPEC §4): `request`, `caller`, `trigger`, `ctx`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunInput {
    /// `request`: method, path, params, query, headers, body.
    pub request: Value,
    /// The request body as sent, when it was kept as JSON text: it is
    /// `request.body` then, and `request` has no `body` key of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<JsonBody>,
    /// `caller`: kind, id, scopes.
    pub caller: Value,
    /// `trigger`: kind, plus `event` or `scheduled_at`.
    pub trigger: Value,
    /// `ctx`: flow, version, run_id, request_id, attempt.
    pub ctx: JsonBody,
    /// The `request`, `caller` and `trigger` maps as stored (see
    /// [`StoredMaps`]): when set,
    /// the script reads them from here, and the three fields above (and
    /// `body`) are not used.
    #[serde(skip)]
    pub stored: Option<StoredMaps>,
    /// What the script reads of the above ([`crate::FlowVersion::reads`]):
    /// a variable it never names is `()`, and a `request` key it never reads
    /// may be missing from the maps built for it (never from their text).
    #[serde(skip)]
    pub reads: InputReads,
}

/// A successful flow response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowResponse {
    /// HTTP status (200 unless `respond` said otherwise).
    pub status: u16,
    /// Extra response headers set with `respond(status, body, headers)`.
    pub headers: BTreeMap<String, String>,
    /// JSON body (the script's value).
    pub body: ResponseBody,
}

/// A response body: the JSON text the runtime wrote from the script's
/// value (a run's answer goes out as it is, with no `serde_json::Value`
/// built and written again), or a JSON value.
#[derive(Debug, Clone)]
pub enum ResponseBody {
    /// JSON text written by this process.
    Json(String),
    /// A JSON value.
    Value(Value),
}

impl ResponseBody {
    /// The body as a JSON value (the text parsed).
    pub fn to_value(&self) -> Value {
        match self {
            // The text was written from a value: it parses.
            Self::Json(t) => serde_json::from_str(t).unwrap_or(Value::Null),
            Self::Value(v) => v.clone(),
        }
    }

    /// [`Self::to_value`], moving a value out.
    pub fn into_value(self) -> Value {
        match self {
            Self::Value(v) => v,
            json => json.to_value(),
        }
    }

    /// The body as JSON text.
    pub fn into_json(self) -> String {
        match self {
            Self::Json(t) => t,
            // Writing a `Value` cannot fail: its map keys are strings.
            Self::Value(v) => serde_json::to_string(&v).unwrap_or_else(|_| "null".to_owned()),
        }
    }

    /// The length of the body's JSON text.
    pub fn json_len(&self) -> usize {
        match self {
            Self::Json(t) => t.len(),
            Self::Value(v) => crate::convert::json_len(v),
        }
    }
}

impl From<Value> for ResponseBody {
    fn from(v: Value) -> Self {
        Self::Value(v)
    }
}

/// Bodies are equal when their JSON values are.
impl PartialEq for ResponseBody {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Value(a), Self::Value(b)) => a == b,
            (a, b) => a.to_value() == b.to_value(),
        }
    }
}

impl PartialEq<Value> for ResponseBody {
    fn eq(&self, other: &Value) -> bool {
        match self {
            Self::Value(v) => v == other,
            json => json.to_value() == *other,
        }
    }
}

impl Serialize for ResponseBody {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(v) => v.serialize(s),
            json => json.to_value().serialize(s),
        }
    }
}

impl std::fmt::Display for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Json(t) => f.write_str(t),
            Self::Value(v) => write!(f, "{v}"),
        }
    }
}

/// How a run failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunFailure {
    /// The script called `fail(status, code, detail)`.
    Fail {
        /// HTTP status named by the script.
        status: u16,
        /// Machine-readable code named by the script.
        code: String,
        /// Human-readable detail.
        detail: String,
    },
    /// A runtime error (thrown value, type error, failed host call…).
    Error {
        /// Error text (secrets redacted).
        message: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
    },
    /// A sandbox limit other than the timeout.
    LimitExceeded {
        /// `operations`, `call_depth`, `expression_depth`, `string_size`, `array_size` or `map_size`.
        limit: &'static str,
        /// Error text with the position.
        message: String,
    },
    /// The run's wall-clock timeout passed.
    Timeout {
        /// The timeout that passed.
        timeout_ms: u64,
    },
}

impl RunFailure {
    /// The HTTP status of the failure (SPEC §5): fail → its status, error/limit → 500, timeout → 504.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Fail { status, .. } => *status,
            Self::Error { .. } | Self::LimitExceeded { .. } => 500,
            Self::Timeout { .. } => 504,
        }
    }

    /// The problem `code`: the fail's code, `flow_error`, `flow_limit_exceeded` or `flow_timeout`.
    pub fn code(&self) -> &str {
        match self {
            Self::Fail { code, .. } => code,
            Self::Error { .. } => "flow_error",
            Self::LimitExceeded { .. } => "flow_limit_exceeded",
            Self::Timeout { .. } => "flow_timeout",
        }
    }

    /// Whether an async run should be retried: a `fail` below 500 is final, all else retries.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Fail { status, .. } if *status < 500)
    }

    /// Whether this failure emits `flow.run_failed` (everything but a deliberate `fail` < 500).
    pub fn counts_as_run_failed_event(&self) -> bool {
        self.is_retryable()
    }

    /// Text for the run record and logs (never sent to partners for errors).
    pub fn message(&self) -> String {
        match self {
            Self::Fail { code, detail, .. } => format!("{code}: {detail}"),
            Self::Error {
                message,
                line,
                column,
            } => match (line, column) {
                (Some(l), Some(c)) => format!("{message} (line {l}, column {c})"),
                _ => message.clone(),
            },
            Self::LimitExceeded { limit, message } => {
                format!("limit `{limit}` exceeded: {message}")
            }
            Self::Timeout { timeout_ms } => {
                format!("the run exceeded its timeout of {timeout_ms} ms")
            }
        }
    }

    /// The partner-facing detail: the script's own for `fail`, a generic one otherwise
    /// (error details stay in the run log).
    pub fn public_detail(&self) -> String {
        match self {
            Self::Fail { detail, .. } => detail.clone(),
            Self::Error { .. } => "the flow failed; see the run log".into(),
            Self::LimitExceeded { limit, .. } => {
                format!("the flow exceeded its `{limit}` limit")
            }
            Self::Timeout { timeout_ms } => {
                format!("the flow did not finish within {timeout_ms} ms")
            }
        }
    }

    /// A problem body (`status`, `code`, `title`, `detail`) as fixtures compare it.
    pub fn problem_body(&self) -> Value {
        json!({
            "status": self.http_status(),
            "code": self.code(),
            "title": flowgate_core::problem::title_of(self.http_status()),
            "detail": self.public_detail(),
        })
    }
}

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunOutcome {
    /// The response, or how the run failed.
    pub result: Result<FlowResponse, RunFailure>,
    /// Captured log lines (secrets redacted), in order.
    pub logs: Vec<LogLine>,
    /// Events emitted with `events::emit`; deliver them only if `result` is `Ok`.
    pub events: Vec<EmittedEvent>,
    /// Outbound HTTP calls the run made, in order (query values and secrets redacted).
    pub http_calls: Vec<HttpCallRecord>,
    /// Wall-clock duration of the script.
    pub duration_ms: u64,
}

/// Largest response body kept in an [`HttpCallRecord`] (serialized JSON bytes).
pub const MAX_RECORDED_BODY_BYTES: usize = 64 * 1024;

/// One outbound HTTP call of a run, as the run record keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpCallRecord {
    /// Upper-case method.
    pub method: String,
    /// The URL with every query value replaced by `[redacted]` (and secrets redacted).
    pub url: String,
    /// Response status; `None` when no response came (refused, network error, timeout).
    pub status: Option<u16>,
    /// How long the call took.
    pub duration_ms: u64,
    /// The response body (JSON, or the text as a string), secrets redacted; `None`
    /// when absent or larger than [`MAX_RECORDED_BODY_BYTES`].
    pub response_body: Option<Value>,
    /// Why the call produced no response (secrets redacted).
    pub error: Option<String>,
}

impl RunOutcome {
    /// The HTTP status the run answers with.
    pub fn status(&self) -> u16 {
        match &self.result {
            Ok(r) => r.status,
            Err(f) => f.http_status(),
        }
    }

    /// The body the run answers with (problem body on failure).
    pub fn body(&self) -> Value {
        match &self.result {
            Ok(r) => r.body.to_value(),
            Err(f) => f.problem_body(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_mapping() {
        let f = RunFailure::Fail {
            status: 404,
            code: "not_found".into(),
            detail: "x".into(),
        };
        assert_eq!(
            (f.http_status(), f.code(), f.is_retryable()),
            (404, "not_found", false)
        );
        assert!(!f.counts_as_run_failed_event());
        let f = RunFailure::Fail {
            status: 502,
            code: "upstream".into(),
            detail: "x".into(),
        };
        assert!(f.is_retryable() && f.counts_as_run_failed_event());
        let e = RunFailure::Error {
            message: "boom".into(),
            line: Some(1),
            column: Some(2),
        };
        assert_eq!((e.http_status(), e.code()), (500, "flow_error"));
        let l = RunFailure::LimitExceeded {
            limit: "operations",
            message: "x".into(),
        };
        assert_eq!((l.http_status(), l.code()), (500, "flow_limit_exceeded"));
        let t = RunFailure::Timeout { timeout_ms: 5 };
        assert_eq!((t.http_status(), t.code()), (504, "flow_timeout"));
        assert!(t.is_retryable());
    }
}
