//! API keys: the argon2 hash of the secret part, scopes, expiry, revocation.

use diesel::prelude::*;

use flowgate_core::EpochMs;

use crate::changes::{record_change, Change};
use crate::conn::write_tx;
use crate::error::{Result, StoreError};
use crate::models::api_keys::ApiKeyRow;
use crate::schema::api_keys;
use crate::types::ApiKeyRecord;
use crate::Store;

impl Store {
    /// Stores a new key; a duplicate id is `Conflict`.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(key.id = %key.id))]
    pub fn insert_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let row = ApiKeyRow::from_record(key)?;
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            diesel::insert_into(api_keys::table)
                .values(&row)
                .execute(c)
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict(format!("key {} exists", key.id))
                    }
                    o => o,
                })?;
            record_change(c, &Change::Key(key.id.clone()))
        })
    }

    /// One key (revoked ones included), `None` when missing.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(key.id = %id))]
    pub fn get_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let mut c = self.conn()?;
        api_keys::table
            .find(id)
            .select(ApiKeyRow::as_select())
            .first(&mut *c)
            .optional()?
            .map(ApiKeyRow::into_record)
            .transpose()
    }

    /// Every key, oldest first.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn list_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let mut c = self.conn()?;
        api_keys::table
            .order((api_keys::created_at.asc(), api_keys::id.asc()))
            .select(ApiKeyRow::as_select())
            .load(&mut *c)?
            .into_iter()
            .map(ApiKeyRow::into_record)
            .collect()
    }

    /// Revokes a key; `false` when it does not exist.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(key.id = %id))]
    pub fn revoke_key(&self, id: &str) -> Result<bool> {
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            let n = diesel::update(api_keys::table.find(id))
                .set(api_keys::revoked.eq(1))
                .execute(c)?;
            if n == 1 {
                record_change(c, &Change::Key(id.to_owned()))?;
            }
            Ok(n == 1)
        })
    }

    /// Records a successful use at `now`; `false` when the key does not exist.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(key.id = %id))]
    pub fn touch_last_used(&self, id: &str, now: EpochMs) -> Result<bool> {
        let mut c = self.conn()?;
        let n = diesel::update(api_keys::table.find(id))
            .set(api_keys::last_used_at.eq(now))
            .execute(&mut *c)?;
        Ok(n == 1)
    }
}
