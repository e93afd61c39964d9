//! Hot-path load harness (not a timed test): starts the real `flowgate`
//! binary on 127.0.0.1 and measures sync flow calls per second with API-key
//! auth + rate limiting + audit against the same flow with `[auth] mode =
//! "none"` and no rate, alternating rounds in one run, and reports the ratio.
//! Also reports argon2id verification time (a key-cache miss).
//!
//! Run: `cargo build --release -p flowgate && cargo bench -p flowgate-gateway --bench hot_path`
//! (uses `FLOWGATE_BIN`, else target/release/flowgate, else target/debug/flowgate).
//! `HOT_PATH_SECS` (default 3) sets the length of one round.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const CONCURRENCY: usize = 32;
const ROUNDS: usize = 3;
const SECRETS_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn binary() -> BoxResult<PathBuf> {
    if let Ok(p) = std::env::var("FLOWGATE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    for profile in ["release", "debug"] {
        let p = target.join(profile).join("flowgate");
        if p.exists() {
            return Ok(p);
        }
    }
    Err("no flowgate binary: run `cargo build --release -p flowgate` first".into())
}

struct ServerProcess {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn command(bin: &PathBuf, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "FLOWGATE_DATABASE_URL",
            format!("sqlite://{}/flowgate.db", dir.display()),
        )
        .env("FLOWGATE_SECRETS_KEY", SECRETS_KEY)
        .env("FLOWGATE_LISTEN", "127.0.0.1:0")
        .env("FLOWGATE_LOG", "warn")
        // The baseline is anonymous: lift the per-IP limit for unauthenticated traffic.
        .env("FLOWGATE_ANONYMOUS_RATE", "1000000/second")
        .current_dir(dir);
    cmd
}

fn start() -> BoxResult<(ServerProcess, String)> {
    let bin = binary()?;
    println!("binary: {}", bin.display());
    let dir = std::env::temp_dir().join(format!(
        "flowgate-hot-path-{}-{}",
        std::process::id(),
        flowgate_core::now_ms()
    ));
    std::fs::create_dir_all(&dir)?;
    let out = command(&bin, &dir)
        .args(["keys", "create", "--name", "bench", "--scopes", "admin"])
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let admin_key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut child = command(&bin, &dir)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if let Some(url) = line.trim().strip_prefix("flowgate listening on ") {
                let _ = tx.send(url.to_owned());
            }
            line.clear();
        }
    });
    let url = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(u) => u,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the server did not start: {e}").into());
        }
    };
    Ok((ServerProcess { child, url, dir }, admin_key))
}

async fn admin(
    c: &reqwest::Client,
    s: &ServerProcess,
    key: &str,
    path: &str,
    body: Value,
) -> BoxResult<Value> {
    let res = c
        .post(format!("{}{path}", s.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await?;
    let status = res.status();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(format!("{path}: {status} {v}").into());
    }
    Ok(v)
}

async fn deploy(
    c: &reqwest::Client,
    s: &ServerProcess,
    key: &str,
    name: &str,
    toml_tail: &str,
) -> BoxResult<()> {
    let files = json!({
        "flow.toml": format!("name = \"{name}\"\n\n[[trigger]]\nkind = \"http\"\nmode = \"sync\"\n{toml_tail}"),
        "main.rhai": "#{ ok: true, n: 1 + 1 }",
    });
    let v = admin(c, s, key, "/admin/v1/flows", json!({"files": files})).await?;
    let n = v["version"].as_i64().ok_or("no version")?;
    admin(
        c,
        s,
        key,
        &format!("/admin/v1/flows/{name}/versions/{n}/publish"),
        json!({}),
    )
    .await?;
    Ok(())
}

/// Calls `url` from `CONCURRENCY` tasks for `secs`; returns (ok calls/s, non-2xx).
async fn load(c: &reqwest::Client, url: &str, key: Option<&str>, secs: f64) -> (f64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for _ in 0..CONCURRENCY {
        let (c, url, key) = (c.clone(), url.to_owned(), key.map(str::to_owned));
        let (ok, bad, stop) = (ok.clone(), bad.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut req = c.post(&url).json(&json!({"amount": 1}));
                if let Some(k) = &key {
                    req = req.bearer_auth(k);
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    (
        ok.load(Ordering::Relaxed) as f64 / elapsed,
        bad.load(Ordering::Relaxed),
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn argon2_miss_ms() -> BoxResult<f64> {
    let (key, hash) = flowgate_auth::api_key::generate()?;
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let ok = flowgate_auth::api_key::verify_hash(key.full_key.expose(), &hash);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        if !ok {
            return Err("argon2 verification failed".into());
        }
    }
    Ok(median(&mut times))
}

async fn run() -> BoxResult<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let secs: f64 = std::env::var("HOT_PATH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let (server, admin_key) = start()?;
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY * 2)
        .timeout(Duration::from_secs(30))
        .build()?;
    deploy(
        &c,
        &server,
        &admin_key,
        "open",
        "\n[auth]\nmode = \"none\"\n",
    )
    .await?;
    deploy(
        &c,
        &server,
        &admin_key,
        "guarded",
        "\n[auth]\nmode = \"api_key\"\nscopes = [\"bench:call\"]\n\n[limits]\nrate = \"1000000/minute\"\n",
    )
    .await?;
    let created = admin(
        &c,
        &server,
        &admin_key,
        "/admin/v1/keys",
        json!({"name": "load", "scopes": ["bench:call"]}),
    )
    .await?;
    let key = created["key"].as_str().ok_or("no key")?.to_owned();

    // A cache miss over HTTP (argon2 + store) versus a warm call.
    let guarded = format!("{}/flows/guarded", server.url);
    let open = format!("{}/flows/open", server.url);
    let t = Instant::now();
    let first = c
        .post(&guarded)
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await?;
    let miss_http = t.elapsed().as_secs_f64() * 1000.0;
    if !first.status().is_success() {
        return Err(format!("guarded call: {}", first.status()).into());
    }
    let t = Instant::now();
    c.post(&guarded)
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await?;
    let warm_http = t.elapsed().as_secs_f64() * 1000.0;

    // Warm up both paths, then alternate rounds.
    load(&c, &open, None, 1.0).await;
    load(&c, &guarded, Some(&key), 1.0).await;
    let (mut base, mut sec) = (Vec::new(), Vec::new());
    let mut errors = 0;
    for round in 0..ROUNDS {
        let (b, e1) = load(&c, &open, None, secs).await;
        let (s, e2) = load(&c, &guarded, Some(&key), secs).await;
        println!(
            "round {round}: auth off {b:>8.0} calls/s | api key + rate + audit {s:>8.0} calls/s"
        );
        errors += e1 + e2;
        base.push(b);
        sec.push(s);
    }
    let (b, s) = (median(&mut base), median(&mut sec));
    println!(
        "concurrency {CONCURRENCY}, {ROUNDS} rounds of {secs} s each, non-2xx answers: {errors}"
    );
    println!("median auth off:                 {b:.0} calls/s");
    println!("median api key + rate + audit:   {s:.0} calls/s");
    println!(
        "ratio (secured / auth off):      {:.3} (aim >= 0.85)",
        if b > 0.0 { s / b } else { 0.0 }
    );
    println!("first call with a new key (cache miss, over HTTP): {miss_http:.1} ms; next call: {warm_http:.1} ms");
    println!(
        "argon2id verification (m=19456 KiB, t=2, p=1), median of 7: {:.1} ms",
        argon2_miss_ms()?
    );
    Ok(())
}

fn main() {
    // `cargo test --benches` runs this too; keep that quick.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run()) {
        eprintln!("hot_path: {e}");
        std::process::exit(1);
    }
}
