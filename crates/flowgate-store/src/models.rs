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

/// Optional stored JSON text, parsed (see [`parse_stored`]).
pub(crate) fn json_opt(s: Option<&str>) -> Result<Option<Value>> {
    s.map(parse_stored).transpose()
}

/// Deepest nesting a stored document may have.
const STORED_MAX_DEPTH: usize = 512;

/// Stored JSON text, parsed. What the store keeps wraps values that were
/// bounded on their own (a request body at serde's 128 levels, a script's
/// value at its depth limit) in a few levels more: a run's input puts the
/// body two levels down, a response document one. serde's recursion limit
/// of 128 would refuse such a document, and one unreadable row would fail
/// every listing it is on. So the limit is off here, after a scan bounds
/// the nesting (a corrupted row cannot exhaust the stack either).
pub(crate) fn parse_stored(text: &str) -> Result<Value> {
    if nesting(text.as_bytes()) > STORED_MAX_DEPTH {
        return Err(StoreError::Database(format!(
            "stored JSON nests deeper than {STORED_MAX_DEPTH} levels"
        )));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let v = serde::Deserialize::deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// The deepest nesting of arrays and objects in JSON text (strings skipped).
fn nesting(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The least UUIDv7, as text, of the millisecond `ms`: every id made at `ms`
/// or later sorts at or after it (the hyphenated lower-case form sorts as
/// the bytes do).
pub fn uuid_v7_floor(ms: i64) -> String {
    uuid::Builder::from_unix_timestamp_millis(u64::try_from(ms.max(0)).unwrap_or(0), &[0; 10])
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn stored_documents_read_back_beyond_serdes_limit_and_within_a_bound() {
        // serde alone refuses 129 levels; a run's input wraps a 127-level
        // body in two more.
        assert!(serde_json::from_str::<Value>(&nested(129)).is_err());
        assert!(parse_stored(&nested(129)).is_ok());
        assert!(parse_stored(&nested(STORED_MAX_DEPTH)).is_ok());
        assert!(parse_stored(&nested(STORED_MAX_DEPTH + 1)).is_err());
        // Brackets inside strings, escaped quotes included, do not count.
        let text = format!(r#"{{"a": "[[[\"{{{{", "b": {}}}"#, nested(3));
        assert_eq!(nesting(text.as_bytes()), 4);
        assert!(parse_stored(&text).is_ok());
        assert!(parse_stored("[1] x").is_err());
    }
}
