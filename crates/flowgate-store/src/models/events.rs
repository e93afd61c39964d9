//! Row model of the `events` table.

use diesel::prelude::*;

use flowgate_core::event::Event;
use flowgate_core::EventId;

use crate::error::Result;
use crate::models::json_text;
use crate::schema::events;

/// An `events` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = events)]
#[diesel(treat_none_as_default_value = false)]
pub struct EventRow {
    pub id: String,
    pub event_type: String,
    pub source: String,
    pub time: i64,
    pub data: String,
    pub external_id: Option<String>,
    pub created_at: i64,
    pub dispatched_at: Option<i64>,
    pub depth: i64,
    pub chain_id: Option<String>,
}

impl EventRow {
    /// The row for a new, undispatched event.
    pub fn from_event(e: &Event, external_id: Option<&str>, now: i64) -> Result<Self> {
        Ok(Self {
            id: e.id.to_string(),
            event_type: e.kind.clone(),
            source: e.source.clone(),
            time: e.time,
            data: json_text(&e.data)?,
            external_id: external_id.map(str::to_owned),
            created_at: now,
            dispatched_at: None,
            depth: i64::from(e.depth),
            chain_id: e.chain_id.clone(),
        })
    }

    /// Converts to the domain event.
    pub fn into_event(self) -> Result<Event> {
        Ok(Event {
            id: EventId::parse(&self.id)?,
            kind: self.event_type,
            source: self.source,
            time: self.time,
            data: crate::models::parse_stored(&self.data)?,
            depth: u32::try_from(self.depth).unwrap_or(u32::MAX),
            chain_id: self.chain_id,
        })
    }
}
