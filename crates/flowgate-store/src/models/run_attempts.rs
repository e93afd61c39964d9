//! Row model of the `run_attempts` table.

use diesel::prelude::*;

use crate::schema::run_attempts;
use crate::types::RunAttempt;

/// A `run_attempts` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = run_attempts)]
#[diesel(treat_none_as_default_value = false)]
pub struct RunAttemptRow {
    pub run_id: String,
    pub attempt: i32,
    pub owner: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: Option<String>,
    pub error: Option<String>,
}

impl RunAttemptRow {
    /// Converts to the public attempt.
    pub fn into_attempt(self) -> RunAttempt {
        RunAttempt {
            attempt: self.attempt.max(0) as u32,
            owner: self.owner,
            started_at: self.started_at,
            finished_at: self.finished_at,
            outcome: self.outcome,
            error: self.error,
        }
    }
}
