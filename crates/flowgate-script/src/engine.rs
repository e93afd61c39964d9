//! The script engine behind the runtime: the [`ScriptEngine`] trait and its Rhai
//! implementation with the sandbox (limits, deadline, no `eval`, no imports).

use rhai::module_resolvers::DummyModuleResolver;
use rhai::{Dynamic, Engine, EvalAltResult, ParseErrorType, Position, Scope, AST};

use crate::api::{ApiBuilder, ApiEntry};
use crate::budget;
use crate::config::SandboxLimits;
use crate::convert::{to_json, try_to_dynamic, try_to_json_text};
use crate::error::CompileError;
use crate::host::{self, HostModule, Terminal, TERMINAL_TOKEN};
use crate::outcome::{FlowResponse, ResponseBody, RunFailure, RunInput};
use crate::reads::InputReads;
use flowgate_core::run::LogLevel;

/// Names of the variables every script sees.
pub const SCRIPT_VARIABLES: [&str; 4] = ["request", "caller", "trigger", "ctx"];

const TIMEOUT_TOKEN: &str = "__flowgate_timeout__";

/// A script language the runtime can drive. `execute` runs on the calling thread
/// with the run's host context already installed by the runtime.
pub trait ScriptEngine: Send + Sync + 'static {
    /// A compiled script, cached and shared between runs.
    type Compiled: Send + Sync + 'static;
    /// Compiles `source` (named `file` in errors).
    fn compile(&self, file: &str, source: &str) -> Result<Self::Compiled, CompileError>;
    /// What a compiled script reads of its input ([`RunInput::reads`]); all of
    /// it unless the engine knows better.
    fn reads(&self, _compiled: &Self::Compiled) -> InputReads {
        InputReads::ALL
    }
    /// Runs a compiled script with the given input; `timeout_ms` names the limit in errors.
    fn execute(
        &self,
        compiled: &Self::Compiled,
        input: &RunInput,
        timeout_ms: u64,
    ) -> Result<FlowResponse, RunFailure>;
}

/// The Rhai engine, configured once with the sandbox and the host modules.
pub struct RhaiEngine {
    engine: Engine,
    limits: SandboxLimits,
    api: Vec<ApiEntry>,
}

impl RhaiEngine {
    /// An engine with `limits` and the given host modules.
    pub fn new(limits: &SandboxLimits, modules: &[Box<dyn HostModule>]) -> Self {
        let mut engine = Engine::new();
        engine
            .set_max_operations(limits.max_operations)
            .set_max_call_levels(limits.max_call_levels)
            .set_max_expr_depths(limits.max_expr_depth, limits.max_function_expr_depth)
            .set_max_string_size(limits.max_string_size)
            .set_max_array_size(limits.max_array_size)
            .set_max_map_size(limits.max_map_size)
            .set_max_modules(0)
            .set_strict_variables(true)
            .set_module_resolver(DummyModuleResolver::new())
            .disable_symbol("eval");
        engine.on_progress(|ops| {
            budget::set_ops(ops);
            if ops % 256 == 0 && host::check_deadline() {
                // An inline run out of its budget gives up instead (it runs
                // again on the pool, see `FlowRuntime::execute`).
                let token = if host::give_up_inline() {
                    host::YIELD_TOKEN
                } else {
                    TIMEOUT_TOKEN
                };
                Some(Dynamic::from(token))
            } else {
                None
            }
        });
        // Every variable access may measure what the run retains (amortized, see
        // `budget`): closures, curried pointers and values spread over many
        // variables all count, and no value may nest deeper than the limit.
        let (max_depth, max_bytes) = (limits.max_value_depth, limits.max_memory_bytes);
        #[allow(deprecated)] // `on_var` is stable in practice; Rhai marks it volatile
        engine.on_var(move |_name, _index, ctx| {
            if !budget::due() {
                return Ok(None);
            }
            let retained = host::with_ctx(|c| c.retained).unwrap_or(0);
            let room = max_bytes.saturating_sub(retained);
            let m = budget::measure_scope(ctx.scope(), ctx.this_ptr(), max_depth, room);
            budget::measured(&m);
            if m.too_deep {
                return Err(host::limit_exceeded(
                    "value_depth",
                    format!("a value is nested deeper than {max_depth} levels"),
                ));
            }
            if m.bytes > room {
                return Err(host::limit_exceeded(
                    "memory",
                    format!("the run retains more than {max_bytes} bytes"),
                ));
            }
            Ok(None)
        });
        engine.on_print(|s| host::push_log(LogLevel::Info, s));
        engine.on_debug(|s, _src, pos| {
            let msg = match pos.line() {
                Some(l) => format!("[line {l}] {s}"),
                None => s.to_owned(),
            };
            host::push_log(LogLevel::Trace, &msg)
        });
        let mut builder = ApiBuilder::new(&mut engine);
        for m in modules {
            m.register(&mut builder);
        }
        let api = builder.into_entries();
        Self {
            engine,
            limits: limits.clone(),
            api,
        }
    }

    /// The documented host functions registered on this engine, in order.
    pub fn api(&self) -> &[ApiEntry] {
        &self.api
    }

    /// The underlying Rhai engine (for tools and benches).
    pub fn rhai(&self) -> &Engine {
        &self.engine
    }

    fn compile_scope() -> Scope<'static> {
        let mut scope = Scope::new();
        for v in SCRIPT_VARIABLES {
            scope.push_dynamic(v, Dynamic::UNIT);
        }
        scope
    }

    fn map_error(&self, err: EvalAltResult, timeout_ms: u64) -> RunFailure {
        let (err, pos) = innermost(err);
        let (line, column) = (pos.line(), pos.position());
        let at = |m: String| match line {
            Some(l) => format!("{m} (line {l}, column {})", column.unwrap_or(0)),
            None => m,
        };
        let limit = |name: &'static str, what: String| RunFailure::LimitExceeded {
            limit: name,
            message: at(what),
        };
        match err {
            EvalAltResult::ErrorTerminated(token, _) => {
                if let Ok(Some(t)) = host::with_ctx(|c| c.terminal.take()) {
                    return match t {
                        Terminal::Fail {
                            status,
                            code,
                            detail,
                        } => RunFailure::Fail {
                            status,
                            code,
                            detail,
                        },
                        Terminal::Limit { limit, message } => RunFailure::LimitExceeded {
                            limit,
                            message: at(message),
                        },
                        // `respond` is handled before mapping errors; keep a sane fallback.
                        Terminal::Respond(_) => RunFailure::Error {
                            message: "respond ended the run unexpectedly".into(),
                            line,
                            column,
                        },
                    };
                }
                let _ = token;
                RunFailure::Timeout { timeout_ms }
            }
            EvalAltResult::ErrorTooManyOperations(_) => limit(
                "operations",
                format!(
                    "the run used more than {} operations",
                    self.limits.max_operations
                ),
            ),
            EvalAltResult::ErrorStackOverflow(_) => limit(
                "call_depth",
                format!(
                    "function calls nested deeper than {} levels",
                    self.limits.max_call_levels
                ),
            ),
            EvalAltResult::ErrorDataTooLarge(what, _) => {
                let (name, max) = if what.starts_with("Length of string") {
                    ("string_size", self.limits.max_string_size)
                } else if what.starts_with("Size of array") {
                    ("array_size", self.limits.max_array_size)
                } else if what.starts_with("Size of object map") {
                    ("map_size", self.limits.max_map_size)
                } else {
                    ("string_size", self.limits.max_string_size)
                };
                limit(name, format!("{what} exceeds the limit of {max}"))
            }
            EvalAltResult::ErrorParsing(ParseErrorType::ExprTooDeep, _) => limit(
                "expression_depth",
                format!(
                    "an expression is nested deeper than {}",
                    self.limits.max_expr_depth
                ),
            ),
            EvalAltResult::ErrorModuleNotFound(name, _) => RunFailure::Error {
                message: format!("`import \"{name}\"`: flows cannot import modules"),
                line,
                column,
            },
            EvalAltResult::ErrorTooManyModules(_) => RunFailure::Error {
                message: "flows cannot import modules".into(),
                line,
                column,
            },
            EvalAltResult::ErrorRuntime(value, _) => RunFailure::Error {
                message: if value.is_string() {
                    value.into_string().unwrap_or_default()
                } else {
                    format!("thrown: {}", to_json(&value))
                },
                line,
                column,
            },
            mut other => {
                let _ = other.take_position();
                RunFailure::Error {
                    message: other.to_string(),
                    line,
                    column,
                }
            }
        }
    }
}

/// Unwraps errors raised inside script functions to the error that started
/// it, with the most precise known position: the error's own, else the
/// position of the call that raised it (host functions raise errors without one).
fn innermost(err: EvalAltResult) -> (EvalAltResult, Position) {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, pos)
        | EvalAltResult::ErrorInModule(_, inner, pos) => {
            let (e, p) = innermost(*inner);
            (e, if p.is_none() { pos } else { p })
        }
        other => {
            let p = other.position();
            (other, p)
        }
    }
}

fn compile_error(file: &str, err: &rhai::ParseError, limits: &SandboxLimits) -> CompileError {
    let pos: Position = err.position();
    let message = match err.err_type() {
        ParseErrorType::ExprTooDeep => format!(
            "expression nested too deeply: exceeds the `expression_depth` limit ({})",
            limits.max_expr_depth
        ),
        ParseErrorType::Reserved(word) if word == "eval" => {
            "`eval` is not available in flows".to_owned()
        }
        ParseErrorType::Reserved(word) if word == "debug" => {
            "`debug` is reserved here; use `log::trace(...)` or `debug(value)`".to_owned()
        }
        other => other.to_string(),
    };
    CompileError {
        file: file.to_owned(),
        line: pos.line().unwrap_or(0),
        column: pos.position().unwrap_or(0),
        message,
    }
}

impl ScriptEngine for RhaiEngine {
    type Compiled = AST;

    fn compile(&self, file: &str, source: &str) -> Result<AST, CompileError> {
        let scope = Self::compile_scope();
        self.engine
            .compile_with_scope(&scope, source)
            .map_err(|e| compile_error(file, &e, &self.limits))
    }

    fn reads(&self, ast: &AST) -> InputReads {
        InputReads::of(ast)
    }

    fn execute(
        &self,
        ast: &AST,
        input: &RunInput,
        timeout_ms: u64,
    ) -> Result<FlowResponse, RunFailure> {
        budget::reset();
        let max_depth = self.limits.max_value_depth;
        let too_deep = |what: &str| RunFailure::LimitExceeded {
            limit: "value_depth",
            message: format!("`{what}` is nested deeper than {max_depth} levels"),
        };
        let mut scope = Scope::new();
        for (name, value) in [
            ("request", &input.request),
            ("caller", &input.caller),
            ("trigger", &input.trigger),
        ] {
            if !input.reads.variable(name) {
                scope.push_dynamic(name, Dynamic::UNIT);
                continue;
            }
            let stored = input.stored.as_ref().and_then(|s| match name {
                "request" => Some(&s.request),
                "caller" => Some(&s.caller),
                "trigger" => Some(&s.trigger),
                _ => None,
            });
            let mut v = match stored {
                Some(json) => json.take_dynamic(0, max_depth),
                None => try_to_dynamic(value, max_depth),
            }
            .map_err(|_| too_deep(name))?;
            if let (Some(body), "request") = (&input.body, name) {
                let b = body
                    .take_dynamic(1, max_depth)
                    .map_err(|_| too_deep(name))?;
                if let Some(mut m) = v.write_lock::<rhai::Map>() {
                    m.insert("body".into(), b);
                }
            }
            scope.push_dynamic(name, v);
        }
        let ctx = if input.reads.variable("ctx") {
            input
                .ctx
                .take_dynamic(0, max_depth)
                .map_err(|_| too_deep("ctx"))?
        } else {
            Dynamic::UNIT
        };
        scope.push_dynamic("ctx", ctx);
        let evaluated = self.engine.eval_ast_with_scope::<Dynamic>(&mut scope, ast);
        if evaluated.is_ok() {
            // What the run still holds at its end counts too (between two
            // periodic measures it may have grown).
            let retained = host::with_ctx(|c| c.retained).unwrap_or(0);
            let max = self.limits.max_memory_bytes;
            let room = max.saturating_sub(retained);
            let m = budget::measure_scope(&scope, None, max_depth, room);
            if m.too_deep {
                return Err(too_deep("a variable"));
            }
            if m.bytes > room {
                return Err(RunFailure::LimitExceeded {
                    limit: "memory",
                    message: format!("the run retains more than {max} bytes"),
                });
            }
        }
        match evaluated {
            Ok(v) => Ok(FlowResponse {
                status: 200,
                headers: Default::default(),
                body: ResponseBody::Json(
                    try_to_json_text(&v, max_depth).map_err(|_| too_deep("the script's value"))?,
                ),
            }),
            Err(err) => {
                let terminal = host::with_ctx(|c| c.terminal.clone()).ok().flatten();
                if let Some(Terminal::Respond(r)) = terminal {
                    if matches!(innermost_ref(&err), EvalAltResult::ErrorTerminated(t, _) if t.clone().into_string().is_ok_and(|s| s == TERMINAL_TOKEN))
                    {
                        return Ok(r);
                    }
                }
                Err(self.map_error(*err, timeout_ms))
            }
        }
    }
}

fn innermost_ref(err: &EvalAltResult) -> &EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => innermost_ref(inner),
        other => other,
    }
}
