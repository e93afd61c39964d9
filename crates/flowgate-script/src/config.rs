//! Runtime configuration: sandbox limits, pool size, cache size and outbound HTTP defaults.

use std::time::Duration;

/// Per-run sandbox limits (the wall-clock timeout comes from the manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Most Rhai operations per run.
    pub max_operations: u64,
    /// Deepest function call nesting.
    pub max_call_levels: usize,
    /// Deepest expression nesting at top level (checked when compiling).
    pub max_expr_depth: usize,
    /// Deepest expression nesting inside functions (checked when compiling).
    pub max_function_expr_depth: usize,
    /// Longest string in bytes.
    pub max_string_size: usize,
    /// Most elements in one array.
    pub max_array_size: usize,
    /// Most keys in one object map.
    pub max_map_size: usize,
    /// Deepest nesting of maps and arrays in any value a run receives, builds or
    /// returns (JSON in and out, `parse_json`, values built in loops).
    pub max_value_depth: usize,
    /// Approximate bytes one run may retain at once: every value reachable from
    /// its variables (closures and curried function pointers included), plus its
    /// captured logs, events and outbound-call records.
    pub max_memory_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            max_operations: 10_000_000,
            max_call_levels: 48,
            max_expr_depth: 64,
            max_function_expr_depth: 32,
            max_string_size: 1 << 20,
            max_array_size: 100_000,
            max_map_size: 100_000,
            max_value_depth: 128,
            max_memory_bytes: 32 << 20,
        }
    }
}

/// Defaults of `http::` calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpDefaults {
    /// Per-call timeout when the script gives none.
    pub timeout: Duration,
    /// Largest per-call timeout a script may ask for.
    pub max_timeout: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
    /// Whether loopback, private, link-local, ULA and CGNAT targets are allowed
    /// (server config `http.allow_private_hosts`).
    pub allow_private_hosts: bool,
}

impl Default for HttpDefaults {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_timeout: Duration::from_secs(60),
            max_response_bytes: 1 << 20,
            allow_private_hosts: false,
        }
    }
}

/// Default stack of the script threads: enough for Rhai's own recursion at the
/// call, expression and value depth limits, with a wide margin.
pub const RUN_STACK_BYTES: usize = 64 << 20;

/// Configuration of a [`crate::FlowRuntime`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Sandbox limits.
    pub limits: SandboxLimits,
    /// Runs executing at once (default 4 × CPU cores).
    pub pool_size: usize,
    /// How long a run waits for a free slot before `Overloaded`.
    pub queue_wait: Duration,
    /// `Retry-After` seconds reported with `Overloaded`.
    pub retry_after_secs: u64,
    /// Total source bytes of compiled scripts kept in the cache.
    pub cache_max_bytes: u64,
    /// Outbound HTTP defaults.
    pub http: HttpDefaults,
    /// Most log lines kept per run (later lines are dropped with a note).
    pub max_log_lines: usize,
    /// Most events one run may emit.
    pub max_events: usize,
    /// Most bytes of log text kept per run (later lines are dropped with a note).
    pub max_log_bytes: usize,
    /// Longest log line kept; longer ones are cut and marked `… [truncated]`.
    pub max_log_line_bytes: usize,
    /// Largest response body a run may answer with (serialized JSON bytes).
    pub max_response_body_bytes: usize,
    /// Stack size of the threads that run scripts.
    pub run_stack_bytes: usize,
    /// Time a run may spend inline, on the thread that asks for it, before it
    /// moves to a run thread (`Duration::ZERO`: always on a run thread). Only
    /// threads with nearly [`RuntimeConfig::run_stack_bytes`] of stack run
    /// scripts inline; `flowgate serve` starts its threads so.
    pub inline_budget: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            limits: SandboxLimits::default(),
            pool_size: 4 * cores,
            queue_wait: Duration::from_millis(100),
            retry_after_secs: 1,
            cache_max_bytes: 64 << 20,
            http: HttpDefaults::default(),
            max_log_lines: 1_000,
            max_events: 100,
            max_log_bytes: 256 * 1024,
            max_log_line_bytes: 8 * 1024,
            max_response_body_bytes: 1 << 20,
            run_stack_bytes: RUN_STACK_BYTES,
            inline_budget: Duration::from_millis(2),
        }
    }
}
