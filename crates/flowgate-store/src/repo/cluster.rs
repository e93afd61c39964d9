//! Cluster membership: node rows refreshed by heartbeats, the runs each node
//! holds, and the early release of the leases of nodes that stopped
//! heartbeating.

use diesel::prelude::*;

use flowgate_core::EpochMs;

use crate::conn::{write_tx, AnyConnection};
use crate::error::Result;
use crate::models::idempotency::IN_FLIGHT;
use crate::repo::runs::status_sql;
use crate::schema::{idempotency, nodes, rate_windows, runs};
use crate::types::NodeRecord;
use crate::Store;

type NodeRow = (String, String, i64, i64, Option<i64>);

fn record((id, version, started_at, last_heartbeat, stopped_at): NodeRow) -> NodeRecord {
    NodeRecord {
        id,
        version,
        started_at,
        last_heartbeat,
        stopped_at,
    }
}

/// Inserts the node's row or, for a node id seen before, starts it afresh.
fn upsert_node(c: &mut AnyConnection, id: &str, version: &str, now: EpochMs) -> Result<()> {
    let n = diesel::update(nodes::table.find(id))
        .set((
            nodes::version.eq(version),
            nodes::started_at.eq(now),
            nodes::last_heartbeat.eq(now),
            nodes::stopped_at.eq(None::<i64>),
        ))
        .execute(c)?;
    if n == 0 {
        diesel::insert_into(nodes::table)
            .values((
                nodes::id.eq(id),
                nodes::version.eq(version),
                nodes::started_at.eq(now),
                nodes::last_heartbeat.eq(now),
                nodes::stopped_at.eq(None::<i64>),
            ))
            .execute(c)?;
    }
    Ok(())
}

impl Store {
    /// The time heartbeats are written and judged in: the database server's
    /// clock on PostgreSQL (so nodes with skewed clocks agree on who is
    /// gone), this machine's on SQLite.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn clock_ms(&self) -> Result<EpochMs> {
        let mut c = self.conn()?;
        match &mut *c {
            AnyConnection::Postgres(pg) => Ok(diesel::select(diesel::dsl::sql::<
                diesel::sql_types::BigInt,
            >(
                "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
            ))
            .get_result(pg)?),
            AnyConnection::Sqlite(_) => Ok(flowgate_core::now_ms()),
        }
    }

    /// Records that node `id` (running `version`) starts now. Runs a previous
    /// process with the same id still held are released at once (this
    /// process holds none of them), so they are claimed again without waiting
    /// for their leases. Returns how many were released.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(node.id = id))]
    pub fn register_node(&self, id: &str, version: &str, now: EpochMs) -> Result<usize> {
        let (id, version) = (id.to_owned(), version.to_owned());
        self.write(move |c| {
            upsert_node(c, &id, &version, now)?;
            let released = diesel::update(
                runs::table
                    .filter(status_sql::running())
                    .filter(runs::lease_owner.eq(&id))
                    .filter(runs::lease_expires_at.gt(now)),
            )
            // Expired for every clock: claimable on the next claim of any node.
            .set(runs::lease_expires_at.eq(0i64))
            .execute(c)?;
            // Nor does it answer the requests the previous process started:
            // their retries run again now.
            diesel::delete(
                idempotency::table
                    .filter(idempotency::state.eq(IN_FLIGHT))
                    .filter(idempotency::owner.eq(&id)),
            )
            .execute(c)?;
            Ok(released)
        })
    }

    /// One heartbeat of node `id`: refreshes its row (re-creating it when it
    /// was pruned), then expires the leases still held by nodes whose last
    /// heartbeat is older than `gone_before` or that stopped, so their runs
    /// are claimed again now instead of when each lease would end. Returns
    /// how many leases were released.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(node.id = id))]
    pub fn heartbeat_node(
        &self,
        id: &str,
        version: &str,
        now: EpochMs,
        gone_before: EpochMs,
    ) -> Result<usize> {
        let (id, version) = (id.to_owned(), version.to_owned());
        self.write(move |c| {
            let n = diesel::update(nodes::table.find(&id))
                .set((
                    nodes::last_heartbeat.eq(now),
                    nodes::stopped_at.eq(None::<i64>),
                ))
                .execute(c)?;
            if n == 0 {
                upsert_node(c, &id, &version, now)?;
            }
            let gone: Vec<String> = nodes::table
                .filter(nodes::id.ne(&id))
                .filter(
                    nodes::last_heartbeat
                        .lt(gone_before)
                        .or(nodes::stopped_at.is_not_null()),
                )
                .select(nodes::id)
                .load(c)?;
            if gone.is_empty() {
                return Ok(0);
            }
            let released = diesel::update(
                runs::table
                    .filter(status_sql::running())
                    .filter(runs::lease_expires_at.gt(now))
                    .filter(runs::lease_owner.eq_any(&gone)),
            )
            // Expired for every clock: claimable on the next claim of any node.
            .set(runs::lease_expires_at.eq(0i64))
            .execute(c)?;
            // Requests a gone node had started and never answered: a retry
            // (on any node) runs them again now, instead of getting 409 until
            // the record goes stale.
            diesel::delete(
                idempotency::table
                    .filter(idempotency::state.eq(IN_FLIGHT))
                    .filter(idempotency::owner.eq_any(&gone)),
            )
            .execute(c)?;
            Ok(released)
        })
    }

    /// Records a clean stop of node `id` (it is shown as gone at once).
    #[tracing::instrument(skip_all, err(level = "debug"), fields(node.id = id))]
    pub fn stop_node(&self, id: &str, now: EpochMs) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            diesel::update(nodes::table.find(&id))
                .set(nodes::stopped_at.eq(Some(now)))
                .execute(c)?;
            Ok(())
        })
    }

    /// Forgets nodes whose last heartbeat is older than `before`.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn prune_nodes(&self, before: EpochMs) -> Result<usize> {
        self.write(move |c| {
            Ok(diesel::delete(nodes::table.filter(nodes::last_heartbeat.lt(before))).execute(c)?)
        })
    }

    /// Every known node, by id.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        let mut c = self.conn()?;
        let rows: Vec<NodeRow> = nodes::table
            .order(nodes::id.asc())
            .select((
                nodes::id,
                nodes::version,
                nodes::started_at,
                nodes::last_heartbeat,
                nodes::stopped_at,
            ))
            .load(&mut *c)?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// How many running runs each lease owner holds (owners without runs are omitted).
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn leased_runs_by_node(&self) -> Result<Vec<(String, u64)>> {
        let mut c = self.conn()?;
        let rows: Vec<(Option<String>, i64)> = runs::table
            .filter(status_sql::running())
            .group_by(runs::lease_owner)
            .select((runs::lease_owner, diesel::dsl::count_star()))
            .load(&mut *c)?;
        Ok(rows
            .into_iter()
            .filter_map(|(o, n)| Some((o?, n.max(0) as u64)))
            .collect())
    }

    /// Takes up to `want` calls from the shared budget of `(flow, caller)` in
    /// the fixed window starting at `window_start`, which allows `limit` calls
    /// in all. Returns `(granted, used)`: how many calls this node may admit
    /// now (0 when the window is spent) and the window's total after the grant.
    /// Every node's grants together never exceed `limit`.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = flow, want))]
    pub fn take_rate_allowance(
        &self,
        flow: &str,
        caller: &str,
        window_start: EpochMs,
        limit: u64,
        want: u64,
    ) -> Result<(u64, u64)> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let want = i64::try_from(want).unwrap_or(i64::MAX).max(1);
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            let key = rate_windows::table.find((flow, caller, window_start));
            let row = (
                rate_windows::flow.eq(flow),
                rate_windows::caller.eq(caller),
                rate_windows::window_start.eq(window_start),
                rate_windows::used.eq(0i64),
            );
            match c {
                AnyConnection::Postgres(pg) => {
                    diesel::insert_into(rate_windows::table)
                        .values(row)
                        .on_conflict_do_nothing()
                        .execute(pg)?;
                }
                AnyConnection::Sqlite(sq) => {
                    diesel::insert_into(rate_windows::table)
                        .values(row)
                        .on_conflict_do_nothing()
                        .execute(sq)?;
                }
            }
            // Takes the row lock (PostgreSQL) before reading, so concurrent
            // grants of other nodes queue behind this one.
            diesel::update(key)
                .set(rate_windows::used.eq(rate_windows::used))
                .execute(c)?;
            let used: i64 = key.select(rate_windows::used).first(c)?;
            let granted = want.min(limit - used).max(0);
            if granted > 0 {
                diesel::update(key)
                    .set(rate_windows::used.eq(used + granted))
                    .execute(c)?;
            }
            Ok((granted as u64, (used + granted) as u64))
        })
    }

    /// Forgets shared rate windows that started before `before`.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn prune_rate_windows(&self, before: EpochMs) -> Result<usize> {
        let mut c = self.conn()?;
        Ok(
            diesel::delete(rate_windows::table.filter(rate_windows::window_start.lt(before)))
                .execute(&mut *c)?,
        )
    }
}
