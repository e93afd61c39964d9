//! Row model of the `run_logs` table.

use diesel::prelude::*;

use flowgate_core::run::LogLevel;

use crate::error::Result;
use crate::schema::run_logs;
use crate::types::RunLog;

/// A `run_logs` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = run_logs)]
pub struct RunLogRow {
    pub run_id: String,
    pub seq: i32,
    pub time: i64,
    pub level: String,
    pub message: String,
    pub attempt: i32,
}

impl crate::conn::InsertRow for RunLogRow {
    const INSERT: &'static str =
        "INSERT INTO run_logs (run_id, seq, \"time\", level, message, attempt) VALUES ";

    fn columns(&self) -> impl Iterator<Item = crate::conn::Col<'_>> {
        use crate::conn::Col::*;
        [
            Text(&self.run_id),
            Int(&self.seq),
            Big(&self.time),
            Text(&self.level),
            Text(&self.message),
            Int(&self.attempt),
        ]
        .into_iter()
    }
}

impl RunLogRow {
    /// Converts to the public log line.
    pub fn into_log(self) -> Result<RunLog> {
        Ok(RunLog {
            seq: self.seq.max(0) as u32,
            time: self.time,
            level: LogLevel::parse(&self.level)?,
            message: self.message,
            attempt: self.attempt.max(0) as u32,
        })
    }
}
