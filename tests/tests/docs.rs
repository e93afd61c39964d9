//! Issue 8 over HTTP against the real server: every generated OpenAPI document
//! validates as OpenAPI 3.1 (`openapi-spec-validator`), documented examples
//! match the live endpoints (contract test), `/docs` renders offline in headless
//! Chromium and lists every live flow, snapshots of two flows' documents, and
//! compatibility reports on breaking publishes.
//!
//! Tools that may be missing locally (`python3 -m openapi_spec_validator`,
//! `chromium`) make the affected test print a `SKIPPED` line; `.ci/run`
//! installs both.
//!
//! "No network errors" in the browser test is checked three ways: (a) the HTML
//! references no external `http(s)` URL in `src`/`href` (nor `url(…)`/`@import`
//! in inline CSS), (b) every local `src`/`href` answers 200, and (c) Chromium's
//! NetLog (`--log-net-log`): every request the page made (recognised by its
//! traffic annotation: navigation, Blink resource loader, favicon) went to
//! 127.0.0.1, and no HTTP response in it is a 4xx/5xx. Chromium's own
//! background requests (time sync, account checks) carry other annotations and
//! are ignored; `--host-resolver-rules` keeps them, and anything else, off the
//! network, so the test talks to 127.0.0.1 only.

mod common;

use common::{repo_root, Server};
use flowgate_core::manifest::{SignatureConfig, SignatureScheme, Trigger};
use flowgate_core::{Manifest, SecretString};
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- packages

/// One example package from `scripts/`.
struct Package {
    name: String,
    dir: PathBuf,
    manifest: Manifest,
    files: Value,
}

impl Package {
    /// The fixture `tests/<stem>.json`, when present.
    fn fixture(&self, stem: &str) -> Option<Value> {
        let text =
            std::fs::read_to_string(self.dir.join("tests").join(format!("{stem}.json"))).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Every fixture of the package.
    fn fixtures(&self) -> Vec<Value> {
        let Ok(rd) = std::fs::read_dir(self.dir.join("tests")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            if e.path().extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(e.path()).expect("fixture");
                out.push(serde_json::from_str(&text).expect("fixture JSON"));
            }
        }
        out
    }

    /// The signature configuration of the webhook trigger, if any.
    fn signature(&self) -> Option<&SignatureConfig> {
        self.manifest.triggers.iter().find_map(|t| match t {
            Trigger::Webhook(ep) | Trigger::Http(ep) => ep.signature.as_ref(),
            _ => None,
        })
    }

    /// The secret value the test stores for the signature secret: the one a
    /// fixture gives, else a made-up one of the right shape.
    fn secret_value(&self, cfg: &SignatureConfig) -> String {
        for f in self.fixtures() {
            if let Some(v) = f["secrets"][&cfg.secret].as_str() {
                return v.to_owned();
            }
        }
        match cfg.scheme {
            // base64 of 32 bytes
            SignatureScheme::StandardWebhooks => {
                "whsec_ZG9jcy10ZXN0LXNlY3JldC1mb3ItZmxvd2dhdGUtMzI=".to_owned()
            }
            _ => "docs-test-secret".to_owned(),
        }
    }
}

/// Every package folder under `scripts/` (whatever is there now).
fn packages() -> Vec<Package> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("scripts"))
        .expect("scripts/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("flow.toml").is_file())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no example packages in scripts/");
    dirs.into_iter()
        .map(|dir| {
            let src = std::fs::read_to_string(dir.join("flow.toml")).expect("flow.toml");
            let manifest =
                Manifest::parse(&src).unwrap_or_else(|e| panic!("{}: {e:?}", dir.display()));
            Package {
                name: manifest.name.to_string(),
                files: common::package_files(&dir),
                manifest,
                dir,
            }
        })
        .collect()
}

/// Deploys and publishes every example package and stores the secrets their
/// signatures name.
async fn deploy_all(s: &Server) -> Vec<Package> {
    let pkgs = packages();
    for p in &pkgs {
        let n = s.deploy(&p.name, p.files.clone()).await;
        assert_eq!(n, 1, "{}: first version", p.name);
        if let Some(cfg) = p.signature() {
            let (st, body) = s
                .admin(
                    Method::PUT,
                    &format!("/admin/v1/secrets/{}", cfg.secret),
                    Some(json!({"value": p.secret_value(cfg)})),
                )
                .await;
            assert_eq!(st, 204, "secret {}: {body}", cfg.secret);
        }
    }
    pkgs
}

/// GETs a JSON document, asserting 200.
async fn get_json(s: &Server, path: &str) -> Value {
    let res = s.get(path).send().await.expect("GET");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"))
}

async fn get_text(s: &Server, path: &str) -> (u16, String) {
    let res = s.get(path).send().await.expect("GET");
    let status = res.status().as_u16();
    (status, res.text().await.expect("body"))
}

// ------------------------------------------------------ 1. OpenAPI validity

fn validator_available() -> bool {
    Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_generated_document_validates_as_openapi_3_1() {
    let s = Server::start().await;
    let pkgs = deploy_all(&s).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for p in &pkgs {
        let doc = get_json(&s, &format!("/openapi/flows/{}/v1.json", p.name)).await;
        assert_eq!(doc["openapi"], "3.1.0", "{}", p.name);
        let f = dir.path().join(format!("{}.v1.json", p.name));
        std::fs::write(&f, doc.to_string()).expect("write");
        files.push(f);
    }
    let live = get_json(&s, "/openapi.json").await;
    assert_eq!(live["openapi"], "3.1.0");
    let admin = get_json(&s, "/admin/v1/openapi.json").await;
    for (name, doc) in [("live.json", &live), ("admin.json", &admin)] {
        let f = dir.path().join(name);
        std::fs::write(&f, doc.to_string()).expect("write");
        files.push(f);
    }
    // The served admin document is the committed one (`make openapi-check`
    // compares the exported file; this compares what the server answers).
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("openapi/admin.json"))
            .expect("openapi/admin.json"),
    )
    .expect("admin.json is JSON");
    assert!(
        admin == committed,
        "/admin/v1/openapi.json differs from openapi/admin.json: run `make openapi`"
    );

    if !validator_available() {
        eprintln!(
            "SKIPPED: OpenAPI validation of {} documents: python3 module `openapi_spec_validator` is missing \
             (python3 -m pip install openapi-spec-validator; .ci/run installs it)",
            files.len()
        );
        return;
    }
    let mut failures = Vec::new();
    for f in &files {
        let out = Command::new("python3")
            .args(["-m", "openapi_spec_validator"])
            .arg(f)
            .output()
            .expect("run openapi_spec_validator");
        if !out.status.success() {
            failures.push(format!(
                "{}:\n{}{}",
                f.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "invalid OpenAPI documents:\n{}",
        failures.join("\n")
    );
    eprintln!("validated {} OpenAPI documents", files.len());
}

// ----------------------------------------------------- 2. contract test

/// Follows a local `$ref` (`#/components/…`) in `doc`.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let mut v = v;
    for _ in 0..8 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with("#/") => {
                v = doc
                    .pointer(&r[1..])
                    .unwrap_or_else(|| panic!("dangling $ref {r}"));
            }
            _ => break,
        }
    }
    v
}

/// Validates `instance` against `schema` (which may `$ref` into the document's
/// components); returns the violations.
fn schema_errors(doc: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    let mut root = Map::new();
    root.insert("allOf".into(), json!([schema]));
    root.insert("components".into(), doc["components"].clone());
    let root = Value::Object(root);
    let validator = jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("documented schema does not compile: {e}: {schema}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Deletes every user (the contract test seeds each fixture's users afresh).
async fn delete_all_users(s: &Server) {
    for _ in 0..20 {
        let (st, list) = s
            .admin(Method::GET, "/admin/v1/users?limit=500", None)
            .await;
        assert_eq!(st, 200, "{list}");
        let items = list["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return;
        }
        for u in items {
            let id = u["id"].as_str().expect("user id");
            let (st, body) = s
                .admin(Method::DELETE, &format!("/admin/v1/users/{id}"), None)
                .await;
            assert!(st == 204 || st == 404, "delete user: {st} {body}");
        }
    }
}

/// Seeds the fixture's users; returns fixture id → real id.
async fn seed_users(s: &Server, fixture: &Value) -> Vec<(String, String)> {
    let mut ids = Vec::new();
    for u in fixture["users"].as_array().cloned().unwrap_or_default() {
        let mut body = Map::new();
        for k in [
            "email",
            "display_name",
            "status",
            "attributes",
            "external_ids",
        ] {
            if let Some(v) = u.get(k) {
                body.insert(k.into(), v.clone());
            }
        }
        let (st, created) = s
            .admin(Method::POST, "/admin/v1/users", Some(Value::Object(body)))
            .await;
        assert_eq!(st, 201, "seed user {u}: {created}");
        if let (Some(fid), Some(rid)) = (u["id"].as_str(), created["id"].as_str()) {
            ids.push((fid.to_owned(), rid.to_owned()));
        }
    }
    ids
}

fn substitute(text: &str, ids: &[(String, String)]) -> String {
    ids.iter().fold(text.to_owned(), |t, (from, to)| {
        t.replace(from.as_str(), to)
    })
}

/// Percent-encodes a query component.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Whether a concrete path matches a documented path template.
fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(a, b)| (a.starts_with('{') && a.ends_with('}') && !b.is_empty()) || a == b)
}

/// The headers that sign `body` for the package's webhook signature.
fn sign(cfg: &SignatureConfig, secret: &str, body: &[u8], n: usize) -> Vec<(String, String)> {
    let secret = SecretString::from(secret.to_owned());
    let ts = chrono::Utc::now().timestamp();
    let msg_id = format!("msg_docs_contract_{n}_{ts}");
    match cfg.scheme {
        SignatureScheme::StandardWebhooks => vec![
            ("webhook-id".into(), msg_id.clone()),
            ("webhook-timestamp".into(), ts.to_string()),
            (
                "webhook-signature".into(),
                flowgate_auth::signature::sign_standard_webhooks(&secret, &msg_id, ts, body)
                    .expect("sign"),
            ),
        ],
        SignatureScheme::Stripe => vec![(
            "stripe-signature".into(),
            flowgate_auth::signature::sign_stripe(&secret, ts, body).expect("sign"),
        )],
        SignatureScheme::Github => vec![
            ("x-github-delivery".into(), msg_id),
            ("x-github-event".into(), "ping".into()),
            (
                "x-hub-signature-256".into(),
                flowgate_auth::signature::sign_github(&secret, body).expect("sign"),
            ),
        ],
        SignatureScheme::HmacSha256 => vec![(
            cfg.header.clone(),
            flowgate_auth::signature::sign_hmac_sha256(cfg, &secret, body).expect("sign"),
        )],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_examples_match_the_live_endpoints() {
    let s = Server::start().await;
    let pkgs = deploy_all(&s).await;
    let by_name: BTreeMap<&str, &Package> = pkgs.iter().map(|p| (p.name.as_str(), p)).collect();
    let live = get_json(&s, "/openapi.json").await;
    let paths = live["paths"].as_object().expect("paths").clone();
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    let (mut checked, mut skipped, mut n) = (0usize, Vec::new(), 0usize);
    let mut failures = Vec::new();

    for (template, item) in &paths {
        let flow = template
            .strip_prefix("/flows/")
            .and_then(|r| r.split('/').next())
            .expect("live paths are /flows/{flow}…");
        let pkg = by_name
            .get(flow)
            .unwrap_or_else(|| panic!("{template}: no package {flow}"));
        for (method, op) in item.as_object().expect("path item") {
            let Some(examples) = op
                .pointer("/requestBody/content/application~1json/examples")
                .and_then(Value::as_object)
            else {
                continue;
            };
            for (stem, example) in examples {
                n += 1;
                let what = format!("{} {template} example `{stem}`", method.to_uppercase());
                let fixture = pkg
                    .fixture(stem)
                    .unwrap_or_else(|| panic!("{what}: no fixture tests/{stem}.json"));
                if fixture["http"].as_array().is_some_and(|a| !a.is_empty()) {
                    skipped.push(format!("{what} (fixture mocks outbound http)"));
                    continue;
                }
                delete_all_users(&s).await;
                let ids = seed_users(&s, &fixture).await;

                let suffix = substitute(fixture["request"]["path"].as_str().unwrap_or(""), &ids);
                let path = format!("/flows/{flow}{suffix}");
                assert!(
                    path_matches(template, &path),
                    "{what}: fixture path {path} does not fit the documented template"
                );
                let query: Vec<String> = fixture["request"]["query"]
                    .as_object()
                    .map(|q| {
                        q.iter()
                            .map(|(k, v)| {
                                let v = v.as_str().map_or(v.to_string(), str::to_owned);
                                format!("{}={}", pct(k), pct(&v))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let path = if query.is_empty() {
                    path
                } else {
                    format!("{path}?{}", query.join("&"))
                };
                let body = substitute(&example["value"].to_string(), &ids).into_bytes();
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
                let mut req = s.request(m, &path).body(body.clone());
                let mut has_ct = false;
                if let Some(h) = fixture["request"]["headers"].as_object() {
                    for (k, v) in h {
                        has_ct |= k.eq_ignore_ascii_case("content-type");
                        req = req.header(k.as_str(), v.as_str().unwrap_or_default());
                    }
                }
                if !has_ct {
                    req = req.header("content-type", "application/json");
                }
                // Credentials as the operation documents them.
                let security = op["security"].as_array().cloned().unwrap_or_default();
                let schemes: BTreeSet<String> = security
                    .iter()
                    .filter_map(Value::as_object)
                    .flat_map(|o| o.keys().cloned())
                    .collect();
                if schemes.contains("apiKey") || schemes.contains("bearerAuth") {
                    if !keys.contains_key(flow) {
                        let scopes: Vec<&str> = pkg
                            .manifest
                            .auth
                            .scopes
                            .iter()
                            .map(String::as_str)
                            .collect();
                        keys.insert(flow.to_owned(), s.key(&scopes).await);
                    }
                    req = req.header("x-api-key", &keys[flow]);
                } else if let Some(cfg) = pkg.signature() {
                    for (k, v) in sign(cfg, &pkg.secret_value(cfg), &body, n) {
                        req = req.header(k, v);
                    }
                } else {
                    assert!(
                        security.is_empty(),
                        "{what}: security {security:?} the test cannot satisfy"
                    );
                }

                let res = req.send().await.expect("send");
                let status = res.status().as_u16();
                let ctype = res
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                let text = res.text().await.expect("body");
                checked += 1;

                let responses = &op["responses"];
                let Some(resp) = responses
                    .get(status.to_string())
                    .or_else(|| responses.get(format!("{}XX", status / 100)))
                    .or_else(|| responses.get("default"))
                else {
                    failures.push(format!("{what}: status {status} is not documented: {text}"));
                    continue;
                };
                let resp = deref(&live, resp);
                let Some(content) = resp["content"].as_object() else {
                    if !text.is_empty() {
                        failures.push(format!("{what}: {status} documents no body, got {text}"));
                    }
                    continue;
                };
                let Some(media) = content.get(&ctype) else {
                    failures.push(format!(
                        "{what}: {status} answered {ctype}, documented {:?}",
                        content.keys().collect::<Vec<_>>()
                    ));
                    continue;
                };
                let Ok(instance) = serde_json::from_str::<Value>(&text) else {
                    failures.push(format!("{what}: {status} body is not JSON: {text}"));
                    continue;
                };
                let errors = schema_errors(&live, &media["schema"], &instance);
                if !errors.is_empty() {
                    failures.push(format!(
                        "{what}: {status} body {instance} does not match the documented schema: {}",
                        errors.join("; ")
                    ));
                }
                // Sync flows whose outcome depends only on seeded users answer
                // what the fixture expects.
                let expected = fixture["expect"]["status"].as_u64();
                let stateful = fixture.get("kv").is_some_and(|k| k != &json!({}));
                if let Some(e) = expected {
                    if status != 202 && !stateful && u64::from(status) != e {
                        failures.push(format!(
                            "{what}: status {status}, the fixture expects {e}: {text}"
                        ));
                    }
                }
            }
        }
    }
    for sk in &skipped {
        eprintln!("SKIPPED contract check: {sk}");
    }
    eprintln!(
        "contract: {checked} documented examples sent, {} skipped",
        skipped.len()
    );
    assert!(
        failures.is_empty(),
        "contract failures:\n{}",
        failures.join("\n")
    );
    assert!(
        checked >= 3,
        "too few documented request examples were checked: {checked}"
    );
}

// ------------------------------------------------------ 3. browser test

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `url` with a NetLog; returns (DOM, NetLog text).
fn chromium_dump(bin: &Path, url: &str) -> (String, String) {
    let profile = tempfile::tempdir().expect("tempdir");
    let netlog = profile.path().join("netlog.json");
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            // Keep the browser on loopback: every other host fails to resolve.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.path().join("profile").display()
        ))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait chromium").is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let dom = reader.join().expect("reader");
    let log = std::fs::read_to_string(&netlog).unwrap_or_default();
    (dom, log)
}

/// Every `src="…"` / `href="…"` value in `html`.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=", "href="] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            let inner = &rest[1..];
            if let Some(end) = inner.find(q) {
                out.push(inner[..end].replace("&amp;", "&"));
            }
        }
    }
    out
}

/// The requests in a (possibly truncated) NetLog: (traffic annotation, URL).
/// Each request's parameters are a flat object with `traffic_annotation` and `url`.
fn netlog_requests(text: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("\"traffic_annotation\":") {
        let at = from + i;
        from = at + 1;
        let (Some(start), Some(end)) = (text[..at].rfind('{'), text[at..].find('}')) else {
            continue;
        };
        let Ok(obj) = serde_json::from_str::<Value>(&text[start..=at + end]) else {
            continue;
        };
        if let (Some(a), Some(u)) = (obj["traffic_annotation"].as_u64(), obj["url"].as_str()) {
            out.push((a, u.to_owned()));
        }
    }
    out
}

/// Traffic annotations (hashes of Chromium's annotation ids) of requests a
/// page makes: `navigation_url_loader`, `blink_resource_loader`,
/// `favicon_loader`. Everything else in the NetLog is the browser's own
/// background traffic (time sync, account checks), which says nothing about
/// the page and is kept off the network by `--host-resolver-rules`.
const PAGE_ANNOTATIONS: [u64; 3] = [63_171_670, 101_845_102, 112_189_210];

/// HTTP status lines of the responses in a NetLog.
fn netlog_statuses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("\"HTTP/1.") {
        rest = &rest[i + 1..];
        if let Some(end) = rest.find('"') {
            out.push(rest[..end].to_owned());
        }
    }
    out
}

/// Checks one page: no external references, every local reference answers
/// 200, and the browser talked to nothing but 127.0.0.1. Returns the DOM.
async fn check_page_offline(s: &Server, bin: &Path, path: &str) -> String {
    let (st, html) = get_text(s, path).await;
    assert_eq!(st, 200, "GET {path}: {html}");
    let lower = html.to_ascii_lowercase();
    assert!(
        !lower.contains("@import") && !lower.contains("url(http") && !lower.contains("url(//"),
        "{path}: CSS loads external resources"
    );
    for r in references(&html) {
        let lr = r.to_ascii_lowercase();
        assert!(
            !(lr.starts_with("http:") || lr.starts_with("https:") || lr.starts_with("//")),
            "{path} references an external URL: {r}"
        );
        if r.starts_with('/') {
            let target = r.split('#').next().unwrap_or("");
            if !target.is_empty() {
                let (st, body) = get_text(s, target).await;
                assert_eq!(
                    st, 200,
                    "{path} links to {target}, which answers {st}: {body}"
                );
            }
        }
    }

    let url = format!("{}{}", s.url, path);
    let bin = bin.to_owned();
    let (dom, netlog) = tokio::task::spawn_blocking(move || chromium_dump(&bin, &url))
        .await
        .expect("chromium task");
    assert!(dom.contains("</html>"), "{path}: chromium produced no DOM");
    assert!(!netlog.is_empty(), "{path}: chromium wrote no NetLog");
    let requests = netlog_requests(&netlog);
    let page_requests: Vec<&(u64, String)> = requests
        .iter()
        .filter(|(a, _)| PAGE_ANNOTATIONS.contains(a))
        .collect();
    // The classification works with this Chromium: the navigation is in it.
    assert!(
        page_requests
            .iter()
            .any(|(a, u)| *a == PAGE_ANNOTATIONS[0] && u.starts_with(&s.url)),
        "{path}: the NetLog does not show the page's navigation (Chromium changed its annotations?): {requests:?}"
    );
    for (_, u) in &page_requests {
        assert!(
            u.starts_with("http://127.0.0.1:") || u.starts_with("data:"),
            "{path}: the page requested {u}"
        );
    }
    // Only 127.0.0.1 can answer; none of its answers may be an error.
    for line in netlog_statuses(&netlog) {
        let code = line.split(' ').nth(1).unwrap_or("");
        assert!(
            code.starts_with('2') || code.starts_with('3'),
            "{path}: a request the page made failed: {line}"
        );
    }
    dom
}

#[tokio::test(flavor = "multi_thread")]
async fn docs_render_offline_in_headless_chromium_and_list_every_live_flow() {
    let s = Server::start().await;
    let pkgs = deploy_all(&s).await;
    let Some(bin) = chromium() else {
        // Still check the HTML itself.
        let (st, html) = get_text(&s, "/docs").await;
        assert_eq!(st, 200);
        for p in &pkgs {
            assert!(html.contains(&p.name), "/docs does not list {}", p.name);
        }
        eprintln!(
            "SKIPPED: headless Chromium browser test: /usr/bin/chromium is missing \
             (apt-get install -y --no-install-recommends chromium; .ci/run installs it)"
        );
        return;
    };
    let dom = check_page_offline(&s, &bin, "/docs").await;
    for p in &pkgs {
        assert!(
            dom.contains(&p.name),
            "/docs in Chromium does not show {}",
            p.name
        );
        if let Some(t) = &p.manifest.title {
            let shown = t
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            assert!(
                dom.contains(&shown) || dom.contains(t.as_str()),
                "/docs in Chromium does not show the title of {}: {t}",
                p.name
            );
        }
    }
    let first = &pkgs[0];
    let page = format!("/docs/flows/{}/v1", first.name);
    let dom = check_page_offline(&s, &bin, &page).await;
    assert!(
        dom.contains(&first.name),
        "{page} does not show {}",
        first.name
    );
}

// -------------------------------------------------------- 4. snapshots

/// The document as committed: the server URL replaced by a fixed one.
fn normalised(s: &Server, doc: &Value) -> String {
    let text = serde_json::to_string_pretty(doc).expect("json");
    let text = text.replace(&s.url, "http://flowgate.test");
    let alt = s.url.replace("127.0.0.1", "localhost");
    text.replace(&alt, "http://flowgate.test") + "\n"
}

fn check_snapshot(name: &str, actual: &str) {
    let path = repo_root().join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, actual).expect("write snapshot");
        eprintln!("updated {}", path.display());
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run with UPDATE_SNAPSHOTS=1", path.display()));
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(10)
            .map(|(i, (a, b))| format!("line {}:\n- {a}\n+ {b}", i + 1))
            .collect();
        panic!(
            "{name} differs from the live server's document ({} vs {} lines):\n{}\n\
             (UPDATE_SNAPSHOTS=1 rewrites it after review)",
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn live_documents_match_their_snapshots() {
    let s = Server::start().await;
    for flow in ["payment-webhook", "account-status"] {
        let dir = repo_root().join("scripts").join(flow);
        s.deploy(flow, common::package_files(&dir)).await;
        let doc = get_json(&s, &format!("/openapi/flows/{flow}/v1.json")).await;
        let text = normalised(&s, &doc);
        assert!(
            !text.contains("127.0.0.1"),
            "{flow}: server address left in the document"
        );
        check_snapshot(&format!("{flow}.v1.json"), &text);
    }
}

// --------------------------------------------------- 5. compatibility

fn compat_flow(required: &[&str], force_flag: bool) -> Value {
    let props: Map<String, Value> = ["email", "plan"]
        .iter()
        .map(|k| ((*k).to_owned(), json!({"type": "string"})))
        .collect();
    let schema = json!({"type": "object", "properties": props, "required": required});
    let compat = if force_flag {
        "\n[compat]\nbreaking_requires_force = true\n"
    } else {
        ""
    };
    json!({
        "flow.toml": format!(
            "name = \"compat-demo\"\ntitle = \"Compatibility demo\"\n\n[[trigger]]\nkind = \"http\"\nmethod = \"POST\"\n\n[auth]\nmode = \"none\"\n{compat}"
        ),
        "main.rhai": "#{ ok: true }",
        "input.schema.json": schema.to_string(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn breaking_publishes_are_reported_and_can_require_force() {
    let s = Server::start().await;
    assert_eq!(
        s.deploy("compat-demo", compat_flow(&["email"], true)).await,
        1
    );

    // v2 adds a required field: breaking.
    let (st, v) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/compat-demo/versions",
            Some(json!({"files": compat_flow(&["email", "plan"], true)})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["version"], 2);
    let publish = "/admin/v1/flows/compat-demo/versions/2/publish";
    let (st, refused) = s.admin(Method::POST, publish, None).await;
    assert_eq!(st, 422, "breaking publish without force: {refused}");
    assert!(
        refused.to_string().contains("plan"),
        "the refusal names the breaking change: {refused}"
    );
    let (st, _) = s
        .admin(Method::POST, publish, Some(json!({"force": false})))
        .await;
    assert_eq!(st, 422);
    // Still v1 live.
    let live = get_json(&s, "/openapi.json").await;
    assert!(live["paths"]["/flows/compat-demo"].is_object(), "{live}");
    let (st, _) = get_text(&s, "/docs/flows/compat-demo/v2").await;
    assert_eq!(st, 404, "a draft has no docs page");

    let (st, ok) = s
        .admin(Method::POST, publish, Some(json!({"force": true})))
        .await;
    assert_eq!(st, 200, "forced publish: {ok}");
    let breaking = ok["compatibility"]["breaking"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!breaking.is_empty(), "publish response flags it: {ok}");
    assert!(
        ok["compatibility"]["breaking"].to_string().contains("plan"),
        "{ok}"
    );

    let (st, page) = get_text(&s, "/docs/flows/compat-demo/v2").await;
    assert_eq!(st, 200, "{page}");
    assert!(
        page.contains("Compatibility report"),
        "v2 page shows the report:\n{page}"
    );
    assert!(
        page.contains("Breaking changes") && page.contains("plan"),
        "{page}"
    );

    // Without the manifest flag a breaking publish goes through, reported.
    let (st, v) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/compat-demo/versions",
            Some(json!({"files": compat_flow(&["email", "plan"], false)})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v3) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/compat-demo/versions/3/publish",
            None,
        )
        .await;
    assert_eq!(st, 200, "{v3}");
    assert!(
        v3["compatibility"]["breaking"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "v3 equals v2's contract: {v3}"
    );
    // Input the new version takes still validates.
    let res = s
        .request(Method::POST, "/flows/compat-demo")
        .json(&json!({"email": "a@example.com"}))
        .send()
        .await
        .expect("call");
    assert_eq!(
        res.status().as_u16(),
        422,
        "the new required field is enforced"
    );
}

// ------------------------------------------------- the admin document's statuses

/// Issue 11 item 23: every status an admin operation answers is documented,
/// with the problem schema; a bearer operation's 401 documents and sends
/// `WWW-Authenticate`, and every header documented as always sent is sent. The probe
/// walks the served document and calls each operation as an anonymous
/// caller, with a key lacking the scope, and with the admin key and malformed
/// input (wrong media type, broken JSON, wrong shape, out-of-range query,
/// unknown path parameter). Each answer must be a documented status whose
/// documented body is the `Problem` schema, and no documented path may fall
/// through to the router's "no route" answer.
#[tokio::test]
async fn every_admin_status_is_documented() {
    let s = Server::start().await;
    let doc = get_json(&s, "/admin/v1/openapi.json").await;
    let weak_key = s.key(&["x:none"]).await;
    let components = &doc["components"]["responses"];
    let mut failures = Vec::new();
    let mut probes = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let concrete = path
                .replace("{n}", "1")
                .replace("{flow}", "no-such-flow")
                .replace("{id}", "01900000-0000-7000-8000-000000000000")
                .replace("{name}", "NO_SUCH_SECRET");
            let has_body = op.get("requestBody").is_some();
            let has_limit = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "limit"));
            let mut cases: Vec<(String, reqwest::RequestBuilder)> = vec![
                ("anonymous".into(), s.request(m.clone(), &concrete)),
                (
                    "key without the scope".into(),
                    s.request(m.clone(), &concrete).bearer_auth(&weak_key),
                ),
                (
                    "admin, unknown path parameter".into(),
                    s.request(m.clone(), &concrete).bearer_auth(&s.admin_key),
                ),
            ];
            if has_body {
                for (what, ctype, body) in [
                    ("text/plain body", "text/plain", "x"),
                    ("broken JSON", "application/json", "{"),
                    ("JSON of the wrong shape", "application/json", "[1]"),
                ] {
                    cases.push((
                        format!("admin, {what}"),
                        s.request(m.clone(), &concrete)
                            .bearer_auth(&s.admin_key)
                            .header("content-type", ctype)
                            .body(body),
                    ));
                }
            }
            // Another method on a documented path: 405 naming the documented ones.
            let allow: Vec<String> = item
                .as_object()
                .expect("item")
                .keys()
                .map(|m| m.to_uppercase())
                .collect();
            if method
                == item
                    .as_object()
                    .and_then(|i| i.keys().next())
                    .expect("a method")
            {
                let res = s
                    .request(Method::TRACE, &concrete)
                    .bearer_auth(&s.admin_key)
                    .send()
                    .await
                    .expect("TRACE");
                let got = res
                    .headers()
                    .get("allow")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let mut got: Vec<String> = got.split(", ").map(str::to_owned).collect();
                got.sort();
                let mut want = allow.clone();
                want.sort();
                if res.status() != 405 || got != want {
                    failures.push(format!(
                        "TRACE {path} -> {} with Allow {got:?}, want 405 with {want:?}",
                        res.status()
                    ));
                }
            }
            if has_limit {
                cases.push((
                    "admin, limit=0".into(),
                    s.request(m.clone(), &format!("{concrete}?limit=0"))
                        .bearer_auth(&s.admin_key),
                ));
            }
            for (what, req) in cases {
                probes += 1;
                let res = req.send().await.expect("probe");
                let status = res.status().as_u16();
                let headers = res.headers().clone();
                let body: Value = res.json().await.unwrap_or(Value::Null);
                let label = format!("{} {path} ({what}) -> {status}", method.to_uppercase());
                if body["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("no route for"))
                {
                    failures.push(format!("{label}: the router does not know this path"));
                    continue;
                }
                if status < 400 {
                    continue;
                }
                let Some(resp) = op["responses"].get(status.to_string()) else {
                    failures.push(format!("{label}: status not documented: {body}"));
                    continue;
                };
                let resp = match resp["$ref"].as_str() {
                    Some(r) => &components[r.trim_start_matches("#/components/responses/")],
                    None => resp,
                };
                if resp["content"]["application/problem+json"]["schema"]["$ref"]
                    != "#/components/schemas/Problem"
                {
                    failures.push(format!("{label}: not documented as a problem"));
                }
                let ctype = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if ctype != "application/problem+json" {
                    failures.push(format!("{label}: content type `{ctype}`"));
                }
                // Bearer-authenticated operations challenge on 401.
                let bearer = op["security"].to_string().contains("\"bearer\"");
                if status == 401
                    && bearer
                    && resp["headers"]["WWW-Authenticate"]["required"] != true
                {
                    failures.push(format!("{label}: WWW-Authenticate not documented as sent"));
                }
                // Every header documented as always sent is sent.
                for (name, h) in resp["headers"].as_object().into_iter().flatten() {
                    if h["required"] == true && headers.get(name.as_str()).is_none() {
                        failures.push(format!("{label}: no {name} header"));
                    }
                }
            }
        }
    }
    assert!(probes > 100, "only {probes} probes");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The dry run's answer is documented with every member it really has
/// (`unmatched_http`, `duration_ms`, …), and `limit` bounds are constraints.
#[tokio::test]
async fn admin_document_states_wire_shapes_and_bounds() {
    let s = Server::start().await;
    let doc = get_json(&s, "/admin/v1/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    let dry = &schemas["DryRunOut"]["properties"];
    for member in [
        "response",
        "logs",
        "changes",
        "unmatched_http",
        "duration_ms",
    ] {
        assert!(
            dry.get(member).is_some(),
            "DryRunOut lacks `{member}`: {dry}"
        );
    }
    // The real answer has exactly the documented members.
    s.deploy(
        "probe",
        common::http_flow("probe", "log::info(\"hi\"); #{ok: true}", ""),
    )
    .await;
    let (st, out) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/probe/versions/1/dry-run",
            Some(json!({"request": {"body": {}}})),
        )
        .await;
    assert_eq!(st, 200, "{out}");
    let got: BTreeSet<&str> = out
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let documented: BTreeSet<&str> = dry
        .as_object()
        .expect("props")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(got, documented);
    // JSON Schema integers include `1.0`, and an optional body may be `null`.
    let (st, out) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/probe/rollback",
            Some(json!({"version": 1.0})),
        )
        .await;
    assert!(st == 200 || st == 409, "{st} {out}");
    let (st, out) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/probe/versions/1/publish",
            Some(Value::Null),
        )
        .await;
    assert!(st == 200 || st == 409, "{st} {out}");
    let flows = &doc["paths"]["/admin/v1/flows"]["get"]["parameters"];
    let limit = flows
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "limit"))
        .expect("limit parameter");
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 500);
}

/// The documented members of a schema (following `$ref` and `allOf`), and
/// which of them are required.
fn documented_members(doc: &Value, schema: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut members = BTreeSet::new();
    let mut required = BTreeSet::new();
    let schema = match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().expect("ref name");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    };
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let (m, r) = documented_members(doc, part);
        members.extend(m);
        required.extend(r);
    }
    members.extend(
        schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone()),
    );
    required.extend(
        schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned)),
    );
    (members, required)
}

/// Real admin answers have the members their documented schemas name: none
/// undocumented, none required missing (create, publish, rollback, retire,
/// flow and version details, keys, secrets, users, events, schedules).
#[tokio::test]
async fn admin_answers_have_their_documented_members() {
    let s = Server::start().await;
    let doc = get_json(&s, "/admin/v1/openapi.json").await;
    let mut failures = Vec::new();
    let mut check = |label: &str, path: &str, method: &str, status: u16, body: &Value| {
        let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]
            ["application/json"]["schema"];
        assert!(!schema.is_null(), "{label}: no documented {status} schema");
        let (documented, required) = documented_members(&doc, schema);
        let obj = body
            .as_object()
            .unwrap_or_else(|| panic!("{label}: {body}"));
        let got: BTreeSet<String> = obj.keys().cloned().collect();
        for extra in got.difference(&documented) {
            failures.push(format!("{label}: `{extra}` is sent but not documented"));
        }
        for missing in required.difference(&got) {
            failures.push(format!("{label}: required `{missing}` is not sent"));
        }
        // The first member of a list against the list's item schema.
        let list = match schema["$ref"].as_str() {
            Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
            None => schema,
        };
        if let (Some(first), Some(item)) = (
            obj.get("items").and_then(|i| i.get(0)),
            list["properties"]["items"].get("items"),
        ) {
            let (documented, required) = documented_members(&doc, item);
            let got: BTreeSet<String> = first.as_object().unwrap().keys().cloned().collect();
            for extra in got.difference(&documented) {
                failures.push(format!(
                    "{label} item: `{extra}` is sent but not documented"
                ));
            }
            for missing in required.difference(&got) {
                failures.push(format!("{label} item: required `{missing}` is not sent"));
            }
        }
    };
    let files = common::http_flow("shape", "#{ok: true}", "");
    let (st, b) = s
        .admin(
            Method::POST,
            "/admin/v1/flows",
            Some(json!({"files": files})),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    check("create_flow", "/admin/v1/flows", "post", 201, &b);
    let (st, b) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/shape/versions",
            Some(json!({"files": files})),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    check(
        "create_version",
        "/admin/v1/flows/{flow}/versions",
        "post",
        201,
        &b,
    );
    for n in [1, 2] {
        let (st, b) = s
            .admin(
                Method::POST,
                &format!("/admin/v1/flows/shape/versions/{n}/publish"),
                None,
            )
            .await;
        assert_eq!(st, 200, "{b}");
        check(
            "publish_version",
            "/admin/v1/flows/{flow}/versions/{n}/publish",
            "post",
            200,
            &b,
        );
    }
    let (st, b) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/shape/rollback",
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    check(
        "rollback_flow",
        "/admin/v1/flows/{flow}/rollback",
        "post",
        200,
        &b,
    );
    let (st, b) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/shape/versions/2/retire",
            None,
        )
        .await;
    assert_eq!(st, 200, "{b}");
    check(
        "retire_version",
        "/admin/v1/flows/{flow}/versions/{n}/retire",
        "post",
        200,
        &b,
    );
    let (_, b) = s.admin(Method::GET, "/admin/v1/flows/shape", None).await;
    check("get_flow", "/admin/v1/flows/{flow}", "get", 200, &b);
    let (_, b) = s
        .admin(Method::GET, "/admin/v1/flows/shape/versions/1", None)
        .await;
    check(
        "get_version",
        "/admin/v1/flows/{flow}/versions/{n}",
        "get",
        200,
        &b,
    );
    let (st, b) = s
        .admin(
            Method::POST,
            "/admin/v1/keys",
            Some(json!({"name": "shape", "scopes": ["flows:read"]})),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    check("create_key", "/admin/v1/keys", "post", 201, &b);
    let (_, b) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    check("list_keys", "/admin/v1/keys", "get", 200, &b);
    let (st, _) = s
        .admin(
            Method::PUT,
            "/admin/v1/secrets/shape",
            Some(json!({"value": "v"})),
        )
        .await;
    assert_eq!(st, 204);
    let (_, b) = s.admin(Method::GET, "/admin/v1/secrets/shape", None).await;
    check("get_secret", "/admin/v1/secrets/{name}", "get", 200, &b);
    let (_, b) = s.admin(Method::GET, "/admin/v1/secrets", None).await;
    check("list_secrets", "/admin/v1/secrets", "get", 200, &b);
    let (st, b) = s
        .admin(
            Method::POST,
            "/admin/v1/users",
            Some(json!({"email": "shape@example.com"})),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    check("create_user", "/admin/v1/users", "post", 201, &b);
    let (_, b) = s.admin(Method::GET, "/admin/v1/users", None).await;
    check("list_users", "/admin/v1/users", "get", 200, &b);
    let (st, b) = s
        .admin(
            Method::POST,
            "/events",
            Some(json!({"type": "crm.shape", "data": {}})),
        )
        .await;
    assert_eq!(st, 202, "{b}");
    check("publish_event", "/events", "post", 202, &b);
    let (_, b) = s.admin(Method::GET, "/admin/v1/schedules", None).await;
    check("list_schedules", "/admin/v1/schedules", "get", 200, &b);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
