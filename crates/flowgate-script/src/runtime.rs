//! [`FlowRuntime`]: one configured engine, a cache of compiled scripts keyed by the
//! version's content hash, and a bounded execution pool off the async workers.

use flowgate_core::run::LogLevel;
use flowgate_core::{FlowName, FlowPackage, Manifest};
use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use crate::config::RuntimeConfig;
use crate::engine::{RhaiEngine, ScriptEngine};
use crate::error::{CompileError, RuntimeError};
use crate::host::{self, Host, RunContext};
use crate::outcome::{RunFailure, RunInput, RunOutcome};
use crate::reads::InputReads;

thread_local! {
    // Counted on every call: a handle per thread, not a registry lookup
    // (and an allocation) per increment.
    static CACHE_HITS: metrics::Counter = metrics::counter!("flowgate_script_cache_hits_total");
    static INLINE_RUNS: metrics::Counter = metrics::counter!("flowgate_script_inline_runs_total");
    /// The compiles this thread ran inline last, so a warm call finds its
    /// script without the shared cache's hashing and bookkeeping.
    static FRONT: RefCell<Vec<FrontEntry>> = const { RefCell::new(Vec::new()) };
}

/// Compiles a thread keeps in [`FRONT`].
const FRONT_SLOTS: usize = 16;
/// A thread's copy asks the shared cache again after this many hits: the
/// shared cache keeps seeing the script as used, and a script it evicted is
/// let go here too.
const FRONT_RECHECK: u32 = 64;

/// Tells runtimes apart in [`FRONT`] (tests run several on one thread).
static NEXT_RUNTIME: AtomicU64 = AtomicU64::new(1);

struct FrontEntry {
    runtime: u64,
    sha256: String,
    hits: u32,
    /// An `Entry<E::Compiled>` of that runtime.
    entry: Box<dyn Any>,
}

/// One immutable flow version as the runtime runs it.
#[derive(Debug, Clone)]
pub struct FlowVersion {
    /// Flow name.
    pub flow: FlowName,
    /// Version number (0 for local, unpublished packages).
    pub version: i64,
    /// Content hash of the package ([`FlowPackage::sha256`]); the cache key.
    pub sha256: String,
    /// Parsed manifest.
    pub manifest: Arc<Manifest>,
    /// The package files.
    pub package: Arc<FlowPackage>,
    /// What the script reads of its input, known once it compiled
    /// (shared by the clones of this version).
    pub reads: Arc<OnceLock<InputReads>>,
}

impl FlowVersion {
    /// Builds a version from a parsed manifest and its package, computing the hash.
    pub fn new(version: i64, manifest: Manifest, package: FlowPackage) -> Self {
        Self {
            flow: manifest.name.clone(),
            version,
            sha256: package.sha256(),
            manifest: Arc::new(manifest),
            package: Arc::new(package),
            reads: Arc::default(),
        }
    }

    /// What the script reads of its input ([`RunInput::reads`]): all of it
    /// until this version (or another of the same content) compiled.
    pub fn reads(&self) -> InputReads {
        self.reads.get().copied().unwrap_or(InputReads::ALL)
    }

    fn learn_reads(&self, reads: InputReads) {
        if self.reads.get().is_none() {
            let _ = self.reads.set(reads);
        }
    }
}

/// Cache counters and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Compiles served from the cache.
    pub hits: u64,
    /// Compiles that had to compile.
    pub misses: u64,
    /// Scripts in the cache.
    pub entries: u64,
    /// Total source bytes of the cached scripts.
    pub weighted_bytes: u64,
}

/// How often runs went inline (see [`FlowRuntime::execute`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlineStats {
    /// Runs that finished inline, on the caller's thread.
    pub finished: u64,
    /// Inline runs that gave up (a blocking host call, the budget spent) and
    /// ran again on a run thread.
    pub moved: u64,
}

struct Entry<C> {
    compiled: Arc<C>,
    reads: InputReads,
    bytes: u32,
    /// Until when (ms since the epoch) this script runs on the pool only: set
    /// when an inline run of it gave up.
    pool_only_until: Arc<AtomicU64>,
}

impl<C> Clone for Entry<C> {
    fn clone(&self) -> Self {
        Self {
            compiled: Arc::clone(&self.compiled),
            reads: self.reads,
            bytes: self.bytes,
            pool_only_until: Arc::clone(&self.pool_only_until),
        }
    }
}

/// How long a script whose inline run gave up runs on the pool only.
const POOL_ONLY_MS: u64 = 1_000;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The threads that run scripts: built with a known stack size (Rhai recurses
/// over scripts and values), started on demand up to the pool size, ended when
/// the runtime is dropped.
struct Threads {
    tx: parking_lot::Mutex<std::sync::mpsc::Sender<Job>>,
    rx: Arc<parking_lot::Mutex<std::sync::mpsc::Receiver<Job>>>,
    started: AtomicUsize,
    max: usize,
    stack: usize,
}

impl Threads {
    fn new(max: usize, stack: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        Self {
            tx: parking_lot::Mutex::new(tx),
            rx: Arc::new(parking_lot::Mutex::new(rx)),
            started: AtomicUsize::new(0),
            max: max.max(1),
            stack,
        }
    }

    /// Queues `job`; starts one more thread while fewer than `max` run (callers
    /// hold a pool permit, so at most `max` jobs are ever queued or running).
    fn submit(&self, job: Job) -> Result<(), RuntimeError> {
        let n = self.started.load(Ordering::Acquire);
        if n < self.max
            && self
                .started
                .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let rx = Arc::clone(&self.rx);
            let spawned = std::thread::Builder::new()
                .name(format!("flowgate-run-{n}"))
                .stack_size(self.stack)
                .spawn(move || loop {
                    let job = rx.lock().recv();
                    match job {
                        Ok(job) => {
                            // A panicking run must not take the thread down; its
                            // caller sees the dropped reply as an internal error.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => break,
                    }
                });
            if let Err(e) = spawned {
                self.started.fetch_sub(1, Ordering::AcqRel);
                if n == 0 {
                    return Err(RuntimeError::Internal(format!(
                        "cannot start a run thread: {e}"
                    )));
                }
            }
        }
        self.tx
            .lock()
            .send(job)
            .map_err(|_| RuntimeError::Internal("the run threads are gone".into()))
    }
}

struct Inner<E: ScriptEngine> {
    /// This runtime among others in [`FRONT`].
    id: u64,
    engine: E,
    cache: moka::sync::Cache<String, Entry<E::Compiled>>,
    pool: Arc<Semaphore>,
    threads: Threads,
    config: RuntimeConfig,
    hits: AtomicU64,
    misses: AtomicU64,
    inline_finished: AtomicU64,
    inline_moved: AtomicU64,
}

/// Compiles and runs flow versions. Cheap to clone (an `Arc` inside).
pub struct FlowRuntime<E: ScriptEngine = RhaiEngine> {
    inner: Arc<Inner<E>>,
}

impl<E: ScriptEngine> Clone for FlowRuntime<E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl FlowRuntime<RhaiEngine> {
    /// A runtime with the Rhai engine and every host module of SPEC §4.
    pub fn new(config: RuntimeConfig) -> Self {
        let engine = RhaiEngine::new(&config.limits, &host::standard_modules());
        Self::with_engine(config, engine)
    }
}

impl Default for FlowRuntime<RhaiEngine> {
    fn default() -> Self {
        Self::new(RuntimeConfig::default())
    }
}

impl<E: ScriptEngine> FlowRuntime<E> {
    /// A runtime around any [`ScriptEngine`].
    pub fn with_engine(config: RuntimeConfig, engine: E) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(config.cache_max_bytes)
            .weigher(|_k: &String, v: &Entry<E::Compiled>| v.bytes)
            .build();
        Self {
            inner: Arc::new(Inner {
                id: NEXT_RUNTIME.fetch_add(1, Ordering::Relaxed),
                engine,
                cache,
                pool: Arc::new(Semaphore::new(config.pool_size.max(1))),
                threads: Threads::new(config.pool_size, config.run_stack_bytes),
                config,
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                inline_finished: AtomicU64::new(0),
                inline_moved: AtomicU64::new(0),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The engine.
    pub fn engine(&self) -> &E {
        &self.inner.engine
    }

    /// Compiles the version's script, or returns the cached result for its sha256.
    pub fn compile(&self, version: &FlowVersion) -> Result<Arc<E::Compiled>, CompileError> {
        if let Some(e) = self.inner.cache.get(&version.sha256) {
            self.count_hit();
            version.learn_reads(e.reads);
            return Ok(e.compiled);
        }
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("flowgate_script_cache_misses_total").increment(1);
        let file = version.manifest.script.as_str();
        let source = version
            .package
            .script(&version.manifest)
            .ok_or_else(|| CompileError {
                file: file.to_owned(),
                line: 0,
                column: 0,
                message: "the script file is missing from the package".into(),
            })?;
        let compiled = Arc::new(self.inner.engine.compile(file, source)?);
        let reads = self.inner.engine.reads(&compiled);
        version.learn_reads(reads);
        self.inner.cache.insert(
            version.sha256.clone(),
            Entry {
                compiled: Arc::clone(&compiled),
                reads,
                bytes: u32::try_from(source.len().max(1)).unwrap_or(u32::MAX),
                pool_only_until: Arc::new(AtomicU64::new(0)),
            },
        );
        Ok(compiled)
    }

    /// The cached compile of a script, from this thread's copies or the shared
    /// cache (then copied here); `None` when it is not compiled.
    fn cached(&self, sha256: &str) -> Option<Entry<E::Compiled>> {
        let id = self.inner.id;
        let found = FRONT.with(|front| {
            let mut front = front.try_borrow_mut().ok()?;
            let at = front
                .iter()
                .position(|f| f.runtime == id && f.sha256 == sha256)?;
            let f = &mut front[at];
            f.hits += 1;
            if f.hits >= FRONT_RECHECK {
                front.remove(at);
                return None;
            }
            f.entry.downcast_ref::<Entry<E::Compiled>>().cloned()
        });
        if found.is_some() {
            return found;
        }
        let entry = self.inner.cache.get(sha256)?;
        FRONT.with(|front| {
            if let Ok(mut front) = front.try_borrow_mut() {
                if front.len() >= FRONT_SLOTS {
                    front.remove(0);
                }
                front.push(FrontEntry {
                    runtime: id,
                    sha256: sha256.to_owned(),
                    hits: 0,
                    entry: Box::new(entry.clone()),
                });
            }
        });
        Some(entry)
    }

    /// Counts a run served by a cached compile.
    fn count_hit(&self) {
        self.inner.hits.fetch_add(1, Ordering::Relaxed);
        CACHE_HITS.with(|c| c.increment(1));
    }

    /// Compiles a script without touching the cache (upload-time checks, benches).
    pub fn check(&self, file: &str, source: &str) -> Result<E::Compiled, CompileError> {
        self.inner.engine.compile(file, source)
    }

    /// Cache counters and size.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.run_pending_tasks();
        CacheStats {
            hits: self.inner.hits.load(Ordering::Relaxed),
            misses: self.inner.misses.load(Ordering::Relaxed),
            entries: self.inner.cache.entry_count(),
            weighted_bytes: self.inner.cache.weighted_size(),
        }
    }

    /// How often runs went inline.
    pub fn inline_stats(&self) -> InlineStats {
        InlineStats {
            finished: self.inner.inline_finished.load(Ordering::Relaxed),
            moved: self.inner.inline_moved.load(Ordering::Relaxed),
        }
    }

    /// Execution slots in use right now.
    pub fn pool_in_use(&self) -> usize {
        self.inner.config.pool_size.max(1) - self.inner.pool.available_permits()
    }

    /// Runs a version within the pool's bound on concurrent runs. Waits at most
    /// `queue_wait` for a slot, then answers [`RuntimeError::Overloaded`].
    ///
    /// A compiled script first runs inline, on the calling thread, when that
    /// thread has a run thread's stack (see [`RuntimeConfig::inline_budget`]):
    /// most flows are a few microseconds of pure computation, and handing them
    /// to a run thread and back costs more than running them. An inline run
    /// gives up before its first host call that may block (the store, outbound
    /// HTTP) and when its budget is spent; nothing it did has left the run's own
    /// memory by then, so it runs again from the start on a run thread, and the
    /// script runs on the pool only for the next second.
    ///
    /// The input is shared, not consumed: once the run has ended the caller
    /// holds the only reference again (`Arc::try_unwrap` gets it back).
    pub async fn execute(
        &self,
        version: &FlowVersion,
        input: Arc<RunInput>,
        host: Host,
    ) -> Result<RunOutcome, RuntimeError> {
        if let Some(outcome) = self.run_inline(version, &input, &host) {
            return Ok(outcome);
        }
        let wait = self.inner.config.queue_wait;
        let permit =
            match tokio::time::timeout(wait, Arc::clone(&self.inner.pool).acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => {
                    metrics::counter!("flowgate_script_overloaded_total").increment(1);
                    return Err(RuntimeError::Overloaded {
                        retry_after_secs: self.inner.config.retry_after_secs,
                    });
                }
            };
        let this = self.clone();
        let version = version.clone();
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner.threads.submit(Box::new(move || {
            let out = this.run_here(&version, &input, host);
            drop(input);
            drop(permit);
            let _ = reply.send(out);
        }))?;
        answer
            .await
            .map_err(|_| RuntimeError::Internal("the run thread panicked".into()))?
    }

    /// Runs a compiled version on the calling thread only if it finishes
    /// there (the inline attempt of [`FlowRuntime::execute`]): `None` when the
    /// run must go elsewhere (not compiled yet, a small stack, no free slot, a
    /// host call that may block, the inline budget spent). A run that gave up
    /// has done nothing outside its own memory, so the caller may run it again
    /// from the start anywhere.
    pub fn run_inline(
        &self,
        version: &FlowVersion,
        input: &RunInput,
        host: &Host,
    ) -> Option<RunOutcome> {
        let cfg = &self.inner.config;
        if cfg.inline_budget.is_zero()
            || stacker::remaining_stack().is_none_or(|left| left < inline_stack_floor(cfg))
        {
            return None;
        }
        // A hit is counted once the run finished inline; one that moves is
        // counted by the pool's compile.
        let entry = self.cached(&version.sha256)?;
        version.learn_reads(entry.reads);
        let now = flowgate_core::now_ms().max(0).unsigned_abs();
        if entry.pool_only_until.load(Ordering::Relaxed) > now {
            return None;
        }
        let permit = Arc::clone(&self.inner.pool).try_acquire_owned().ok()?;
        let guard = host::inline(cfg.inline_budget);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_compiled(&entry.compiled, version, input, host.clone())
        }));
        let gave_up = guard.finish();
        drop(permit);
        match outcome {
            Ok(outcome) if !gave_up => {
                self.count_hit();
                self.inner.inline_finished.fetch_add(1, Ordering::Relaxed);
                INLINE_RUNS.with(|c| c.increment(1));
                Some(outcome)
            }
            _ => {
                self.inner.inline_moved.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("flowgate_script_inline_moved_total").increment(1);
                entry
                    .pool_only_until
                    .store(now.saturating_add(POOL_ONLY_MS), Ordering::Relaxed);
                None
            }
        }
    }

    fn run_here(
        &self,
        version: &FlowVersion,
        input: &RunInput,
        host: Host,
    ) -> Result<RunOutcome, RuntimeError> {
        let compiled = self.compile(version)?;
        Ok(self.run_compiled(&compiled, version, input, host))
    }

    /// Runs a version and waits for it, blocking the calling thread (CLI, tests,
    /// fixtures, callers that already run off the async workers). Does not take a
    /// pool slot; the script runs on a thread of its own with the configured stack.
    pub fn execute_blocking(
        &self,
        version: &FlowVersion,
        input: RunInput,
        host: Host,
    ) -> Result<RunOutcome, RuntimeError> {
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name("flowgate-run".into())
                .stack_size(self.inner.config.run_stack_bytes)
                .spawn_scoped(s, || self.run_here(version, &input, host))
                .map_err(|e| RuntimeError::Internal(format!("cannot start a run thread: {e}")))?;
            handle
                .join()
                .map_err(|_| RuntimeError::Internal("the run thread panicked".into()))?
        })
    }

    /// Runs an already compiled script on the calling thread, which must have a
    /// stack of at least [`RuntimeConfig::run_stack_bytes`] (as `execute` and
    /// `execute_blocking` provide).
    pub fn run_compiled(
        &self,
        compiled: &E::Compiled,
        version: &FlowVersion,
        input: &RunInput,
        host: Host,
    ) -> RunOutcome {
        let cfg = &self.inner.config;
        let timeout_ms = version.manifest.limits.timeout_ms.max(1);
        let started = Instant::now();
        let ctx = RunContext {
            host,
            http_allow: version.manifest.http_allow.clone(),
            http: cfg.http.clone(),
            deadline: started + Duration::from_millis(timeout_ms),
            logs: Vec::new(),
            events: Vec::new(),
            secrets: Vec::new(),
            secret_forms: Vec::new(),
            terminal: None,
            max_log_lines: cfg.max_log_lines,
            max_events: cfg.max_events,
            logs_dropped: 0,
            http_calls: Vec::new(),
            max_value_depth: cfg.limits.max_value_depth,
            max_memory_bytes: cfg.limits.max_memory_bytes,
            max_log_bytes: cfg.max_log_bytes,
            max_log_line_bytes: cfg.max_log_line_bytes,
            log_bytes: 0,
            retained: 0,
        };
        let guard = host::enter(ctx);
        let result = self.inner.engine.execute(compiled, input, timeout_ms);
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let Some(mut ctx) = guard.finish() else {
            return RunOutcome {
                result: Err(RunFailure::Error {
                    message: "the run context was lost".into(),
                    line: None,
                    column: None,
                }),
                logs: Vec::new(),
                events: Vec::new(),
                http_calls: Vec::new(),
                duration_ms,
            };
        };
        let max_body = cfg.max_response_body_bytes;
        let result = result
            .and_then(|r| {
                let size = r.body.json_len();
                if size > max_body {
                    Err(RunFailure::LimitExceeded {
                        limit: "response_size",
                        message: format!("the response body is larger than {max_body} bytes"),
                    })
                } else {
                    Ok(r)
                }
            })
            .map_err(|f| redact_failure(&ctx, f))
            .map_err(|f| locate_host_error(f, version));
        if let Err(f) = &result {
            if !matches!(f, RunFailure::Fail { .. }) {
                ctx.max_log_lines = ctx.max_log_lines.saturating_add(1);
                ctx.max_log_bytes = ctx.max_log_bytes.saturating_add(ctx.max_log_line_bytes);
                ctx.log(LogLevel::Error, &f.message());
            }
        }
        if ctx.logs_dropped > 0 {
            let note = format!("{} further log lines were dropped", ctx.logs_dropped);
            ctx.max_log_lines = usize::MAX;
            ctx.max_log_bytes = usize::MAX;
            ctx.log(LogLevel::Warn, &note);
        }
        let logs = ctx
            .logs
            .iter()
            .map(|l| {
                let mut l = l.clone();
                l.message = ctx.redact(&l.message);
                l
            })
            .collect();
        RunOutcome {
            result,
            logs,
            events: ctx.events,
            http_calls: ctx.http_calls,
            duration_ms,
        }
    }
}

/// The least stack a thread must have left to run a script inline: nearly all
/// of a run thread's (the rest is what the caller itself uses).
fn inline_stack_floor(cfg: &RuntimeConfig) -> usize {
    cfg.run_stack_bytes - cfg.run_stack_bytes / 8
}

fn redact_failure(ctx: &RunContext, f: RunFailure) -> RunFailure {
    match f {
        RunFailure::Fail {
            status,
            code,
            detail,
        } => RunFailure::Fail {
            status,
            code,
            detail: ctx.redact(&detail),
        },
        RunFailure::Error {
            message,
            line,
            column,
        } => RunFailure::Error {
            message: ctx.redact(&message),
            line,
            column,
        },
        RunFailure::LimitExceeded { limit, message } => RunFailure::LimitExceeded {
            limit,
            message: ctx.redact(&message),
        },
        t @ RunFailure::Timeout { .. } => t,
    }
}

/// Host functions raise their errors without a position (Rhai does not fill
/// one in for namespaced native calls). When the message names the function
/// (`users::update: …`) and the script calls it exactly once, point there.
fn locate_host_error(f: RunFailure, version: &FlowVersion) -> RunFailure {
    let RunFailure::Error {
        message,
        line: None,
        column: None,
    } = f
    else {
        return f;
    };
    let name = message.split_once(": ").map(|(head, _)| head).filter(|h| {
        h.contains("::")
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    });
    let source = version.package.script(&version.manifest);
    let (line, column) = match (name, source) {
        (Some(name), Some(src)) => {
            let needle = format!("{name}(");
            let mut hits = src.match_indices(&needle);
            match (hits.next(), hits.next()) {
                (Some((at, _)), None) => {
                    let p = flowgate_core::manifest::Pos::of_offset(src, at);
                    (Some(p.line), Some(p.column))
                }
                _ => (None, None),
            }
        }
        _ => (None, None),
    };
    RunFailure::Error {
        message,
        line,
        column,
    }
}
