//! Domain types of Flowgate: names, ids, users, runs, events, manifests and the
//! repository traits the other crates program against. No I/O lives here.

pub mod error;
pub mod event;
pub mod ids;
pub mod manifest;
pub mod package;
pub mod problem;
pub mod repo;
pub mod run;
pub mod secret;
pub mod user;

pub use error::{Error, Result};
pub use ids::{EventId, FlowName, KeyId, RunId, UserId};
pub use manifest::Manifest;
pub use package::FlowPackage;
pub use secret::SecretString;

/// Milliseconds since the Unix epoch, the portable time unit of the store.
pub type EpochMs = i64;

/// Current wall-clock time in epoch milliseconds.
pub fn now_ms() -> EpochMs {
    chrono::Utc::now().timestamp_millis()
}

/// Formats epoch milliseconds as an RFC 3339 UTC string (`2026-01-02T03:04:05.678Z`).
pub fn rfc3339(ms: EpochMs) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
