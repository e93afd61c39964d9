//! Row model of the `secrets` table.

use diesel::prelude::*;

use crate::schema::secrets;

/// A `secrets` row: AES-256-GCM ciphertext (hex) and its 96-bit nonce (hex).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = secrets)]
pub struct SecretRow {
    pub name: String,
    pub nonce: String,
    pub ciphertext: String,
    pub updated_at: i64,
}
