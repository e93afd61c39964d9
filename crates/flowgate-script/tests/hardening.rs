//! No input, script or host call can crash the process, outgrow its budget, leak a
//! secret or slip past the sandbox (the script-side items of the hardening issue).

#![allow(clippy::unwrap_used)]

use flowgate_core::{FlowName, FlowPackage, Manifest};
use flowgate_script::{
    FlowRuntime, FlowVersion, Host, HttpClient, HttpError, MemoryRepo, MockHttp, OutboundRequest,
    OutboundResponse, RunFailure, RunInput, RunOutcome, RuntimeConfig,
};
use serde_json::{json, Value};
use std::sync::Arc;

fn toml(timeout_ms: u64) -> String {
    format!(
        r#"
name = "t"
[[trigger]]
kind = "http"
[limits]
timeout_ms = {timeout_ms}
[http]
allow = ["api.partner.example"]
"#
    )
}

fn version_t(script: &str, timeout_ms: u64) -> FlowVersion {
    let toml = toml(timeout_ms);
    let mut pkg = FlowPackage::default();
    pkg.files.insert("flow.toml".into(), toml.clone());
    pkg.files.insert("main.rhai".into(), script.into());
    FlowVersion::new(1, Manifest::parse(&toml).unwrap(), pkg)
}

fn version(script: &str) -> FlowVersion {
    version_t(script, 10_000)
}

fn host_with(store: Arc<MemoryRepo>, http: Arc<dyn HttpClient>) -> Host {
    Host {
        users: store.clone(),
        kv: store.clone(),
        secrets: store,
        http,
        flow: FlowName::parse("t").unwrap(),
    }
}

fn host() -> Host {
    host_with(Arc::new(MemoryRepo::new()), Arc::new(MockHttp::new(vec![])))
}

fn run(script: &str) -> RunOutcome {
    FlowRuntime::new(RuntimeConfig::default())
        .execute_blocking(&version(script), RunInput::default(), host())
        .unwrap()
}

fn limit(out: &RunOutcome) -> &'static str {
    match &out.result {
        Err(RunFailure::LimitExceeded { limit, .. }) => limit,
        other => panic!(
            "expected flow_limit_exceeded, got {other:?} (logs {:?})",
            out.logs
        ),
    }
}

fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = Value::Array(vec![v, json!({"k": 1})]);
    }
    v
}

/// Runs `f` on a thread with a large stack: the test itself builds and drops
/// deeply nested JSON, which the default test thread could not.
fn big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn input_json_nested_20000_deep_is_a_limit_not_an_abort() {
    big_stack(|| {
        let rt = FlowRuntime::new(RuntimeConfig::default());
        let input = RunInput {
            request: json!({"body": nested(20_000)}),
            ..RunInput::default()
        };
        let out = rt
            .execute_blocking(&version("request.body"), input.clone(), host())
            .unwrap();
        assert_eq!(limit(&out), "value_depth");
        assert_eq!(out.status(), 500);
        assert_eq!(out.body()["code"], "flow_limit_exceeded");
        // the same through the async pool
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = tokio
            .block_on(rt.execute(&version("1"), Arc::new(input), host()))
            .unwrap();
        assert_eq!(limit(&out), "value_depth");
        // input within the limit is fine
        let out = rt
            .execute_blocking(
                &version("request.body[0][0][1].k"),
                RunInput {
                    request: json!({"body": nested(100)}),
                    ..RunInput::default()
                },
                host(),
            )
            .unwrap();
        assert_eq!(out.result.unwrap().body.into_value(), json!(1));
    });
}

#[test]
fn scripts_building_20000_deep_values_end_as_limits() {
    for script in [
        // arrays nested in a loop, returned
        "let a = []; for i in 0..20000 { a = [a]; } a",
        // maps nested in a loop, never returned
        "let m = #{}; for i in 0..20000 { m = #{ inner: m }; } 1",
        // nested, then printed, converted and compared
        "let a = []; for i in 0..20000 { a = [a]; } print(a); a == a; to_json(#{ a: a })",
        // nesting hidden in curried function pointers
        "fn f(x) { x } let p = Fn(\"f\"); for i in 0..20000 { p = Fn(\"f\").curry(p); } 1",
        // closures capturing the previous closure
        "let f = || 0; for i in 0..20000 { let g = f; f = || g.call() + 1; } 1",
    ] {
        let out = run(script);
        let l = limit(&out);
        assert!(
            matches!(l, "value_depth" | "memory" | "array_size" | "map_size"),
            "{script}: {l}"
        );
    }
    // text nested 20 000 deep through parse_json
    let out = run(
        "let s = \"\"; for i in 0..20000 { s += \"[\"; } for i in 0..20000 { s += \"]\"; } parse_json(s)",
    );
    assert_eq!(limit(&out), "value_depth");
    // parse_json and to_json still work on ordinary values
    let out = run("let v = parse_json(\"{\\\"a\\\": [1, 2.5, null]}\"); [v.a[0], to_json(#{ b: [1] }), to_json([1, 2])]");
    assert_eq!(
        out.result.unwrap().body.into_value(),
        json!([1, "{\"b\":[1]}", "[1,2]"])
    );
}

#[test]
fn memory_retained_across_variables_and_closures_is_bounded() {
    let mb = "let s = \"x\"; s.pad(1000000, \"x\");";
    for script in [
        // strings captured in closures (Rhai's per-value limits do not see them)
        format!("{mb} let fs = []; for i in 0..60 {{ let t = s + i; fs.push(|| t.len()); }} fs.len()"),
        // strings curried into function pointers
        format!("{mb} fn f(x) {{ x.len() }} let fs = []; for i in 0..60 {{ fs.push(Fn(\"f\").curry(s + i)); }} fs.len()"),
        // many variables
        format!(
            "{mb} {} 1",
            (0..60)
                .map(|i| format!("let v{i} = s + \"{i}\";"))
                .collect::<String>()
        ),
    ] {
        let out = run(&script);
        assert_eq!(limit(&out), "memory", "{script}");
    }
    // a run that keeps well under the budget is fine
    let out = run(&format!(
        "{mb} let a = s + \"1\"; let b = s + \"2\"; a.len() + b.len()"
    ));
    assert_eq!(out.result.unwrap().body.into_value(), json!(2_000_002));
}

#[test]
fn captured_logs_are_bounded_in_lines_and_bytes() {
    let cfg = RuntimeConfig::default();
    let out = run("let s = \"x\"; s.pad(1000000, \"x\"); for i in 0..40 { log::info(s); } 1");
    assert!(out.result.is_ok());
    let total: usize = out.logs.iter().map(|l| l.message.len()).sum();
    assert!(
        total <= cfg.max_log_bytes + 1024,
        "{total} bytes of logs kept"
    );
    assert!(out.logs[0].message.ends_with("… [truncated]"));
    assert!(out.logs[0].message.len() <= cfg.max_log_line_bytes + 32);
    let last = &out.logs.last().unwrap().message;
    assert!(last.contains("further log lines were dropped"), "{last}");
    let out = run("for i in 0..5000 { log::info(`line ${i}`); } 1");
    assert!(out.logs.len() <= cfg.max_log_lines + 1);
}

#[test]
fn event_data_and_response_bodies_are_bounded() {
    // the POST /events cap applies to events::emit
    let out = run("let s = \"x\"; s.pad(300000, \"x\"); events::emit(\"crm.big\", #{ s: s }); 1");
    assert_eq!(limit(&out), "event_size");
    let out = run("let s = \"x\"; s.pad(200000, \"x\"); events::emit(\"crm.ok\", #{ s: s }); 1");
    assert!(out.result.is_ok());
    // a response body over the cap (quotes double in JSON)
    let big = "let q = \"\"; q.pad(1000, \"\\\"\"); let a = []; for i in 0..600 { a.push(q); }";
    let out = run(&format!("{big} a"));
    assert_eq!(limit(&out), "response_size");
    let out = run(&format!("{big} respond(200, a)"));
    assert_eq!(limit(&out), "response_size");
    let out = run(&format!("{big} a.len()"));
    assert!(out.result.is_ok());
}

#[test]
fn flows_cannot_emit_reserved_system_events() {
    for kind in [
        "user.created",
        "user.deleted",
        "security.auth_failed",
        "flow.run_failed",
    ] {
        let out = run(&format!("events::emit(\"{kind}\", #{{}}); 1"));
        match &out.result {
            Err(RunFailure::Error { message, .. }) => {
                assert!(message.contains("system event type"), "{message}")
            }
            other => panic!("{kind}: {other:?}"),
        }
        assert!(out.events.is_empty());
    }
    let out = run("events::emit(\"users.synced\", #{}); events::emit(\"crm.flow.done\", #{}); 1");
    assert!(out.result.is_ok());
    assert_eq!(out.events.len(), 2);
}

/// A partner that never answers in time: each call waits out its timeout.
struct SlowPartner;

impl HttpClient for SlowPartner {
    fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, HttpError> {
        std::thread::sleep(req.timeout);
        Err(HttpError::Timeout {
            host: "api.partner.example".into(),
            timeout_ms: u64::try_from(req.timeout.as_millis()).unwrap(),
        })
    }
}

#[test]
fn the_run_deadline_wins_over_a_slow_host_call() {
    let rt = FlowRuntime::new(RuntimeConfig::default());
    for script in [
        "http::get(\"https://api.partner.example/slow\")",
        // catching the call's error does not keep the run alive past its deadline
        "try { http::get(\"https://api.partner.example/slow\") } catch (e) { log::info(e) } 1",
    ] {
        let out = rt
            .execute_blocking(
                &version_t(script, 200),
                RunInput::default(),
                host_with(Arc::new(MemoryRepo::new()), Arc::new(SlowPartner)),
            )
            .unwrap();
        assert!(
            matches!(out.result, Err(RunFailure::Timeout { timeout_ms: 200 })),
            "{script}: {:?}",
            out.result
        );
        assert_eq!(out.status(), 504);
        assert_eq!(out.body()["code"], "flow_timeout");
        assert_eq!(out.http_calls.len(), 1);
    }
    // a call whose own (shorter) timeout passes is an ordinary, catchable error
    let out = rt
        .execute_blocking(
            &version_t(
                "let m = \"\"; try { http::get(\"https://api.partner.example/slow\", #{ timeout_ms: 20 }) } catch (e) { m = e } m",
                5000,
            ),
            RunInput::default(),
            host_with(Arc::new(MemoryRepo::new()), Arc::new(SlowPartner)),
        )
        .unwrap();
    let msg = out.result.unwrap().body.into_value();
    assert!(msg.as_str().unwrap().contains("timed out"), "{msg}");
}

#[test]
fn secrets_are_redacted_in_every_encoding_the_server_produces() {
    let store = Arc::new(MemoryRepo::new());
    let secret = "s3cr\"et/+ é";
    store.set_secret("TOKEN", secret);
    let rt = FlowRuntime::new(RuntimeConfig::default());
    let script = r#"
        let s = secrets::get("TOKEN");
        log::info(#{ password: s });                   // JSON-escaped
        log::info(#{ nested: to_json(#{ p: s }) });     // JSON-escaped twice
        debug(s);                                       // debug-quoted
        log::info(base64::encode(s));                   // base64
        log::info(base64::encode("user:" + s));         // base64, shifted
        try { http::get("https://api.partner.example/x?token=" + s) } catch (e) { log::info(e) }
        try { http::get(`https://api.partner.example/${s}`) } catch (e) { log::info(e) }
        try { throw #{ s: s } } catch (e) { log::info(e) }
        throw [s, `${s}`];
    "#;
    let out = rt
        .execute_blocking(
            &version(script),
            RunInput::default(),
            host_with(store, Arc::new(MockHttp::new(vec![]))),
        )
        .unwrap();
    let all = serde_json::to_string(&json!({
        "logs": out.logs.iter().map(|l| l.message.clone()).collect::<Vec<_>>(),
        "failure": out.result.as_ref().err().map(RunFailure::message),
        "calls": out.http_calls,
    }))
    .unwrap();
    assert!(all.contains("[redacted]"), "{all}");
    for leak in ["s3cr", "czNjc", "3Ny", "%2F%2B", "et/+"] {
        assert!(!all.contains(leak), "{leak} leaked in {all}");
    }
    // outbound URLs are never quoted with their query
    assert!(!all.contains("token=s"), "{all}");
}
