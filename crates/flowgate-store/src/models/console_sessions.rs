//! Row model of the `console_sessions` table.

use diesel::prelude::*;

use crate::schema::console_sessions;
use crate::types::ConsoleSession;

/// A `console_sessions` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = console_sessions)]
pub struct ConsoleSessionRow {
    pub id_hash: String,
    pub key_id: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

impl ConsoleSessionRow {
    /// The row for a session.
    pub fn from_session(s: &ConsoleSession) -> Self {
        Self {
            id_hash: s.id_hash.clone(),
            key_id: s.key_id.clone(),
            csrf_token: s.csrf_token.clone(),
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
        }
    }

    /// Converts to the public record.
    pub fn into_session(self) -> ConsoleSession {
        ConsoleSession {
            id_hash: self.id_hash,
            key_id: self.key_id,
            csrf_token: self.csrf_token,
            created_at: self.created_at,
            last_seen_at: self.last_seen_at,
            expires_at: self.expires_at,
        }
    }
}
