//! Runs, their logs and attempts, and the durable queue built on the `runs` table.
//!
//! Queue protocol: `enqueue` → `claim_next` (lease) → `renew_lease`* →
//! `complete_run` / `finish_run_with_events` / `retry_run` / `mark_dead`, or
//! `release_run` on shutdown. A lease that expires (the worker died) makes the run
//! claimable again with `attempt + 1`; when no attempt is left it becomes `dead`
//! and a `flow.run_failed` event is stored in the same transaction.

use diesel::prelude::*;
use serde_json::json;

use flowgate_core::event::{types, Event};
use flowgate_core::run::{LogLine, RunStatus};
use flowgate_core::{now_ms, EpochMs, FlowName, RunId};

use crate::conn::{batch_insert_rows, fixed_sql, AnyConnection, Bind, Fixed};
use crate::error::{Result, StoreError};
use crate::models::run_attempts::RunAttemptRow;
use crate::models::run_logs::RunLogRow;
use crate::models::runs::RunRow;
use crate::repo::events::insert_events_tx;
use crate::repo::flows::page;
use crate::schema::{run_attempts, run_logs, runs};
use crate::types::{Page, Run, RunAttempt, RunDetail, RunFilter, RunOutcome};
use crate::writer::RunRecord;
use crate::{Committed, Store};

fixed_sql!(
    /// The run lifecycle's updates as [`Fixed`] statements, prepared once per
    /// connection (diesel parses each `diesel::update` again on every call).
    Claim,
    [
        "UPDATE runs SET status = 'running', attempt = ",
        ", lease_owner = ",
        ", lease_expires_at = ",
        ", started_at = ",
        " WHERE id = ",
        "",
    ]
);
fixed_sql!(
    /// See [`Claim`]: a run's outcome, if its lease is still the worker's;
    /// the lease ends with it. The owner stays: it names the worker that ran
    /// the last attempt, which the run's own row describes (see [`last_attempt`]).
    Finish,
    [
        "UPDATE runs SET status = ",
        ", finished_at = ",
        ", duration_ms = ",
        ", response_status = ",
        ", response = ",
        ", error = ",
        ", http_calls = ",
        ", lease_expires_at = NULL WHERE id = ",
        " AND lease_owner = ",
        " AND status = 'running'",
    ]
);

const QUEUED: &str = "queued";
const RUNNING: &str = "running";
/// Owner recorded for attempts of synchronous runs inserted after the fact.
const SYNC_OWNER: &str = "sync";

/// Conditions on a run's status written as SQL literals. A bound status
/// cannot use a partial index (the database cannot prove the index's
/// condition from a parameter); these can. `runs_unsettled` holds every run
/// but the succeeded ones (most of them, and none is ever looked up by that
/// status), so recording a succeeded run inserts into one index less;
/// `runs_lease_due` holds the running ones.
pub(crate) mod status_sql {
    use diesel::expression::SqlLiteral;
    use diesel::sql_types::Bool;

    /// `status <> 'succeeded'`: lets a query by another status use `runs_unsettled`.
    pub(crate) fn unsettled() -> SqlLiteral<Bool> {
        diesel::dsl::sql::<Bool>("runs.status <> 'succeeded'")
    }

    /// `status = 'running'`, through `runs_lease_due`.
    pub(crate) fn running() -> SqlLiteral<Bool> {
        diesel::dsl::sql::<Bool>("runs.status = 'running'")
    }

    /// `status IN ('queued', 'running')`, through `runs_unsettled`.
    pub(crate) fn active() -> SqlLiteral<Bool> {
        diesel::dsl::sql::<Bool>(
            "runs.status IN ('queued', 'running') AND runs.status <> 'succeeded'",
        )
    }
}

/// Refuses a run that is not fresh in the queue (queued, attempt 0, no lease).
pub(crate) fn check_enqueueable(run: &Run) -> Result<()> {
    if run.status != RunStatus::Queued || run.attempt != 0 || run.lease_owner.is_some() {
        return Err(StoreError::Invalid(
            "an enqueued run must be queued, attempt 0, without a lease".into(),
        ));
    }
    Ok(())
}

/// Inserts a run's row alone (a queued run has no attempt and no logs yet),
/// built by the caller's thread so the writer only binds it.
pub(crate) fn insert_row_tx(c: &mut AnyConnection, row: &RunRow) -> Result<()> {
    batch_insert_rows!(&mut *c, runs::table, std::slice::from_ref(row));
    Ok(())
}

/// The row of a run to queue, refused unless it is fresh in the queue (see
/// [`check_enqueueable`]).
pub(crate) fn queued_row(run: &Run) -> Result<RunRow> {
    check_enqueueable(run)?;
    RunRow::from_run(run)
}

/// The row of a new run: fresh in the queue ([`queued_row`]) or started by
/// its worker ([`started_row`]).
pub(crate) fn new_run_row(run: &Run) -> Result<RunRow> {
    if run.status == RunStatus::Running {
        started_row(run)
    } else {
        queued_row(run)
    }
}

/// The row of a run queued already started by its worker, refused unless a
/// first claim could have left it so: `running`, attempt 1, leased, started.
pub(crate) fn started_row(run: &Run) -> Result<RunRow> {
    let started = run.status == RunStatus::Running
        && run.attempt == 1
        && run.lease_owner.is_some()
        && run.lease_expires_at.is_some()
        && run.started_at.is_some();
    if !started {
        return Err(StoreError::Invalid(
            "a started run must be running, attempt 1, leased and started".into(),
        ));
    }
    RunRow::from_run(run)
}

/// Inserts a run row plus logs. Its attempt is in the row (see [`last_attempt`]).
pub(crate) fn insert_run_tx(c: &mut AnyConnection, run: &Run, logs: &[LogLine]) -> Result<()> {
    let row = RunRow::from_run(run)?;
    insert_row_tx(c, &row)?;
    append_logs_tx(c, &row.id, run.attempt, logs)
}

/// The attempt a run's own row describes: its latest, running or ended with
/// the run. Only attempts that ended otherwise (a retry, an expired lease)
/// get a `run_attempts` row, written when they end: a run that succeeds at
/// its first try writes no attempt row at all, and
/// [`Store::get_run`] shows its attempt from here.
fn last_attempt(run: &Run) -> Option<RunAttemptRow> {
    let started = run.started_at.filter(|_| run.attempt >= 1)?;
    let ended = run.status.is_final();
    Some(RunAttemptRow {
        run_id: run.id.to_string(),
        attempt: run.attempt as i32,
        owner: run
            .lease_owner
            .clone()
            .unwrap_or_else(|| SYNC_OWNER.to_owned()),
        started_at: started,
        finished_at: run.finished_at.filter(|_| ended),
        outcome: ended.then(|| run.status.as_str().to_owned()),
        error: run.error.clone().filter(|_| ended),
    })
}

/// The attempts of `run`: the rows of those that ended without ending the
/// run, then the one its own row describes ([`last_attempt`]). A row written
/// for the latest attempt (by a version that wrote one per claim, or for an
/// expired lease) is kept, and completed from the run's row if it ended with
/// the run while still open.
fn attempts_of(run: &Run, rows: Vec<RunAttemptRow>) -> Vec<RunAttempt> {
    let mut rows = rows;
    if let Some(last) = last_attempt(run) {
        match rows.iter_mut().find(|r| r.attempt == last.attempt) {
            Some(r) if r.outcome.is_none() && last.outcome.is_some() => {
                r.finished_at = last.finished_at;
                r.outcome = last.outcome;
                r.error = last.error;
            }
            Some(_) => {}
            None => rows.push(last),
        }
    }
    rows.sort_by_key(|r| r.attempt);
    rows.into_iter().map(RunAttemptRow::into_attempt).collect()
}

/// Inserts many new runs (records of finished sync runs, see
/// [`Store::record_run`]) with one multi-row insert per table: their rows and
/// logs. Their one attempt is not written: it is all in the run's row, and
/// [`Store::get_run`] shows it from there. All or nothing: the caller runs it
/// in a savepoint.
pub(crate) fn insert_runs_tx(
    c: &mut AnyConnection,
    rows: &[RunRow],
    logs: &[RunLogRow],
) -> Result<()> {
    /// Rows per statement, under SQLite's and PostgreSQL's bound-parameter limits.
    const CHUNK: usize = 500;
    for chunk in rows.chunks(CHUNK) {
        batch_insert_rows!(&mut *c, runs::table, chunk);
    }
    for chunk in logs.chunks(CHUNK) {
        batch_insert_rows!(&mut *c, run_logs::table, chunk);
    }
    Ok(())
}

/// The rows of a finished run that nobody waits for (see [`Store::record_run`]).
fn run_record(run: &Run, logs: Vec<LogLine>) -> Result<RunRecord> {
    let row = RunRow::from_run(run)?;
    let attempt = run.attempt as i32;
    let logs = logs
        .into_iter()
        .enumerate()
        .map(|(i, l)| RunLogRow {
            run_id: row.id.clone(),
            seq: 1 + i as i32,
            time: l.time,
            level: l.level.as_str().to_owned(),
            message: l.message,
            attempt,
        })
        .collect();
    Ok(RunRecord {
        row,
        logs,
        done: None,
    })
}

fn append_logs_tx(
    c: &mut AnyConnection,
    run_id: &str,
    attempt: u32,
    logs: &[LogLine],
) -> Result<()> {
    if logs.is_empty() {
        return Ok(());
    }
    let max: Option<i32> = run_logs::table
        .filter(run_logs::run_id.eq(run_id))
        .select(diesel::dsl::max(run_logs::seq))
        .first(c)?;
    let start = max.unwrap_or(0);
    let rows: Vec<RunLogRow> = logs
        .iter()
        .enumerate()
        .map(|(i, l)| RunLogRow {
            run_id: run_id.to_owned(),
            seq: start + 1 + i as i32,
            time: l.time,
            level: l.level.as_str().to_owned(),
            message: l.message.clone(),
            attempt: attempt as i32,
        })
        .collect();
    for chunk in rows.chunks(500) {
        batch_insert_rows!(&mut *c, run_logs::table, chunk);
    }
    Ok(())
}

/// Writes the row of an attempt that ended without ending its run: `outcome`
/// is `retry` or `lease_expired`. `owner` and `started_at` come from the
/// run's row as the attempt left it. Replaces the open row a version that
/// wrote one per claim left for it.
fn end_attempt(c: &mut AnyConnection, row: RunAttemptRow) -> Result<()> {
    use diesel::upsert::excluded;
    let rows = std::slice::from_ref(&row);
    macro_rules! upsert {
        ($conn:expr) => {
            diesel::insert_into(run_attempts::table)
                .values(rows)
                .on_conflict((run_attempts::run_id, run_attempts::attempt))
                .do_update()
                .set((
                    run_attempts::finished_at.eq(excluded(run_attempts::finished_at)),
                    run_attempts::outcome.eq(excluded(run_attempts::outcome)),
                    run_attempts::error.eq(excluded(run_attempts::error)),
                ))
                .execute($conn)?
        };
    }
    match c {
        AnyConnection::Postgres(pg) => upsert!(pg),
        AnyConnection::Sqlite(sq) => upsert!(sq),
    };
    Ok(())
}

/// The row of attempt `attempt` of run `run_id`, ended at `now` with `outcome`.
fn ended_attempt(
    run_id: &str,
    attempt: i32,
    owner: &str,
    started_at: Option<EpochMs>,
    now: EpochMs,
    outcome: &str,
    error: &str,
) -> RunAttemptRow {
    RunAttemptRow {
        run_id: run_id.to_owned(),
        attempt,
        owner: owner.to_owned(),
        started_at: started_at.unwrap_or(now),
        finished_at: Some(now),
        outcome: Some(outcome.to_owned()),
        error: Some(error.to_owned()),
    }
}

fn load_run(c: &mut AnyConnection, id: &str) -> Result<Option<Run>> {
    runs::table
        .find(id)
        .select(RunRow::as_select())
        .first(c)
        .optional()?
        .map(RunRow::into_run)
        .transpose()
}

/// The current attempt of a run still leased by `owner`, and when it started;
/// `None` when the lease is lost.
/// Runs on the concrete connection, where diesel caches the prepared
/// statement by its type (through [`AnyConnection`] it builds the SQL text
/// again on every call to look the statement up): every retry and release
/// asks it.
fn owned_attempt(
    c: &mut AnyConnection,
    id: &str,
    owner: &str,
) -> Result<Option<(i32, Option<EpochMs>)>> {
    let q = runs::table
        .find(id)
        .filter(runs::lease_owner.eq(owner))
        .filter(runs::status.eq(RUNNING))
        .select((runs::attempt, runs::started_at));
    Ok(match c {
        AnyConnection::Sqlite(sq) => q.first(sq).optional()?,
        AnyConnection::Postgres(pg) => q.first(pg).optional()?,
    })
}

/// The oldest run in a status whose `due` column is at or before `now`.
/// The status is an SQL literal (`runs.status = 'queued'`), not a bound
/// parameter: only then can the databases use the partial indexes
/// `runs_due` and `runs_lease_due`, which hold no finished run.
macro_rules! claim_due {
    ($status_sql:literal, $due:expr, $now:expr, $limit:expr) => {
        runs::table
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>($status_sql))
            .filter($due.le($now))
            .order((runs::available_at.asc(), runs::id.asc()))
            .select(RunRow::as_select())
            .limit($limit)
    };
}

/// [`claim_due!`] on SQLite: a fixed statement through a named partial index,
/// with `now` as its only bound value. Unlike `sql_query` (and `dsl::sql`),
/// which diesel prepares again on every call, it is safe to cache, so each
/// connection parses it once.
#[derive(Debug, Clone, Copy)]
struct DueSqlite {
    /// The statement up to `<= `; ends with the bound `now`.
    head: &'static str,
    now: EpochMs,
    /// Most rows returned.
    limit: i64,
}

/// Every column of `runs`, in the order of `schema.rs` and [`RunRow`]: a
/// claim reads the whole row once and builds the claimed run from it.
macro_rules! run_columns {
    () => {
        "id, flow, version, trigger_kind, status, attempt, max_attempts, input, \
         available_at, lease_owner, lease_expires_at, started_at, finished_at, \
         duration_ms, response_status, response, error, scheduled_at, event_id, \
         idempotency_key, created_at, http_calls"
    };
}

/// Queued runs available at `now`, through `runs_due`.
const DUE_QUEUED: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs INDEXED BY runs_due WHERE status = 'queued' AND available_at <= "
);
/// Running runs whose lease expired by `now`, through `runs_lease_due`.
const DUE_EXPIRED: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs INDEXED BY runs_lease_due WHERE status = 'running' AND lease_expires_at <= "
);

impl diesel::query_builder::QueryId for DueSqlite {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for DueSqlite {
    type SqlType = runs::SqlType;
}

impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite> for DueSqlite {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>,
    ) -> QueryResult<()> {
        out.push_sql(self.head);
        out.push_bind_param::<diesel::sql_types::BigInt, _>(&self.now)?;
        out.push_sql(" ORDER BY available_at, id LIMIT ");
        out.push_bind_param::<diesel::sql_types::BigInt, _>(&self.limit)?;
        Ok(())
    }
}

impl<C> RunQueryDsl<C> for DueSqlite {}

fn due_sqlite(
    c: &mut diesel::SqliteConnection,
    head: &'static str,
    now: EpochMs,
    limit: i64,
) -> Result<Vec<RunRow>> {
    Ok(DueSqlite { head, now, limit }.load(c)?)
}

/// The `n` oldest due runs: queued and available, or running with an
/// expired lease, in the order they became available. Two queries, one per
/// index (`runs_due`, `runs_lease_due`): one query with `OR` over both made
/// SQLite read and sort every queued run for each claim.
fn next_candidates(c: &mut AnyConnection, now: EpochMs, n: usize) -> Result<Vec<RunRow>> {
    let limit = i64::try_from(n).unwrap_or(i64::MAX);
    let (queued, expired): (Vec<RunRow>, Vec<RunRow>) = match c {
        AnyConnection::Postgres(pg) => (
            claim_due!("runs.status = 'queued'", runs::available_at, now, limit)
                .for_update()
                .skip_locked()
                .load(pg)?,
            claim_due!(
                "runs.status = 'running'",
                runs::lease_expires_at,
                now,
                limit
            )
            .for_update()
            .skip_locked()
            .load(pg)?,
        ),
        // SQLite: the caller holds the write lock (BEGIN IMMEDIATE), so plain
        // reads are already exclusive among claimers. Without statistics its
        // planner prefers `runs_status_id` (every queued run, then a sort),
        // so the partial indexes are named.
        AnyConnection::Sqlite(sq) => (
            due_sqlite(sq, DUE_QUEUED, now, limit)?,
            due_sqlite(sq, DUE_EXPIRED, now, limit)?,
        ),
    };
    let mut all: Vec<RunRow> = queued.into_iter().chain(expired).collect();
    all.sort_by(|a, b| (a.available_at, &a.id).cmp(&(b.available_at, &b.id)));
    all.truncate(n);
    Ok(all)
}

/// Claims up to `n` due runs for `owner` (see [`Store::submit_claims`]).
/// Bounded: each pass claims, or moves runs whose last lease expired to
/// `dead`; it reads again only when a pass moved some.
fn claim_tx(
    c: &mut AnyConnection,
    owner: &str,
    lease_ms: i64,
    now: EpochMs,
    n: usize,
) -> Result<Vec<Run>> {
    let mut claimed = Vec::with_capacity(n.min(64));
    for _ in 0..32 {
        let want = n - claimed.len();
        if want == 0 {
            break;
        }
        let candidates = next_candidates(c, now, want)?;
        let found = candidates.len();
        let mut buried = false;
        for mut row in candidates {
            let (id, attempt, max) = (row.id.clone(), row.attempt, row.max_attempts);
            if row.status == RUNNING {
                let err = format!(
                    "lease of worker `{}` expired during attempt {attempt}",
                    row.lease_owner.as_deref().unwrap_or("?")
                );
                let owner = row.lease_owner.as_deref().unwrap_or("?");
                let ended = ended_attempt(
                    &id,
                    attempt,
                    owner,
                    row.started_at,
                    now,
                    "lease_expired",
                    &err,
                );
                end_attempt(c, ended)?;
                if attempt >= max {
                    let err = format!("{err}; no attempts left");
                    diesel::update(runs::table.find(&id))
                        .set((
                            runs::status.eq(RunStatus::Dead.as_str()),
                            runs::finished_at.eq(now),
                            runs::error.eq(&err),
                            runs::lease_owner.eq(None::<String>),
                            runs::lease_expires_at.eq(None::<i64>),
                        ))
                        .execute(c)?;
                    if let Some(run) = load_run(c, &id)? {
                        let ev = run_failed_event(&run, &err);
                        insert_events_tx(c, &[ev])?;
                    }
                    tracing::warn!(run.id = %id, "run dead after its last lease expired");
                    buried = true;
                    continue;
                }
            }
            let next = attempt + 1;
            Fixed::new(
                Claim,
                [
                    Bind::Int(Some(next)),
                    Bind::Text(Some(owner)),
                    Bind::Big(Some(now + lease_ms)),
                    Bind::Big(Some(now)),
                    Bind::Text(Some(&id)),
                ],
            )
            .run(c)?;
            // The row as `Claim` left it: no second read. The attempt has
            // no row of its own unless it ends without ending the run.
            row.status = RUNNING.to_owned();
            row.attempt = next;
            row.lease_owner = Some(owner.to_owned());
            row.lease_expires_at = Some(now + lease_ms);
            row.started_at = Some(now);
            claimed.push(row.into_claimed_run()?);
        }
        if !buried || found < want {
            break;
        }
    }
    Ok(claimed)
}

impl Store {
    /// Records a run as given (a finished sync run, or any state), with its logs
    /// and the events it emitted, in one transaction.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(run.id = %run.id, flow.name = %run.flow))]
    pub fn insert_run(&self, run: &Run, logs: &[LogLine], events: &[Event]) -> Result<()> {
        self.submit_run(run.clone(), logs.to_vec(), events.to_vec())
            .wait()
    }

    /// Hands a run record (with its logs and the events it emitted) to the
    /// group-committing writer. Nothing of it is durable or visible to other
    /// connections before the returned [`Committed`] resolves.
    pub fn submit_run(&self, run: Run, logs: Vec<LogLine>, events: Vec<Event>) -> Committed<()> {
        self.submit(move |c| {
            insert_run_tx(c, &run, &logs)?;
            insert_events_tx(c, &events)
        })
    }

    /// Records a finished run that nobody waits for (a sync run that emitted
    /// no events and has no idempotency record): it commits with the writes
    /// around it within [`crate::LINGER`], is visible at once to reads
    /// that flush the writer, and is lost if the process dies before that.
    pub fn record_run(&self, run: &Run, logs: Vec<LogLine>) {
        match run_record(run, logs) {
            Ok(record) => self.inner.writer.record_run(record),
            Err(e) => tracing::warn!(error = %e, run.id = %run.id, "a run record was not written"),
        }
    }

    /// Records a finished run (that emitted no events) durably: like
    /// [`Self::record_run`] it shares its batch's multi-row insert, but the
    /// returned [`Committed`] resolves once the commit that holds it is done,
    /// and the batch lingers for company only while the node is busy
    /// ([`crate::URGENT_LINGER`]).
    pub fn submit_record(&self, run: &Run, logs: Vec<LogLine>) -> Committed<()> {
        match run_record(run, logs) {
            Ok(record) => self.inner.writer.record_run_committed(record),
            Err(e) => Committed::failed(e),
        }
    }

    /// Durably queues a run (status must be `queued`, attempt 0); once this
    /// returns the run will reach an end state.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(run.id = %run.id, flow.name = %run.flow))]
    pub fn enqueue(&self, run: &Run) -> Result<RunId> {
        self.submit_enqueue(run.clone()).wait()
    }

    /// Queues a run that starts at once on this node, as a claim would have
    /// left it (`running`, attempt 1, leased by its worker): durable once the
    /// returned [`Committed`] resolves `Ok`, and from then on like any claimed
    /// run (renewed, finished, or claimed again when its lease expires).
    pub fn submit_start(&self, run: Run) -> Committed<RunId> {
        self.submit_row(run.id, started_row(&run))
    }

    /// Inserts a run's `row` through the writer, answering `id`.
    fn submit_row(&self, id: RunId, row: Result<RunRow>) -> Committed<RunId> {
        let row = match row {
            Ok(row) => row,
            Err(e) => return Committed::failed(e),
        };
        self.submit(move |c| {
            insert_row_tx(c, &row)?;
            Ok(id)
        })
    }

    /// Queues a run through the group-committing writer: the run is durable
    /// (and will reach an end state) once the returned [`Committed`] resolves `Ok`.
    pub fn submit_enqueue(&self, run: Run) -> Committed<RunId> {
        self.submit_row(run.id, queued_row(&run))
    }

    /// One run with logs and attempt history, `None` when missing.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(run.id = %id))]
    pub fn get_run(&self, id: RunId) -> Result<Option<RunDetail>> {
        self.flush_writes();
        let mut c = self.conn()?;
        let id = id.to_string();
        let Some(run) = load_run(&mut c, &id)? else {
            return Ok(None);
        };
        let logs = run_logs::table
            .filter(run_logs::run_id.eq(&id))
            .order(run_logs::seq.asc())
            .select(RunLogRow::as_select())
            .load(&mut *c)?
            .into_iter()
            .map(RunLogRow::into_log)
            .collect::<Result<Vec<_>>>()?;
        let attempts = run_attempts::table
            .filter(run_attempts::run_id.eq(&id))
            .order(run_attempts::attempt.asc())
            .select(RunAttemptRow::as_select())
            .load(&mut *c)?;
        let attempts = attempts_of(&run, attempts);
        Ok(Some(RunDetail {
            run,
            logs,
            attempts,
        }))
    }

    /// Runs newest first, optionally by flow and status. `cursor` is the
    /// `next_cursor` of the previous page (a run id); `limit` is clamped to 1..=1000.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn list_runs(
        &self,
        filter: &RunFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Run>> {
        self.flush_writes();
        let limit = limit.clamp(1, 1000);
        let mut q = runs::table
            .select(RunRow::as_select())
            .order(runs::id.desc())
            .limit(limit as i64 + 1)
            .into_boxed();
        if let Some(f) = &filter.flow {
            q = q.filter(runs::flow.eq(f.as_str().to_owned()));
        }
        if let Some(s) = filter.status {
            q = q.filter(runs::status.eq(s.as_str()));
            if s != RunStatus::Succeeded {
                q = q.filter(status_sql::unsettled());
            }
        }
        if let Some(cur) = cursor {
            let cur = RunId::parse(cur)
                .map_err(|_| StoreError::Invalid(format!("bad cursor `{cur}`")))?;
            q = q.filter(runs::id.lt(cur.to_string()));
        }
        let mut c = self.conn()?;
        let rows = q.load(&mut *c)?;
        page(rows, limit, |r| r.id.clone(), RunRow::into_listed_run)
    }

    /// Appends log lines to a run, tagged with `attempt`.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(run.id = %id, lines = logs.len()))]
    pub fn append_logs(&self, id: RunId, attempt: u32, logs: &[LogLine]) -> Result<()> {
        let logs = logs.to_vec();
        self.write(move |c| append_logs_tx(c, &id.to_string(), attempt, &logs))
    }

    /// Claims the oldest runnable run for `owner` with a lease of `lease_ms`:
    /// a queued run with `available_at <= now`, or a running one whose lease
    /// expired (attempt + 1). Returns it as claimed (status running, attempt
    /// incremented), or `None` when nothing is due. PostgreSQL uses
    /// `FOR UPDATE SKIP LOCKED`; SQLite serialises claimers with `BEGIN IMMEDIATE`.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(worker = owner))]
    pub fn claim_next(&self, owner: &str, lease_ms: i64, now: EpochMs) -> Result<Option<Run>> {
        self.submit_claim(owner.to_owned(), lease_ms, now).wait()
    }

    /// [`Store::claim_next`] through the group-committing writer: the claim
    /// holds once the returned [`Committed`] resolves. Claims and enqueues are
    /// committed in arrival order, so neither starves the other.
    pub fn submit_claim(
        &self,
        owner: String,
        lease_ms: i64,
        now: EpochMs,
    ) -> Committed<Option<Run>> {
        self.submit(move |c| Ok(claim_tx(c, &owner, lease_ms, now, 1)?.pop()))
    }

    /// Claims up to `n` runs at once, oldest first, like [`Store::submit_claim`]:
    /// one read of the due runs for all of them, one commit. Fewer than `n`
    /// (possibly none) when fewer are due.
    pub fn submit_claims(
        &self,
        owner: String,
        lease_ms: i64,
        now: EpochMs,
        n: usize,
    ) -> Committed<Vec<Run>> {
        self.submit(move |c| claim_tx(c, &owner, lease_ms, now, n))
    }

    /// Extends the lease to `until`; `false` when `owner` no longer holds it.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(run.id = %id, worker = owner))]
    pub fn renew_lease(&self, id: RunId, owner: &str, until: EpochMs) -> Result<bool> {
        let owner = owner.to_owned();
        self.write(move |c| {
            let n = diesel::update(
                runs::table
                    .find(id.to_string())
                    .filter(runs::lease_owner.eq(&owner))
                    .filter(runs::status.eq(RUNNING)),
            )
            .set(runs::lease_expires_at.eq(until))
            .execute(c)?;
            Ok(n == 1)
        })
    }

    /// Ends a claimed run (succeeded, failed or dead) and stores its logs, if
    /// `owner` still holds the lease; `false` (nothing written) otherwise.
    pub fn complete_run(&self, id: RunId, owner: &str, outcome: &RunOutcome) -> Result<bool> {
        self.finish_run_with_events(id, owner, outcome, &[])
    }

    /// Like [`Store::complete_run`], and stores `events` (emitted by the flow or
    /// about the run) in the same transaction, so they exist exactly when the run
    /// ended. Pass emitted events only when the run succeeded.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(run.id = %id, worker = owner, run.status = outcome.status.as_str()))]
    pub fn finish_run_with_events(
        &self,
        id: RunId,
        owner: &str,
        outcome: &RunOutcome,
        events: &[Event],
    ) -> Result<bool> {
        self.submit_finish(id, owner.to_owned(), outcome.clone(), events.to_vec())
            .wait()
    }

    /// [`Store::finish_run_with_events`] through the group-committing writer:
    /// the outcome holds once the returned [`Committed`] resolves (`false`:
    /// the lease was lost and nothing was written). Async callers await it
    /// without a blocking thread. The outcome may linger up to
    /// [`crate::LINGER`] for company: the claim its freed queue slot makes
    /// next ends the linger and shares its commit, so a busy queue commits
    /// one outcome and one claim together instead of one after the other.
    pub fn submit_finish(
        &self,
        id: RunId,
        owner: String,
        outcome: RunOutcome,
        events: Vec<Event>,
    ) -> Committed<bool> {
        if !outcome.status.is_final() {
            return Committed::failed(StoreError::Invalid(format!(
                "`{}` is not an end state",
                outcome.status.as_str()
            )));
        }
        let encoded = (|| -> Result<_> {
            let response = outcome
                .response
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?;
            let http_calls = outcome
                .http_calls
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?;
            Ok((response, http_calls))
        })();
        let (response, http_calls) = match encoded {
            Ok(e) => e,
            Err(e) => return Committed::failed(e),
        };
        let id = id.to_string();
        self.submit_lazy(move |c| {
            // The lease is checked by the update itself: no row changes when
            // another node took the run over.
            let changed = Fixed::new(
                Finish,
                [
                    Bind::Text(Some(outcome.status.as_str())),
                    Bind::Big(Some(outcome.finished_at)),
                    Bind::Big(Some(outcome.duration_ms)),
                    Bind::Int(outcome.response_status.map(i32::from)),
                    Bind::Text(response.as_deref()),
                    Bind::Text(outcome.error.as_deref()),
                    Bind::Text(http_calls.as_deref()),
                    Bind::Text(Some(&id)),
                    Bind::Text(Some(&owner)),
                ],
            )
            .run(c)?;
            if changed == 0 {
                return Ok(false);
            }
            if !outcome.logs.is_empty() {
                // A finished run keeps its attempt number (and its lease owner).
                let attempt: i32 = runs::table.find(&id).select(runs::attempt).first(c)?;
                append_logs_tx(c, &id, attempt as u32, &outcome.logs)?;
            }
            insert_events_tx(c, &events)?;
            Ok(true)
        })
    }

    /// Puts a claimed run back in the queue after a failed attempt, available
    /// again at `available_at` (the backoff); `false` when the lease was lost.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(run.id = %id, worker = owner))]
    pub fn retry_run(
        &self,
        id: RunId,
        owner: &str,
        available_at: EpochMs,
        error: &str,
        logs: &[LogLine],
    ) -> Result<bool> {
        self.submit_retry(
            id,
            owner.to_owned(),
            available_at,
            error.to_owned(),
            logs.to_vec(),
        )
        .wait()
    }

    /// [`Store::retry_run`] through the group-committing writer; lingers like
    /// [`Store::submit_finish`].
    pub fn submit_retry(
        &self,
        id: RunId,
        owner: String,
        available_at: EpochMs,
        error: String,
        logs: Vec<LogLine>,
    ) -> Committed<bool> {
        let id = id.to_string();
        self.submit_lazy(move |c| {
            let Some((attempt, started_at)) = owned_attempt(c, &id, &owner)? else {
                return Ok(false);
            };
            diesel::update(runs::table.find(&id))
                .set((
                    runs::status.eq(QUEUED),
                    runs::available_at.eq(available_at),
                    runs::error.eq(&error),
                    runs::lease_owner.eq(None::<String>),
                    runs::lease_expires_at.eq(None::<i64>),
                ))
                .execute(c)?;
            let ended = ended_attempt(&id, attempt, &owner, started_at, now_ms(), "retry", &error);
            end_attempt(c, ended)?;
            append_logs_tx(c, &id, attempt as u32, &logs)?;
            Ok(true)
        })
    }

    /// Ends a claimed run as `dead` with `error`; `false` when the lease was lost.
    pub fn mark_dead(&self, id: RunId, owner: &str, error: &str, logs: &[LogLine]) -> Result<bool> {
        let now = now_ms();
        let started = self
            .get_run_row(id)?
            .and_then(|r| r.started_at)
            .unwrap_or(now);
        let outcome = RunOutcome {
            status: RunStatus::Dead,
            finished_at: now,
            duration_ms: now - started,
            response_status: None,
            response: None,
            error: Some(error.to_owned()),
            logs: logs.to_vec(),
            http_calls: None,
        };
        self.complete_run(id, owner, &outcome)
    }

    /// Gives a claimed run back without consuming an attempt (graceful
    /// shutdown); `false` when the lease was lost.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(run.id = %id, worker = owner))]
    pub fn release_run(&self, id: RunId, owner: &str) -> Result<bool> {
        let id = id.to_string();
        let owner = owner.to_owned();
        self.write(move |c| {
            let Some((attempt, _)) = owned_attempt(c, &id, &owner)? else {
                return Ok(false);
            };
            diesel::update(runs::table.find(&id))
                .set((
                    runs::status.eq(QUEUED),
                    runs::attempt.eq((attempt - 1).max(0)),
                    runs::lease_owner.eq(None::<String>),
                    runs::lease_expires_at.eq(None::<i64>),
                ))
                .execute(c)?;
            // Only a version that wrote a row per claim left one here.
            diesel::delete(run_attempts::table.find((&id, attempt))).execute(c)?;
            Ok(true)
        })
    }

    /// Number of runs per status, for metrics (statuses without runs are omitted).
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn queue_depth_by_status(&self) -> Result<Vec<(RunStatus, u64)>> {
        let mut c = self.conn()?;
        let rows: Vec<(String, i64)> = runs::table
            .group_by(runs::status)
            .select((runs::status, diesel::dsl::count_star()))
            .load(&mut *c)?;
        rows.into_iter()
            .map(|(s, n)| Ok((RunStatus::parse(&s)?, n.max(0) as u64)))
            .collect()
    }

    /// How many runs of `flow` are queued or running (for `overlap = "skip"`).
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %flow))]
    pub fn active_runs(&self, flow: &FlowName) -> Result<u64> {
        let mut c = self.conn()?;
        let n: i64 = runs::table
            .filter(runs::flow.eq(flow.as_str()))
            .filter(status_sql::active())
            .count()
            .get_result(&mut *c)?;
        Ok(n.max(0) as u64)
    }

    /// The flows with a run queued or running: one read over the active runs
    /// (through `runs_unsettled`), however long the history of each flow.
    pub fn active_flows(&self) -> Result<std::collections::HashSet<String>> {
        let mut c = self.conn()?;
        let flows: Vec<String> = runs::table
            .filter(status_sql::active())
            .select(runs::flow)
            .distinct()
            .load(&mut *c)?;
        Ok(flows.into_iter().collect())
    }

    fn get_run_row(&self, id: RunId) -> Result<Option<Run>> {
        self.flush_writes();
        let mut c = self.conn()?;
        load_run(&mut c, &id.to_string())
    }
}

/// The `flow.run_failed` event for a run that ended with `error`.
pub fn run_failed_event(run: &Run, error: &str) -> Event {
    Event::new(
        types::RUN_FAILED,
        "flowgate",
        json!({
            "run_id": run.id.to_string(),
            "flow": run.flow.as_str(),
            "version": run.version,
            "status": run.status.as_str(),
            "attempt": run.attempt,
            "error": error,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sqlite::Sqlite;
    use diesel_migrations::MigrationHarness;

    /// The query plan SQLite picks for `q` on the migrated schema (its
    /// parameters unbound: the plan does not depend on them).
    fn plan<Q>(c: &mut diesel::SqliteConnection, q: &Q) -> Vec<String>
    where
        Q: diesel::query_builder::QueryFragment<Sqlite>,
    {
        #[derive(diesel::QueryableByName)]
        struct Step {
            #[diesel(sql_type = diesel::sql_types::Text)]
            detail: String,
        }
        let sql = diesel::debug_query::<Sqlite, _>(q).to_string();
        let sql = sql.split(" -- binds:").next().unwrap_or(&sql);
        let steps: Vec<Step> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
            .load(c)
            .expect("a plan");
        steps.into_iter().map(|s| s.detail).collect()
    }

    #[test]
    fn status_literals_and_id_ranges_use_the_indexes() {
        let mut c = diesel::SqliteConnection::establish(":memory:").expect("in-memory SQLite");
        c.run_pending_migrations(crate::store::SQLITE_MIGRATIONS)
            .expect("migrations");
        let by_status = runs::table
            .filter(runs::status.eq("failed"))
            .filter(status_sql::unsettled())
            .order(runs::id.desc())
            .select(runs::id);
        let p = plan(&mut c, &by_status);
        assert!(p.iter().any(|s| s.contains("runs_unsettled")), "{p:?}");
        let active = runs::table
            .filter(status_sql::active())
            .select(runs::flow)
            .distinct();
        let p = plan(&mut c, &active);
        assert!(p.iter().any(|s| s.contains("runs_unsettled")), "{p:?}");
        let running = runs::table
            .filter(status_sql::running())
            .filter(runs::lease_owner.eq("n"))
            .select(runs::id);
        let p = plan(&mut c, &running);
        assert!(p.iter().any(|s| s.contains("runs_lease_due")), "{p:?}");
        // A bound status cannot prove the index's condition: a full scan.
        let bound = runs::table
            .filter(runs::status.eq("failed"))
            .order(runs::id.desc())
            .select(runs::id);
        let p = plan(&mut c, &bound);
        assert!(!p.iter().any(|s| s.contains("runs_unsettled")), "{p:?}");
        // Audit time ranges read a range of the primary key.
        use crate::schema::audit;
        let since = audit::table
            .filter(audit::id.ge(crate::models::uuid_v7_floor(1_000)))
            .filter(audit::time.ge(1_000i64))
            .order(audit::id.desc())
            .select(audit::id);
        let p = plan(&mut c, &since);
        assert!(p.iter().any(|s| s.contains("PRIMARY KEY")), "{p:?}");
    }
}
