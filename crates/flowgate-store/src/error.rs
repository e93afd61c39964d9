//! The store's error type and its mapping from diesel, r2d2 and to `flowgate_core::Error`.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Errors returned by every [`crate::Store`] method.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The row (flow, version, run, user, …) does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A unique rule or a state transition refused the change (HTTP 409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The input cannot be stored (bad name, oversized value, broken reference).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The database cannot be reached right now (pool timeout, refused connection, locked).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Any other database or decoding failure; the message is for logs.
    #[error("database error: {0}")]
    Database(String),
}

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => StoreError::NotFound("record".into()),
            DieselError::DatabaseError(kind, info) => {
                let msg = info.message().to_owned();
                match kind {
                    DatabaseErrorKind::UniqueViolation => StoreError::Conflict(msg),
                    DatabaseErrorKind::ForeignKeyViolation => StoreError::Invalid(msg),
                    DatabaseErrorKind::NotNullViolation | DatabaseErrorKind::CheckViolation => {
                        StoreError::Invalid(msg)
                    }
                    DatabaseErrorKind::ClosedConnection
                    | DatabaseErrorKind::UnableToSendCommand => StoreError::Unavailable(msg),
                    _ if is_busy(&msg) => StoreError::Unavailable(msg),
                    _ => StoreError::Database(msg),
                }
            }
            DieselError::BrokenTransactionManager => {
                StoreError::Unavailable("broken transaction manager".into())
            }
            other => StoreError::Database(other.to_string()),
        }
    }
}

fn is_busy(msg: &str) -> bool {
    msg.contains("database is locked") || msg.contains("database table is locked")
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Database(format!("stored JSON is unreadable: {e}"))
    }
}

impl From<flowgate_core::Error> for StoreError {
    fn from(e: flowgate_core::Error) -> Self {
        use flowgate_core::Error as E;
        match e {
            E::NotFound(m) => StoreError::NotFound(m),
            E::Conflict(m) => StoreError::Conflict(m),
            E::Invalid(m) => StoreError::Invalid(m),
            E::Unavailable(m) => StoreError::Unavailable(m),
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl From<StoreError> for flowgate_core::Error {
    fn from(e: StoreError) -> Self {
        use flowgate_core::Error as E;
        match e {
            StoreError::NotFound(m) => E::NotFound(m),
            StoreError::Conflict(m) => E::Conflict(m),
            StoreError::Invalid(m) => E::Invalid(m),
            StoreError::Unavailable(m) => E::Unavailable(m),
            StoreError::Database(m) => E::Internal(m),
        }
    }
}

impl StoreError {
    /// Whether this is a unique-constraint conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
    }
    /// Whether this is a missing row.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound(_))
    }
}
