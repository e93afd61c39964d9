//! Runs: one execution of one flow version, and the lines it logged.

use serde::{Deserialize, Serialize};

use crate::{EpochMs, Error, Result};

/// Lifecycle state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting in the queue.
    Queued,
    /// Claimed by a worker.
    Running,
    /// Ended with a response.
    Succeeded,
    /// Ended with `fail`, an error, a limit or a timeout (final).
    Failed,
    /// Failed on every allowed attempt.
    Dead,
}

impl RunStatus {
    /// Every status, in the order a run passes through them.
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Dead,
    ];

    /// Lower-case name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
    /// Parses a stored or queried status.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "dead" => Self::Dead,
            other => return Err(Error::Invalid(format!("unknown run status `{other}`"))),
        })
    }
    /// Whether the run has reached an end state.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Dead)
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// An API call to an `http` trigger.
    Http,
    /// A signed third-party call.
    Webhook,
    /// Delivery of a subscribed event.
    Event,
    /// A cron due time.
    Schedule,
    /// An admin "run now" or replay.
    Admin,
    /// A dry run (never stored as committed work).
    DryRun,
}

impl TriggerKind {
    /// Lower-case name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Webhook => "webhook",
            Self::Event => "event",
            Self::Schedule => "schedule",
            Self::Admin => "admin",
            Self::DryRun => "dry_run",
        }
    }
    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "http" => Self::Http,
            "webhook" => Self::Webhook,
            "event" => Self::Event,
            "schedule" => Self::Schedule,
            "admin" => Self::Admin,
            "dry_run" => Self::DryRun,
            other => return Err(Error::Invalid(format!("unknown trigger kind `{other}`"))),
        })
    }
}

/// Severity of a run log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// `log::trace`, `debug(x)`.
    Trace,
    /// `log::info`, `print(x)`.
    Info,
    /// `log::warn`.
    Warn,
    /// `log::error` and runtime errors.
    Error,
}

impl LogLevel {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "trace" => Self::Trace,
            "info" => Self::Info,
            "warn" => Self::Warn,
            "error" => Self::Error,
            other => return Err(Error::Invalid(format!("unknown log level `{other}`"))),
        })
    }
}

/// One captured log line of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was logged (epoch ms).
    pub time: EpochMs,
    /// Severity.
    pub level: LogLevel,
    /// Text, secrets already redacted.
    pub message: String,
}
