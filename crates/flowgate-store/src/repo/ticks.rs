//! Schedule ticks: each (flow, due time) is handled once cluster-wide.

use diesel::prelude::*;

use flowgate_core::FlowName;

use crate::conn::batch_insert_cached;
use crate::error::{Result, StoreError};
use crate::models::runs::RunRow;
use crate::models::schedule_ticks::TickRow;
use crate::repo::runs::insert_row_tx;
use crate::schema::schedule_ticks;
use crate::types::{Run, Tick};
use crate::{Committed, Store};

impl Store {
    /// Records a tick and, when given, queues its run in the same transaction.
    /// Returns `false` (and queues nothing) when any node already recorded this
    /// (flow, due time): the unique key decides the one winner.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %tick.flow, due_at = tick.due_at))]
    pub fn insert_tick(&self, tick: &Tick, run: Option<&Run>) -> Result<bool> {
        self.submit_tick(tick, run).wait()
    }

    /// [`Self::insert_tick`] handed to the writer without waiting: many ticks
    /// submitted together share one group commit.
    pub fn submit_tick(&self, tick: &Tick, run: Option<&Run>) -> Committed<bool> {
        let row = TickRow::from_tick(tick);
        let run = match run.map(RunRow::from_run).transpose() {
            Ok(row) => row,
            Err(e) => return Committed::failed(e),
        };
        let (flow, due_at) = (tick.flow.as_str().to_owned(), tick.due_at);
        self.submit(move |c| {
            // In its own savepoint: losing the race must not abort the batch.
            let res = c.transaction(|c| {
                batch_insert_cached!(&mut *c, schedule_ticks::table, std::slice::from_ref(&row));
                if let Some(r) = &run {
                    insert_row_tx(c, r)?;
                }
                Ok(())
            });
            match res {
                Ok(()) => Ok(true),
                Err(StoreError::Conflict(_)) => {
                    // Distinguish "tick exists" from a conflicting run id.
                    let exists: i64 = schedule_ticks::table
                        .find((flow.as_str(), due_at))
                        .count()
                        .get_result(c)?;
                    if exists > 0 {
                        Ok(false)
                    } else {
                        Err(StoreError::Conflict("run id already exists".into()))
                    }
                }
                Err(e) => Err(e),
            }
        })
    }

    /// The latest ticks of a flow, newest first.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %flow))]
    pub fn list_ticks(&self, flow: &FlowName, limit: usize) -> Result<Vec<Tick>> {
        let mut c = self.conn()?;
        schedule_ticks::table
            .filter(schedule_ticks::flow.eq(flow.as_str()))
            .order(schedule_ticks::due_at.desc())
            .limit(limit.clamp(1, 1000) as i64)
            .select(TickRow::as_select())
            .load(&mut *c)?
            .into_iter()
            .map(TickRow::into_tick)
            .collect()
    }

    /// The newest tick of a flow (where the scheduler resumes after a restart).
    pub fn latest_tick(&self, flow: &FlowName) -> Result<Option<Tick>> {
        Ok(self.list_ticks(flow, 1)?.into_iter().next())
    }
}
