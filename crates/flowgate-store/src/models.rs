//! Row models, one file per table, and their conversions to public types.

pub mod api_keys;
pub mod audit;
pub mod console_sessions;
pub mod events;
pub mod flow_versions;
pub mod flows;
pub mod idempotency;
pub mod kv;
pub mod run_attempts;
pub mod run_logs;
pub mod runs;
pub mod schedule_ticks;
pub mod secrets;
pub mod user_external_ids;
pub mod users;

use serde_json::Value;

use flowgate_core::FlowName;

use crate::error::{Result, StoreError};

/// An INTEGER flag as a bool.
pub(crate) fn flag(v: i32) -> bool {
    v != 0
}

/// A stored flow name, re-validated.
pub(crate) fn name(s: &str) -> Result<FlowName> {
    FlowName::parse(s).map_err(|e| StoreError::Database(format!("stored flow name: {e}")))
}

/// JSON as stored text.
pub(crate) fn json_text(v: &Value) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

/// Optional stored JSON text, parsed.
pub(crate) fn json_opt(s: Option<&str>) -> Result<Option<Value>> {
    s.map(serde_json::from_str).transpose().map_err(Into::into)
}
