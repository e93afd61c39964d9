//! The error type shared by the repository traits and domain parsers.

/// Errors raised by domain parsing and by repository implementations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A uniqueness rule or state transition refused the change.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The input is well-formed but not acceptable.
    #[error("invalid: {0}")]
    Invalid(String),
    /// A dependency (database, pool) is temporarily unavailable.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else; the message is for logs, not for callers.
    #[error("internal: {0}")]
    Internal(String),
}

/// Result alias for core operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
