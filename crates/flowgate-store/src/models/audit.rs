//! Row model of the `audit` table.

use diesel::prelude::*;

use crate::schema::audit;
use crate::types::AuditEntry;

/// An `audit` row (UUIDv7 id, so id order is insertion order).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit)]
#[diesel(treat_none_as_default_value = false)]
pub struct AuditRow {
    pub id: String,
    pub time: i64,
    pub request_id: String,
    pub caller: Option<String>,
    pub flow: Option<String>,
    pub version: Option<i32>,
    pub method: String,
    pub path: String,
    pub status: i32,
    pub duration_ms: i64,
    pub idempotency_key: Option<String>,
}

impl crate::conn::InsertRow for AuditRow {
    const INSERT: &'static str = "INSERT INTO audit (id, \"time\", request_id, caller, flow, \
        version, method, path, status, duration_ms, idempotency_key) VALUES ";

    fn columns(&self) -> impl Iterator<Item = crate::conn::Col<'_>> {
        use crate::conn::Col::*;
        [
            Text(&self.id),
            Big(&self.time),
            Text(&self.request_id),
            TextOpt(&self.caller),
            TextOpt(&self.flow),
            IntOpt(&self.version),
            Text(&self.method),
            Text(&self.path),
            Int(&self.status),
            Big(&self.duration_ms),
            TextOpt(&self.idempotency_key),
        ]
        .into_iter()
    }
}

impl AuditRow {
    /// The row for an entry, with a fresh id.
    pub fn from_entry(e: &AuditEntry) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            time: e.time,
            request_id: e.request_id.clone(),
            caller: e.caller.clone(),
            flow: e.flow.clone(),
            version: e.version.map(|v| v as i32),
            method: e.method.clone(),
            path: e.path.clone(),
            status: i32::from(e.status),
            duration_ms: e.duration_ms,
            idempotency_key: e.idempotency_key.clone(),
        }
    }

    /// Converts to the public entry.
    pub fn into_entry(self) -> AuditEntry {
        AuditEntry {
            time: self.time,
            request_id: self.request_id,
            caller: self.caller,
            flow: self.flow,
            version: self.version.map(|v| v.max(0) as u32),
            method: self.method,
            path: self.path,
            status: u16::try_from(self.status).unwrap_or(0),
            duration_ms: self.duration_ms,
            idempotency_key: self.idempotency_key,
        }
    }
}
