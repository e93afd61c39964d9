//! The thread-local context of the run executing on this thread.

use flowgate_core::event::EmittedEvent;
use flowgate_core::run::{LogLevel, LogLine};
use rhai::{Dynamic, EvalAltResult, Position};
use std::cell::{Cell, RefCell};
use std::time::Instant;

use super::Host;
use crate::config::HttpDefaults;
use crate::outcome::{FlowResponse, HttpCallRecord};

/// Value thrown (as a non-catchable `ErrorTerminated`) by `respond` and `fail`.
pub(crate) const TERMINAL_TOKEN: &str = "__flowgate_terminal__";

/// How `respond`/`fail` ended the run.
#[derive(Debug, Clone)]
pub(crate) enum Terminal {
    Respond(FlowResponse),
    Fail {
        status: u16,
        code: String,
        detail: String,
    },
}

/// Data of the run executing on this thread.
pub(crate) struct RunContext {
    pub host: Host,
    pub http_allow: Vec<String>,
    pub http: HttpDefaults,
    pub deadline: Instant,
    pub logs: Vec<LogLine>,
    pub events: Vec<EmittedEvent>,
    pub secrets: Vec<String>,
    pub terminal: Option<Terminal>,
    pub max_log_lines: usize,
    pub max_events: usize,
    pub logs_dropped: u64,
    pub http_calls: Vec<HttpCallRecord>,
}

impl RunContext {
    /// Replaces every secret value fetched so far with `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if !s.is_empty() {
                out = out.replace(s.as_str(), "[redacted]");
            }
        }
        out
    }

    /// A JSON value with [`RunContext::redact`] applied to every string and key.
    pub fn redact_json(&self, v: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.secrets.is_empty() {
            return v.clone();
        }
        match v {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.redact_json(x)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| (self.redact(k), self.redact_json(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    pub fn log(&mut self, level: LogLevel, message: &str) {
        if self.logs.len() >= self.max_log_lines {
            self.logs_dropped += 1;
            return;
        }
        let message = self.redact(message);
        self.logs.push(LogLine {
            time: flowgate_core::now_ms(),
            level,
            message,
        });
    }
}

thread_local! {
    static CURRENT: RefCell<Option<RunContext>> = const { RefCell::new(None) };
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Installs a run's context on this thread until the guard is finished or dropped.
pub(crate) fn enter(ctx: RunContext) -> ContextGuard {
    DEADLINE.with(|d| d.set(Some(ctx.deadline)));
    CURRENT.with(|c| *c.borrow_mut() = Some(ctx));
    ContextGuard { done: false }
}

/// Removes the context when the run ends, also on panic.
pub(crate) struct ContextGuard {
    done: bool,
}

impl ContextGuard {
    /// Takes the context back out.
    pub fn finish(mut self) -> Option<RunContext> {
        self.done = true;
        DEADLINE.with(|d| d.set(None));
        CURRENT.with(|c| c.borrow_mut().take())
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        if !self.done {
            DEADLINE.with(|d| d.set(None));
            CURRENT.with(|c| c.borrow_mut().take());
        }
    }
}

/// Runs `f` with the current run's context, or fails when no run is active.
pub(crate) fn with_ctx<R>(f: impl FnOnce(&mut RunContext) -> R) -> Result<R, Box<EvalAltResult>> {
    CURRENT.with(|c| match c.try_borrow_mut() {
        Ok(mut guard) => match guard.as_mut() {
            Some(ctx) => Ok(f(ctx)),
            None => Err(runtime_error(
                "host functions are only available inside a run",
            )),
        },
        Err(_) => Err(runtime_error("host function called re-entrantly")),
    })
}

/// Appends a log line to the current run, if any (used by `print`/`debug`).
pub(crate) fn push_log(level: LogLevel, message: &str) {
    let _ = with_ctx(|c| c.log(level, message));
}

/// `true` when the current run's deadline has passed.
pub(crate) fn check_deadline() -> bool {
    DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() >= t))
}

/// A catchable runtime error carrying `msg`.
pub(crate) fn runtime_error(msg: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(msg.into()),
        Position::NONE,
    ))
}

/// The non-catchable error that ends evaluation after `respond`/`fail`.
pub(crate) fn terminate() -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(
        Dynamic::from(TERMINAL_TOKEN),
        Position::NONE,
    ))
}

/// The non-catchable error that ends a run whose deadline passed inside a host call.
pub(crate) fn terminate_timeout() -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(
        Dynamic::from("__flowgate_timeout__"),
        Position::NONE,
    ))
}
