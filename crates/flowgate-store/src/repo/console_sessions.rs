//! Console sessions: rows keyed by a hash of the session id (the id itself is
//! never stored), bounded per API key, purged when idle or past their end.

use diesel::prelude::*;

use flowgate_core::EpochMs;

use crate::conn::write_tx;
use crate::error::Result;
use crate::models::api_keys::ApiKeyRow;
use crate::models::console_sessions::ConsoleSessionRow;
use crate::schema::{api_keys, console_sessions};
use crate::types::{ApiKeyRecord, ConsoleSession};
use crate::Store;

impl Store {
    /// Stores a new session and, in the same transaction, deletes the oldest
    /// sessions of its key beyond `max_per_key`.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(key.id = %session.key_id))]
    pub fn insert_console_session(
        &self,
        session: &ConsoleSession,
        max_per_key: usize,
    ) -> Result<()> {
        let row = ConsoleSessionRow::from_session(session);
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            diesel::insert_into(console_sessions::table)
                .values(&row)
                .execute(c)?;
            let keep: Vec<String> = console_sessions::table
                .filter(console_sessions::key_id.eq(&row.key_id))
                .order((
                    console_sessions::created_at.desc(),
                    console_sessions::id_hash.desc(),
                ))
                .select(console_sessions::id_hash)
                .limit(max_per_key.max(1) as i64)
                .load(c)?;
            diesel::delete(
                console_sessions::table
                    .filter(console_sessions::key_id.eq(&row.key_id))
                    .filter(console_sessions::id_hash.ne_all(&keep)),
            )
            .execute(c)?;
            Ok(())
        })
    }

    /// A session with its key's record (`None` for the key when it was deleted).
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn get_console_session(
        &self,
        id_hash: &str,
    ) -> Result<Option<(ConsoleSession, Option<ApiKeyRecord>)>> {
        let mut c = self.conn()?;
        let Some(row) = console_sessions::table
            .find(id_hash)
            .select(ConsoleSessionRow::as_select())
            .first(&mut *c)
            .optional()?
        else {
            return Ok(None);
        };
        let key = api_keys::table
            .find(&row.key_id)
            .select(ApiKeyRow::as_select())
            .first(&mut *c)
            .optional()?
            .map(ApiKeyRow::into_record)
            .transpose()?;
        Ok(Some((row.into_session(), key)))
    }

    /// Records activity on a session at `now`.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn touch_console_session(&self, id_hash: &str, now: EpochMs) -> Result<()> {
        let mut c = self.conn()?;
        diesel::update(console_sessions::table.find(id_hash))
            .set(console_sessions::last_seen_at.eq(now))
            .execute(&mut *c)?;
        Ok(())
    }

    /// Deletes a session; `false` when there was none.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn delete_console_session(&self, id_hash: &str) -> Result<bool> {
        let mut c = self.conn()?;
        let n = diesel::delete(console_sessions::table.find(id_hash)).execute(&mut *c)?;
        Ok(n == 1)
    }

    /// Deletes every session of a key (it was revoked); returns how many.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(key.id = %key_id))]
    pub fn delete_console_sessions_of_key(&self, key_id: &str) -> Result<usize> {
        let mut c = self.conn()?;
        Ok(
            diesel::delete(console_sessions::table.filter(console_sessions::key_id.eq(key_id)))
                .execute(&mut *c)?,
        )
    }

    /// Deletes sessions past their absolute end or idle since before `idle_before`.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn purge_console_sessions(&self, now: EpochMs, idle_before: EpochMs) -> Result<usize> {
        let mut c = self.conn()?;
        Ok(diesel::delete(
            console_sessions::table.filter(
                console_sessions::expires_at
                    .le(now)
                    .or(console_sessions::last_seen_at.lt(idle_before)),
            ),
        )
        .execute(&mut *c)?)
    }
}
