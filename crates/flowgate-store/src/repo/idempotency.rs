//! Idempotency records: the first request with a key runs, repeats replay its
//! stored response, and a different body with the same key is refused.

use diesel::prelude::*;
use serde_json::Value;

use flowgate_core::EpochMs;

use crate::error::{Result, StoreError};
use crate::models::idempotency::{IdempotencyRow, DONE, IN_FLIGHT};
use crate::schema::idempotency;
use crate::types::IdempotencyBegin;
use crate::Store;

impl Store {
    /// Claims `key` (the caller composes it from caller + flow + Idempotency-Key)
    /// for a request whose body hashes to `request_hash`, valid for `ttl_ms`.
    /// Of concurrent begins exactly one gets `Started` (primary-key insert);
    /// an expired record is replaced.
    #[tracing::instrument(skip_all, err)]
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
        };
        let mut c = self.conn()?;
        for _ in 0..4 {
            match diesel::insert_into(idempotency::table)
                .values(&row)
                .execute(&mut *c)
            {
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
                .first(&mut *c)
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
                .execute(&mut *c)?;
                continue;
            }
            if ex.request_hash != request_hash {
                return Ok(IdempotencyBegin::Mismatch);
            }
            if ex.state == DONE {
                let resp = match ex.response {
                    Some(s) => serde_json::from_str(&s)?,
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

    /// Stores the response of a started key; `false` when the record is gone.
    #[tracing::instrument(skip_all, err)]
    pub fn complete_idempotent(&self, key: &str, response: &Value) -> Result<bool> {
        let text = serde_json::to_string(response)?;
        let mut c = self.conn()?;
        let n = diesel::update(idempotency::table.find(key))
            .set((
                idempotency::state.eq(DONE),
                idempotency::response.eq(Some(text)),
            ))
            .execute(&mut *c)?;
        Ok(n == 1)
    }

    /// Forgets an in-flight key (the request failed before a response worth
    /// replaying) so a retry can start; `false` when there was none in flight.
    #[tracing::instrument(skip_all, err)]
    pub fn abandon_idempotent(&self, key: &str) -> Result<bool> {
        let mut c = self.conn()?;
        let n = diesel::delete(
            idempotency::table
                .find(key)
                .filter(idempotency::state.eq(IN_FLIGHT)),
        )
        .execute(&mut *c)?;
        Ok(n == 1)
    }

    /// Deletes records expired at `now`; returns how many.
    #[tracing::instrument(skip_all, err)]
    pub fn purge_idempotency(&self, now: EpochMs) -> Result<usize> {
        let mut c = self.conn()?;
        Ok(
            diesel::delete(idempotency::table.filter(idempotency::expires_at.le(now)))
                .execute(&mut *c)?,
        )
    }
}
