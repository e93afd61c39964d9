//! Inline runs: a script runs on the calling thread when that thread has a run
//! thread's stack, and moves to the pool before anything that may block.

#![allow(clippy::unwrap_used)]

use flowgate_core::{FlowName, FlowPackage, Manifest};
use flowgate_script::{
    FlowRuntime, FlowVersion, Host, InlineStats, MemoryRepo, MockHttp, RunFailure, RunInput,
    RunOutcome, RuntimeConfig, RUN_STACK_BYTES,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn version(script: &str) -> FlowVersion {
    let toml = "name = \"t\"\n[[trigger]]\nkind = \"http\"\n[limits]\ntimeout_ms = 5000\n";
    let mut pkg = FlowPackage::default();
    pkg.files.insert("flow.toml".into(), toml.into());
    pkg.files.insert("main.rhai".into(), script.into());
    FlowVersion::new(1, Manifest::parse(toml).unwrap(), pkg)
}

fn input() -> RunInput {
    RunInput {
        body: None,
        stored: None,
        request: json!({"method": "POST", "path": "", "params": {}, "query": {}, "headers": {}, "body": {"n": 2}}),
        caller: json!({"kind": "anonymous"}),
        trigger: json!({"kind": "http"}),
        ctx: flowgate_script::JsonBody::stored(
            json!({"flow": "t", "version": 1, "run_id": "r", "request_id": "q", "attempt": 1})
                .to_string(),
        ),
        reads: Default::default(),
    }
}

struct Env {
    rt: FlowRuntime,
    store: Arc<MemoryRepo>,
}

impl Env {
    fn new(config: RuntimeConfig) -> Self {
        Self {
            rt: FlowRuntime::new(config),
            store: Arc::new(MemoryRepo::new()),
        }
    }

    fn host(&self) -> Host {
        Host {
            users: self.store.clone(),
            kv: self.store.clone(),
            secrets: self.store.clone(),
            http: Arc::new(MockHttp::new(vec![])),
            flow: FlowName::parse("t").unwrap(),
        }
    }

    /// Runs `script` `times` times through `execute` on a thread with `stack`
    /// bytes of stack, as an HTTP worker would.
    fn runs(&self, script: &str, times: usize, stack: usize) -> Vec<RunOutcome> {
        let v = version(script);
        on_worker(stack, || async {
            let mut out = Vec::new();
            for _ in 0..times {
                out.push(
                    self.rt
                        .execute(&v, Arc::new(input()), self.host())
                        .await
                        .unwrap(),
                );
            }
            out
        })
    }
}

/// Runs the future `f` makes on a thread of its own with `stack` bytes of
/// stack and a current-thread runtime, as an HTTP worker runs calls.
fn on_worker<T: Send, F: std::future::Future<Output = T>>(
    stack: usize,
    f: impl FnOnce() -> F + Send,
) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(stack)
            .spawn_scoped(s, || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(f())
            })
            .unwrap()
            .join()
            .unwrap()
    })
}

fn body(o: &RunOutcome) -> Value {
    match &o.result {
        Ok(r) => r.body.to_value(),
        Err(f) => panic!("run failed: {f:?}"),
    }
}

fn messages(o: &RunOutcome) -> Vec<String> {
    o.logs.iter().map(|l| l.message.clone()).collect()
}

#[test]
fn a_compiled_pure_script_runs_inline_on_a_thread_with_a_run_stack() {
    let e = Env::new(RuntimeConfig::default());
    let out = e.runs(
        "print(\"once\"); #{ twice: request.body.n * 2 }",
        3,
        RUN_STACK_BYTES,
    );
    for o in &out {
        assert_eq!(body(o), json!({"twice": 4}));
        assert_eq!(messages(o), ["once"]);
    }
    // The first run compiles on the pool; the others find the script compiled.
    assert_eq!(
        e.rt.inline_stats(),
        InlineStats {
            finished: 2,
            moved: 0
        }
    );
    let cache = e.rt.cache_stats();
    assert_eq!((cache.misses, cache.hits), (1, 2));
}

#[test]
fn a_thread_with_a_small_stack_never_runs_scripts_inline() {
    let e = Env::new(RuntimeConfig::default());
    let out = e.runs("request.body.n + 1", 3, 2 << 20);
    assert!(out.iter().all(|o| body(o) == json!(3)));
    assert_eq!(e.rt.inline_stats().finished, 0);
}

#[test]
fn a_blocking_host_call_moves_the_run_to_the_pool_before_any_effect() {
    let e = Env::new(RuntimeConfig::default());
    let script = r#"
        print("start");
        let n = kv::get("n") ?? 0;
        kv::set("n", n + 1);
        print("end");
        n + 1
    "#;
    let out = e.runs(script, 4, RUN_STACK_BYTES);
    let counts: Vec<Value> = out.iter().map(body).collect();
    assert_eq!(
        counts,
        [json!(1), json!(2), json!(3), json!(4)],
        "every run counted once"
    );
    for o in &out {
        assert_eq!(
            messages(o),
            ["start", "end"],
            "the given-up attempt left no log"
        );
    }
    // The second run tried inline and moved; the script then stays on the
    // pool for a while instead of trying again on every call.
    assert_eq!(
        e.rt.inline_stats(),
        InlineStats {
            finished: 0,
            moved: 1
        }
    );
    // One compile; each of the other three runs counts one cache hit, also the
    // one whose inline attempt moved.
    let cache = e.rt.cache_stats();
    assert_eq!((cache.misses, cache.hits), (1, 3));
}

#[test]
fn a_long_pure_script_gives_up_its_inline_budget_and_finishes_on_the_pool() {
    let e = Env::new(RuntimeConfig {
        inline_budget: Duration::from_micros(200),
        ..RuntimeConfig::default()
    });
    let script = "let s = 0; for i in 0..200000 { s += i % 7; } s";
    let out = e.runs(script, 2, RUN_STACK_BYTES);
    let expected: i64 = (0..200_000i64).map(|i| i % 7).sum();
    assert!(out.iter().all(|o| body(o) == json!(expected)));
    assert_eq!(e.rt.inline_stats().moved, 1);
}

#[test]
fn inline_runs_meet_the_same_limits_as_pool_runs() {
    let deep = "fn f(n) { f(n + 1) } f(0)";
    let e = Env::new(RuntimeConfig::default());
    let out = e.runs(deep, 2, RUN_STACK_BYTES);
    let failure = |o: &RunOutcome| match &o.result {
        Err(f @ RunFailure::LimitExceeded { .. }) => f.clone(),
        other => panic!("expected the call-depth limit, got {other:?}"),
    };
    assert_eq!(failure(&out[0]), failure(&out[1]));
    assert_eq!(e.rt.inline_stats().finished, 1, "the second ran inline");
}

#[test]
fn no_inline_budget_keeps_every_run_on_the_pool() {
    let e = Env::new(RuntimeConfig {
        inline_budget: Duration::ZERO,
        ..RuntimeConfig::default()
    });
    let out = e.runs("40 + 2", 3, RUN_STACK_BYTES);
    assert!(out.iter().all(|o| body(o) == json!(42)));
    assert_eq!(
        e.rt.inline_stats(),
        InlineStats {
            finished: 0,
            moved: 0
        }
    );
}

/// Two runtimes on one thread (a thread keeps its last compiles) do not share
/// them: the second compiles the same script itself, with its own engine, and
/// both keep counting every warm run, also past the point where a thread asks
/// the shared cache again.
#[test]
fn runtimes_on_one_thread_keep_their_own_compiles() {
    let a = Env::new(RuntimeConfig::default());
    let b = Env::new(RuntimeConfig::default());
    let v = version("#{ twice: request.body.n * 2 }");
    async fn runs(e: &Env, v: &FlowVersion, times: usize) {
        for _ in 0..times {
            let o = e.rt.execute(v, Arc::new(input()), e.host()).await.unwrap();
            assert_eq!(body(&o), json!({"twice": 4}));
        }
    }
    on_worker(RUN_STACK_BYTES, || async {
        runs(&a, &v, 3).await;
        runs(&b, &v, 2).await;
        runs(&a, &v, 200).await;
    });
    let (ca, cb) = (a.rt.cache_stats(), b.rt.cache_stats());
    assert_eq!((ca.misses, ca.hits), (1, 202));
    assert_eq!((cb.misses, cb.hits), (1, 1));
    assert_eq!(a.rt.inline_stats().finished, 202);
    assert_eq!(b.rt.inline_stats().finished, 1);
}
