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
        }
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
