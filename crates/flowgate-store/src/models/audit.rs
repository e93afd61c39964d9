//! Row model of the `audit` table.

use diesel::prelude::*;

use crate::schema::audit;
use crate::types::AuditEntry;

/// An `audit` row (a UUIDv7 id carrying the entry's time, so id order is time order).
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
    /// The row for an entry, with a fresh id whose timestamp is the
    /// entry's time: a range of times is a range of the primary key, read
    /// from [`super::uuid_v7_floor`] (no index of its own on `time`).
    pub fn from_entry(e: &AuditEntry) -> Self {
        let random = uuid::Uuid::new_v4();
        let id = uuid::Builder::from_unix_timestamp_millis(
            u64::try_from(e.time).unwrap_or(0),
            random.as_bytes()[..10].try_into().unwrap_or(&[0; 10]),
        )
        .into_uuid();
        Self {
            id: id.to_string(),
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

/// How much later than its time an entry written before ids carried the
/// time may have got its id (never earlier: the request's duration and the
/// audit writer's batching); an upper bound on times is widened by this for
/// the id range.
pub const ID_LAG_MS: i64 = 60 * 60 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entrys_id_falls_in_the_range_of_its_time() {
        for time in [0, 1, 1_700_000_000_123, 1_700_000_000_999] {
            for _ in 0..50 {
                let row = AuditRow::from_entry(&AuditEntry {
                    time,
                    request_id: "r".into(),
                    caller: None,
                    flow: None,
                    version: None,
                    method: "GET".into(),
                    path: "/".into(),
                    status: 200,
                    duration_ms: 1,
                    idempotency_key: None,
                });
                // Compared as text, as both databases compare the column.
                assert!(
                    row.id >= crate::models::uuid_v7_floor(time),
                    "{} < floor of {time}",
                    row.id
                );
                assert!(
                    row.id < crate::models::uuid_v7_floor(time + 1),
                    "{} ≥ floor of {}",
                    row.id,
                    time + 1
                );
            }
        }
    }
}
