//! Retention: deletes finished runs (with their logs and attempts), audit
//! entries, dispatched events and schedule ticks older than a cutoff, in
//! bounded batches so housekeeping never holds a long write lock.

use diesel::prelude::*;

use flowgate_core::EpochMs;

use crate::conn::write_tx;
use crate::error::Result;
use crate::schema::{audit, events, run_attempts, run_logs, runs, schedule_ticks};
use crate::Store;

/// Statuses a run can be purged in (never queued or running).
const FINISHED: [&str; 3] = ["succeeded", "failed", "dead"];

impl Store {
    /// Deletes at most `limit` finished runs that ended before `before`, with
    /// their logs and attempts; returns how many runs were deleted. Only
    /// runs whose id (made when the run was) is older than `before` are
    /// looked at: on one clock, every run that ended before it.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn purge_finished_runs(&self, before: EpochMs, limit: usize) -> Result<usize> {
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            // A run's id carries the time it was made, before it finished:
            // the id range bounds the scan to runs made before `before`.
            let ids: Vec<String> = runs::table
                .filter(runs::id.lt(crate::models::uuid_v7_floor(before)))
                .filter(runs::status.eq_any(FINISHED))
                .filter(runs::finished_at.lt(before))
                .select(runs::id)
                .limit(limit.clamp(1, 10_000) as i64)
                .load(c)?;
            if ids.is_empty() {
                return Ok(0);
            }
            diesel::delete(run_logs::table.filter(run_logs::run_id.eq_any(&ids))).execute(c)?;
            diesel::delete(run_attempts::table.filter(run_attempts::run_id.eq_any(&ids)))
                .execute(c)?;
            Ok(diesel::delete(runs::table.filter(runs::id.eq_any(&ids))).execute(c)?)
        })
    }

    /// Deletes at most `limit` audit entries older than `before`.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn purge_audit(&self, before: EpochMs, limit: usize) -> Result<usize> {
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            let ids: Vec<String> = audit::table
                .filter(audit::id.lt(crate::models::uuid_v7_floor(
                    before.saturating_add(crate::models::audit::ID_LAG_MS),
                )))
                .filter(audit::time.lt(before))
                .select(audit::id)
                .limit(limit.clamp(1, 10_000) as i64)
                .load(c)?;
            if ids.is_empty() {
                return Ok(0);
            }
            Ok(diesel::delete(audit::table.filter(audit::id.eq_any(&ids))).execute(c)?)
        })
    }

    /// Deletes at most `limit` events that were dispatched before `before`
    /// (pending events are never deleted), and schedule ticks due before it.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn purge_dispatched_events(&self, before: EpochMs, limit: usize) -> Result<usize> {
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            let ids: Vec<String> = events::table
                .filter(events::dispatched_at.lt(before))
                .select(events::id)
                .limit(limit.clamp(1, 10_000) as i64)
                .load(c)?;
            let n = if ids.is_empty() {
                0
            } else {
                diesel::delete(events::table.filter(events::id.eq_any(&ids))).execute(c)?
            };
            let ticks: Vec<(String, i64)> = schedule_ticks::table
                .filter(schedule_ticks::due_at.lt(before))
                .select((schedule_ticks::flow, schedule_ticks::due_at))
                .limit(limit.clamp(1, 10_000) as i64)
                .load(c)?;
            for (flow, due) in ticks {
                diesel::delete(
                    schedule_ticks::table
                        .filter(schedule_ticks::flow.eq(flow))
                        .filter(schedule_ticks::due_at.eq(due)),
                )
                .execute(c)?;
            }
            Ok(n)
        })
    }
}
