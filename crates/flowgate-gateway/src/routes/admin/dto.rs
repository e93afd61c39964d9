//! Typed response bodies of the runs, users, audit and schedules endpoints,
//! so the admin OpenAPI document states exactly what the handlers send.

use flowgate_core::rfc3339;
use flowgate_core::user::User;
use flowgate_engine::queries::{AuditEntry, Run, RunDetail, Tick};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A run (SPEC §5). Times are RFC 3339 UTC.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunOut {
    /// UUIDv7.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Version that ran.
    pub version: u32,
    /// `http`, `webhook`, `event`, `schedule`, `admin`.
    pub trigger: String,
    /// `queued`, `running`, `succeeded`, `failed`, `dead`.
    pub status: String,
    /// Attempts started so far.
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// Not claimed before this time.
    pub available_at: String,
    /// Start of the latest attempt.
    pub started_at: Option<String>,
    /// End (final states).
    pub finished_at: Option<String>,
    /// Duration of the final attempt.
    pub duration_ms: Option<i64>,
    /// HTTP status of the response.
    pub response_status: Option<u16>,
    /// Error of the last failed attempt.
    pub error: Option<String>,
    /// Due time of a schedule run.
    pub scheduled_at: Option<String>,
    /// Event that triggered an event run.
    pub event_id: Option<String>,
    /// When the run was recorded.
    pub created_at: String,
    /// The node holding the run's lease while it runs; once it ended, the
    /// node that ran its last attempt.
    pub node: Option<String>,
}

impl From<&Run> for RunOut {
    fn from(r: &Run) -> Self {
        Self {
            id: r.id.to_string(),
            flow: r.flow.to_string(),
            version: r.version,
            trigger: r.trigger.as_str().to_owned(),
            status: r.status.as_str().to_owned(),
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            available_at: rfc3339(r.available_at),
            started_at: r.started_at.map(rfc3339),
            finished_at: r.finished_at.map(rfc3339),
            duration_ms: r.duration_ms,
            response_status: r.response_status,
            error: r.error.clone(),
            scheduled_at: r.scheduled_at.map(rfc3339),
            event_id: r.event_id.map(|e| e.to_string()),
            created_at: rfc3339(r.created_at),
            node: r.lease_owner.clone(),
        }
    }
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// Runs.
    pub items: Vec<RunOut>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// One captured log line.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunLogOut {
    /// When it was logged.
    pub time: String,
    /// `trace`, `info`, `warn`, `error`.
    pub level: String,
    /// Text (secrets redacted).
    pub message: String,
    /// Attempt that logged it.
    pub attempt: u32,
}

/// One attempt of a run (the backoff between retries is visible here).
#[derive(Debug, Serialize, ToSchema)]
pub struct RunAttemptOut {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Start.
    pub started_at: String,
    /// End.
    pub finished_at: Option<String>,
    /// `succeeded`, `failed`, `dead`, `retry`, `lease_expired`.
    pub outcome: Option<String>,
    /// Error text.
    pub error: Option<String>,
    /// The node that ran the attempt.
    pub node: String,
}

/// A run with its logs and attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDetailOut {
    /// The run.
    #[serde(flatten)]
    pub run: RunOut,
    /// Log lines in order.
    pub logs: Vec<RunLogOut>,
    /// Attempts in order.
    pub attempts: Vec<RunAttemptOut>,
    /// The request map the script saw (secrets redacted); null for event and schedule runs.
    #[schema(value_type = Option<Object>)]
    pub request: Option<Value>,
    /// The body the run answered with (a problem body when it failed).
    #[schema(value_type = Option<Object>)]
    pub response_body: Option<Value>,
    /// The outbound HTTP calls of the final attempt, in order.
    pub http_calls: Vec<HttpCallOut>,
}

/// One outbound HTTP call a run made.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HttpCallOut {
    /// Upper-case method.
    pub method: String,
    /// The URL with every query value replaced by `[redacted]`.
    pub url: String,
    /// Response status; null when no response came (refused, network error, timeout).
    pub status: Option<u16>,
    /// How long the call took.
    pub duration_ms: u64,
    /// The response body (at most 64 KiB, secrets redacted); null when absent or larger.
    #[schema(value_type = Option<Object>)]
    pub response_body: Option<Value>,
    /// Why no response came.
    pub error: Option<String>,
}

impl From<&RunDetail> for RunDetailOut {
    fn from(d: &RunDetail) -> Self {
        Self {
            run: RunOut::from(&d.run),
            logs: d
                .logs
                .iter()
                .map(|l| RunLogOut {
                    time: rfc3339(l.time),
                    level: l.level.as_str().to_owned(),
                    message: l.message.clone(),
                    attempt: l.attempt,
                })
                .collect(),
            attempts: d
                .attempts
                .iter()
                .map(|a| RunAttemptOut {
                    attempt: a.attempt,
                    started_at: rfc3339(a.started_at),
                    finished_at: a.finished_at.map(rfc3339),
                    outcome: a.outcome.clone(),
                    error: a.error.clone(),
                    node: a.owner.clone(),
                })
                .collect(),
            request: flowgate_engine::console::run_request(d),
            response_body: d.run.response.as_ref().and_then(|r| r.get("body")).cloned(),
            http_calls: d
                .run
                .http_calls
                .clone()
                .and_then(|c| serde_json::from_value(c).ok())
                .unwrap_or_default(),
        }
    }
}

/// A user of the identity store.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    /// Id.
    pub id: String,
    /// Email (unique, ignoring case).
    pub email: String,
    /// Display name.
    pub display_name: Option<String>,
    /// `active`, `suspended`, `disabled`.
    pub status: String,
    /// Free-form attributes.
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    /// System name → id in that system.
    #[schema(value_type = Object)]
    pub external_ids: Map<String, Value>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&User> for UserOut {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            status: u.status.as_str().to_owned(),
            attributes: u.attributes.clone(),
            external_ids: u.external_ids.clone(),
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// Users.
    pub items: Vec<UserOut>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// One audit entry (SPEC §7).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditOut {
    /// RFC 3339.
    pub time: String,
    /// Request id.
    pub request_id: String,
    /// `api_key:<id>`, `oauth2:<sub>`, `signature:<scheme>`, `anonymous:`; null when refused before authentication.
    pub caller: Option<String>,
    /// Flow, for flow calls.
    pub flow: Option<String>,
    /// Version, for flow calls.
    pub version: Option<u32>,
    /// HTTP method.
    pub method: String,
    /// Path (no query string).
    pub path: String,
    /// Response status.
    pub status: u16,
    /// Handling time.
    pub duration_ms: i64,
    /// `Idempotency-Key` as sent.
    pub idempotency_key: Option<String>,
}

impl From<&AuditEntry> for AuditOut {
    fn from(e: &AuditEntry) -> Self {
        Self {
            time: rfc3339(e.time),
            request_id: e.request_id.clone(),
            caller: e.caller.clone(),
            flow: e.flow.clone(),
            version: e.version,
            method: e.method.clone(),
            path: e.path.clone(),
            status: e.status,
            duration_ms: e.duration_ms,
            idempotency_key: e.idempotency_key.clone(),
        }
    }
}

/// A page of audit entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// Entries.
    pub items: Vec<AuditOut>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// One tick of a schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct TickOut {
    /// The due time.
    pub due_at: String,
    /// `dispatched`, `skipped_overlap`, `skipped_misfire`.
    pub state: String,
    /// The run, when dispatched.
    pub run_id: Option<String>,
    /// The node that recorded the tick.
    pub node: Option<String>,
}

impl From<&Tick> for TickOut {
    fn from(t: &Tick) -> Self {
        Self {
            due_at: rfc3339(t.due_at),
            state: t.state.as_str().to_owned(),
            run_id: t.run_id.map(|r| r.to_string()),
            node: t.node.clone(),
        }
    }
}

/// A scheduled live flow.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleOut {
    /// Flow.
    pub flow: String,
    /// Live version that fires.
    pub version: i64,
    /// Cron expression.
    pub cron: String,
    /// IANA zone.
    pub timezone: String,
    /// The next five due times.
    pub next: Vec<String>,
    /// The latest ticks, newest first.
    pub last_ticks: Vec<TickOut>,
}

/// Scheduled flows.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    /// Schedules.
    pub items: Vec<ScheduleOut>,
    /// Always null.
    pub next_cursor: Option<String>,
}

/// Deserializes a JSON integer, also written with a zero fraction (`3.0`):
/// JSON Schema's `integer` includes those, serde's integers do not.
pub fn integer<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let n = serde_json::Number::deserialize(d)?;
    let whole = n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    });
    whole
        .and_then(|i| T::try_from(i).ok())
        .ok_or_else(|| serde::de::Error::custom(format!("{n} is not an integer in range")))
}

/// [`integer`] for optional members (`null` or absent is `None`).
pub fn optional_integer<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    #[derive(Deserialize)]
    struct Wrap<T: TryFrom<i64>>(#[serde(deserialize_with = "integer")] T);
    Option::<Wrap<T>>::deserialize(d).map(|w| w.map(|w| w.0))
}
