//! Cron schedules over the real server: one run per due time on one node and on
//! two nodes sharing PostgreSQL (also after one dies), `overlap = "skip"`
//! records skipped ticks, publishing v2 switches the schedule and disabling the
//! flow stops it. Windows are generous: nothing asserts exact wall-clock timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A schedule-only flow on `cron` (UTC) answering with its version and due time.
fn schedule_flow(name: &str, cron: &str, overlap: &str, script: &str, extra: &str) -> Value {
    json!({
        "flow.toml": format!(
            "name = \"{name}\"\n\n[[trigger]]\nkind = \"schedule\"\ncron = \"{cron}\"\ntimezone = \"UTC\"\noverlap = \"{overlap}\"\nmisfire = \"skip\"\n{extra}"
        ),
        "main.rhai": script,
    })
}

const ECHO: &str = r#"
    log::info(`due ${trigger.scheduled_at} by ${caller.kind}:${caller.id} v${ctx.version}`);
    #{ version: ctx.version, at: trigger.scheduled_at }
"#;

fn ms_of(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("RFC 3339 time")
        .timestamp_millis()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Every run of `flow` (newest first, all pages).
async fn runs_of(s: &Server, flow: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/v1/runs?flow={flow}&limit=500&cursor={c}"),
            None => format!("/admin/v1/runs?flow={flow}&limit=500"),
        };
        let (st, body) = s.admin(Method::GET, &path, None).await;
        assert_eq!(st, 200, "{body}");
        out.extend(body["items"].as_array().cloned().unwrap_or_default());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// Waits until no run of `flow` is queued or running; returns the runs.
async fn settled_runs(s: &Server, flow: &str, timeout: Duration) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let runs = runs_of(s, flow).await;
        let open = runs
            .iter()
            .filter(|r| matches!(r["status"].as_str(), Some("queued" | "running")))
            .count();
        if open == 0 || start.elapsed() > timeout {
            return runs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Due times (epoch ms) of the schedule runs, ascending, asserting that none repeats.
fn due_times(runs: &[Value]) -> Vec<i64> {
    let mut dues: Vec<i64> = runs
        .iter()
        .filter(|r| r["trigger"] == "schedule")
        .map(|r| ms_of(r["scheduled_at"].as_str().expect("scheduled_at")))
        .collect();
    dues.sort_unstable();
    let distinct: BTreeSet<i64> = dues.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        dues.len(),
        "a due time has more than one run: {dues:?}"
    );
    dues
}

/// Asserts the due times are consecutive seconds (no gap, no repeat).
fn assert_every_second(dues: &[i64]) {
    for w in dues.windows(2) {
        assert_eq!(
            w[1] - w[0],
            1000,
            "due times not one second apart: {dues:?}"
        );
    }
    assert!(dues.iter().all(|d| d % 1000 == 0), "{dues:?}");
}

/// Dispatch lag (created − due) p50 / max, printed for the report.
fn print_lag(label: &str, runs: &[Value]) {
    let mut lags: Vec<i64> = runs
        .iter()
        .filter_map(|r| Some(ms_of(r["created_at"].as_str()?) - ms_of(r["scheduled_at"].as_str()?)))
        .collect();
    lags.sort_unstable();
    if let (Some(p50), Some(max)) = (lags.get(lags.len() / 2), lags.last()) {
        eprintln!(
            "{label}: {} runs, dispatch lag p50 {p50} ms, max {max} ms",
            lags.len()
        );
    }
}

async fn disable(s: &Server, flow: &str) {
    let (st, body) = s
        .admin(Method::DELETE, &format!("/admin/v1/flows/{flow}"), None)
        .await;
    assert!((200..300).contains(&st), "disable: {st} {body}");
}

async fn schedules(s: &Server) -> Vec<Value> {
    let (st, body) = s.admin(Method::GET, "/admin/v1/schedules", None).await;
    assert_eq!(st, 200, "{body}");
    body["items"].as_array().cloned().expect("items")
}

#[tokio::test]
async fn every_second_fires_once_per_due_time() {
    let s = Server::start().await;
    s.deploy(
        "ticker",
        schedule_flow("ticker", "* * * * * *", "queue", ECHO, ""),
    )
    .await;
    let from = now_ms();
    tokio::time::sleep(Duration::from_secs(10)).await;
    disable(&s, "ticker").await;
    let to = now_ms();
    let runs = settled_runs(&s, "ticker", Duration::from_secs(10)).await;
    let dues = due_times(&runs);
    assert!(
        (8..=12).contains(&dues.len()),
        "expected about 10 runs in 10 s, got {}: {dues:?}",
        dues.len()
    );
    assert_every_second(&dues);
    assert!(
        dues.iter().all(|d| *d > from - 1000 && *d <= to),
        "{dues:?}"
    );
    for r in &runs {
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["version"], 1);
    }
    // The script saw its due time and the schedule caller.
    let id = runs[0]["id"].as_str().expect("id");
    let one = s.wait_run(id, Duration::from_secs(5)).await;
    let expected = format!(
        "due {} by schedule:ticker v1",
        one["scheduled_at"].as_str().expect("scheduled_at")
    );
    assert!(
        one["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .any(|l| l["message"] == expected.as_str()),
        "{one}"
    );
    print_lag("one node", &runs);

    // Disabled: no further runs.
    let n = runs.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(runs_of(&s, "ticker").await.len(), n, "runs after disable");
    assert!(schedules(&s).await.iter().all(|i| i["flow"] != "ticker"));
}

#[tokio::test]
async fn overlap_skip_records_skipped_ticks() {
    let s = Server::start().await;
    // Busy for ~2.5 s: the next two due times find it still running.
    let slow = r#"
        let big = "abcdefgh";
        for i in 0..13 { big += big; }
        let start = time::now_ms();
        while time::now_ms() - start < 2500 { crypto::sha256(big); }
        #{ slow: true }
    "#;
    s.deploy(
        "slowpoke",
        schedule_flow(
            "slowpoke",
            "* * * * * *",
            "skip",
            slow,
            "\n[limits]\ntimeout_ms = 20000\n",
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;

    let items = schedules(&s).await;
    let item = items
        .iter()
        .find(|i| i["flow"] == "slowpoke")
        .expect("slowpoke is listed");
    assert_eq!(item["version"], 1);
    assert_eq!(item["cron"], "* * * * * *");
    assert_eq!(item["timezone"], "UTC");
    let next: Vec<i64> = item["next"]
        .as_array()
        .expect("next")
        .iter()
        .map(|t| ms_of(t.as_str().expect("time")))
        .collect();
    assert_eq!(next.len(), 5, "{item}");
    assert!(next.windows(2).all(|w| w[1] - w[0] == 1000), "{next:?}");
    let ticks = item["last_ticks"].as_array().expect("last_ticks");
    assert!(ticks.len() >= 5, "{item}");
    let state = |t: &Value| t["state"].as_str().unwrap_or_default().to_owned();
    let skipped: Vec<&Value> = ticks
        .iter()
        .filter(|t| state(t) == "skipped_overlap")
        .collect();
    let dispatched: Vec<&Value> = ticks.iter().filter(|t| state(t) == "dispatched").collect();
    assert!(!skipped.is_empty(), "no skipped ticks: {item}");
    assert!(!dispatched.is_empty(), "no dispatched ticks: {item}");
    assert!(skipped.iter().all(|t| t["run_id"].is_null()), "{item}");
    assert!(dispatched.iter().all(|t| t["run_id"].is_string()), "{item}");
    assert!(
        ticks
            .iter()
            .all(|t| ms_of(t["due_at"].as_str().expect("due_at")) % 1000 == 0),
        "{item}"
    );

    // Each dispatched tick's run exists with that due time; runs never overlap.
    disable(&s, "slowpoke").await;
    let runs = settled_runs(&s, "slowpoke", Duration::from_secs(15)).await;
    let dues = due_times(&runs);
    for t in &dispatched {
        let id = t["run_id"].as_str().expect("run id");
        let run = runs.iter().find(|r| r["id"] == id).expect("the tick's run");
        assert_eq!(run["scheduled_at"], t["due_at"]);
    }
    let mut spans: Vec<(i64, i64)> = runs
        .iter()
        .filter_map(|r| {
            Some((
                ms_of(r["started_at"].as_str()?),
                ms_of(r["finished_at"].as_str()?),
            ))
        })
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1 - 50, "runs overlapped: {spans:?}");
    }
    assert!(runs.iter().all(|r| r["status"] == "succeeded"), "{runs:?}");
    assert!(dues.len() < ticks.len(), "{dues:?} vs {ticks:?}");
}

#[tokio::test]
async fn publish_switches_version_and_disable_stops() {
    let s = Server::start().await;
    s.deploy(
        "switcher",
        schedule_flow("switcher", "* * * * * *", "queue", ECHO, ""),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v2 = s
        .deploy(
            "switcher",
            schedule_flow("switcher", "* * * * * *", "queue", ECHO, "# v2\n"),
        )
        .await;
    assert_eq!(v2, 2);
    let published = now_ms();
    tokio::time::sleep(Duration::from_secs(4)).await;
    disable(&s, "switcher").await;
    let disabled = now_ms();
    let runs = settled_runs(&s, "switcher", Duration::from_secs(10)).await;
    let count_at_disable = runs.len();

    let version_of = |r: &Value| r["version"].as_i64().unwrap_or_default();
    let due = |r: &Value| ms_of(r["scheduled_at"].as_str().unwrap_or("1970-01-01T00:00:00Z"));
    assert!(
        runs.iter()
            .any(|r| version_of(r) == 1 && due(r) < published),
        "no v1 run before the publish: {runs:?}"
    );
    let after: Vec<&Value> = runs.iter().filter(|r| due(r) > published + 1000).collect();
    assert!(!after.is_empty(), "no run after the publish: {runs:?}");
    for r in &after {
        assert_eq!(version_of(r), 2, "a run due after the publish ran v1: {r}");
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    assert!(
        runs.iter().all(|r| due(r) <= disabled),
        "a run due after the disable: {runs:?}"
    );
    let dues = due_times(&runs);
    assert_every_second(&dues);

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        runs_of(&s, "switcher").await.len(),
        count_at_disable,
        "disabled flow kept firing"
    );
}

#[tokio::test]
async fn two_nodes_fire_once_and_survive_a_node_dying() {
    let Some(url) = common::fresh_postgres("two_nodes_fire_once_and_survive_a_node_dying") else {
        return;
    };
    let lease = [("FLOWGATE_RUN_LEASE_SECONDS", "3")];
    let mut s = Server::start_with(Some(url), &lease).await;
    let (b_child, b_url) = s.spawn_another();
    let mut b = KillOnDrop(Some(b_child));
    s.deploy(
        "shared",
        schedule_flow("shared", "* * * * * *", "queue", ECHO, ""),
    )
    .await;
    let from = now_ms();
    tokio::time::sleep(Duration::from_secs(8)).await;
    // Node a dies (kill -9); from now on `s` talks to node b.
    let _ = s.child.kill();
    let _ = s.child.wait();
    let killed = now_ms();
    s.child = b.0.take().expect("node b");
    s.url = b_url;
    tokio::time::sleep(Duration::from_secs(6)).await;

    // Every tick recorded once, each dispatched with its run.
    let items = schedules(&s).await;
    let item = items
        .iter()
        .find(|i| i["flow"] == "shared")
        .expect("shared is listed");
    let ticks = item["last_ticks"].as_array().expect("last_ticks");
    assert!(ticks.len() >= 5, "{item}");
    assert!(
        ticks
            .iter()
            .all(|t| t["state"] == "dispatched" && t["run_id"].is_string()),
        "{item}"
    );
    disable(&s, "shared").await;
    let to = now_ms();

    let runs = settled_runs(&s, "shared", Duration::from_secs(12)).await;
    let dues = due_times(&runs);
    assert_every_second(&dues);
    let first = *dues.first().expect("some runs");
    let last = *dues.last().expect("some runs");
    assert!(
        first <= from + 2500,
        "first due {first} long after publish {from}"
    );
    assert!(
        last >= to - 2500,
        "node b stopped firing: last due {last}, killed at {killed}, end {to}"
    );
    assert!(
        dues.iter().filter(|d| **d > killed).count() >= 4,
        "too few runs after the kill: {dues:?}"
    );
    assert!(
        (11..=17).contains(&dues.len()),
        "expected about 14 runs, got {}: {dues:?}",
        dues.len()
    );
    for r in &runs {
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    print_lag("two nodes", &runs);
}

/// Kills a child process when dropped (a second node the test started).
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
