//! Public record types the store reads and writes (besides core's `User` and `Event`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use flowgate_core::run::{LogLevel, LogLine, RunStatus, TriggerKind};
use flowgate_core::{EpochMs, EventId, FlowName, FlowPackage, RunId};

use crate::error::{Result, StoreError};

/// One page of a keyset-paginated list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// Pass back as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A flow and its live pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    /// The flow's name.
    pub name: FlowName,
    /// Disabled flows answer 404 and are not triggered.
    pub disabled: bool,
    /// The live (published) version, `None` before the first publish.
    pub live_version: Option<u32>,
    /// Creation time (epoch ms).
    pub created_at: EpochMs,
    /// Last change (epoch ms).
    pub updated_at: EpochMs,
}

/// Lifecycle state of a flow version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionStatus {
    /// Uploaded, not callable.
    Draft,
    /// Callable at its pinned URL (and live when the flow points at it).
    Published,
    /// No longer callable (410).
    Retired,
}

impl VersionStatus {
    /// Lower-case name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Published => "published",
            Self::Retired => "retired",
        }
    }
    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "draft" => Self::Draft,
            "published" => Self::Published,
            "retired" => Self::Retired,
            o => {
                return Err(StoreError::Database(format!(
                    "unknown version status `{o}`"
                )))
            }
        })
    }
}

/// Metadata of one flow version (without its files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    /// The flow.
    pub flow: FlowName,
    /// Version number, from 1.
    pub version: u32,
    /// Draft, published or retired.
    pub status: VersionStatus,
    /// Content hash of the package (`FlowPackage::sha256`).
    pub sha256: String,
    /// Upload time.
    pub created_at: EpochMs,
    /// First publish time.
    pub published_at: Option<EpochMs>,
    /// Retire time.
    pub retired_at: Option<EpochMs>,
}

/// One flow version with its package files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Metadata.
    pub info: VersionInfo,
    /// The files (`flow.toml`, script, schemas, fixtures).
    pub package: FlowPackage,
}

/// What happened to the live pointer when a version was retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireOutcome {
    /// The version was not live; the live pointer is unchanged.
    Retired,
    /// The version was the only published one and was live; the flow now has no live version.
    RetiredLive,
    /// It was already retired; nothing changed.
    AlreadyRetired,
}

/// A run row: both what is inserted and what is read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// UUIDv7 id.
    pub id: RunId,
    /// Flow name.
    pub flow: FlowName,
    /// Version that runs.
    pub version: u32,
    /// What started it.
    pub trigger: TriggerKind,
    /// Lifecycle state.
    pub status: RunStatus,
    /// Attempts started so far (0 while first queued).
    pub attempt: u32,
    /// Attempts allowed in all (counting the first).
    pub max_attempts: u32,
    /// The script inputs: `{request, caller, trigger, ctx}` as the engine chooses.
    pub input: Value,
    /// The inputs as JSON text, when they are not in `input` (which is then
    /// `null`): the engine sets it on a run it writes (a request body kept as
    /// the caller sent it), and the store writes this text instead of
    /// `input`; a claimed run ([`crate::Store::submit_claims`]) has its
    /// stored inputs here, for the worker to read straight into script
    /// values. Every other run read back has its inputs in `input` and this
    /// `None`. [`Run::input_value`] gives the document either way.
    #[serde(skip)]
    pub input_json: Option<String>,
    /// A queued run is not claimed before this time.
    pub available_at: EpochMs,
    /// Worker holding the lease while running; once the run ended, the
    /// worker that ran its last attempt (`None` for a sync run and while
    /// queued). Only a `running` run holds a lease.
    pub lease_owner: Option<String>,
    /// When the lease ends unless renewed.
    pub lease_expires_at: Option<EpochMs>,
    /// Start of the latest attempt.
    pub started_at: Option<EpochMs>,
    /// End time (final states).
    pub finished_at: Option<EpochMs>,
    /// Duration of the final attempt.
    pub duration_ms: Option<i64>,
    /// HTTP status of the response.
    pub response_status: Option<u16>,
    /// The response `{status, headers, body}`.
    pub response: Option<Value>,
    /// The response as JSON text, when it is not in `response` (which is
    /// then `None`): the engine sets it on a sync run whose answer it wrote
    /// once for the caller and the record alike, and the store writes this
    /// text instead of `response`. Runs read back have `None` here.
    #[serde(skip)]
    pub response_json: Option<String>,
    /// Error text of the last failed attempt.
    pub error: Option<String>,
    /// Due time of a schedule run.
    pub scheduled_at: Option<EpochMs>,
    /// Event that triggered an event run.
    pub event_id: Option<EventId>,
    /// Idempotency scope key or webhook delivery id that created it.
    pub idempotency_key: Option<String>,
    /// Insert time.
    pub created_at: EpochMs,
    /// Outbound HTTP calls of the latest attempt (a JSON array, as the engine records them).
    pub http_calls: Option<Value>,
}

impl Run {
    /// The inputs as a JSON document, from `input` or from `input_json`.
    pub fn input_value(&self) -> Value {
        match &self.input_json {
            Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            None => self.input.clone(),
        }
    }

    /// A new queued run with a fresh id, available at `available_at`.
    pub fn queued(
        flow: FlowName,
        version: u32,
        trigger: TriggerKind,
        input: Value,
        max_attempts: u32,
        available_at: EpochMs,
    ) -> Self {
        Self {
            id: RunId::new(),
            flow,
            version,
            trigger,
            status: RunStatus::Queued,
            attempt: 0,
            max_attempts: max_attempts.max(1),
            input,
            input_json: None,
            available_at,
            lease_owner: None,
            lease_expires_at: None,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            response_status: None,
            response: None,
            response_json: None,
            error: None,
            scheduled_at: None,
            event_id: None,
            idempotency_key: None,
            created_at: flowgate_core::now_ms(),
            http_calls: None,
        }
    }

    /// A finished synchronous run (attempt 1) recorded after the fact.
    pub fn finished(
        flow: FlowName,
        version: u32,
        trigger: TriggerKind,
        input: Value,
        started_at: EpochMs,
        outcome: &RunOutcome,
    ) -> Self {
        let mut r = Self::queued(flow, version, trigger, input, 1, started_at);
        r.status = outcome.status;
        r.attempt = 1;
        r.started_at = Some(started_at);
        r.finished_at = Some(outcome.finished_at);
        r.duration_ms = Some(outcome.duration_ms);
        r.response_status = outcome.response_status;
        r.response = outcome.response.clone();
        r.error = outcome.error.clone();
        r.http_calls = outcome.http_calls.clone();
        r
    }
}

/// How an attempt ended, given to [`crate::Store::complete_run`] and friends.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// `Succeeded`, `Failed` or `Dead`.
    pub status: RunStatus,
    /// End time.
    pub finished_at: EpochMs,
    /// Duration of this attempt.
    pub duration_ms: i64,
    /// HTTP status of the response.
    pub response_status: Option<u16>,
    /// `{status, headers, body}`.
    pub response: Option<Value>,
    /// Error text (failed/dead).
    pub error: Option<String>,
    /// Log lines of this attempt, appended in the same transaction.
    pub logs: Vec<LogLine>,
    /// Outbound HTTP calls of this attempt (a JSON array), replacing earlier ones.
    pub http_calls: Option<Value>,
}

/// One stored log line of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunLog {
    /// Order within the run, from 1.
    pub seq: u32,
    /// When it was logged.
    pub time: EpochMs,
    /// Severity.
    pub level: LogLevel,
    /// Text (already redacted).
    pub message: String,
    /// Attempt that logged it.
    pub attempt: u32,
}

/// One attempt of a run (the history behind retries and backoff).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunAttempt {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Worker that ran it.
    pub owner: String,
    /// Start.
    pub started_at: EpochMs,
    /// End (`None` while running).
    pub finished_at: Option<EpochMs>,
    /// `succeeded`, `failed`, `dead`, `retry`, `lease_expired`; `None` while running.
    pub outcome: Option<String>,
    /// Error text.
    pub error: Option<String>,
}

/// A run with its logs and attempt history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDetail {
    /// The run.
    pub run: Run,
    /// Log lines in order.
    pub logs: Vec<RunLog>,
    /// Attempts in order.
    pub attempts: Vec<RunAttempt>,
}

/// Filter of [`crate::Store::list_runs`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only this flow.
    pub flow: Option<FlowName>,
    /// Only this status.
    pub status: Option<RunStatus>,
}

/// Result of [`crate::Store::begin_idempotent`].
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyBegin {
    /// This caller owns the key now: run, then `complete_idempotent` (or `abandon_idempotent`).
    Started,
    /// Another request with the same key and body is still running (409).
    InFlight,
    /// A completed response is stored: replay it.
    Done(Value),
    /// The key was used with a different request body (422).
    Mismatch,
}

/// What the scheduler did at one due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TickState {
    /// A run was queued.
    Dispatched,
    /// Skipped because the previous run was still going (`overlap = "skip"`).
    SkippedOverlap,
    /// Skipped because it was missed while down (`misfire = "skip"`).
    SkippedMisfire,
}

impl TickState {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dispatched => "dispatched",
            Self::SkippedOverlap => "skipped_overlap",
            Self::SkippedMisfire => "skipped_misfire",
        }
    }
    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "dispatched" => Self::Dispatched,
            "skipped_overlap" => Self::SkippedOverlap,
            "skipped_misfire" => Self::SkippedMisfire,
            o => return Err(StoreError::Database(format!("unknown tick state `{o}`"))),
        })
    }
}

/// One schedule tick: a (flow, due time) the scheduler handled, once cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tick {
    /// The flow.
    pub flow: FlowName,
    /// The due time (epoch ms).
    pub due_at: EpochMs,
    /// What was done.
    pub state: TickState,
    /// The queued run, when dispatched.
    pub run_id: Option<RunId>,
    /// When the tick was recorded.
    pub created_at: EpochMs,
    /// The node that recorded it (`None` for ticks from before node ids).
    pub node: Option<String>,
}

/// A stored API key (the secret part only as its argon2 hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    /// Key id (visible part of the key, `fgk_<id>_…`).
    pub id: String,
    /// Human name.
    pub name: String,
    /// Argon2 PHC string of the secret part.
    #[serde(skip)]
    pub hash: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Creation time.
    pub created_at: EpochMs,
    /// Expiry, if any.
    pub expires_at: Option<EpochMs>,
    /// Last successful use.
    pub last_used_at: Option<EpochMs>,
    /// Revoked keys never authenticate.
    pub revoked: bool,
}

/// A secret's name and last change (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretMeta {
    /// Name.
    pub name: String,
    /// Last write (epoch ms).
    pub updated_at: EpochMs,
}

/// One audit log entry (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the request arrived (epoch ms).
    pub time: EpochMs,
    /// Request id.
    pub request_id: String,
    /// Caller id (`key:<id>`, `oauth2:<sub>`, …); `None` when anonymous or refused early.
    pub caller: Option<String>,
    /// Flow, for flow calls.
    pub flow: Option<String>,
    /// Version, for flow calls.
    pub version: Option<u32>,
    /// HTTP method.
    pub method: String,
    /// Request path (no query string).
    pub path: String,
    /// Response status.
    pub status: u16,
    /// Handling time.
    pub duration_ms: i64,
    /// `Idempotency-Key` as sent.
    pub idempotency_key: Option<String>,
}

/// Filter of [`crate::Store::query_audit`]; all set fields must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this flow.
    pub flow: Option<String>,
    /// Only this caller.
    pub caller: Option<String>,
    /// Only this status.
    pub status: Option<u16>,
    /// `time >= since`.
    pub since: Option<EpochMs>,
    /// `time < until`.
    pub until: Option<EpochMs>,
}

/// A console session (SPEC §8). Only a hash of the session id is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 (hex) of the opaque session id in the cookie.
    pub id_hash: String,
    /// The API key the session was opened with (its scopes apply).
    pub key_id: String,
    /// The CSRF token state-changing calls must echo.
    pub csrf_token: String,
    /// Sign-in time (epoch ms).
    pub created_at: EpochMs,
    /// Last request made with the session.
    pub last_seen_at: EpochMs,
    /// Absolute end of the session.
    pub expires_at: EpochMs,
}

/// A node of the cluster as its heartbeats recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRecord {
    /// The node id (`[server] node_id`, or generated at start).
    pub id: String,
    /// The Flowgate version it runs.
    pub version: String,
    /// When it (last) started.
    pub started_at: EpochMs,
    /// Its latest heartbeat.
    pub last_heartbeat: EpochMs,
    /// When it stopped cleanly (`None`: running, or died without stopping).
    pub stopped_at: Option<EpochMs>,
}
