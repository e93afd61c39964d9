//! Durable queue benchmark over HTTP against the real `flowgate` binary:
//! async webhook acknowledgement throughput and latency (SQLite, and
//! PostgreSQL when `FLOWGATE_TEST_POSTGRES_URL` is set), how fast the queue
//! drains those runs, and end-to-end event dispatch (POST /events →
//! subscriber runs succeeded).
//!
//! `cargo bench -p flowgate-tests --bench durable` (set `FLOWGATE_BIN` to a
//! release build, e.g. `target/release/flowgate`, for representative figures;
//! `DURABLE_BENCH_N` changes the number of requests, default 2000).

#[path = "../tests/common/mod.rs"]
mod common;

use common::Server;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WH_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const CONCURRENCY: usize = 32;

fn fresh_postgres() -> Option<String> {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let base = common::postgres_url()?;
    let schema = format!("b_{}", uuid::Uuid::new_v4().simple());
    let mut c = PgConnection::establish(&base).expect("connect to FLOWGATE_TEST_POSTGRES_URL");
    diesel::sql_query(format!("CREATE SCHEMA {schema}"))
        .execute(&mut c)
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-csearch_path%3D{schema}"))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Counts runs of `flow` with `status` (all pages).
async fn count_runs(s: &Server, flow: &str, status: &str) -> usize {
    let mut n = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/admin/v1/runs?flow={flow}&status={status}&limit=500");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (st, page) = s.admin(Method::GET, &path, None).await;
        assert_eq!(st, 200, "{page}");
        n += page["items"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return n,
        }
    }
}

async fn wait_count(s: &Server, flow: &str, n: usize, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if count_runs(s, flow, "succeeded").await >= n {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn webhooks(label: &str, db: Option<String>, n: usize) {
    let s = Server::start_with(db, &[]).await;
    let (st, body) = s
        .admin(
            Method::PUT,
            "/admin/v1/secrets/WH_SECRET",
            Some(json!({"value": WH_SECRET})),
        )
        .await;
    assert_eq!(st, 204, "{body}");
    s.deploy(
        "bench-hook",
        json!({
            "flow.toml": "name = \"bench-hook\"\n\n[[trigger]]\nkind = \"webhook\"\nmode = \"async\"\nsignature = { scheme = \"standard-webhooks\", secret = \"WH_SECRET\" }\n",
            "main.rhai": "#{ seq: request.body.seq }",
        }),
    )
    .await;
    let secret = flowgate_core::SecretString::new(WH_SECRET);
    let start = Instant::now();
    let mut lat: Vec<Duration> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (client, url, secret) = (
                s.client.clone(),
                format!("{}/flows/bench-hook", s.url),
                secret.clone(),
            );
            async move {
                let raw = json!({"seq": i}).to_string();
                let id = format!("msg_{i}");
                let ts = flowgate_core::now_ms() / 1000;
                let sig = flowgate_auth::signature::sign_standard_webhooks(
                    &secret,
                    &id,
                    ts,
                    raw.as_bytes(),
                )
                .expect("sign");
                let t = Instant::now();
                let res = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("webhook-id", id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", sig)
                    .body(raw)
                    .send()
                    .await
                    .expect("send");
                assert_eq!(res.status().as_u16(), 202);
                let _ = res.bytes().await;
                t.elapsed()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let acked = start.elapsed();
    lat.sort();
    let drained = wait_count(&s, "bench-hook", n, Duration::from_secs(120)).await;
    let total = start.elapsed();
    println!(
        "{label:<10} webhook acks: {n} in {:.2} s = {:.0}/s (concurrency {CONCURRENCY}); latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        acked.as_secs_f64(),
        n as f64 / acked.as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
    match drained {
        Some(_) => println!(
            "{label:<10} queue: all {n} runs succeeded {:.2} s after the first request = {:.0} runs/s",
            total.as_secs_f64(),
            n as f64 / total.as_secs_f64()
        ),
        None => println!("{label:<10} queue: NOT all runs succeeded within 120 s"),
    }
}

async fn events(label: &str, db: Option<String>, n: usize) {
    let s = Server::start_with(db, &[]).await;
    s.deploy(
        "bench-sub",
        json!({
            "flow.toml": "name = \"bench-sub\"\n\n[[trigger]]\nkind = \"event\"\nevents = [\"bench.tick\"]\n",
            "main.rhai": "#{ n: trigger.event.data.n }",
        }),
    )
    .await;
    let key = s.key(&["events:publish"]).await;
    let start = Instant::now();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let (client, url, key) = (s.client.clone(), format!("{}/events", s.url), key.clone());
            async move {
                let res = client
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({"type": "bench.tick", "id": format!("e{i}"), "data": {"n": i}}))
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(res.status().as_u16(), 202);
                let _ = res.json::<Value>().await;
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    let posted = start.elapsed();
    match wait_count(&s, "bench-sub", n, Duration::from_secs(120)).await {
        Some(_) => {
            let total = start.elapsed();
            println!(
                "{label:<10} events: {n} posted in {:.2} s ({:.0}/s); all delivered and succeeded after {:.2} s = {:.0} events/s end to end",
                posted.as_secs_f64(),
                n as f64 / posted.as_secs_f64(),
                total.as_secs_f64(),
                n as f64 / total.as_secs_f64()
            );
        }
        None => println!("{label:<10} events: NOT all delivered within 120 s"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    let n: usize = std::env::var("DURABLE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    println!("flowgate binary: {}", common::binary().display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        webhooks("sqlite", None, n).await;
        events("sqlite", None, n / 2).await;
        match fresh_postgres() {
            Some(url) => {
                webhooks("postgres", Some(url.clone()), n).await;
                let url = fresh_postgres().unwrap_or(url);
                events("postgres", Some(url), n / 2).await;
            }
            None => println!("postgres: SKIPPED (FLOWGATE_TEST_POSTGRES_URL not set)"),
        }
    });
}
