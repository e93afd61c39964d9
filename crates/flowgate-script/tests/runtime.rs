//! Host API, sandbox and runtime behaviour, end to end through `FlowRuntime`.

#![allow(clippy::unwrap_used)]

use flowgate_core::repo::KvRepo;
use flowgate_core::{FlowName, FlowPackage, Manifest};
use flowgate_script::{
    FlowRuntime, FlowVersion, Host, MemoryRepo, MockHttp, MockResponse, ReqwestHttp, RunFailure,
    RunInput, RunOutcome, RuntimeConfig, RuntimeError,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOML: &str = r#"
name = "t"
[[trigger]]
kind = "http"
[limits]
timeout_ms = 2000
[http]
allow = ["api.partner.example", "*.crm.example", "127.0.0.1"]
"#;

fn version(script: &str) -> FlowVersion {
    version_with(TOML, script)
}

fn version_with(toml: &str, script: &str) -> FlowVersion {
    let mut pkg = FlowPackage::default();
    pkg.files.insert("flow.toml".into(), toml.into());
    pkg.files.insert("main.rhai".into(), script.into());
    let m = Manifest::parse(toml).unwrap();
    FlowVersion::new(1, m, pkg)
}

struct Env {
    rt: FlowRuntime,
    store: Arc<MemoryRepo>,
    http: Arc<MockHttp>,
}

fn env_with(config: RuntimeConfig, mocks: Vec<MockResponse>) -> Env {
    Env {
        rt: FlowRuntime::new(config),
        store: Arc::new(MemoryRepo::new()),
        http: Arc::new(MockHttp::new(mocks)),
    }
}

fn env() -> Env {
    env_with(RuntimeConfig::default(), vec![])
}

impl Env {
    fn host(&self) -> Host {
        Host {
            users: self.store.clone(),
            kv: self.store.clone(),
            secrets: self.store.clone(),
            http: self.http.clone(),
            flow: FlowName::parse("t").unwrap(),
        }
    }
    fn run(&self, script: &str) -> RunOutcome {
        self.run_input(script, input(json!(null)))
    }
    fn run_input(&self, script: &str, input: RunInput) -> RunOutcome {
        self.rt
            .execute_blocking(&version(script), input, self.host())
            .unwrap()
    }
    fn value(&self, script: &str) -> Value {
        let o = self.run(script);
        match o.result {
            Ok(r) => r.body.into_value(),
            Err(f) => panic!("run failed: {f:?}\nlogs: {:?}", o.logs),
        }
    }
    fn failure(&self, script: &str) -> RunFailure {
        self.run(script).result.expect_err("the run should fail")
    }
}

fn input(body: Value) -> RunInput {
    RunInput {
        body: None,
        stored: None,
        request: json!({"method": "POST", "path": "", "params": {}, "query": {}, "headers": {}, "body": body}),
        caller: json!({"kind": "api_key", "id": "k1", "scopes": []}),
        trigger: json!({"kind": "http"}),
        ctx: flowgate_script::JsonBody::stored(
            json!({"flow": "t", "version": 1, "run_id": "r", "request_id": "q", "attempt": 1})
                .to_string(),
        ),
        reads: Default::default(),
    }
}

fn error_message(f: &RunFailure) -> String {
    match f {
        RunFailure::Error { message, .. } => message.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn value_respond_fail_and_json_round_trip() {
    let e = env();
    let out = e.run_input(
        "let b = request.body; #{ i: b.n + 1, f: b.x * 2.0, none: b.none, arr: b.arr, who: caller.id, kind: trigger.kind, attempt: ctx.attempt }",
        input(json!({"n": 41, "x": 1.25, "none": null, "arr": [1, {"a": [true]}]})),
    );
    let body = out.result.unwrap().body.into_value();
    assert_eq!(
        body,
        json!({"i": 42, "f": 2.5, "none": null, "arr": [1, {"a": [true]}], "who": "k1", "kind": "http", "attempt": 1})
    );
    assert!(body["i"].is_i64() && body["f"].is_f64());

    let r = e
        .run("respond(201, #{ ok: true }, #{ \"X-Thing\": \"1\" }); 99")
        .result
        .unwrap();
    assert_eq!(
        (
            r.status,
            r.body.into_value(),
            r.headers.get("x-thing").cloned()
        ),
        (201, json!({"ok": true}), Some("1".into()))
    );

    // respond inside a function and inside try/catch still ends the run
    let r = e
        .run("fn f() { respond(202, 1) } try { f(); } catch (e) { 0 } 5")
        .result
        .unwrap();
    assert_eq!((r.status, r.body.into_value()), (202, json!(1)));

    let f = e.failure("try { fail(409, \"taken\", \"already there\") } catch { } 1");
    assert_eq!(
        f,
        RunFailure::Fail {
            status: 409,
            code: "taken".into(),
            detail: "already there".into()
        }
    );
    assert!(!f.is_retryable());
    assert!(matches!(
        e.failure("fail(200, \"x\", \"y\")"),
        RunFailure::Error { .. }
    ));
}

#[test]
fn logs_print_and_debug_go_to_the_run_log() {
    let e = env();
    let o = e.run("log::trace(\"t\"); log::info(\"i\"); log::warn(\"w\"); log::error(#{a: 1}); print(\"p\"); debug(\"d\"); 1");
    let lines: Vec<(String, String)> = o
        .logs
        .iter()
        .map(|l| (l.level.as_str().to_owned(), l.message.clone()))
        .collect();
    assert_eq!(
        lines[..5],
        [
            ("trace".into(), "t".into()),
            ("info".into(), "i".into()),
            ("warn".into(), "w".into()),
            ("error".into(), "{\"a\":1}".into()),
            ("info".into(), "p".into()),
        ]
    );
    assert_eq!(lines[5].0, "trace");
    assert!(lines[5].1.contains("\"d\""));
}

#[test]
fn users_functions_and_error_paths() {
    let e = env();
    let ann = e.store.seed_user(&json!({"email": "ann@example.com", "attributes": {"plan": "free"}, "external_ids": {"crm": "C1"}})).unwrap();
    let id = ann.id.to_string();
    let v = e.value(&format!(r#"
        let a = users::get("{id}");
        let b = users::find_by_email("ANN@example.com");
        let c = users::find_by_external_id("crm", "C1");
        let missing = [users::get("0190a0a0-0000-7000-8000-0000000000ff"), users::get("nope"),
                       users::find_by_email("x@y.z"), users::find_by_external_id("crm", "zz")];
        let found = users::find(#{{ "attributes.plan": "free" }}, 10);
        let bob = users::create(#{{ email: "bob@example.com", attributes: #{{ plan: "pro" }} }});
        let dup = "no error"; try {{ users::create(#{{ email: "BOB@example.com" }}); }} catch (err) {{ dup = err; }}
        let upd = users::update("{id}", #{{ attributes: #{{ plan: "pro", extra: 1 }}, display_name: "Ann" }});
        let upd2 = users::update("{id}", #{{ attributes: #{{ extra: () }} }});
        let nf = "no error"; try {{ users::update("0190a0a0-0000-7000-8000-0000000000ff", #{{}}); }} catch (err) {{ nf = err; }}
        let st = users::set_status(bob.id, "suspended");
        let nf2 = ""; try {{ users::set_status("0190a0a0-0000-7000-8000-0000000000ff", "active"); }} catch (err) {{ nf2 = err; }}
        let bad = ""; try {{ users::set_status(bob.id, "gone"); }} catch (err) {{ bad = err; }}
        let pros = users::find(#{{ "attributes.plan": "pro" }}, 10);
        #{{ a: a.email, b: b.id == a.id, c: c.id == a.id, missing: missing, found: found.len(),
            bob_status: bob.status, dup: dup, upd: upd.attributes, name: upd.display_name, upd2: upd2.attributes,
            nf: nf, st: st.status, nf2: nf2, bad: bad, pros: pros.len(),
            del: users::delete(bob.id), del2: users::delete(bob.id), fields: a.keys() }}
    "#));
    assert_eq!(v["a"], "ann@example.com");
    assert_eq!((v["b"].clone(), v["c"].clone()), (json!(true), json!(true)));
    assert_eq!(v["missing"], json!([null, null, null, null]));
    assert_eq!(v["found"], 1);
    assert_eq!(v["bob_status"], "active");
    assert!(
        v["dup"]
            .as_str()
            .unwrap()
            .contains("users::create: conflict"),
        "{}",
        v["dup"]
    );
    assert_eq!(v["upd"], json!({"plan": "pro", "extra": 1}));
    assert_eq!(v["name"], "Ann");
    assert_eq!(v["upd2"], json!({"plan": "pro"}));
    assert!(
        v["nf"].as_str().unwrap().contains("not found"),
        "{}",
        v["nf"]
    );
    assert_eq!(v["st"], "suspended");
    assert!(v["nf2"].as_str().unwrap().contains("not found"));
    assert!(v["bad"].as_str().unwrap().contains("must be one of"));
    assert_eq!(v["pros"], 2);
    assert_eq!(
        (v["del"].clone(), v["del2"].clone()),
        (json!(true), json!(false))
    );
    let mut fields: Vec<String> = serde_json::from_value(v["fields"].clone()).unwrap();
    fields.sort();
    assert_eq!(
        fields,
        [
            "attributes",
            "created_at",
            "display_name",
            "email",
            "external_ids",
            "id",
            "status",
            "updated_at"
        ]
    );
    // an uncaught repository error fails the run with the message and a position
    let f = e.failure("let x = 1;\nusers::create(#{ email: \"ann@example.com\" })");
    match f {
        RunFailure::Error { message, .. } => assert!(message.contains("conflict"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn kv_secrets_events_crypto_base64_time() {
    let e = env();
    e.store.set_secret("API_TOKEN", "s3cr3t-value");
    let o = e.run(
        r#"
        kv::set("a", #{ n: 1, l: [1, 2] });
        kv::set("t", "x", 60);
        let got = kv::get("a");
        let gone = kv::get("none");
        let d1 = kv::delete("t"); let d2 = kv::delete("t");
        let tok = secrets::get("API_TOKEN");
        let none = secrets::get("NOPE");
        log::info(`calling with ${tok}`);
        events::emit("billing.paid", #{ amount: 5 });
        let bad_event = ""; try { events::emit("Bad Type", 1); } catch (err) { bad_event = err; }
        let bad_b64 = ""; try { base64::decode("***"); } catch (err) { bad_b64 = err; }
        let bad_fmt = ""; try { time::format(0, "%Q"); } catch (err) { bad_fmt = err; }
        #{ got: got, gone: gone, d: [d1, d2], none: none, bad_event: bad_event,
           sha: crypto::sha256("abc"),
           hmac: crypto::hmac_sha256("key", "The quick brown fox jumps over the lazy dog"),
           uuid: crypto::uuid().len(), tok: crypto::random_token(32).len(),
           b64: base64::encode("hello"), plain: base64::decode("aGVsbG8="),
           parsed: time::parse("2026-01-02T03:04:05.678Z"),
           fmt: time::format(1767323045678, "%Y-%m-%d %H:%M"),
           now_ok: time::now().ends_with("Z") && time::now_ms() > 1700000000000,
           bad_b64: bad_b64, bad_fmt: bad_fmt }
    "#,
    );
    let v = o.result.clone().unwrap().body.into_value();
    assert_eq!(v["got"], json!({"n": 1, "l": [1, 2]}));
    assert_eq!(v["gone"], Value::Null);
    assert_eq!(v["d"], json!([true, false]));
    assert_eq!(v["none"], Value::Null);
    assert!(v["bad_event"]
        .as_str()
        .unwrap()
        .contains("not a valid event type"));
    assert_eq!(
        v["sha"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        v["hmac"],
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );
    assert_eq!(
        (v["uuid"].clone(), v["tok"].clone()),
        (json!(36), json!(43))
    );
    assert_eq!(
        (v["b64"].clone(), v["plain"].clone()),
        (json!("aGVsbG8="), json!("hello"))
    );
    assert_eq!(v["parsed"], 1767323045678i64);
    assert_eq!(v["fmt"], "2026-01-02 03:04");
    assert_eq!(v["now_ok"], true);
    assert!(v["bad_b64"].as_str().unwrap().contains("base64"));
    assert!(v["bad_fmt"].as_str().unwrap().contains("invalid format"));
    assert_eq!(
        e.store.kv_get(&FlowName::parse("t").unwrap(), "a").unwrap(),
        Some(json!({"n": 1, "l": [1, 2]}))
    );
    assert_eq!(o.events.len(), 1);
    assert_eq!(
        (o.events[0].kind.as_str(), o.events[0].data.clone()),
        ("billing.paid", json!({"amount": 5}))
    );
    // secret values never reach the log
    assert!(
        o.logs
            .iter()
            .any(|l| l.message == "calling with [redacted]"),
        "{:?}",
        o.logs
    );
    assert!(!o.logs.iter().any(|l| l.message.contains("s3cr3t-value")));
    // …nor error messages
    let f = e.failure("let t = secrets::get(\"API_TOKEN\"); throw `bad token ${t}`;");
    assert_eq!(error_message(&f), "bad token [redacted]");
    let f = e.failure("time::parse(\"garbage\")");
    assert!(error_message(&f).contains("time::parse"));
}

#[test]
fn http_with_mocks_and_allow_list() {
    let e = env_with(
        RuntimeConfig::default(),
        vec![
            MockResponse {
                method: "GET".into(),
                url: "https://api.partner.example/x?a=1&b=two".into(),
                status: 404,
                headers: [("X-Id".to_string(), "7".to_string())].into(),
                body: json!({"error": "nope"}),
            },
            MockResponse {
                method: "POST".into(),
                url: "https://eu.crm.example/c".into(),
                status: 201,
                headers: Default::default(),
                body: json!("created"),
            },
        ],
    );
    let v = e.value(r#"
        let a = http::get("https://api.partner.example/x", #{ query: #{ a: 1, b: "two" }, headers: #{ "X-Key": "k" } });
        let b = http::post("https://eu.crm.example/c", #{ name: "n" });
        let c = http::request(#{ method: "POST", url: "https://eu.crm.example/c", body: "raw" });
        #{ a: a, b: b.status, bb: b.body, c: c.status }
    "#);
    assert_eq!(
        v["a"],
        json!({"status": 404, "headers": {"x-id": "7"}, "body": {"error": "nope"}})
    );
    assert_eq!(
        (v["b"].clone(), v["bb"].clone(), v["c"].clone()),
        (json!(201), json!("created"), json!(201))
    );
    let calls = e.http.calls();
    assert_eq!(calls[0].headers.get("x-key").map(String::as_str), Some("k"));
    assert_eq!(calls[1].body.as_deref(), Some(&b"{\"name\":\"n\"}"[..]));
    assert_eq!(
        calls[1].headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(calls[2].body.as_deref(), Some(&b"raw"[..]));

    let f = e.failure("http::get(\"https://evil.example/steal\")");
    assert_eq!(
        error_message(&f),
        "http: host \"evil.example\" is not in this flow's [http] allow list"
    );
    assert!(e.http.calls().len() == 3, "a refused host is never called");
    let caught = e.value("let c = (); try { http::get(\"https://crm.example/\") } catch (err) { c = `caught: ${err}`; } c");
    assert!(caught
        .as_str()
        .unwrap()
        .starts_with("caught: http: host \"crm.example\""));
    let f = e.failure("http::get(\"https://api.partner.example/unmocked\")");
    assert!(error_message(&f).contains("no mock for GET https://api.partner.example/unmocked"));
    assert_eq!(
        e.http.unmatched(),
        ["GET https://api.partner.example/unmocked"]
    );
    let f = e.failure("http::get(\"file:///etc/passwd\")");
    assert!(error_message(&f).contains("only http and https"));
}

/// A one-shot HTTP server on 127.0.0.1 answering `body` to every request.
fn local_server(body: &'static str) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            let _ = s.write_all(resp.as_bytes());
        }
    });
    port
}

#[test]
fn real_client_refuses_private_addresses_after_dns_unless_allowed() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let port = local_server("{\"ok\":true}");
    let toml = "name = \"t\"\n[[trigger]]\nkind = \"http\"\n[http]\nallow = [\"localhost\", \"127.0.0.1\"]\n";
    let run = |allow_private: bool, url: String| {
        let mut cfg = RuntimeConfig::default();
        cfg.http.allow_private_hosts = allow_private;
        let rt = FlowRuntime::new(cfg);
        let store = Arc::new(MemoryRepo::new());
        let host = Host {
            users: store.clone(),
            kv: store.clone(),
            secrets: store,
            http: Arc::new(ReqwestHttp::new(tokio_rt.handle().clone())),
            flow: FlowName::parse("t").unwrap(),
        };
        rt.execute_blocking(
            &version_with(toml, &format!("http::get(\"{url}\")")),
            input(json!(null)),
            host,
        )
        .unwrap()
    };
    // `localhost` is allowed by name but resolves to loopback: refused after DNS.
    let o = run(false, format!("http://localhost:{port}/x"));
    let msg = error_message(&o.result.unwrap_err());
    assert!(
        msg.contains("host \"localhost\" resolves to") && msg.contains("private or loopback"),
        "{msg}"
    );
    let o = run(false, format!("http://127.0.0.1:{port}/x"));
    assert!(error_message(&o.result.unwrap_err()).contains("127.0.0.1"));
    // with allow_private_hosts the same call goes through
    let o = run(true, format!("http://localhost:{port}/x"));
    assert_eq!(
        o.result.unwrap().body.into_value(),
        json!({"status": 200, "headers": {"content-type": "application/json", "content-length": "11", "connection": "close"}, "body": {"ok": true}})
    );
}

fn limit_of(f: &RunFailure) -> &'static str {
    match f {
        RunFailure::LimitExceeded { limit, .. } => limit,
        RunFailure::Timeout { .. } => "timeout",
        other => panic!("expected a limit, got {other:?}"),
    }
}

#[test]
fn hostile_scripts_end_with_named_errors() {
    let mut cfg = RuntimeConfig::default();
    cfg.limits.max_operations = 2_000_000;
    cfg.limits.max_array_size = 10_000;
    cfg.limits.max_map_size = 10_000;
    let e = env_with(cfg, vec![]);
    let started = Instant::now();
    assert!(matches!(
        limit_of(&e.failure("loop {}")),
        "operations" | "timeout"
    ));
    assert_eq!(
        limit_of(&e.failure("fn f(n) { f(n + 1) } f(0)")),
        "call_depth"
    );
    assert_eq!(
        limit_of(&e.failure("let s = \"ab\"; loop { s += s; }")),
        "string_size"
    );
    assert_eq!(
        limit_of(&e.failure("let a = []; loop { a.push(1); }")),
        "array_size"
    );
    assert!(matches!(
        limit_of(&e.failure("let m = #{}; for i in 0..1000000 { m[`k${i}`] = i; }")),
        "map_size" | "operations" | "timeout"
    ));
    // runtime errors raised by the script carry line and column
    match e.failure("let x = 1;\nlet y = x + \"a\" * 2;") {
        RunFailure::Error { line, column, .. } => {
            assert_eq!((line, column.is_some()), (Some(2), true))
        }
        other => panic!("{other:?}"),
    }
    let f = e.failure("let s = \"ab\"; loop { s += s; }");
    assert_eq!((f.http_status(), f.code()), (500, "flow_limit_exceeded"));
    assert!(f.counts_as_run_failed_event());
    // import is refused
    let f = e.failure("import \"x\" as x; 1");
    assert!(error_message(&f).contains("cannot import"), "{f:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn wall_clock_timeout_is_504() {
    let mut cfg = RuntimeConfig::default();
    cfg.limits.max_operations = 0; // unlimited: only the deadline stops it
    let e = env_with(cfg, vec![]);
    let toml = "name = \"t\"\n[[trigger]]\nkind = \"http\"\n[limits]\ntimeout_ms = 300\n";
    let started = Instant::now();
    let o =
        e.rt.execute_blocking(
            &version_with(toml, "let x = 0; loop { x += 1; }"),
            input(json!(null)),
            e.host(),
        )
        .unwrap();
    let f = o.result.unwrap_err();
    assert_eq!(f, RunFailure::Timeout { timeout_ms: 300 });
    assert_eq!((f.http_status(), f.code()), (504, "flow_timeout"));
    assert!(started.elapsed() < Duration::from_secs(3));
    // try/catch cannot swallow the timeout
    let o =
        e.rt.execute_blocking(
            &version_with(toml, "loop { try { loop {} } catch {} }"),
            input(json!(null)),
            e.host(),
        )
        .unwrap();
    assert!(matches!(o.result, Err(RunFailure::Timeout { .. })));
}

#[test]
fn compile_errors_name_file_line_column() {
    let e = env();
    let err =
        e.rt.compile(&version("let a = 1;\nlet b = eval(\"1\");"))
            .unwrap_err();
    assert_eq!((err.file.as_str(), err.line), ("main.rhai", 2));
    assert!(err.to_string().starts_with("main.rhai:2:"), "{err}");
    let deep = format!("let x = {}1{};", "(".repeat(200), ")".repeat(200));
    let err = e.rt.compile(&version(&deep)).unwrap_err();
    assert!(err.message.contains("expression_depth"), "{err}");
    let err = e.rt.compile(&version("let x = ;")).unwrap_err();
    assert_eq!((err.line, err.column), (1, 9));
    // undeclared variables are compile errors (strict variables)
    assert!(e.rt.compile(&version("requets.body")).is_err());
    // executing a version that does not compile is a runtime error, not a panic
    assert!(matches!(
        e.rt.execute_blocking(&version("let x = ;"), input(json!(null)), e.host()),
        Err(RuntimeError::Compile(_))
    ));
}

#[test]
fn cache_hits_on_the_same_sha256() {
    let e = env();
    let v = version("40 + 2");
    e.rt.compile(&v).unwrap();
    let s1 = e.rt.cache_stats();
    let a = e.rt.compile(&v).unwrap();
    let b = e.rt.compile(&v.clone()).unwrap();
    let s2 = e.rt.cache_stats();
    assert_eq!((s1.misses, s1.hits), (1, 0));
    assert_eq!((s2.misses, s2.hits), (1, 2));
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(s2.entries, 1);
    e.rt.compile(&version("40 + 3")).unwrap();
    assert_eq!(e.rt.cache_stats().misses, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_overload_and_isolation() {
    let mut cfg = RuntimeConfig {
        pool_size: 1,
        queue_wait: Duration::from_millis(50),
        ..Default::default()
    };
    cfg.limits.max_operations = 0;
    let e = env_with(cfg, vec![]);
    let slow = version_with(
        "name = \"t\"\n[[trigger]]\nkind = \"http\"\n[limits]\ntimeout_ms = 600\n",
        "loop {}",
    );
    let rt = e.rt.clone();
    let host = e.host();
    let hog =
        tokio::spawn(async move { rt.execute(&slow, Arc::new(input(json!(null))), host).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(e.rt.pool_in_use(), 1);
    let r =
        e.rt.execute(&version("1"), Arc::new(input(json!(null))), e.host())
            .await;
    assert!(
        matches!(
            r,
            Err(RuntimeError::Overloaded {
                retry_after_secs: 1
            })
        ),
        "{r:?}"
    );
    let hogged = hog.await.unwrap().unwrap();
    assert!(matches!(hogged.result, Err(RunFailure::Timeout { .. })));
    // the next run proceeds normally
    let ok =
        e.rt.execute(&version("6 * 7"), Arc::new(input(json!(null))), e.host())
            .await
            .unwrap();
    assert_eq!(ok.result.unwrap().body.into_value(), json!(42));
    assert_eq!(e.rt.pool_in_use(), 0);
}

#[test]
fn fixture_failures_produce_a_diff() {
    use flowgate_script::fixtures::run_fixture_source;
    let e = env();
    let v = version("users::update(users::find_by_email(\"a@x.io\").id, #{ attributes: #{ plan: \"pro\" } }); #{ plan: \"pro\", n: [1, 2] }");
    let fx = r#"{"users": [{"email": "a@x.io"}], "http": [],
        "expect": {"status": 201, "body": {"plan": "gold", "n": [1]}, "users": [{"email": "a@x.io", "attributes": {"plan": "basic"}}],
                   "events": [{"type": "x.y"}], "kv": {"k": 1}, "logs_contain": ["hello"]}}"#;
    let r = run_fixture_source(&e.rt, &v, "tests/a.json", fx);
    assert!(!r.passed());
    let all = r.diffs.join("\n");
    for needle in [
        "/status: expected 201, got 200",
        "/body/plan: expected \"gold\", got \"pro\"",
        "/body/n: expected 1 items, got 2",
        "/users/0/attributes/plan: expected \"basic\", got \"pro\"",
        "/events: expected 1 items, got 0",
        "/kv/k: expected 1, but it is missing",
        "/logs: no log line contains \"hello\"",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in\n{all}");
    }
    // an unmocked call fails the fixture even when the script catches the error
    let v = version("try { http::get(\"https://api.partner.example/x\") } catch { } 1");
    let r = run_fixture_source(&e.rt, &v, "tests/b.json", r#"{"expect": {"status": 200}}"#);
    assert_eq!(
        r.diffs,
        ["http: no mock for GET https://api.partner.example/x"]
    );
    let r = run_fixture_source(&e.rt, &v, "tests/c.json", r#"{"expect": {"stauts": 200}}"#);
    assert!(r.diffs[0].contains("invalid fixture"));
}

#[test]
fn host_function_errors_point_at_the_call_when_it_is_unique() {
    let e = env();
    let f = e.failure("let a = 1;\nlet when = time::parse(\"garbage\");\n");
    match &f {
        RunFailure::Error { line, column, .. } => {
            assert_eq!((*line, *column), (Some(2), Some(12)), "{f:?}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // Two calls of the same function: no guess.
    let f =
        e.failure("let a = time::parse(\"2026-01-01T00:00:00Z\");\nlet b = time::parse(\"x\");\n");
    match &f {
        RunFailure::Error { line, .. } => assert_eq!(*line, None, "{f:?}"),
        other => panic!("expected an error, got {other:?}"),
    }
}
