//! Errors of the runtime: scripts that do not compile, and runs that could not start.

use std::fmt;

/// A script that does not compile, with its location (`main.rhai:3:7: message`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CompileError {
    /// Script file name inside the package.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Why a run could not be started or finished by the runtime itself (as opposed to
/// a script that failed, which is a [`crate::RunFailure`] inside a [`crate::RunOutcome`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The version's script does not compile.
    #[error("{0}")]
    Compile(#[from] CompileError),
    /// Every execution slot is busy; answer 503 with `Retry-After`.
    #[error("the flow runtime is overloaded; retry after {retry_after_secs} s")]
    Overloaded {
        /// Seconds the caller should wait.
        retry_after_secs: u64,
    },
    /// The execution task panicked or was cancelled (a bug, never a script's fault).
    #[error("internal runtime error: {0}")]
    Internal(String),
}

/// Result alias of this crate.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
