//! Per-flow key-value state with optional expiry (`KvRepo`).

use diesel::prelude::*;
use serde_json::Value;

use flowgate_core::repo::KvRepo;
use flowgate_core::{now_ms, EpochMs, FlowName};

use crate::conn::write_tx;
use crate::error::{Result, StoreError};
use crate::models::kv::KvRow;
use crate::schema::kv;
use crate::Store;

/// Longest key accepted, in bytes.
pub const MAX_KV_KEY_BYTES: usize = 512;
/// Largest value accepted, as JSON text.
pub const MAX_KV_VALUE_BYTES: usize = 1024 * 1024;

impl Store {
    /// The value under `key` unless missing or expired at `now`.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %flow))]
    pub fn kv_get_at(&self, flow: &FlowName, key: &str, now: EpochMs) -> Result<Option<Value>> {
        let mut c = self.conn()?;
        let v: Option<String> = kv::table
            .find((flow.as_str(), key))
            .filter(kv::expires_at.is_null().or(kv::expires_at.gt(now)))
            .select(kv::value)
            .first(&mut *c)
            .optional()?;
        v.map(|s| crate::models::parse_stored(&s)).transpose()
    }

    /// Stores `value` under `key`, expiring at `expires_at` (epoch ms) when given.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %flow))]
    pub fn kv_put(
        &self,
        flow: &FlowName,
        key: &str,
        value: &Value,
        expires_at: Option<EpochMs>,
    ) -> Result<()> {
        if key.is_empty() || key.len() > MAX_KV_KEY_BYTES {
            return Err(StoreError::Invalid(format!(
                "kv key must be 1-{MAX_KV_KEY_BYTES} bytes"
            )));
        }
        let text = serde_json::to_string(value)?;
        if text.len() > MAX_KV_VALUE_BYTES {
            return Err(StoreError::Invalid(format!(
                "kv value is {} bytes, more than {MAX_KV_VALUE_BYTES}",
                text.len()
            )));
        }
        let row = KvRow {
            flow: flow.as_str().to_owned(),
            key: key.to_owned(),
            value: text,
            expires_at,
            updated_at: now_ms(),
        };
        let mut c = self.conn()?;
        // Update-then-insert; a concurrent first insert of the same key makes ours
        // a unique violation, after which the update path wins on retry.
        let mut tries = 0;
        loop {
            let res = write_tx(&mut c, |c| {
                let n = diesel::update(kv::table.find((flow.as_str(), key)))
                    .set((
                        kv::value.eq(&row.value),
                        kv::expires_at.eq(row.expires_at),
                        kv::updated_at.eq(row.updated_at),
                    ))
                    .execute(c)?;
                if n == 0 {
                    diesel::insert_into(kv::table).values(&row).execute(c)?;
                }
                Ok(())
            });
            match res {
                Err(StoreError::Conflict(_)) if tries < 3 => tries += 1,
                other => return other,
            }
        }
    }

    /// Removes `key`; `true` when a live (unexpired) value was removed.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(flow.name = %flow))]
    pub fn kv_remove(&self, flow: &FlowName, key: &str) -> Result<bool> {
        let now = now_ms();
        let mut c = self.conn()?;
        write_tx(&mut c, |c| {
            let live: i64 = kv::table
                .find((flow.as_str(), key))
                .filter(kv::expires_at.is_null().or(kv::expires_at.gt(now)))
                .count()
                .get_result(c)?;
            diesel::delete(kv::table.find((flow.as_str(), key))).execute(c)?;
            Ok(live > 0)
        })
    }

    /// Deletes entries expired at `now`; returns how many.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub fn purge_expired_kv(&self, now: EpochMs) -> Result<usize> {
        let mut c = self.conn()?;
        Ok(diesel::delete(kv::table.filter(kv::expires_at.le(now))).execute(&mut *c)?)
    }
}

impl KvRepo for Store {
    fn kv_get(&self, flow: &FlowName, key: &str) -> flowgate_core::Result<Option<Value>> {
        Ok(self.kv_get_at(flow, key, now_ms())?)
    }
    fn kv_set(
        &self,
        flow: &FlowName,
        key: &str,
        value: &Value,
        ttl_seconds: Option<u64>,
    ) -> flowgate_core::Result<()> {
        let expires = ttl_seconds.map(|s| {
            now_ms().saturating_add(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
        });
        Ok(self.kv_put(flow, key, value, expires)?)
    }
    fn kv_delete(&self, flow: &FlowName, key: &str) -> flowgate_core::Result<bool> {
        Ok(self.kv_remove(flow, key)?)
    }
}
