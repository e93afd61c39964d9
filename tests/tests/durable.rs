//! Durable async runs, events and idempotency over HTTP (issue 6): a crash in
//! the middle of a burst of acknowledged webhooks loses nothing (SQLite and
//! PostgreSQL), retries end `dead` with backoff and a `flow.run_failed` event,
//! replay, idempotency keys, webhook delivery de-duplication, event fan-out and
//! the transactional outbox, user lifecycle events, and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{http_flow, put_webhook_secret, runs_of, send_webhook, webhook_flow, Server};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A package subscribed to event types.
fn event_flow(name: &str, types: &[&str], script: &str) -> Value {
    json!({
        "flow.toml": format!(
            "name = \"{name}\"\n\n[[trigger]]\nkind = \"event\"\nevents = {}\n",
            serde_json::to_string(types).expect("types")
        ),
        "main.rhai": script,
    })
}

/// Polls `runs_of(flow)` until `done` holds or `timeout` passes; returns the last list.
async fn wait_runs(
    s: &Server,
    flow: &str,
    timeout: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let runs = runs_of(s, flow).await;
        if done(&runs) || start.elapsed() > timeout {
            return runs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn get_run(s: &Server, id: &str) -> Value {
    let (st, run) = s
        .admin(Method::GET, &format!("/admin/v1/runs/{id}"), None)
        .await;
    assert_eq!(st, 200, "{run}");
    run
}

fn log_messages(run: &Value) -> Vec<String> {
    run["logs"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|x| x["message"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn millis(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().expect("a time"))
        .expect("an RFC 3339 time")
        .timestamp_millis()
}

fn all_succeeded(runs: &[Value], n: usize) -> bool {
    runs.len() >= n && runs.iter().all(|r| r["status"] == "succeeded")
}

// ---------------------------------------------------------------- crash test

/// How the crash test's items arrive.
#[derive(Clone, Copy)]
enum Ingest {
    /// Signed webhook deliveries (each with its delivery id: queued with an
    /// idempotency record).
    Webhook,
    /// Plain async calls of a flow that only computes: run inline and
    /// committed already finished before their 202.
    Call,
}

/// Sends item `id` the way `kind` says; its status, body and `Location`.
async fn ingest(
    kind: Ingest,
    client: &reqwest::Client,
    base: &str,
    id: &str,
    body: &Value,
) -> Result<(u16, Value, Option<String>), reqwest::Error> {
    match kind {
        Ingest::Webhook => send_webhook(client, base, "ingest", id, body).await,
        Ingest::Call => {
            let res = client
                .post(format!("{base}/flows/ingest"))
                .json(body)
                .send()
                .await?;
            common::answer_of(res).await
        }
    }
}

async fn crash_test(db_url: Option<String>, kind: Ingest) {
    const TOTAL: usize = 300;
    const KILL_AFTER: usize = 120;
    const SCRIPT: &str = r#"
            let n = 0;
            for i in 0..3000 { n += i; }
            log::info("attempt " + ctx.attempt + " seq " + request.body.seq);
            #{ attempt: ctx.attempt, n: n }
            "#;
    // Plain calls come without credentials, all from one address.
    let env = [
        ("FLOWGATE_RUN_LEASE_SECONDS", "2"),
        ("FLOWGATE_ANONYMOUS_RATE", "100000/second"),
    ];
    let mut s = Server::start_with(db_url, &env).await;
    let package = match kind {
        Ingest::Webhook => {
            put_webhook_secret(&s).await;
            webhook_flow("ingest", SCRIPT)
        }
        Ingest::Call => json!({
            "flow.toml": "name = \"ingest\"\n\n[[trigger]]\nkind = \"http\"\nmode = \"async\"\n\n[auth]\nmode = \"none\"\n",
            "main.rhai": SCRIPT,
        }),
    };
    s.deploy("ingest", package).await;

    let pid = s.child.id().to_string();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent_ok = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(std::sync::Once::new());
    let base = s.url.clone();
    let client = s.client.clone();
    futures_util::stream::iter(0..TOTAL)
        .map(|i| {
            let (client, base, acked, sent_ok, killed, pid) = (
                client.clone(),
                base.clone(),
                acked.clone(),
                sent_ok.clone(),
                killed.clone(),
                pid.clone(),
            );
            async move {
                let r = ingest(
                    kind,
                    &client,
                    &base,
                    &format!("msg_{i}"),
                    &json!({"seq": i}),
                )
                .await;
                if let Ok((202, body, location)) = r {
                    let id = body["run_id"].as_str().expect("run_id").to_owned();
                    assert_eq!(
                        location.as_deref(),
                        Some(format!("/admin/v1/runs/{id}").as_str())
                    );
                    acked.lock().expect("lock").push(id);
                    if sent_ok.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                        killed.call_once(|| {
                            let st = std::process::Command::new("kill")
                                .args(["-9", &pid])
                                .status()
                                .expect("kill -9");
                            assert!(st.success());
                        });
                    }
                } else if let Ok((st, body, _)) = r {
                    panic!("unexpected answer {st}: {body}");
                }
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let acked_before: Vec<String> = acked.lock().expect("lock").clone();
    assert!(
        acked_before.len() >= KILL_AFTER,
        "only {} acknowledged",
        acked_before.len()
    );
    eprintln!(
        "crash test: {} of {TOTAL} acknowledged before/around kill -9",
        acked_before.len()
    );

    // Restart on the same database; the restarted node acknowledges too.
    s.kill_and_restart();
    let mut all = acked_before.clone();
    for i in 0..20 {
        let (st, body, _) = ingest(
            kind,
            &s.client,
            &s.url,
            &format!("after_{i}"),
            &json!({"seq": 10_000 + i}),
        )
        .await
        .expect("send after restart");
        assert_eq!(st, 202, "{body}");
        all.push(body["run_id"].as_str().expect("run_id").to_owned());
    }

    let runs = wait_runs(&s, "ingest", Duration::from_secs(120), |runs| {
        let done: HashMap<&str, &str> = runs
            .iter()
            .filter_map(|r| Some((r["id"].as_str()?, r["status"].as_str()?)))
            .collect();
        all.iter()
            .all(|id| done.get(id.as_str()) == Some(&"succeeded"))
    })
    .await;
    let status: HashMap<String, String> = runs
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_owned(),
                r["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let lost: Vec<&String> = all.iter().filter(|id| !status.contains_key(*id)).collect();
    assert!(lost.is_empty(), "acknowledged runs lost: {lost:?}");
    let unfinished: Vec<(&String, &String)> = all
        .iter()
        .filter_map(|id| status.get(id).map(|st| (id, st)))
        .filter(|(_, st)| st.as_str() != "succeeded")
        .collect();
    assert!(
        unfinished.is_empty(),
        "{} acknowledged runs did not succeed: {:?}",
        unfinished.len(),
        &unfinished[..unfinished.len().min(10)]
    );
    // Every run saw its own attempt number; orphaned ones ran again.
    let mut retried = 0;
    for id in &all {
        let run = get_run(&s, id).await;
        let attempt = run["attempt"].as_u64().expect("attempt");
        let logs = log_messages(&run);
        assert!(
            logs.iter()
                .any(|m| m.starts_with(&format!("attempt {attempt} "))),
            "run {id} (attempt {attempt}) logs {logs:?}"
        );
        if attempt > 1 {
            retried += 1;
        }
    }
    eprintln!(
        "crash test: {} runs succeeded, {retried} of them after their lease expired",
        all.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loses_no_acknowledged_webhook_sqlite() {
    crash_test(None, Ingest::Webhook).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loses_no_acknowledged_async_call_sqlite() {
    crash_test(None, Ingest::Call).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loses_no_acknowledged_webhook_postgres() {
    let Some(url) = common::fresh_postgres("crash_loses_no_acknowledged_webhook_postgres") else {
        return;
    };
    crash_test(Some(url), Ingest::Webhook).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loses_no_acknowledged_async_call_postgres() {
    let Some(url) = common::fresh_postgres("crash_loses_no_acknowledged_async_call_postgres")
    else {
        return;
    };
    crash_test(Some(url), Ingest::Call).await;
}

// ------------------------------------------------- retries, dead and replay

#[tokio::test]
async fn failing_flow_dies_with_backoff_emits_run_failed_and_replays() {
    let s = Server::start().await;
    s.deploy(
        "always-fails",
        json!({
            "flow.toml": "name = \"always-fails\"\n\n[[trigger]]\nkind = \"http\"\nmode = \"async\"\n\n[auth]\nmode = \"none\"\n\n[retry]\nmax_attempts = 3\nbackoff = \"exponential\"\n",
            "main.rhai": "log::info(\"order \" + request.body.order + \" attempt \" + ctx.attempt);\nthrow \"boom\";\n",
        }),
    )
    .await;
    s.deploy(
        "on-failure",
        event_flow(
            "on-failure",
            &["flow.run_failed"],
            r#"log::info("failed run " + trigger.event.data.run_id + " " + trigger.event.data.status); #{}"#,
        ),
    )
    .await;

    let res = s
        .request(Method::POST, "/flows/always-fails")
        .json(&json!({"order": 42}))
        .send()
        .await
        .expect("call");
    assert_eq!(res.status().as_u16(), 202);
    let body: Value = res.json().await.expect("json");
    let id = body["run_id"].as_str().expect("run_id").to_owned();

    let run = s.wait_run(&id, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "dead", "{run}");
    assert_eq!(run["attempt"], 3, "{run}");
    let attempts = run["attempts"].as_array().expect("attempts").clone();
    assert_eq!(attempts.len(), 3, "{run}");
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["attempt"], i + 1);
        assert!(a["finished_at"].is_string(), "{a}");
        assert!(
            a["error"].as_str().is_some_and(|e| e.contains("boom")),
            "{a}"
        );
    }
    assert_eq!(attempts[2]["outcome"], "dead");
    // Backoff: base 1 s, factor 2, jitter in [½, 1]: the second gap is about
    // twice the first (tolerance for a slow machine's polling).
    let gap =
        |i: usize| millis(&attempts[i + 1]["started_at"]) - millis(&attempts[i]["finished_at"]);
    let (g1, g2) = (gap(0), gap(1));
    eprintln!("backoff gaps: {g1} ms, {g2} ms");
    assert!(g1 >= 450, "first retry after {g1} ms");
    assert!(g2 >= 950, "second retry after {g2} ms");
    assert!(g2 + 300 > g1, "gaps do not increase: {g1} ms then {g2} ms");
    let logs = log_messages(&run);
    for n in 1..=3 {
        assert!(
            logs.iter().any(|m| m == &format!("order 42 attempt {n}")),
            "{logs:?}"
        );
    }

    // flow.run_failed reached the subscriber.
    let needle = format!("failed run {id} dead");
    let found = wait_runs(&s, "on-failure", Duration::from_secs(30), |runs| {
        all_succeeded(runs, 1)
    })
    .await;
    let mut seen = false;
    for r in &found {
        let r = get_run(&s, r["id"].as_str().expect("id")).await;
        assert_eq!(r["trigger"], "event");
        seen |= log_messages(&r).contains(&needle);
    }
    assert!(seen, "no on-failure run logged `{needle}`: {found:?}");

    // Replay: a fresh run with the same input.
    let (st, body) = s
        .admin(Method::POST, &format!("/admin/v1/runs/{id}/replay"), None)
        .await;
    assert_eq!(st, 202, "{body}");
    let replayed = body["run_id"].as_str().expect("run_id").to_owned();
    assert_ne!(replayed, id);
    let run = s.wait_run(&replayed, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "dead", "{run}");
    assert_eq!(run["flow"], "always-fails");
    assert!(
        log_messages(&run).contains(&"order 42 attempt 1".to_owned()),
        "{run}"
    );
}

// -------------------------------------------------------------- idempotency

const SLOW: &str = r#"
let big = "x";
for i in 0..16 { big += big; }
let t = time::now_ms();
while time::now_ms() - t < 2500 { crypto::sha256(big); }
#{ slow: true, run: ctx.run_id }
"#;

async fn post_with_key(s: &Server, path: &str, key: &str, body: &Value) -> (u16, Value, bool) {
    let res = s
        .request(Method::POST, path)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("call");
    let st = res.status().as_u16();
    let replayed = res
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (st, res.json().await.unwrap_or(Value::Null), replayed)
}

#[tokio::test]
async fn idempotency_replay_mismatch_and_in_flight() {
    let s = Server::start().await;
    s.deploy(
        "charge",
        http_flow(
            "charge",
            "#{ charged: request.body.amount, run: ctx.run_id }",
            "",
        ),
    )
    .await;
    s.deploy(
        "slow",
        http_flow("slow", SLOW, "\n[limits]\ntimeout_ms = 20000\n"),
    )
    .await;

    let (st, first, replayed) =
        post_with_key(&s, "/flows/charge", "k-1", &json!({"amount": 5})).await;
    assert_eq!((st, replayed), (200, false), "{first}");
    assert_eq!(first["charged"], 5);
    let (st, again, replayed) =
        post_with_key(&s, "/flows/charge", "k-1", &json!({"amount": 5})).await;
    assert_eq!((st, replayed), (200, true), "{again}");
    assert_eq!(again, first);
    assert_eq!(runs_of(&s, "charge").await.len(), 1, "the flow ran once");

    let (st, body, _) = post_with_key(&s, "/flows/charge", "k-1", &json!({"amount": 6})).await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["code"], "idempotency_key_reused");
    // Another key runs again.
    let (st, _, replayed) = post_with_key(&s, "/flows/charge", "k-2", &json!({"amount": 5})).await;
    assert_eq!((st, replayed), (200, false));
    assert_eq!(runs_of(&s, "charge").await.len(), 2);

    // While the first is still running: 409.
    let slow_first = {
        let client = s.client.clone();
        let url = format!("{}/flows/slow", s.url);
        tokio::spawn(async move {
            let res = client
                .post(url)
                .header("idempotency-key", "slow-1")
                .json(&json!({"n": 1}))
                .send()
                .await
                .expect("slow call");
            let st = res.status().as_u16();
            (st, res.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    // The second arrives while the first runs (~2.5 s): 409. On a machine so
    // busy that the second got there first, the roles swap; one of each either way.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (st2, body2, _) = post_with_key(&s, "/flows/slow", "slow-1", &json!({"n": 1})).await;
    let (st1, body1) = slow_first.await.expect("join");
    let (first, conflict) = match (st1, st2) {
        (200, 409) => (body1, body2),
        (409, 200) => (body2, body1),
        other => panic!("expected one 200 and one 409, got {other:?}: {body1} {body2}"),
    };
    assert_eq!(conflict["code"], "idempotency_in_flight", "{conflict}");
    let (st, again, replayed) = post_with_key(&s, "/flows/slow", "slow-1", &json!({"n": 1})).await;
    assert_eq!((st, replayed), (200, true));
    assert_eq!(again, first);
    assert_eq!(runs_of(&s, "slow").await.len(), 1);
}

#[tokio::test]
async fn idempotency_keys_expire() {
    let s = Server::start_with(None, &[("FLOWGATE_IDEMPOTENCY_TTL_SECONDS", "2")]).await;
    s.deploy("charge", http_flow("charge", "#{ run: ctx.run_id }", ""))
        .await;
    let (st, first, replayed) = post_with_key(&s, "/flows/charge", "k", &json!({"a": 1})).await;
    assert_eq!((st, replayed), (200, false));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (st, second, replayed) = post_with_key(&s, "/flows/charge", "k", &json!({"a": 1})).await;
    assert_eq!((st, replayed), (200, false), "{second}");
    assert_ne!(first["run"], second["run"]);
    assert_eq!(runs_of(&s, "charge").await.len(), 2);
}

// ------------------------------------------------ webhook delivery dedup

#[tokio::test]
async fn duplicate_standard_webhook_delivery_runs_once() {
    let s = Server::start().await;
    put_webhook_secret(&s).await;
    s.deploy(
        "hook",
        webhook_flow(
            "hook",
            r#"log::info("delivery " + trigger.delivery_id); #{}"#,
        ),
    )
    .await;
    let body = json!({"type": "invoice.paid", "id": "inv_1"});
    let (st, first, loc1) = send_webhook(&s.client, &s.url, "hook", "msg_dup", &body)
        .await
        .expect("send");
    assert_eq!(st, 202, "{first}");
    // The provider retries later: same id, re-signed with a newer timestamp.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (st, second, loc2) = send_webhook(&s.client, &s.url, "hook", "msg_dup", &body)
        .await
        .expect("send");
    assert_eq!(st, 202, "{second}");
    assert_eq!(second["run_id"], first["run_id"]);
    assert_eq!(loc1, loc2);
    let id = first["run_id"].as_str().expect("run_id");
    let run = s.wait_run(id, Duration::from_secs(30)).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(log_messages(&run).contains(&"delivery msg_dup".to_owned()));
    // A different delivery id runs.
    let (st, third, _) = send_webhook(&s.client, &s.url, "hook", "msg_other", &body)
        .await
        .expect("send");
    assert_eq!(st, 202);
    assert_ne!(third["run_id"], first["run_id"]);
    let runs = wait_runs(&s, "hook", Duration::from_secs(30), |r| all_succeeded(r, 2)).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
}

// ------------------------------------------------------------------ events

#[tokio::test]
async fn events_fan_out_dedupe_and_outbox() {
    let s = Server::start().await;
    let script = r#"log::info("kind " + trigger.kind + " event " + trigger.event.id + " total " + trigger.event.data.total); #{}"#;
    s.deploy("sub-a", event_flow("sub-a", &["order.placed"], script))
        .await;
    s.deploy("sub-b", event_flow("sub-b", &["order.placed"], script))
        .await;
    s.deploy(
        "on-thing",
        event_flow(
            "on-thing",
            &["thing.done"],
            r#"log::info("ok " + trigger.event.data.ok); #{}"#,
        ),
    )
    .await;
    s.deploy(
        "emit-fail",
        http_flow(
            "emit-fail",
            r#"events::emit("thing.done", #{ ok: false }); throw "after emitting";"#,
            "",
        ),
    )
    .await;
    s.deploy(
        "emit-ok",
        http_flow(
            "emit-ok",
            r#"events::emit("thing.done", #{ ok: true }); #{ emitted: true }"#,
            "",
        ),
    )
    .await;
    s.deploy(
        "on-user",
        event_flow(
            "on-user",
            &["user.created"],
            r#"log::info("user " + trigger.event.data.email); #{}"#,
        ),
    )
    .await;

    let publisher = s.key(&["events:publish"]).await;
    let publish = |ev: Value| {
        s.request(Method::POST, "/events")
            .bearer_auth(&publisher)
            .json(&ev)
            .send()
    };
    let ev = json!({"type": "order.placed", "source": "shop", "id": "ord-1", "data": {"total": 9}});
    let res = publish(ev.clone()).await.expect("publish");
    assert_eq!(res.status().as_u16(), 202);
    let first: Value = res.json().await.expect("json");
    let event_id = first["event_id"].as_str().expect("event_id").to_owned();
    let res = publish(ev.clone()).await.expect("publish");
    assert_eq!(res.status().as_u16(), 202);
    let again: Value = res.json().await.expect("json");
    assert_eq!(again["event_id"], first["event_id"], "stored once");
    // Scope is enforced.
    let other = s.key(&["runs:read"]).await;
    let res = s
        .request(Method::POST, "/events")
        .bearer_auth(&other)
        .json(&ev)
        .send()
        .await
        .expect("publish");
    assert_eq!(res.status().as_u16(), 403);

    for flow in ["sub-a", "sub-b"] {
        let runs = wait_runs(&s, flow, Duration::from_secs(30), |r| all_succeeded(r, 1)).await;
        assert_eq!(runs.len(), 1, "{flow}: {runs:?}");
        assert_eq!(runs[0]["trigger"], "event");
        assert_eq!(runs[0]["event_id"].as_str(), Some(event_id.as_str()));
        let run = get_run(&s, runs[0]["id"].as_str().expect("id")).await;
        assert!(
            log_messages(&run).contains(&format!("kind event event {event_id} total 9")),
            "{run}"
        );
    }

    // Outbox: a failing emitter emits nothing, a succeeding one is delivered.
    let res = s
        .request(Method::POST, "/flows/emit-fail")
        .json(&json!({}))
        .send()
        .await
        .expect("call");
    assert_eq!(res.status().as_u16(), 500);
    let res = s
        .request(Method::POST, "/flows/emit-ok")
        .json(&json!({}))
        .send()
        .await
        .expect("call");
    assert_eq!(res.status().as_u16(), 200);
    let runs = wait_runs(&s, "on-thing", Duration::from_secs(30), |r| {
        all_succeeded(r, 1)
    })
    .await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = get_run(&s, runs[0]["id"].as_str().expect("id")).await;
    assert_eq!(log_messages(&run), vec!["ok true".to_owned()], "{run}");

    // User lifecycle from the admin API.
    let (st, user) = s
        .admin(
            Method::POST,
            "/admin/v1/users",
            Some(json!({"email": "ann@example.com", "display_name": "Ann"})),
        )
        .await;
    assert_eq!(st, 201, "{user}");
    let runs = wait_runs(&s, "on-user", Duration::from_secs(30), |r| {
        all_succeeded(r, 1)
    })
    .await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = get_run(&s, runs[0]["id"].as_str().expect("id")).await;
    assert!(
        log_messages(&run).contains(&"user ann@example.com".to_owned()),
        "{run}"
    );

    // Nothing arrives late: no second delivery, no event from the failed run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(runs_of(&s, "sub-a").await.len(), 1);
    assert_eq!(runs_of(&s, "sub-b").await.len(), 1);
    assert_eq!(runs_of(&s, "on-thing").await.len(), 1);
}

// -------------------------------------------------------- graceful shutdown

/// Sends the server SIGTERM.
fn sigterm(s: &Server) {
    let st = std::process::Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(st.success());
}

/// The server's exit status, once it has exited (within 40 s).
async fn exit_status(s: &mut Server) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = s.child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the server did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sigterm_lets_in_flight_request_finish_and_exits_zero() {
    let mut s = Server::start().await;
    s.deploy(
        "slow",
        http_flow("slow", SLOW, "\n[limits]\ntimeout_ms = 20000\n"),
    )
    .await;
    let call = {
        let client = s.client.clone();
        let url = format!("{}/flows/slow", s.url);
        tokio::spawn(async move {
            let res = client.post(url).json(&json!({})).send().await?;
            let st = res.status().as_u16();
            Ok::<_, reqwest::Error>((st, res.json::<Value>().await.unwrap_or(Value::Null)))
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    sigterm(&s);
    let (st, body) = call
        .await
        .expect("join")
        .expect("the in-flight request failed");
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["slow"], true);
    let status = exit_status(&mut s).await;
    assert!(status.success(), "exit status {status:?}");
}

// ------------------------------------------------- async calls run inline

/// A package with one async HTTP trigger and no authentication.
fn async_flow(name: &str, script: &str) -> Value {
    json!({
        "flow.toml": format!(
            "name = \"{name}\"\n\n[[trigger]]\nkind = \"http\"\nmode = \"async\"\n\n[auth]\nmode = \"none\"\n"
        ),
        "main.rhai": script,
    })
}

/// POSTs `body` to an async flow; the run id of its 202.
async fn accepted(s: &Server, flow: &str, body: &Value) -> String {
    let res = s
        .client
        .post(format!("{}/flows/{flow}", s.url))
        .json(body)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 202);
    let doc: Value = res.json().await.expect("json");
    doc["run_id"].as_str().expect("run_id").to_owned()
}

#[tokio::test]
async fn async_calls_that_only_compute_are_finished_when_acknowledged() {
    let s = Server::start().await;
    s.deploy(
        "quick",
        async_flow(
            "quick",
            r#"log::info("doubled " + request.body.n * 2 + " attempt " + ctx.attempt);
               #{ doubled: request.body.n * 2 }"#,
        ),
    )
    .await;
    s.deploy(
        "counter",
        async_flow(
            "counter",
            r#"let c = kv::get("count");
               if c == () { c = 0; }
               kv::set("count", c + 1);
               log::info("count " + (c + 1) + " attempt " + ctx.attempt);
               #{ count: c + 1 }"#,
        ),
    )
    .await;
    // The first call's script is compiled by the worker that runs it.
    let first = accepted(&s, "quick", &json!({"n": 1})).await;
    assert_eq!(
        s.wait_run(&first, Duration::from_secs(10)).await["status"],
        "succeeded"
    );
    let metric = "flowgate_runs_enqueued_total";
    let queued_before = s.metric(metric, &["flow=\"quick\""]).await;
    // From then on a run that only computes is done before its 202: it is
    // listed finished, first time, with its logs, the moment the caller has
    // its id.
    for n in 2..7 {
        let id = accepted(&s, "quick", &json!({"n": n})).await;
        let run = get_run(&s, &id).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["attempt"], 1, "{run}");
        assert_eq!(run["response_status"], 200, "{run}");
        assert_eq!(
            log_messages(&run),
            vec![format!("doubled {} attempt 1", n * 2)]
        );
    }
    // A flow that touches its state gives the inline attempt up before its
    // first store call: it runs once, on a worker, and counts every call once.
    for want in 1..=4 {
        let id = accepted(&s, "counter", &json!({})).await;
        let run = s.wait_run(&id, Duration::from_secs(10)).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(
            log_messages(&run),
            vec![format!("count {want} attempt 1")],
            "{run}"
        );
    }
    // Only the runs that went through the queue count as enqueued.
    assert_eq!(
        s.metric(metric, &["flow=\"quick\""]).await,
        queued_before,
        "runs done before their 202 were never queued"
    );
    assert_eq!(s.metric(metric, &["flow=\"counter\""]).await, Some(4.0));
}

#[tokio::test]
async fn async_runs_of_callers_that_hung_up_still_run_once() {
    let s = Server::start().await;
    // It touches its state, so it never finishes inline: each accepted call
    // starts on a worker at once (a free slot, an empty queue) or queues.
    s.deploy(
        "tally",
        async_flow(
            "tally",
            r#"kv::set("run-" + ctx.run_id, ctx.attempt);
               log::info("ran attempt " + ctx.attempt);
               #{}"#,
        ),
    )
    .await;
    let addr = s.url.trim_start_matches("http://").to_owned();
    let body = r#"{"n":1}"#;
    let request = format!(
        "POST /flows/tally HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // Callers that hang up at every moment around their commit: before it,
    // while it is in flight, after the 202 was written.
    let callers: Vec<_> = (0..24u64)
        .map(|i| {
            let (addr, request) = (addr.clone(), request.clone());
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
                c.write_all(request.as_bytes()).await.expect("write");
                tokio::time::sleep(Duration::from_micros(i * 500)).await;
                drop(c);
            })
        })
        .collect();
    for c in callers {
        c.await.expect("caller");
    }
    // A caller that waits is answered as ever.
    let last = accepted(&s, "tally", &json!({"n": 2})).await;
    assert_eq!(
        s.wait_run(&last, Duration::from_secs(10)).await["status"],
        "succeeded"
    );
    // Every run that was committed ran, once, on its first attempt: none is
    // left leased by a node that does not run it (it would wait for its
    // lease, 30 s, and run again as attempt 2).
    let runs = wait_runs(&s, "tally", Duration::from_secs(10), |r| {
        r.iter().all(|x| x["status"] == "succeeded")
    })
    .await;
    assert!(runs.len() >= 2, "{runs:?}");
    for r in &runs {
        let run = get_run(&s, r["id"].as_str().expect("id")).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["attempt"], 1, "{run}");
        assert_eq!(log_messages(&run), vec!["ran attempt 1"], "{run}");
    }
}

#[tokio::test]
async fn sigterm_lets_a_just_started_async_run_finish() {
    let mut s = Server::start().await;
    // Busy for 2.5 s: it gives its inline attempt up and starts on a worker
    // at once (the queue is empty), leased by this node.
    let mut pkg = async_flow("slow-async", SLOW);
    pkg["flow.toml"] = json!(format!(
        "{}\n[limits]\ntimeout_ms = 20000\n",
        pkg["flow.toml"].as_str().expect("toml")
    ));
    s.deploy("slow-async", pkg).await;
    let id = accepted(&s, "slow-async", &json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&s);
    // Shutdown waits for the running run (up to its drain time) and exits 0.
    let start = Instant::now();
    let status = exit_status(&mut s).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "the node stopped before its run could finish"
    );
    // The run finished before the node left: recorded succeeded, on its
    // first and only attempt, nothing left for the next start to run again.
    s.kill_and_restart();
    let run = get_run(&s, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 1, "{run}");
    assert_eq!(run["response_body"]["slow"], true, "{run}");
}

#[tokio::test]
async fn an_async_run_that_fails_inline_is_recorded_as_its_first_attempt() {
    let s = Server::start().await;
    let mut pkg = async_flow(
        "fails-once",
        r#"log::info("try " + ctx.attempt + " of " + ctx.run_id); throw "no";"#,
    );
    pkg["flow.toml"] = json!(format!(
        "{}\n[retry]\nmax_attempts = 1\n",
        pkg["flow.toml"].as_str().expect("toml")
    ));
    s.deploy("fails-once", pkg).await;
    // The first call's script is compiled by the worker that runs it.
    let first = accepted(&s, "fails-once", &json!({})).await;
    assert_eq!(
        s.wait_run(&first, Duration::from_secs(10)).await["status"],
        "dead"
    );
    // From then on the inline attempt is the run's first: it is recorded
    // with its log and error by the time the 202 arrives, and the script
    // does not run a second time.
    let id = accepted(&s, "fails-once", &json!({})).await;
    let run = get_run(&s, &id).await;
    assert_eq!(run["status"], "dead", "{run}");
    assert_eq!(run["attempt"], 1, "{run}");
    let logs = log_messages(&run);
    assert_eq!(logs.len(), 2, "its log line and its error, once: {run}");
    assert_eq!(logs[0], format!("try 1 of {id}"), "{run}");
    assert!(logs[1].starts_with("no (line 1"), "{run}");
    assert!(
        run["error"].as_str().is_some_and(|e| e.starts_with("no")),
        "{run}"
    );
    let attempts = run["attempts"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 1, "{run}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get_run(&s, &id).await["attempt"], 1, "it never ran again");
}
