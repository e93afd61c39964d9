//! Row model of the `idempotency` table.

use diesel::prelude::*;

use crate::schema::idempotency;

/// An `idempotency` row; `state` is `in_flight` or `done`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = idempotency)]
#[diesel(treat_none_as_default_value = false)]
pub struct IdempotencyRow {
    pub scope_key: String,
    pub request_hash: String,
    pub state: String,
    pub response: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Node that started the request (`None` for records older than node ids).
    pub owner: Option<String>,
}

/// `state` of a request still running.
pub const IN_FLIGHT: &str = "in_flight";
/// `state` of a request whose response is stored.
pub const DONE: &str = "done";
