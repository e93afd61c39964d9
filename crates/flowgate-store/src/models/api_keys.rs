//! Row model of the `api_keys` table.

use diesel::prelude::*;

use crate::error::Result;
use crate::models::flag;
use crate::schema::api_keys;
use crate::types::ApiKeyRecord;

/// An `api_keys` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
#[diesel(treat_none_as_default_value = false)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub hash: String,
    pub scopes: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked: i32,
}

impl ApiKeyRow {
    /// The row for a key record.
    pub fn from_record(k: &ApiKeyRecord) -> Result<Self> {
        Ok(Self {
            id: k.id.clone(),
            name: k.name.clone(),
            hash: k.hash.clone(),
            scopes: serde_json::to_string(&k.scopes)?,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked: i32::from(k.revoked),
        })
    }

    /// Converts to the public record.
    pub fn into_record(self) -> Result<ApiKeyRecord> {
        Ok(ApiKeyRecord {
            id: self.id,
            name: self.name,
            hash: self.hash,
            scopes: serde_json::from_str(&self.scopes)?,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            revoked: flag(self.revoked),
        })
    }
}
