//! Events: CloudEvents-like records produced by the system, flows and partners.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{EpochMs, EventId};

/// System event types the server itself emits.
pub mod types {
    /// A user was created.
    pub const USER_CREATED: &str = "user.created";
    /// A user was changed (`data.changes` lists the fields).
    pub const USER_UPDATED: &str = "user.updated";
    /// A user's status changed.
    pub const USER_STATUS_CHANGED: &str = "user.status_changed";
    /// A user was deleted.
    pub const USER_DELETED: &str = "user.deleted";
    /// Credentials were refused.
    pub const AUTH_FAILED: &str = "security.auth_failed";
    /// A caller was rate limited (sampled).
    pub const RATE_LIMITED: &str = "security.rate_limited";
    /// A run failed with an error, limit or timeout, or became dead.
    pub const RUN_FAILED: &str = "flow.run_failed";
}

/// Prefixes of the system event types only the server may produce
/// (`POST /events` and `events::emit` refuse them).
pub const RESERVED_EVENT_PREFIXES: [&str; 3] = ["user.", "security.", "flow."];

/// Largest event `data` accepted from publishers and flows (serialized JSON bytes).
pub const MAX_EVENT_DATA_BYTES: usize = 256 * 1024;

/// Whether `kind` is a system event type (`user.*`, `security.*`, `flow.*`).
pub fn is_reserved_event_type(kind: &str) -> bool {
    RESERVED_EVENT_PREFIXES.iter().any(|p| kind.starts_with(p))
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Server-assigned id.
    pub id: EventId,
    /// Dotted type, e.g. `user.created`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Who produced it (`flowgate`, `flow:<name>`, or the publisher's source).
    pub source: String,
    /// When it was produced (epoch ms).
    pub time: EpochMs,
    /// Payload.
    pub data: Value,
    /// How many event-triggered runs led to this event: 0 for events from
    /// outside (partners, admin changes, runs started by HTTP, schedules).
    #[serde(default)]
    pub depth: u32,
    /// The chain of runs and events this one belongs to (`None` for a root).
    #[serde(default)]
    pub chain_id: Option<String>,
}

/// What caused a run: its depth in a chain of event-triggered runs and the
/// chain's id. Events the run produces carry it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// 0 for a run started from outside; one more than its event's depth for
    /// an event-triggered run.
    pub depth: u32,
    /// Id of the chain (the id of the run or event that started it).
    pub chain_id: String,
}

impl Cause {
    /// The cause of a run started from outside.
    pub fn root(chain_id: impl Into<String>) -> Self {
        Self {
            depth: 0,
            chain_id: chain_id.into(),
        }
    }

    /// The cause of a run triggered by `event`.
    pub fn triggered_by(event: &Event) -> Self {
        Self {
            depth: event.depth.saturating_add(1),
            chain_id: event
                .chain_id
                .clone()
                .unwrap_or_else(|| event.id.to_string()),
        }
    }
}

impl Event {
    /// A new event with a fresh id, stamped now.
    pub fn new(kind: impl Into<String>, source: impl Into<String>, data: Value) -> Self {
        Self {
            id: EventId::new(),
            kind: kind.into(),
            source: source.into(),
            time: crate::now_ms(),
            data,
            depth: 0,
            chain_id: None,
        }
    }

    /// The event as produced by a run with `cause`.
    #[must_use]
    pub fn caused_by(mut self, cause: &Cause) -> Self {
        self.depth = cause.depth;
        self.chain_id = Some(cause.chain_id.clone());
        self
    }

    /// The event as scripts see it in `trigger.event` and the API returns it.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.id.to_string(),
            "type": self.kind,
            "source": self.source,
            "time": crate::rfc3339(self.time),
            "data": self.data,
        })
    }
}

/// An event a flow asked to emit with `events::emit`, delivered only if the run succeeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmittedEvent {
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Payload.
    pub data: Value,
}
