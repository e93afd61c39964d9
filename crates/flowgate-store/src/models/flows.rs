//! Row model of the `flows` table.

use diesel::prelude::*;

use flowgate_core::FlowName;

use crate::error::Result;
use crate::models::{flag, name};
use crate::schema::flows;
use crate::types::FlowRecord;

/// A `flows` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = flows)]
#[diesel(treat_none_as_default_value = false)]
pub struct FlowRow {
    pub name: String,
    pub disabled: i32,
    pub live_version: Option<i32>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl FlowRow {
    /// A new enabled flow without a live version.
    pub fn new(name: &FlowName, now: i64) -> Self {
        Self {
            name: name.as_str().to_owned(),
            disabled: 0,
            live_version: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Converts to the public record.
    pub fn into_record(self) -> Result<FlowRecord> {
        Ok(FlowRecord {
            name: name(&self.name)?,
            disabled: flag(self.disabled),
            live_version: self.live_version.map(|v| v.max(0) as u32),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}
