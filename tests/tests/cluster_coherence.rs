//! Two nodes on one PostgreSQL database: a publish, a rollback and a key
//! revocation on one node take effect on the other within a second (change
//! notices, not cache expiry); `GET /admin/v1/cluster` lists the nodes and
//! shows a killed one as gone. On SQLite, the one node lists itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fresh_postgres, http_flow, send, Server};
use reqwest::Method;
use serde_json::{json, Value};

/// The bound every cross-node change must meet.
const WITHIN: Duration = Duration::from_secs(1);

/// A second `flowgate serve` on the same database, killed when dropped.
struct Other {
    child: std::process::Child,
    url: String,
}

impl Drop for Other {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn other(a: &Server) -> Other {
    let (child, url) = a.spawn_another();
    Other { child, url }
}

async fn version_on(client: &reqwest::Client, url: &str) -> Option<i64> {
    let res = send(client.post(format!("{url}/flows/hello")).json(&json!({}))).await;
    (res.status == 200)
        .then(|| res.body["version"].as_i64())
        .flatten()
}

/// Polls `probe` until it returns true or `bound` has passed since `from`;
/// returns whether it became true in time.
async fn within<F, Fut>(from: Instant, bound: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if probe().await {
            return true;
        }
        if from.elapsed() > bound {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn publish_rollback_and_revocation_reach_the_other_node_within_a_second() {
    let Some(db) = fresh_postgres("publish_rollback_and_revocation_reach_the_other_node") else {
        return;
    };
    let a = Server::start_with(Some(db), &[]).await;
    let b = other(&a);
    let client = a.client.clone();

    let v1 = http_flow("hello", "#{ version: ctx.version }", "");
    a.deploy("hello", v1).await;
    // B has served v1 (so its cache holds the live pointer) before A publishes v2.
    assert!(
        within(Instant::now(), Duration::from_secs(10), || async {
            version_on(&client, &b.url).await == Some(1)
        })
        .await,
        "B never served v1"
    );
    let v2 = http_flow("hello", "#{ version: ctx.version, v2: true }", "");
    let published = Instant::now();
    assert_eq!(a.deploy("hello", v2).await, 2);
    assert!(
        within(published, WITHIN, || async {
            version_on(&client, &b.url).await == Some(2)
        })
        .await,
        "B did not serve v2 within {WITHIN:?} of the publish on A"
    );

    let rolled = Instant::now();
    let (st, body) = a
        .admin(
            Method::POST,
            "/admin/v1/flows/hello/rollback",
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert!(
        within(rolled, WITHIN, || async {
            version_on(&client, &b.url).await == Some(1)
        })
        .await,
        "B did not serve v1 within {WITHIN:?} of the rollback on A"
    );

    // A key verified (and so cached) on B, revoked on A.
    let guarded = json!({
        "flow.toml": "name = \"guarded\"\n\n[[trigger]]\nkind = \"http\"\n\n[auth]\nmode = \"api_key\"\n",
        "main.rhai": "#{ ok: true }",
    });
    a.deploy("guarded", guarded).await;
    let (st, created) = a
        .admin(
            Method::POST,
            "/admin/v1/keys",
            Some(json!({"name": "partner", "scopes": ["demo:call"]})),
        )
        .await;
    assert_eq!(st, 201, "{created}");
    let key = created["key"].as_str().expect("key").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    let call_b = || {
        send(
            client
                .post(format!("{}/flows/guarded", b.url))
                .bearer_auth(&key)
                .json(&json!({})),
        )
    };
    assert!(
        within(Instant::now(), Duration::from_secs(10), || async {
            call_b().await.status == 200
        })
        .await,
        "B never accepted the key"
    );
    assert_eq!(call_b().await.status, 200);
    let revoked = Instant::now();
    let (st, body) = a
        .admin(Method::DELETE, &format!("/admin/v1/keys/{id}"), None)
        .await;
    assert_eq!(st, 204, "{body}");
    assert!(
        within(revoked, WITHIN, || async { call_b().await.status == 401 }).await,
        "B still accepted the revoked key {WITHIN:?} after the revocation on A"
    );
}

async fn cluster(s: &Server) -> Value {
    let (st, v) = s.admin(Method::GET, "/admin/v1/cluster", None).await;
    assert_eq!(st, 200, "{v}");
    v
}

fn node<'a>(view: &'a Value, id: &str) -> Option<&'a Value> {
    view["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["id"] == id))
}

#[tokio::test]
async fn cluster_lists_both_nodes_and_a_killed_one_as_gone() {
    let Some(db) = fresh_postgres("cluster_lists_both_nodes_and_a_killed_one_as_gone") else {
        return;
    };
    let fast = [
        ("FLOWGATE_CLUSTER_HEARTBEAT_MS", "200"),
        ("FLOWGATE_CLUSTER_MISSED_HEARTBEATS", "3"),
    ];
    let a = Server::start_with(
        Some(db.clone()),
        &[fast[0], fast[1], ("FLOWGATE_NODE_ID", "alpha")],
    )
    .await;
    let mut b =
        Server::start_with(Some(db), &[fast[0], fast[1], ("FLOWGATE_NODE_ID", "beta")]).await;

    let view = cluster(&a).await;
    assert_eq!(view["this_node"], "alpha", "{view}");
    assert_eq!(view["gone_after_ms"], 600, "{view}");
    for id in ["alpha", "beta"] {
        let n = node(&view, id).unwrap_or_else(|| panic!("{id} missing: {view}"));
        assert_eq!(n["status"], "up", "{view}");
        assert_eq!(n["version"], env!("CARGO_PKG_VERSION"), "{view}");
        assert_eq!(n["leased_runs"], 0, "{view}");
        assert!(n["last_heartbeat"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
    }
    assert_eq!(cluster(&b).await["this_node"], "beta");

    // SIGKILL: no clean stop is recorded, only the heartbeats end.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let killed = Instant::now();
    let last = loop {
        let view = cluster(&a).await;
        if node(&view, "beta").is_some_and(|n| n["status"] == "gone")
            || killed.elapsed() > Duration::from_secs(10)
        {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let gone = node(&last, "beta").is_some_and(|n| n["status"] == "gone");
    assert!(gone, "beta never shown as gone: {last}");
    assert_eq!(node(&last, "alpha").unwrap()["status"], "up", "{last}");
}

#[tokio::test]
async fn a_single_sqlite_node_lists_itself_and_needs_a_scope() {
    let s = Server::start_with(None, &[("FLOWGATE_NODE_ID", "solo-1")]).await;
    let view = cluster(&s).await;
    assert_eq!(view["this_node"], "solo-1");
    let n = node(&view, "solo-1").unwrap_or_else(|| panic!("{view}"));
    assert_eq!(n["status"], "up");
    assert_eq!(view["nodes"].as_array().map(Vec::len), Some(1));
    let metrics = s.metrics().await;
    assert!(
        metrics.lines().any(|l| l.starts_with("flowgate_node_info")
            && l.contains("node=\"solo-1\"")
            && l.ends_with(" 1")),
        "{metrics}"
    );

    let reader = s.key(&["flows:read"]).await;
    let res = send(s.get("/admin/v1/cluster").bearer_auth(&reader)).await;
    assert_eq!(res.status, 403, "{}", res.body);
    let runs_reader = s.key(&["runs:read"]).await;
    let res = send(s.get("/admin/v1/cluster").bearer_auth(&runs_reader)).await;
    assert_eq!(res.status, 200, "{}", res.body);
}

#[tokio::test]
async fn a_cluster_rate_is_shared_and_a_node_rate_is_per_node() {
    let Some(db) = fresh_postgres("a_cluster_rate_is_shared_and_a_node_rate_is_per_node") else {
        return;
    };
    let a = Server::start_with(Some(db), &[]).await;
    let b = other(&a);
    // Day-long windows: the calls below never straddle a window boundary.
    a.deploy(
        "shared",
        http_flow(
            "shared",
            "#{ ok: true }",
            "\n[limits]\nrate = \"6/day\"\nscope = \"cluster\"\n",
        ),
    )
    .await;
    a.deploy(
        "local",
        http_flow("local", "#{ ok: true }", "\n[limits]\nrate = \"6/day\"\n"),
    )
    .await;
    let client = a.client.clone();
    let mut admitted = std::collections::HashMap::new();
    for flow in ["shared", "local"] {
        for i in 0..16 {
            let url = if i % 2 == 0 { &a.url } else { &b.url };
            let res = send(client.post(format!("{url}/flows/{flow}")).json(&json!({}))).await;
            assert!(
                res.status == 200 || res.status == 429,
                "{flow}: {} {}",
                res.status,
                res.body
            );
            if res.status == 429 {
                assert_eq!(res.body["code"], "rate_limited", "{}", res.body);
                assert!(res.h("retry-after").is_some());
            } else {
                *admitted.entry(flow).or_insert(0) += 1;
            }
        }
    }
    assert_eq!(admitted.get("shared"), Some(&6), "{admitted:?}");
    assert_eq!(admitted.get("local"), Some(&12), "{admitted:?}");
}

/// A partner that never answers the first request (the node running it is
/// killed meanwhile) and answers every later one at once.
/// Returns its port and how many calls it received.
fn partner_holding_the_first_call() -> (u16, Arc<AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = conn.read(&mut buf);
            seen.fetch_add(1, Ordering::SeqCst);
            if i == 0 {
                held.push(conn);
                continue;
            }
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
        }
    });
    (port, calls)
}

#[tokio::test]
async fn a_killed_nodes_run_is_finished_by_the_other_long_before_its_lease_ends() {
    let Some(db) = fresh_postgres("a_killed_nodes_run_is_finished_by_the_other") else {
        return;
    };
    let (port, calls) = partner_holding_the_first_call();
    let env = [
        ("FLOWGATE_CLUSTER_HEARTBEAT_MS", "200"),
        ("FLOWGATE_CLUSTER_MISSED_HEARTBEATS", "3"),
        // Without the release, the run would wait for this lease.
        ("FLOWGATE_RUN_LEASE_SECONDS", "600"),
        ("FLOWGATE_ALLOW_PRIVATE_HOSTS", "true"),
    ];
    let mut nodes = vec![
        Server::start_with(
            Some(db.clone()),
            &[env[0], env[1], env[2], env[3], ("FLOWGATE_NODE_ID", "n1")],
        )
        .await,
        Server::start_with(
            Some(db),
            &[env[0], env[1], env[2], env[3], ("FLOWGATE_NODE_ID", "n2")],
        )
        .await,
    ];
    let flow = json!({
        "flow.toml": "name = \"partner\"\n\n[[trigger]]\nkind = \"http\"\nmode = \"async\"\n\n[auth]\nmode = \"none\"\n\n[limits]\ntimeout_ms = 120000\n\n[http]\nallow = [\"127.0.0.1\"]\n",
        "main.rhai": format!("let r = http::get(\"http://127.0.0.1:{port}/call\", #{{ timeout_ms: 100000 }}); #{{ partner: r.status, attempt: ctx.attempt }}"),
    });
    nodes[0].deploy("partner", flow).await;
    let res = send(
        nodes[0]
            .client
            .post(format!("{}/flows/partner", nodes[0].url))
            .json(&json!({})),
    )
    .await;
    assert_eq!(res.status, 202, "{}", res.body);
    let run_id = res.body["run_id"].as_str().expect("run_id").to_owned();

    // Find the node that runs it, once it waits on the partner.
    let started = Instant::now();
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the partner was never called"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let holder = loop {
        let (_, run) = nodes[0]
            .admin(Method::GET, &format!("/admin/v1/runs/{run_id}"), None)
            .await;
        if run["status"] == "running" {
            if let Some(n) = run["node"].as_str() {
                break n.to_owned();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never running: {run}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (dead, alive) = if holder == "n1" { (0, 1) } else { (1, 0) };
    nodes[dead].child.kill().unwrap();
    nodes[dead].child.wait().unwrap();
    let survivor = nodes.remove(alive);

    // Far sooner than the 600 s lease: the other node sees the holder gone,
    // releases the run and runs attempt 2.
    let run = survivor.wait_run(&run_id, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let attempts = run["attempts"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 2, "{run}");
    assert_eq!(attempts[0]["node"], holder.as_str(), "{run}");
    assert_eq!(attempts[0]["outcome"], "lease_expired", "{run}");
    assert_ne!(attempts[1]["node"], holder.as_str(), "{run}");
}

#[tokio::test]
async fn a_cleanly_stopped_node_is_gone_at_once() {
    let Some(db) = fresh_postgres("a_cleanly_stopped_node_is_gone_at_once") else {
        return;
    };
    let a = Server::start_with(Some(db.clone()), &[("FLOWGATE_NODE_ID", "stays")]).await;
    let mut b = Server::start_with(Some(db), &[("FLOWGATE_NODE_ID", "leaves")]).await;
    assert_eq!(
        node(&cluster(&a).await, "leaves").map(|n| n["status"].clone()),
        Some(json!("up"))
    );
    let pid = b.child.id().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(term.success());
    let exit = b.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    // No waiting for missed heartbeats: the stop was recorded on the way out.
    let view = cluster(&a).await;
    assert_eq!(node(&view, "leaves").unwrap()["status"], "gone", "{view}");
    assert_eq!(node(&view, "stays").unwrap()["status"], "up", "{view}");
}
