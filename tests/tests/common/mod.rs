//! Test harness: starts the real `flowgate` binary on a random loopback port
//! with a fresh database and talks HTTP to it.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `flowgate` binary built by `cargo test --workspace`.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("FLOWGATE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug").join("flowgate");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p flowgate` first",
        bin.display()
    );
    bin
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Base64 of 32 fixed bytes: a test secrets key.
pub const SECRETS_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A running server.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub admin_key: String,
    pub db_url: String,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    extra_env: Vec<(String, String)>,
    /// Where the server's stderr goes (appended across restarts), when captured.
    pub log_file: Option<PathBuf>,
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Server {
    /// A server on a fresh SQLite database.
    pub async fn start() -> Server {
        Self::start_with(None, &[]).await
    }

    /// A server on `db_url` (or a fresh SQLite file) with extra environment.
    pub async fn start_with(db_url: Option<String>, env: &[(&str, &str)]) -> Server {
        Self::start_inner(db_url, env, false).await
    }

    /// Like [`Server::start_with`], with the server's stderr appended to
    /// `<dir>/server.log` (see [`Server::log_text`]).
    pub async fn start_logged(db_url: Option<String>, env: &[(&str, &str)]) -> Server {
        Self::start_inner(db_url, env, true).await
    }

    /// Everything the server wrote to stderr so far (empty unless started with
    /// [`Server::start_logged`]).
    pub fn log_text(&self) -> String {
        self.log_file
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    async fn start_inner(db_url: Option<String>, env: &[(&str, &str)], logged: bool) -> Server {
        install_crypto();
        let dir = tempfile::tempdir().expect("tempdir");
        let db_url =
            db_url.unwrap_or_else(|| format!("sqlite://{}/flowgate.db", dir.path().display()));
        let extra_env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let admin_key = run_cli(
            &db_url,
            &extra_env,
            &[
                "keys",
                "create",
                "--name",
                "test-admin",
                "--scopes",
                "admin",
            ],
        );
        let log_file = logged.then(|| dir.path().join("server.log"));
        let (child, url) = spawn_serve(&db_url, &extra_env, dir.path(), log_file.as_deref());
        Server {
            child,
            url,
            admin_key,
            db_url,
            dir,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            extra_env,
            log_file,
        }
    }

    /// Starts a second process on the same database.
    pub fn spawn_another(&self) -> (Child, String) {
        spawn_serve(
            &self.db_url,
            &self.extra_env,
            self.dir.path(),
            self.log_file.as_deref(),
        )
    }

    /// Kills the process hard and starts it again on the same database.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, url) = spawn_serve(
            &self.db_url,
            &self.extra_env,
            self.dir.path(),
            self.log_file.as_deref(),
        );
        self.child = child;
        self.url = url;
    }

    /// Runs a CLI subcommand against this server's database.
    pub fn cli(&self, args: &[&str]) -> String {
        run_cli(&self.db_url, &self.extra_env, args)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{}", self.url, path))
    }

    /// The value of the first sample of `name` in `GET /metrics` whose
    /// labels include every one of `labels` (each written `key="value"`).
    pub async fn metric(&self, name: &str, labels: &[&str]) -> Option<f64> {
        metric_sample(&self.metrics().await, name, labels)
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("the metrics text")
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{}", self.url, path))
    }

    /// An admin call with the admin key; returns (status, JSON body).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.request(method, path).bearer_auth(&self.admin_key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("admin call");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates a flow (or a new version) from files and publishes it; returns the version.
    pub async fn deploy(&self, flow: &str, files: Value) -> i64 {
        let (s, v) = self
            .admin(
                reqwest::Method::POST,
                "/admin/v1/flows",
                Some(json!({"files": files.clone()})),
            )
            .await;
        let v = if s == 409 {
            let (s, v) = self
                .admin(
                    reqwest::Method::POST,
                    &format!("/admin/v1/flows/{flow}/versions"),
                    Some(json!({"files": files})),
                )
                .await;
            assert_eq!(s, 201, "create version: {v}");
            v
        } else {
            assert_eq!(s, 201, "create flow: {v}");
            v
        };
        let n = v["version"].as_i64().expect("version");
        let (s, body) = self
            .admin(
                reqwest::Method::POST,
                &format!("/admin/v1/flows/{flow}/versions/{n}/publish"),
                None,
            )
            .await;
        assert_eq!(s, 200, "publish: {body}");
        n
    }

    /// Creates an API key with the given scopes through the admin API.
    pub async fn key(&self, scopes: &[&str]) -> String {
        let (s, v) = self
            .admin(
                reqwest::Method::POST,
                "/admin/v1/keys",
                Some(json!({"name": "test", "scopes": scopes})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["key"].as_str().expect("key").to_owned()
    }

    /// Polls a run until it reaches an end state (or the timeout passes).
    pub async fn wait_run(&self, run_id: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let (s, v) = self
                .admin(
                    reqwest::Method::GET,
                    &format!("/admin/v1/runs/{run_id}"),
                    None,
                )
                .await;
            if s == 200 && matches!(v["status"].as_str(), Some("succeeded" | "failed" | "dead")) {
                return v;
            }
            if start.elapsed() > timeout {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base_env(cmd: &mut Command, db_url: &str, extra: &[(String, String)]) {
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FLOWGATE_DATABASE_URL", db_url)
        .env("FLOWGATE_SECRETS_KEY", SECRETS_KEY)
        .env("FLOWGATE_LISTEN", "127.0.0.1:0")
        .env(
            "FLOWGATE_LOG",
            std::env::var("TEST_LOG").map(|_| "info").unwrap_or("warn"),
        )
        .env("FLOWGATE_SHUTDOWN_GRACE_SECS", "5");
    for (k, v) in extra {
        cmd.env(k, v);
    }
}

/// Runs a CLI subcommand and returns its trimmed stdout (panics on failure).
pub fn run_cli(db_url: &str, extra: &[(String, String)], args: &[&str]) -> String {
    let mut cmd = Command::new(binary());
    base_env(&mut cmd, db_url, extra);
    let out = cmd.args(args).output().expect("run flowgate");
    assert!(
        out.status.success(),
        "flowgate {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn spawn_serve(
    db_url: &str,
    extra: &[(String, String)],
    dir: &Path,
    log_file: Option<&Path>,
) -> (Child, String) {
    let (child, rx) = spawn_serve_async(db_url, extra, dir, log_file);
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server did not report its address within 60 s");
    (child, url)
}

/// Starts `flowgate serve`; its address arrives on the receiver once it listens.
fn spawn_serve_async(
    db_url: &str,
    extra: &[(String, String)],
    dir: &Path,
    log_file: Option<&Path>,
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut cmd = Command::new(binary());
    base_env(&mut cmd, db_url, extra);
    let stderr = if let Some(p) = log_file {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .expect("open the server log");
        Stdio::from(f)
    } else if std::env::var("TEST_LOG").is_ok() {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    let mut child = cmd
        .arg("serve")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn flowgate serve");
    let stdout = child.stdout.take().expect("stdout");
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
    (child, rx)
}

/// A minimal package: an http flow answering with its script's value.
pub fn http_flow(name: &str, script: &str, extra_toml: &str) -> Value {
    json!({
        "flow.toml": format!("name = \"{name}\"\n\n[[trigger]]\nkind = \"http\"\n\n[auth]\nmode = \"none\"\n{extra_toml}"),
        "main.rhai": script,
    })
}

/// A package with one signed, async webhook trigger (secret `WH_SECRET`).
pub fn webhook_flow(name: &str, script: &str) -> Value {
    json!({
        "flow.toml": format!(
            "name = \"{name}\"\n\n[[trigger]]\nkind = \"webhook\"\nmode = \"async\"\n\
             signature = {{ scheme = \"standard-webhooks\", secret = \"WH_SECRET\" }}\n"
        ),
        "main.rhai": script,
    })
}

/// The PostgreSQL URL for tests, when set.
pub fn postgres_url() -> Option<String> {
    std::env::var("FLOWGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A fresh, empty PostgreSQL schema on `FLOWGATE_TEST_POSTGRES_URL` (as the
/// store's own tests do), as a database URL; `None` when the variable is unset.
pub fn fresh_postgres_url() -> Option<String> {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let base = postgres_url()?;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut c = PgConnection::establish(&base).expect("connect to FLOWGATE_TEST_POSTGRES_URL");
    diesel::sql_query(format!("CREATE SCHEMA {schema}"))
        .execute(&mut c)
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-csearch_path%3D{schema}"))
}

/// [`fresh_postgres_url`], printing that `test`'s PostgreSQL half is skipped when unset.
pub fn fresh_postgres(test: &str) -> Option<String> {
    let url = fresh_postgres_url();
    if url.is_none() {
        skip_postgres(test);
    }
    url
}

/// A package folder's files as the admin API takes them: relative path → content.
pub fn package_files(dir: &Path) -> Value {
    fn walk(root: &Path, dir: &Path, out: &mut serde_json::Map<String, Value>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .expect("inside the package")
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&path).expect("utf-8 file");
                out.insert(rel, Value::String(text));
            }
        }
    }
    let mut out = serde_json::Map::new();
    walk(dir, dir, &mut out);
    Value::Object(out)
}

/// Prints a clear note that a PostgreSQL test half was skipped.
pub fn skip_postgres(test: &str) {
    eprintln!("{test}: PostgreSQL half SKIPPED (FLOWGATE_TEST_POSTGRES_URL not set)");
}

/// A response read whole: status, headers and the body as JSON (or a string).
pub struct Res {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Res {
    /// A header's value as text.
    pub fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a request and reads its answer whole.
pub async fn send(req: reqwest::RequestBuilder) -> Res {
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap_or_default();
    Res {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// Every run of one flow, newest first (all pages).
pub async fn runs_of(s: &Server, flow: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/admin/v1/runs?flow={flow}&limit=500");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (st, page) = s.admin(reqwest::Method::GET, &path, None).await;
        assert_eq!(st, 200, "{page}");
        out.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// A fresh, empty PostgreSQL database on `FLOWGATE_TEST_POSTGRES_URL`'s
/// server, as `(url, name)`. A database of its own (not a schema) so that
/// `LISTEN/NOTIFY`, which is per database, sees no other test's changes.
pub fn fresh_postgres_database() -> Option<(String, String)> {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let base = postgres_url()?;
    let name = format!("c_{}", uuid::Uuid::new_v4().simple());
    let mut c = PgConnection::establish(&base).expect("connect to FLOWGATE_TEST_POSTGRES_URL");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .expect("create database");
    Some((with_database(&base, &name), name))
}

/// `url` with its database (the last path segment) replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = head[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(head.len());
    let mut out = format!("{}/{name}", &head[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Drops a database made by [`fresh_postgres_database`] (best effort).
fn drop_postgres_database(name: &str) {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    let Some(base) = postgres_url() else { return };
    if let Ok(mut c) = PgConnection::establish(&base) {
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c);
    }
}

/// Several `flowgate serve` nodes on one fresh PostgreSQL database, each on
/// its own random loopback port, sharing one admin key and one secrets key
/// (as a real cluster behind a load balancer must). Each node is a [`Server`],
/// so every helper of a single server works against any node.
pub struct Cluster {
    /// The nodes, `node-0`, `node-1`, …; a killed node stays in place.
    pub nodes: Vec<Server>,
    killed: Vec<bool>,
    db_name: String,
    /// One cluster at a time in this test binary (`cargo test` runs tests on
    /// threads; nextest runs them as processes and groups them, see
    /// `.config/nextest.toml`): three nodes per test are load enough for 2 cores.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

static CLUSTER_SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Connections per node in tests: three nodes (and the tests of other binaries)
/// share one PostgreSQL server.
const CLUSTER_POOL_SIZE: &str = "8";

impl Cluster {
    /// `n` nodes on a fresh database, or `None` (after printing that `test` is
    /// skipped) when `FLOWGATE_TEST_POSTGRES_URL` is unset. `env` applies to
    /// every node (e.g. a short `FLOWGATE_RUN_LEASE_SECONDS`).
    pub async fn start(test: &str, n: usize, env: &[(&str, &str)]) -> Option<Cluster> {
        install_crypto();
        let serial = CLUSTER_SERIAL.lock().await;
        let Some((db_url, db_name)) = fresh_postgres_database() else {
            skip_postgres(test);
            return None;
        };
        let mut common: Vec<(String, String)> = vec![(
            "FLOWGATE_DATABASE_POOL_SIZE".to_owned(),
            CLUSTER_POOL_SIZE.to_owned(),
        )];
        common.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        // Migrates the database once, before any node starts.
        let admin_key = run_cli(
            &db_url,
            &common,
            &[
                "keys",
                "create",
                "--name",
                "cluster-admin",
                "--scopes",
                "admin",
            ],
        );
        let mut pending = Vec::new();
        for i in 0..n {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut env = common.clone();
            env.push(("FLOWGATE_NODE_ID".to_owned(), format!("node-{i}")));
            let log_file = dir.path().join("server.log");
            let (child, url_rx) = spawn_serve_async(&db_url, &env, dir.path(), Some(&log_file));
            pending.push((dir, env, log_file, child, url_rx));
        }
        let mut nodes = Vec::new();
        for (dir, env, log_file, child, url_rx) in pending {
            let url = url_rx
                .recv_timeout(Duration::from_secs(60))
                .expect("a node did not report its address within 60 s");
            nodes.push(Server {
                child,
                url,
                admin_key: admin_key.clone(),
                db_url: db_url.clone(),
                dir,
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("client"),
                extra_env: env,
                log_file: Some(log_file),
            });
        }
        Some(Cluster {
            killed: vec![false; nodes.len()],
            nodes,
            db_name,
            _serial: serial,
        })
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Server {
        &self.nodes[i]
    }

    /// The id node `i` was started with (`FLOWGATE_NODE_ID`).
    pub fn node_id(&self, i: usize) -> String {
        format!("node-{i}")
    }

    /// The base URLs of all nodes (a killed node's URL refuses connections).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|s| s.url.clone()).collect()
    }

    /// Kills node `i` with SIGKILL (no graceful shutdown, leases stay held).
    pub fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let _ = node.child.kill();
        let _ = node.child.wait();
        self.killed[i] = true;
    }

    /// Whether node `i` was killed.
    pub fn is_killed(&self, i: usize) -> bool {
        self.killed[i]
    }

    /// The first node still running (for admin reads after a kill).
    pub fn live(&self) -> &Server {
        let i = (0..self.nodes.len())
            .find(|i| !self.killed[*i])
            .expect("a live node");
        &self.nodes[i]
    }

    /// Everything each node wrote to stderr, labelled, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, s)| format!("--- node-{i}\n{}", s.log_text()))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        drop_postgres_database(&self.db_name);
    }
}

/// Polls `check` every 100 ms until it yields `Some` or `timeout` passes
/// (then `None`): the bounded wait of the cluster tests.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Standard Webhooks secret of the webhook tests' flows.
pub const WH_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Stores [`WH_SECRET`] as the secret `WH_SECRET`.
pub async fn put_webhook_secret(s: &Server) {
    let (st, body) = s
        .admin(
            reqwest::Method::PUT,
            "/admin/v1/secrets/WH_SECRET",
            Some(serde_json::json!({"value": WH_SECRET})),
        )
        .await;
    assert_eq!(st, 204, "{body}");
}

/// Sends a Standard Webhooks delivery signed now with [`WH_SECRET`] to
/// `base`, answering its status, body and `Location`; `Err` on a transport
/// error (a killed node refuses the connection).
pub async fn send_webhook(
    client: &reqwest::Client,
    base: &str,
    flow: &str,
    msg_id: &str,
    body: &serde_json::Value,
) -> Result<(u16, serde_json::Value, Option<String>), reqwest::Error> {
    let raw = body.to_string();
    let ts = flowgate_core::now_ms() / 1000;
    let sig = flowgate_auth::signature::sign_standard_webhooks(
        &flowgate_core::SecretString::new(WH_SECRET),
        msg_id,
        ts,
        raw.as_bytes(),
    )
    .expect("sign");
    let res = client
        .post(format!("{base}/flows/{flow}"))
        .header("content-type", "application/json")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(raw)
        .send()
        .await?;
    answer_of(res).await
}

/// A response's status, body (JSON, or the text as a string) and `Location`.
pub async fn answer_of(
    res: reqwest::Response,
) -> Result<(u16, serde_json::Value, Option<String>), reqwest::Error> {
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = res.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        location,
    ))
}

/// The value of the first sample of `name` in a metrics text whose labels
/// include every one of `labels` (each written `key="value"`).
pub fn metric_sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let (labelled, bare) = (format!("{name}{{"), format!("{name} "));
    text.lines()
        .find(|l| {
            (l.starts_with(&labelled) || l.starts_with(&bare))
                && labels.iter().all(|want| l.contains(want))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
