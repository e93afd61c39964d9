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
    /// A limit the host enforces (value depth, memory, sizes) was exceeded.
    Limit {
        limit: &'static str,
        message: String,
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
    /// Every form of every secret in `secrets`, longest first.
    pub secret_forms: Vec<String>,
    pub terminal: Option<Terminal>,
    pub max_log_lines: usize,
    pub max_events: usize,
    pub logs_dropped: u64,
    pub http_calls: Vec<HttpCallRecord>,
    /// Deepest nesting of values the host converts (SandboxLimits::max_value_depth).
    pub max_value_depth: usize,
    /// The run's memory budget in bytes.
    pub max_memory_bytes: usize,
    /// Most bytes of log text kept.
    pub max_log_bytes: usize,
    /// Longest log line kept.
    pub max_log_line_bytes: usize,
    /// Bytes of log text kept so far.
    pub log_bytes: usize,
    /// Bytes the host keeps for the run (logs, events, call records).
    pub retained: usize,
}

impl RunContext {
    /// Replaces every secret value fetched so far, in every encoding the server
    /// produces (raw, JSON, debug-quoted, percent-encoded, base64), with `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        crate::redact::redact_with(text, &self.secret_forms)
    }

    /// Remembers a secret value fetched by the run, for redaction.
    pub fn add_secret(&mut self, value: &str) {
        if value.is_empty() || self.secrets.iter().any(|s| s == value) {
            return;
        }
        self.secrets.push(value.to_owned());
        self.secret_forms.extend(crate::redact::secret_forms(value));
        self.secret_forms
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.secret_forms.dedup();
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
        if self.logs.len() >= self.max_log_lines || self.log_bytes >= self.max_log_bytes {
            self.logs_dropped += 1;
            return;
        }
        let mut message = self.redact(message);
        let room = self
            .max_log_line_bytes
            .min(self.max_log_bytes - self.log_bytes);
        if message.len() > room {
            let mut cut = room;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(TRUNCATED);
        }
        self.log_bytes += message.len();
        self.retained += message.len() + 48;
        self.logs.push(LogLine {
            time: flowgate_core::now_ms(),
            level,
            message,
        });
    }
}

/// Appended to log lines cut at the line or run limit.
pub(crate) const TRUNCATED: &str = "… [truncated]";

thread_local! {
    static CURRENT: RefCell<Option<RunContext>> = const { RefCell::new(None) };
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// While a run executes inline (on the caller's thread, see
    /// `FlowRuntime::execute`): the end of its inline time budget.
    static INLINE_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Whether the inline run on this thread gave up (a blocking host call or
    /// its budget spent) and must run again on the pool.
    static YIELDED: Cell<bool> = const { Cell::new(false) };
}

/// Value thrown (as a non-catchable `ErrorTerminated`) when an inline run gives up.
pub(crate) const YIELD_TOKEN: &str = "__flowgate_yield__";

/// Marks the runs started on this thread until the guard is finished as inline
/// runs: they may spend at most `budget` and call no host function that blocks.
pub(crate) fn inline(budget: std::time::Duration) -> InlineGuard {
    INLINE_UNTIL.with(|u| u.set(Some(Instant::now() + budget)));
    YIELDED.with(|y| y.set(false));
    InlineGuard
}

/// Ends inline mode on this thread, also on panic.
pub(crate) struct InlineGuard;

impl InlineGuard {
    /// Ends inline mode; `true` when the run gave up and must run on the pool.
    pub fn finish(self) -> bool {
        YIELDED.with(Cell::get)
    }
}

impl Drop for InlineGuard {
    fn drop(&mut self) {
        INLINE_UNTIL.with(|u| u.set(None));
    }
}

/// In an inline run: records that it gives up and returns `true`.
pub(crate) fn give_up_inline() -> bool {
    if INLINE_UNTIL.with(Cell::get).is_some() {
        YIELDED.with(|y| y.set(true));
        true
    } else {
        false
    }
}

/// Called by every host function that may block (the store, outbound HTTP):
/// an inline run stops here, before any effect, and runs again on the pool.
pub(crate) fn may_block() -> Result<(), Box<EvalAltResult>> {
    if give_up_inline() {
        return Err(Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from(YIELD_TOKEN),
            Position::NONE,
        )));
    }
    Ok(())
}

/// Runs `f` with the current run's context after [`may_block`]: for host
/// functions that reach the repositories or the network.
pub(crate) fn with_host<R>(f: impl FnOnce(&mut RunContext) -> R) -> Result<R, Box<EvalAltResult>> {
    may_block()?;
    with_ctx(f)
}

/// Installs a run's context on this thread until the guard is finished or dropped.
pub(crate) fn enter(ctx: RunContext) -> ContextGuard {
    let deadline = match INLINE_UNTIL.with(Cell::get) {
        Some(until) => until.min(ctx.deadline),
        None => ctx.deadline,
    };
    DEADLINE.with(|d| d.set(Some(deadline)));
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

/// The non-catchable error that ends a run over a host-enforced limit
/// (`flow_limit_exceeded`).
pub(crate) fn limit_exceeded(
    limit: &'static str,
    message: impl Into<String>,
) -> Box<EvalAltResult> {
    let message = message.into();
    let _ = with_ctx(|c| {
        if c.terminal.is_none() {
            c.terminal = Some(Terminal::Limit { limit, message });
        }
    });
    Box::new(EvalAltResult::ErrorTerminated(
        Dynamic::from("__flowgate_limit__"),
        Position::NONE,
    ))
}

/// Converts a script value to JSON within the run's depth limit.
pub(crate) fn json_of(d: &Dynamic) -> Result<serde_json::Value, Box<EvalAltResult>> {
    let max = with_ctx(|c| c.max_value_depth)?;
    crate::convert::try_to_json(d, max).map_err(|e| limit_exceeded("value_depth", e.to_string()))
}

/// Converts JSON to a script value within the run's depth limit.
pub(crate) fn dynamic_of(v: &serde_json::Value) -> Result<Dynamic, Box<EvalAltResult>> {
    let max = with_ctx(|c| c.max_value_depth)?;
    crate::convert::try_to_dynamic(v, max).map_err(|e| limit_exceeded("value_depth", e.to_string()))
}

/// Counts `bytes` more kept by the host for this run; over the memory budget the
/// run ends with `flow_limit_exceeded`.
pub(crate) fn retain(bytes: usize) -> Result<(), Box<EvalAltResult>> {
    let over = with_ctx(|c| {
        c.retained = c.retained.saturating_add(bytes);
        (c.retained > c.max_memory_bytes).then_some(c.max_memory_bytes)
    })?;
    match over {
        Some(max) => Err(limit_exceeded(
            "memory",
            format!("the run retains more than {max} bytes"),
        )),
        None => Ok(()),
    }
}
