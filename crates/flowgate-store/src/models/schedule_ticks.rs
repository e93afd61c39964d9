//! Row model of the `schedule_ticks` table.

use diesel::prelude::*;

use flowgate_core::RunId;

use crate::error::Result;
use crate::models::name;
use crate::schema::schedule_ticks;
use crate::types::{Tick, TickState};

/// A `schedule_ticks` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = schedule_ticks)]
#[diesel(treat_none_as_default_value = false)]
pub struct TickRow {
    pub flow: String,
    pub due_at: i64,
    pub state: String,
    pub run_id: Option<String>,
    pub created_at: i64,
    pub node_id: Option<String>,
}

impl TickRow {
    /// The row for a tick.
    pub fn from_tick(t: &Tick) -> Self {
        Self {
            flow: t.flow.as_str().to_owned(),
            due_at: t.due_at,
            state: t.state.as_str().to_owned(),
            run_id: t.run_id.map(|r| r.to_string()),
            created_at: t.created_at,
            node_id: t.node.clone(),
        }
    }

    /// Converts to the public tick.
    pub fn into_tick(self) -> Result<Tick> {
        Ok(Tick {
            flow: name(&self.flow)?,
            due_at: self.due_at,
            state: TickState::parse(&self.state)?,
            run_id: self.run_id.as_deref().map(RunId::parse).transpose()?,
            created_at: self.created_at,
            node: self.node_id,
        })
    }
}
