//! Hardening of runs and requests (issue 11): linear-time schema patterns,
//! fair shares of the run pool, a deadline on request bodies, bounded event
//! chains, dry runs that reveal no stored secret, idempotency fingerprints
//! with the query string, located manifest-name errors, and example flows
//! that never answer 5xx to input their schema accepts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waits (polling) until `cond` holds, at most `limit`; returns whether it did.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

// ------------------------------------------------------------- item 17

#[tokio::test]
async fn idempotency_key_reused_with_another_query_string_is_422() {
    let s = Server::start().await;
    s.deploy(
        "pay",
        common::http_flow("pay", "#{ amount: request.query.amount }", ""),
    )
    .await;
    let send = |q: &str| {
        s.request(Method::POST, &format!("/flows/pay?{q}"))
            .header("idempotency-key", "order-17")
            .json(&json!({"note": "same body"}))
            .send()
    };
    let first = send("amount=1").await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.json::<Value>().await.unwrap()["amount"], "1");

    let same = send("amount=1").await.unwrap();
    assert_eq!(same.status(), 200);
    assert_eq!(
        same.headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );

    let other = send("amount=1000").await.unwrap();
    assert_eq!(other.status(), 422, "another query is another request");
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["code"], "idempotency_key_reused", "{body}");
}

// ------------------------------------------------------------- item 21

#[tokio::test]
async fn manifest_name_that_is_no_slug_is_refused_naming_flow_toml_and_line() {
    let s = Server::start().await;
    let (status, body) = s
        .admin(
            Method::POST,
            "/admin/v1/flows",
            Some(json!({"files": {
                "flow.toml": "title = \"Payments\"\nname = \"Payment Webhook\"\n\n[[trigger]]\nkind = \"http\"\n",
                "main.rhai": "1",
            }})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["file"], "flow.toml", "{body}");
    assert_eq!(body["line"], 2, "{body}");
    assert_eq!(body["key"], "name", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with("flow.toml:2:"), "{detail}");
}

// ------------------------------------------------------------- item 3

#[tokio::test]
async fn backtracking_schema_patterns_are_refused_naming_the_schema_file() {
    let s = Server::start().await;
    for pattern in ["^(?=.*[0-9])[a-z0-9]+$", "^(a+)\\1$", "^(?!admin).*$"] {
        let schema = json!({
            "type": "object",
            "properties": {"code": {"type": "string", "pattern": pattern}}
        });
        let (status, body) = s
            .admin(
                Method::POST,
                "/admin/v1/flows",
                Some(json!({"files": {
                    "flow.toml": "name = \"patterns\"\n\n[[trigger]]\nkind = \"http\"\n\n[auth]\nmode = \"none\"\n",
                    "main.rhai": "request.body",
                    "input.schema.json": schema.to_string(),
                }})),
            )
            .await;
        assert_eq!(status, 422, "{pattern}: {body}");
        assert_eq!(body["file"], "input.schema.json", "{pattern}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("input.schema.json"),
            "{body}"
        );
    }
    // A linear-time pattern is fine, and large bodies are still validated in full.
    let schema = json!({
        "type": "object",
        "properties": {"codes": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{1,12}$"}}}
    });
    s.deploy(
        "patterns",
        json!({
            "flow.toml": "name = \"patterns\"\n\n[[trigger]]\nkind = \"http\"\n\n[auth]\nmode = \"none\"\n",
            "main.rhai": "#{ n: request.body.codes.len() }",
            "input.schema.json": schema.to_string(),
        }),
    )
    .await;
    let mut codes: Vec<Value> = (0..3000).map(|_| json!("abcdef")).collect();
    codes[10] = json!("NOT-OK");
    codes[2500] = json!("1234");
    let res = s
        .request(Method::POST, "/flows/patterns")
        .json(&json!({"codes": codes}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    let pointers: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/codes/10", "/codes/2500"], "{body}");
    codes[10] = json!("fine");
    codes[2500] = json!("fine");
    let res = s
        .request(Method::POST, "/flows/patterns")
        .json(&json!({"codes": codes}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["n"], 3000);
}

// ------------------------------------------------------------- item 5

/// Sends `head` and `first` part of a body on a raw connection, then runs
/// `after` (which may trickle more or nothing); returns the raw response.
fn raw_exchange(addr: &str, head: &str, first: &[u8], trickle: bool) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(first).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = trickle.then(|| {
        let mut w = stream.try_clone().unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            // One byte every 200 ms: never the whole body before the deadline.
            for _ in 0..200 {
                if stop.load(Ordering::SeqCst) || w.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&out);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            Err(_) => break,
        }
    }
    stop.store(true, Ordering::SeqCst);
    if let Some(t) = trickler {
        let _ = t.join();
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn stalled_or_trickled_request_bodies_get_408_problem() {
    let s = Server::start_with(None, &[("FLOWGATE_BODY_TIMEOUT_SECS", "1")]).await;
    s.deploy("sink", common::http_flow("sink", "request.body", ""))
        .await;
    let addr = s.url.trim_start_matches("http://").to_owned();
    let key = s.admin_key.clone();
    let cases = [
        ("/flows/sink", String::new(), false),
        ("/flows/sink", String::new(), true),
        (
            "/admin/v1/users",
            format!("Authorization: Bearer {key}\r\n"),
            false,
        ),
    ];
    for (path, extra, trickle) in cases {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{extra}Content-Length: 400\r\n\r\n"
        );
        let a = addr.clone();
        let res =
            tokio::task::spawn_blocking(move || raw_exchange(&a, &head, b"{\"email\":", trickle))
                .await
                .unwrap();
        assert!(
            res.starts_with("HTTP/1.1 408"),
            "{path} (trickle {trickle}): {res}"
        );
        let lower = res.to_ascii_lowercase();
        assert!(
            lower.contains("content-type: application/problem+json"),
            "{res}"
        );
        assert!(res.contains("\"code\":\"request_timeout\""), "{res}");
    }
    // The server still answers.
    let res = s.get("/healthz").send().await.unwrap();
    assert_eq!(res.status(), 200);
}

// ------------------------------------------------------------- item 4

/// A local partner that accepts connections and answers none of them until released.
struct HoldServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    release: Arc<AtomicBool>,
}

impl HoldServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(AtomicBool::new(false));
        let (a, r) = (accepted.clone(), release.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                a.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
                    let _ = conn.read(&mut buf);
                    while !r.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    );
                });
            }
        });
        Self {
            port,
            accepted,
            release,
        }
    }
}

/// (caller, status, body, `Retry-After`) of each finished call.
type Answers = Arc<std::sync::Mutex<Vec<(String, u16, Value, Option<String>)>>>;

#[tokio::test]
async fn one_client_saturating_a_slow_flow_does_not_make_other_flows_503() {
    let hold = HoldServer::start();
    // 8 slots: a flow may hold 4, one caller 2.
    let s = Server::start_with(
        None,
        &[
            ("FLOWGATE_RUN_POOL_SIZE", "8"),
            ("FLOWGATE_ALLOW_PRIVATE_HOSTS", "true"),
        ],
    )
    .await;
    let slow = json!({
        "flow.toml": "name = \"slow\"\n\n[[trigger]]\nkind = \"http\"\n\n[auth]\nmode = \"api_key\"\n\n[limits]\ntimeout_ms = 120000\n\n[http]\nallow = [\"127.0.0.1\"]\n",
        "main.rhai": format!("let r = http::get(\"http://127.0.0.1:{}/hold\", #{{ timeout_ms: 60000 }}); #{{ partner: r.status }}", hold.port),
    });
    s.deploy("slow", slow).await;
    let fast = json!({
        "flow.toml": "name = \"fast\"\n\n[[trigger]]\nkind = \"http\"\n\n[auth]\nmode = \"api_key\"\n",
        "main.rhai": "#{ ok: true }",
    });
    s.deploy("fast", fast).await;
    let (a, b, c, d) = (
        s.key(&["demo:call"]).await,
        s.key(&["demo:call"]).await,
        s.key(&["demo:call"]).await,
        s.key(&["demo:call"]).await,
    );

    let done: Answers = Arc::default();
    let fire = |key: &str, who: &str| {
        let (client, url, key, who, done) = (
            s.client.clone(),
            format!("{}/flows/slow", s.url),
            key.to_owned(),
            who.to_owned(),
            done.clone(),
        );
        tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(key)
                .timeout(Duration::from_secs(90))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let retry = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = res.json().await.unwrap_or(Value::Null);
            done.lock().unwrap().push((who, status, body, retry));
        })
    };
    let count = |who: &str, status: u16| {
        done.lock()
            .unwrap()
            .iter()
            .filter(|(w, s, _, _)| w == who && *s == status)
            .count()
    };

    // Caller A alone: two runs of its own, the rest refused with 429 at once.
    let mut tasks: Vec<_> = (0..6).map(|_| fire(&a, "a")).collect();
    let settled = eventually(Duration::from_secs(60), || {
        hold.accepted.load(Ordering::SeqCst) == 2 && count("a", 429) == 4
    })
    .await;
    assert!(
        settled,
        "held {} runs, answered {:?}",
        hold.accepted.load(Ordering::SeqCst),
        done.lock().unwrap()
    );
    for (_, status, body, retry) in done.lock().unwrap().iter() {
        assert_eq!(*status, 429);
        assert_eq!(body["code"], "too_many_concurrent_runs", "{body}");
        assert!(retry.is_some(), "429 without Retry-After");
    }

    // Callers B and C: B fills the flow's share (4 of 8), C gets 503.
    tasks.extend((0..2).map(|_| fire(&b, "b")));
    assert!(
        eventually(Duration::from_secs(60), || hold
            .accepted
            .load(Ordering::SeqCst)
            == 4)
        .await
    );
    tasks.extend((0..2).map(|_| fire(&c, "c")));
    assert!(eventually(Duration::from_secs(60), || count("c", 503) == 2).await);
    for (who, _, body, retry) in done.lock().unwrap().iter() {
        if who == "c" {
            assert_eq!(body["code"], "flow_at_capacity", "{body}");
            assert!(retry.is_some(), "503 without Retry-After");
        }
    }

    // Another flow, another caller: unaffected while the slow flow is saturated.
    for _ in 0..3 {
        let res = s
            .request(Method::POST, "/flows/fast")
            .bearer_auth(&d)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    hold.release.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(count("a", 200), 2);
    assert_eq!(count("b", 200), 2);
    // The shares were given back: A may run again.
    hold.release.store(true, Ordering::SeqCst);
    let res = s
        .request(Method::POST, "/flows/slow")
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

// ------------------------------------------------------------- item 6

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test]
async fn a_user_updated_handler_that_updates_the_user_stops_at_the_chain_bound() {
    let s = Server::start_with(None, &[("FLOWGATE_MAX_EVENT_DEPTH", "3")]).await;
    s.deploy(
        "toucher",
        json!({
            "flow.toml": "name = \"toucher\"\n\n[[trigger]]\nkind = \"event\"\nevents = [\"user.updated\"]\n",
            "main.rhai": "let u = trigger.event.data;\nlet n = (u.attributes.touches ?? 0) + 1;\nusers::update(u.id, #{ attributes: #{ touches: n } });\nn",
        }),
    )
    .await;
    let (st, user) = s
        .admin(
            Method::POST,
            "/admin/v1/users",
            Some(json!({"email": "loop@example.com"})),
        )
        .await;
    assert_eq!(st, 201, "{user}");
    let id = user["id"].as_str().unwrap().to_owned();
    let (st, v) = s
        .admin(
            Method::PATCH,
            &format!("/admin/v1/users/{id}"),
            Some(json!({"attributes": {"plan": "pro"}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");

    // The admin change is the root; three handler runs, then the chain stops.
    let start = Instant::now();
    let failed = loop {
        let (_, runs) = s
            .admin(
                Method::GET,
                "/admin/v1/runs?flow=toucher&status=failed",
                None,
            )
            .await;
        if let Some(r) = runs["items"].as_array().and_then(|a| a.first()) {
            break r.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the chain was never stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("event chain too deep"), "{failed}");
    assert!(error.contains("the limit is 3"), "{failed}");

    let (_, u) = s
        .admin(Method::GET, &format!("/admin/v1/users/{id}"), None)
        .await;
    assert_eq!(u["attributes"]["touches"], 3, "{u}");
    let (_, all) = s
        .admin(Method::GET, "/admin/v1/runs?flow=toucher", None)
        .await;
    let statuses: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), 4, "{all}");
    assert_eq!(statuses.iter().filter(|s| **s == "succeeded").count(), 3);

    // The stop is announced as flow.run_failed.
    use diesel::{Connection, RunQueryDsl};
    let path = s.db_url.trim_start_matches("sqlite://").to_owned();
    let mut c = diesel::SqliteConnection::establish(&path).unwrap();
    let n: Vec<Count> = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM events WHERE event_type = 'flow.run_failed' AND data LIKE '%event_chain_too_deep%'",
    )
    .load(&mut c)
    .unwrap();
    assert_eq!(n[0].n, 1);
}

// ------------------------------------------------------------- item 9

#[tokio::test]
async fn dry_runs_never_reveal_stored_secret_values() {
    let s = Server::start().await;
    let secret = "s3cr3t-VALUE-never-shown";
    let (st, _) = s
        .admin(
            Method::PUT,
            "/admin/v1/secrets/API_TOKEN",
            Some(json!({"value": secret})),
        )
        .await;
    assert_eq!(st, 204);
    let script = r#"
let t = secrets::get("API_TOKEN");
log::info(`token ${t} b64 ${base64::encode(t ?? "")}`);
kv::set("token", t);
events::emit("demo.seen", #{ token: t });
#{ token: t, b64: base64::encode(t ?? "") }
"#;
    let (st, v) = s
        .admin(
            Method::POST,
            "/admin/v1/flows",
            Some(json!({"files": common::http_flow("peek", script, "")})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let writer = s.key(&["flows:write"]).await;
    let dry = |body: Value| {
        s.request(Method::POST, "/admin/v1/flows/peek/versions/1/dry-run")
            .bearer_auth(&writer)
            .json(&body)
            .send()
    };
    let res = dry(json!({"request": {"body": {}}})).await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let b64 = base64_encode(secret);
    assert!(!text.contains(secret), "{text}");
    assert!(!text.contains(&b64), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["response"]["body"]["token"], Value::Null, "{v}");

    // The caller may give the values the dry run should see.
    let res = dry(json!({"request": {"body": {}}, "secrets": {"API_TOKEN": "given"}}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["response"]["body"]["token"], "given", "{v}");
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

// ------------------------------------------------------------- item 22

#[tokio::test]
async fn legacy_import_never_answers_5xx_to_records_its_schema_accepts() {
    let s = Server::start().await;
    let files = common::package_files(&common::repo_root().join("scripts/legacy-import"));
    s.deploy("legacy-import", files).await;
    let key = s.key(&["legacy:import"]).await;
    let records = [
        json!({"USR_MAIL": "@", "USR_STAT": "A", "ACCT_NO": "1"}),
        json!({"USR_MAIL": "jane doe@example.com", "USR_STAT": "A", "ACCT_NO": "2"}),
        json!({"USR_MAIL": "a@b@c", "USR_STAT": "S", "ACCT_NO": "3"}),
        json!({"USR_MAIL": "x@", "USR_STAT": "X", "ACCT_NO": "4"}),
        json!({"USR_MAIL": "tab\t@example.com", "USR_STAT": "A", "ACCT_NO": "5"}),
        json!({"USR_MAIL": format!("{}@example.com", "a".repeat(400)), "USR_STAT": "A", "ACCT_NO": "6"}),
        json!({"USR_MAIL": "ok@example.com", "USR_NM": ",", "USR_STAT": "A", "ACCT_NO": "7"}),
        json!({"USR_MAIL": "ok2@example.com", "USR_NM": "", "USR_STAT": "A", "ACCT_NO": "000000000000"}),
    ];
    for r in records {
        let res = s
            .request(Method::POST, "/flows/legacy-import")
            .bearer_auth(&key)
            .json(&r)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status < 500, "{r} -> {status} {body}");
    }
}
