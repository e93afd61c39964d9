//! Server skeleton over HTTP: health, readiness, problem responses, request
//! ids, metrics, the default database location, keys created while serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{http_flow, Server};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn health_problems_and_request_ids() {
    let s = Server::start().await;
    let res = s.get("/healthz").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    let res = s.get("/readyz").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);

    // A caller's request id is echoed; a bad one is replaced.
    let res = s
        .get("/healthz")
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = s
        .get("/healthz")
        .header("x-request-id", "has space")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "has space");

    // Unknown route → 404 problem; known route, wrong method → 405 problem.
    let res = s
        .get("/no/such/thing")
        .header("x-request-id", "rid-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["request_id"], "rid-1");
    for k in ["type", "title", "detail"] {
        assert!(body[k].is_string(), "{k} missing: {body}");
    }
    let res = s.request(Method::DELETE, "/healthz").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = s
        .request(Method::PUT, "/admin/v1/flows")
        .bearer_auth(&s.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert!(res.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_cache_use() {
    let s = Server::start().await;
    s.deploy("ping", http_flow("ping", "\"pong\"", "")).await;
    for _ in 0..3 {
        let res = s.request(Method::POST, "/flows/ping").send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200);
    }
    let res = s.request(Method::POST, "/flows/nope").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
    let text = s.metrics().await;
    // One sample per label set, counted on every call (the handles are kept
    // per thread; each call must still count).
    let sample = |name: &str, labels: &[&str]| common::metric_sample(&text, name, labels);
    let flow_route = "route=\"/flows/{flow}{tail:.*}\"";
    assert_eq!(
        sample(
            "flowgate_http_requests_total",
            &[flow_route, "status=\"200\"", "method=\"POST\""]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            "flowgate_http_requests_total",
            &[flow_route, "status=\"404\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            "flowgate_runs_total",
            &["flow=\"ping\"", "status=\"succeeded\""]
        ),
        Some(3.0),
        "{text}"
    );
    assert!(
        text.contains("flowgate_http_request_duration_seconds_bucket"),
        "{text}"
    );
    // Publishing compiles the script once; each of the three calls runs the
    // cached compile inline, each counted (from whichever thread ran it).
    for (name, want) in [
        ("flowgate_script_cache_misses_total", 1.0),
        ("flowgate_script_cache_hits_total", 3.0),
        ("flowgate_script_inline_runs_total", 3.0),
    ] {
        assert_eq!(sample(name, &[]), Some(want), "{name}: {text}");
    }
    assert!(text.contains("flowgate_queue_runs"), "{text}");
}

/// A script is handed only what it reads once it is compiled (the first
/// call compiles it; the later ones run it inline): every call still sees
/// the same values, whether it reads a key of `request`, `ctx`, or the
/// other maps through a closure, and one that reads nothing of them too.
#[tokio::test]
async fn scripts_see_what_they_read_on_every_call() {
    let s = Server::start().await;
    let script = r#"
        let kinds = [caller.kind].map(|k| k + "/" + trigger.kind);
        #{ n: request.body.n, tag: request.headers["x-tag"], q: request.query.q,
           flow: ctx.flow, attempt: ctx.attempt, kinds: kinds }
    "#;
    s.deploy("part", http_flow("part", script, "")).await;
    s.deploy("whole", http_flow("whole", "request.keys().len()", ""))
        .await;
    s.deploy("none", http_flow("none", "#{ x: 1 }", "")).await;
    for i in 0..4 {
        let res = s
            .request(Method::POST, "/flows/part?q=v")
            .header("x-tag", format!("t{i}"))
            .json(&json!({"n": i}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            body,
            json!({"n": i, "tag": format!("t{i}"), "q": "v", "flow": "part", "attempt": 1,
                   "kinds": ["anonymous/http"]}),
            "call {i}"
        );
        for (flow, want) in [("whole", json!(6)), ("none", json!({"x": 1}))] {
            let res = s
                .request(Method::POST, &format!("/flows/{flow}"))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), 200);
            assert_eq!(res.json::<Value>().await.unwrap(), want, "{flow}, call {i}");
        }
    }
}

#[tokio::test]
async fn keys_created_while_the_server_runs_work_at_once() {
    let s = Server::start().await;
    let key = s.cli(&["keys", "create", "--name", "ops", "--scopes", "flows:read"]);
    assert!(key.starts_with("fgk_"), "{key}");
    assert_eq!(key.lines().count(), 1, "the key is printed alone");
    let res = s
        .get("/admin/v1/flows")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    // The key's scopes are enforced.
    let res = s
        .get("/admin/v1/keys")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
}

/// `flowgate keys create` refuses exactly what `POST /admin/v1/keys` refuses,
/// with the same explanation, and stores nothing.
#[tokio::test]
async fn cli_key_creation_refuses_what_the_api_refuses() {
    let s = Server::start().await;
    let long = "k".repeat(129);
    let cases = [
        (long.as_str(), "admin"),
        ("   ", "admin"),
        ("ops", "Not A Scope"),
    ];
    for (name, scope) in cases {
        let (st, problem) = s
            .admin(
                Method::POST,
                "/admin/v1/keys",
                Some(serde_json::json!({"name": name, "scopes": [scope]})),
            )
            .await;
        assert_eq!(st, 422, "API accepted {name:?} {scope:?}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        let out = std::process::Command::new(common::binary())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FLOWGATE_DATABASE_URL", &s.db_url)
            .env("FLOWGATE_LOG", "warn")
            .args(["keys", "create", "--name", name, "--scopes", scope])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "CLI accepted {name:?} {scope:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(stderr.contains(detail), "{stderr} lacks {detail}");
    }
    // Nothing was stored: only the harness's admin key exists.
    let (_, keys) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(keys["items"].as_array().unwrap().len(), 1, "{keys}");
    // 128 characters are fine for both.
    let ok = "k".repeat(128);
    let key = s.cli(&["keys", "create", "--name", &ok, "--scopes", "flows:read"]);
    assert!(key.starts_with("fgk_"), "{key}");
}

#[test]
fn serve_without_config_creates_the_default_database() {
    common::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::binary())
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("FLOWGATE_LISTEN", "127.0.0.1:0")
        .env("FLOWGATE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 256];
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !seen.contains('\n') && std::time::Instant::now() < deadline {
        let n = out.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("listening on http://127.0.0.1:"), "{seen}");
    assert!(dir.path().join("data/flowgate.db").exists());
    assert!(dir.path().join("data/secrets.key").exists());
}

/// A TCP proxy in front of PostgreSQL that can be cut to make the database unreachable.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c2, k2) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                k2.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let (mut a, mut b) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c, mut d) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                });
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || d.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Proxy { port, cut, conns }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[tokio::test]
async fn readyz_answers_503_when_the_database_is_unreachable() {
    let Some(url) = common::fresh_postgres("readyz_answers_503_when_the_database_is_unreachable")
    else {
        return;
    };
    // Route the server's connections through a proxy we can cut.
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap();
    let host_start = after_scheme.find('@').map_or(0, |i| i + 1);
    let host_end = after_scheme[host_start..]
        .find('/')
        .map(|i| i + host_start)
        .unwrap();
    let upstream = after_scheme[host_start..host_end].to_owned();
    let proxy = Proxy::start(upstream.clone());
    let proxied = url.replacen(&upstream, &format!("127.0.0.1:{}", proxy.port), 1);
    let s = Server::start_with(Some(proxied), &[]).await;
    assert_eq!(
        s.get("/readyz").send().await.unwrap().status().as_u16(),
        200
    );
    proxy.cut();
    let res = s.get("/readyz").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 503);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert!(res.headers().contains_key("retry-after"));
    // The process itself is still up.
    assert_eq!(
        s.get("/healthz").send().await.unwrap().status().as_u16(),
        200
    );
}

/// Reads one HTTP/1.1 answer with a `content-length` from `buf` at `at`:
/// (status, body, where the next answer starts).
fn split_answer(buf: &[u8], at: usize) -> (u16, Vec<u8>, usize) {
    let rest = &buf[at..];
    let head_end = rest
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an answer head")
        + 4;
    let head = String::from_utf8_lossy(&rest[..head_end]).to_ascii_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .expect("a content-length")
        .trim()
        .parse()
        .unwrap();
    let body = rest[head_end..head_end + len].to_vec();
    (status, body, at + head_end + len)
}

#[tokio::test]
async fn pipelined_answers_arrive_in_order_and_whole_to_a_slow_reader() {
    let s = Server::start().await;
    let (status, doc) = s.admin(Method::GET, "/admin/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    let addr = s.url.trim_start_matches("http://").to_owned();
    let key = s.admin_key.clone();
    let got = tokio::task::spawn_blocking(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // Three requests in one write; the middle answer (over 100 KB) is more
        // than the server holds back per connection.
        let requests = format!(
            "GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n\
             GET /admin/v1/openapi.json HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {key}\r\n\r\n\
             GET /nowhere HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
        );
        c.write_all(requests.as_bytes()).unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            std::thread::sleep(Duration::from_millis(1));
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) => panic!("reading the answers: {e}"),
            }
        }
        all
    })
    .await
    .unwrap();
    let (first, _, at) = split_answer(&got, 0);
    let (second, body, at) = split_answer(&got, at);
    let (third, problem, at) = split_answer(&got, at);
    assert_eq!((first, second, third), (200, 200, 404));
    assert!(body.len() > 100_000, "{}", body.len());
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), doc);
    let problem: Value = serde_json::from_slice(&problem).unwrap();
    assert_eq!(problem["status"], 404);
    assert_eq!(at, got.len(), "nothing after the last answer");
}
