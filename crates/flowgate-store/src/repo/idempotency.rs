//! Idempotency records: the first request with a key runs, repeats replay its
//! stored response, and a different body with the same key is refused.

use diesel::prelude::*;
use serde_json::Value;

use flowgate_core::{EpochMs, RunId};

use crate::conn::AnyConnection;
use crate::error::{Result, StoreError};
use crate::models::idempotency::{IdempotencyRow, DONE, IN_FLIGHT};
use crate::repo::runs::{insert_row_tx, new_run_row};
use crate::schema::idempotency;
use crate::types::{IdempotencyBegin, Run};
use crate::{Committed, Store};

/// An in-flight record older than this belongs to a request whose process
/// died before it answered (runs last at most 300 s); a new request takes it over.
const IN_FLIGHT_STALE_MS: i64 = 330_000;

impl Store {
    /// Claims `key` (the caller composes it from caller + flow + Idempotency-Key)
    /// for a request whose body hashes to `request_hash`, valid for `ttl_ms`.
    /// Of concurrent begins exactly one gets `Started` (primary-key insert);
    /// an expired record is replaced.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn begin_idempotent(
        &self,
        key: &str,
        request_hash: &str,
        now: EpochMs,
        ttl_ms: i64,
    ) -> Result<IdempotencyBegin> {
        let row = IdempotencyRow {
            scope_key: key.to_owned(),
            request_hash: request_hash.to_owned(),
            state: IN_FLIGHT.to_owned(),
            response: None,
            created_at: now,
            expires_at: now.saturating_add(ttl_ms.max(1)),
            owner: self.owner().map(str::to_owned),
        };
        let (key, request_hash) = (key.to_owned(), request_hash.to_owned());
        self.write(move |c| begin_idempotent_tx(c, &row, &key, &request_hash, now))
    }

    /// Stores the response of a started key; `false` when the record is gone.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn complete_idempotent(&self, key: &str, response: &Value) -> Result<bool> {
        self.submit_complete_idempotent(key.to_owned(), response)
            .wait()
    }

    /// [`Store::complete_idempotent`] through the group-committing writer: a
    /// repeat is answered from the record once the returned [`Committed`] resolves.
    pub fn submit_complete_idempotent(&self, key: String, response: &Value) -> Committed<bool> {
        let text = match serde_json::to_string(response) {
            Ok(t) => t,
            Err(e) => return Committed::failed(e.into()),
        };
        self.submit(move |c| {
            let n = diesel::update(idempotency::table.find(&key))
                .set((
                    idempotency::state.eq(DONE),
                    idempotency::response.eq(Some(text)),
                ))
                .execute(c)?;
            Ok(n == 1)
        })
    }

    /// Durably queues `run` (as [`Store::enqueue`]) and stores `response` for
    /// the started idempotency `key` in the same transaction, so a retry of
    /// the request is answered with the original acknowledgement even when
    /// the process dies right after the commit.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(run.id = %run.id, flow.name = %run.flow))]
    pub fn enqueue_with_idempotency(
        &self,
        run: &Run,
        key: &str,
        response: &Value,
    ) -> Result<RunId> {
        self.submit_enqueue_with_idempotency(run.clone(), key.to_owned(), response)
            .wait()
    }

    /// [`Store::enqueue_with_idempotency`] through the group-committing writer:
    /// the run and the stored acknowledgement hold once the returned
    /// [`Committed`] resolves `Ok` (answer the request only then).
    pub fn submit_enqueue_with_idempotency(
        &self,
        run: Run,
        key: String,
        response: &Value,
    ) -> Committed<RunId> {
        // Queued, or started at once by its worker (see `Store::submit_start`).
        let row = match new_run_row(&run) {
            Ok(row) => row,
            Err(e) => return Committed::failed(e),
        };
        let text = match serde_json::to_string(response) {
            Ok(t) => t,
            Err(e) => return Committed::failed(e.into()),
        };
        let id = run.id;
        self.submit(move |c| {
            insert_row_tx(c, &row)?;
            diesel::update(idempotency::table.find(&key))
                .set((
                    idempotency::state.eq(DONE),
                    idempotency::response.eq(Some(&text)),
                ))
                .execute(c)?;
            Ok(id)
        })
    }

    /// Forgets an in-flight key (the request failed before a response worth
    /// replaying) so a retry can start; `false` when there was none in flight.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn abandon_idempotent(&self, key: &str) -> Result<bool> {
        let key = key.to_owned();
        self.write(move |c| {
            let n = diesel::delete(
                idempotency::table
                    .find(&key)
                    .filter(idempotency::state.eq(IN_FLIGHT)),
            )
            .execute(c)?;
            Ok(n == 1)
        })
    }

    /// Deletes records expired at `now`; returns how many.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn purge_idempotency(&self, now: EpochMs) -> Result<usize> {
        let mut c = self.conn()?;
        Ok(
            diesel::delete(idempotency::table.filter(idempotency::expires_at.le(now)))
                .execute(&mut *c)?,
        )
    }
}

/// The body of [`Store::begin_idempotent`], inside the writer's transaction.
fn begin_idempotent_tx(
    c: &mut AnyConnection,
    row: &IdempotencyRow,
    key: &str,
    request_hash: &str,
    now: EpochMs,
) -> Result<IdempotencyBegin> {
    for _ in 0..4 {
        // In its own savepoint: a conflict must not abort the batch's transaction.
        match c.transaction(|c| {
            diesel::insert_into(idempotency::table)
                .values(row)
                .execute(c)
        }) {
            Ok(_) => return Ok(IdempotencyBegin::Started),
            Err(e) => {
                let e = StoreError::from(e);
                if !e.is_conflict() {
                    return Err(e);
                }
            }
        }
        let existing = idempotency::table
            .find(key)
            .select(IdempotencyRow::as_select())
            .first(c)
            .optional()?;
        let Some(ex) = existing else {
            continue; // abandoned meanwhile: try to insert again
        };
        if ex.expires_at <= now {
            diesel::delete(
                idempotency::table
                    .find(key)
                    .filter(idempotency::expires_at.le(now)),
            )
            .execute(c)?;
            continue;
        }
        if ex.state == IN_FLIGHT && ex.created_at.saturating_add(IN_FLIGHT_STALE_MS) <= now {
            // Its process died mid-request: take the key over (atomically).
            let n = diesel::update(
                idempotency::table
                    .find(key)
                    .filter(idempotency::state.eq(IN_FLIGHT))
                    .filter(idempotency::created_at.eq(ex.created_at)),
            )
            .set((
                idempotency::request_hash.eq(request_hash),
                idempotency::created_at.eq(now),
                idempotency::expires_at.eq(row.expires_at),
                idempotency::owner.eq(&row.owner),
            ))
            .execute(c)?;
            if n == 1 {
                return Ok(IdempotencyBegin::Started);
            }
            continue;
        }
        if ex.request_hash != request_hash {
            return Ok(IdempotencyBegin::Mismatch);
        }
        if ex.state == DONE {
            let resp = match ex.response {
                Some(s) => crate::models::parse_stored(&s)?,
                None => Value::Null,
            };
            return Ok(IdempotencyBegin::Done(resp));
        }
        return Ok(IdempotencyBegin::InFlight);
    }
    Err(StoreError::Unavailable(format!(
        "idempotency key is contended, retry: {key}"
    )))
}
