//! Row model of the `kv` table.

use diesel::prelude::*;

use crate::schema::kv;

/// A `kv` row (value as JSON text).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = kv)]
#[diesel(treat_none_as_default_value = false)]
pub struct KvRow {
    pub flow: String,
    pub key: String,
    pub value: String,
    pub expires_at: Option<i64>,
    pub updated_at: i64,
}
