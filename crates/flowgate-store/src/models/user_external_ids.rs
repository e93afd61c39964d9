//! Row model of the `user_external_ids` table.

use diesel::prelude::*;
use serde_json::{Map, Value};

use crate::schema::user_external_ids;

/// A `user_external_ids` row: one `external_ids` entry of a user.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = user_external_ids)]
pub struct ExternalIdRow {
    pub system: String,
    pub external_id: String,
    pub user_id: String,
}

/// The index rows for a user's `external_ids` (non-string ids indexed by their JSON text;
/// `null` entries skipped).
pub fn rows_for(user_id: &str, ids: &Map<String, Value>) -> Vec<ExternalIdRow> {
    ids.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(system, v)| ExternalIdRow {
            system: system.clone(),
            external_id: match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            user_id: user_id.to_owned(),
        })
        .collect()
}
