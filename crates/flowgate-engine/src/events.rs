//! Publishing external events (`POST /events`): the rules an event must
//! follow, then a durable insert (a repeated `(source, id)` is stored once)
//! and a wake-up of the dispatcher.

use flowgate_core::event::{is_reserved_event_type, Event, MAX_EVENT_DATA_BYTES};
use flowgate_core::manifest::is_valid_event_type;
use flowgate_core::EventId;
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::Engine;

/// Longest `source` and `id`, in characters.
pub const MAX_EVENT_LABEL_CHARS: usize = 256;

/// An event an external system publishes.
#[derive(Debug, Clone)]
pub struct PublishEvent {
    /// Dotted lower-case type; `user.*`, `security.*` and `flow.*` are reserved.
    pub kind: String,
    /// Who produced it (default: the caller).
    pub source: Option<String>,
    /// The producer's id, for de-duplication.
    pub id: Option<String>,
    /// Payload.
    pub data: Value,
}

fn label_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= MAX_EVENT_LABEL_CHARS
}

/// Checks an event; returns its source (`caller` when it names none).
pub fn check_event(input: &PublishEvent, caller: &str) -> Result<String> {
    if !is_valid_event_type(&input.kind) {
        return Err(EngineError::invalid(format!(
            "`{}` is not a valid event type (dotted lower-case words)",
            input.kind
        )));
    }
    if is_reserved_event_type(&input.kind) {
        return Err(EngineError::invalid(format!(
            "`{}` is a system event type and cannot be published",
            input.kind
        )));
    }
    let source = input.source.clone().unwrap_or_else(|| caller.to_owned());
    if !label_ok(&source) {
        return Err(EngineError::invalid("`source` must be 1–256 characters"));
    }
    if input.id.as_deref().is_some_and(|id| !label_ok(id)) {
        return Err(EngineError::invalid("`id` must be 1–256 characters"));
    }
    if input.data.to_string().len() > MAX_EVENT_DATA_BYTES {
        return Err(EngineError::TooLarge(
            "event data may be at most 256 KiB".into(),
        ));
    }
    Ok(source)
}

impl Engine {
    /// Publishes an event for `caller` (its caller key); returns the stored
    /// event's id (the first one's, for a repeated `(source, id)`).
    #[tracing::instrument(skip_all, err(level = "debug"), fields(event.kind = %input.kind))]
    pub async fn publish_event(&self, caller: &str, input: PublishEvent) -> Result<EventId> {
        let source = check_event(&input, caller)?;
        let event = Event::new(input.kind, source, input.data);
        let external = input.id;
        let (id, _inserted) = self
            .store()
            .call(move |s| s.insert_event(&event, external.as_deref()))
            .await?;
        self.wake_dispatcher();
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str) -> PublishEvent {
        PublishEvent {
            kind: kind.into(),
            source: None,
            id: None,
            data: Value::Null,
        }
    }

    #[test]
    fn reserved_and_malformed_types_are_refused() {
        assert!(check_event(&ev("user.created"), "c").is_err());
        assert!(check_event(&ev("Not Dotted!"), "c").is_err());
        assert_eq!(
            check_event(&ev("crm.changed"), "c").ok().as_deref(),
            Some("c")
        );
    }

    #[test]
    fn large_data_is_too_large() {
        let mut e = ev("crm.changed");
        e.data = Value::from("x".repeat(MAX_EVENT_DATA_BYTES + 1));
        assert!(matches!(
            check_event(&e, "c"),
            Err(EngineError::TooLarge(_))
        ));
    }

    #[tokio::test]
    async fn a_repeated_source_and_id_is_stored_once() {
        let engine = crate::queries::memory_engine();
        let mut e = ev("crm.changed");
        e.id = Some("42".into());
        let first = engine.publish_event("api_key:k", e.clone()).await;
        let again = engine.publish_event("api_key:k", e).await;
        assert!(first.is_ok(), "{first:?}");
        assert_eq!(first.ok(), again.ok());
    }
}
