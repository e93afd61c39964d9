//! The analyst console's server side: sessions (cookie flags, CSRF, scopes,
//! sign-out, revocation), the embedded bundle and its headers, and the admin
//! endpoints the console uses (check, script API, server-side fixtures, diff,
//! run details and run → fixture round trip through `flowgate test` offline).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{http_flow, Server};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A signed-in browser: the session cookie and the CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
    body: Value,
}

async fn sign_in(s: &Server, key: &str) -> (u16, Option<String>, Value) {
    let res = s
        .request(Method::POST, "/console/session")
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, cookie, res.json().await.unwrap_or(Value::Null))
}

async fn browser(s: &Server, key: &str) -> Browser {
    let (status, cookie, body) = sign_in(s, key).await;
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.expect("a session cookie");
    let pair = cookie.split(';').next().unwrap().trim().to_owned();
    Browser {
        cookie: pair,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        body,
    }
}

/// A call with the session cookie (and `csrf`, when given).
async fn with_cookie(
    s: &Server,
    b: &Browser,
    method: Method,
    path: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = s.request(method, path).header("cookie", &b.cookie);
    if let Some(t) = csrf {
        req = req.header("x-csrf-token", t);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn sessions_cookies_csrf_scopes_sign_out_and_revocation() {
    let s = Server::start().await;

    // A wrong key makes no session.
    let (status, cookie, body) = sign_in(
        &s,
        "fgk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(cookie.is_none(), "no cookie for a wrong key");
    assert_eq!(body["status"], 401);
    let (status, cookie, _) = sign_in(&s, "").await;
    assert_eq!(status, 401);
    assert!(cookie.is_none());

    // The right key: an HttpOnly, SameSite=Strict cookie, not Secure over plain HTTP.
    let (status, cookie, body) = sign_in(&s, &s.admin_key).await;
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.unwrap();
    assert!(cookie.starts_with("flowgate_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(
        !cookie.contains(&s.admin_key),
        "the key is not the session id"
    );
    assert_eq!(body["scopes"], json!(["admin"]));
    assert_eq!(body["key_name"], "test-admin");
    assert_eq!(body["idle_timeout_seconds"], 1800);
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    assert!(csrf.len() >= 32);
    let admin = Browser {
        cookie: cookie.split(';').next().unwrap().to_owned(),
        csrf: csrf.clone(),
        body,
    };

    // The session reads back with the same token.
    let (status, again) =
        with_cookie(&s, &admin, Method::GET, "/console/session", None, None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["csrf_token"], csrf);

    // The admin API takes the cookie; reads need no token.
    let (status, flows) = with_cookie(&s, &admin, Method::GET, "/admin/v1/flows", None, None).await;
    assert_eq!(status, 200, "{flows}");

    // State-changing calls need the CSRF token: missing or wrong → 403 csrf_failed.
    let pkg = json!({"files": http_flow("hello", "#{ hi: 1 }", "")});
    for token in [None, Some("wrong"), Some("")] {
        let (status, p) = with_cookie(
            &s,
            &admin,
            Method::POST,
            "/admin/v1/flows",
            token,
            Some(pkg.clone()),
        )
        .await;
        assert_eq!(status, 403, "token {token:?}: {p}");
        assert_eq!(p["code"], "csrf_failed");
    }
    let (status, created) = with_cookie(
        &s,
        &admin,
        Method::POST,
        "/admin/v1/flows",
        Some(&csrf),
        Some(pkg),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    // Key callers need no CSRF token.
    let (status, _) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/hello/versions/1/publish",
            None,
        )
        .await;
    assert_eq!(status, 200);

    // A flows:read key's session has flows:read only.
    let reader_key = s.key(&["flows:read"]).await;
    let reader = browser(&s, &reader_key).await;
    assert_eq!(reader.body["scopes"], json!(["flows:read"]));
    let (status, _) = with_cookie(
        &s,
        &reader,
        Method::GET,
        "/admin/v1/flows/hello",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, p) = with_cookie(
        &s,
        &reader,
        Method::POST,
        "/admin/v1/flows/hello/versions/1/publish",
        Some(&reader.csrf),
        None,
    )
    .await;
    assert_eq!(status, 403, "{p}");
    assert_eq!(p["code"], "insufficient_scope");
    let (status, _) = with_cookie(&s, &reader, Method::GET, "/admin/v1/keys", None, None).await;
    assert_eq!(status, 403);

    // Sign-out needs the token too, then ends the session on the server.
    let (status, p) =
        with_cookie(&s, &reader, Method::DELETE, "/console/session", None, None).await;
    assert_eq!(status, 403, "{p}");
    let res = s
        .request(Method::DELETE, "/console/session")
        .header("cookie", &reader.cookie)
        .header("x-csrf-token", &reader.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    let cleared = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let (status, p) = with_cookie(&s, &reader, Method::GET, "/console/session", None, None).await;
    assert_eq!(status, 401, "{p}");
    let (status, _) = with_cookie(&s, &reader, Method::GET, "/admin/v1/flows", None, None).await;
    assert_eq!(status, 401, "the old cookie is dead on the server");

    // Revoking a key ends its sessions.
    let (_, keys) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    let other_key = s.key(&["runs:read"]).await;
    let other = browser(&s, &other_key).await;
    let (status, _) = with_cookie(&s, &other, Method::GET, "/admin/v1/runs", None, None).await;
    assert_eq!(status, 200);
    let (_, after) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    let known: Vec<&str> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    let new_id = after["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .find(|id| !known.contains(id))
        .unwrap()
        .to_owned();
    let (status, _) = with_cookie(
        &s,
        &admin,
        Method::DELETE,
        &format!("/admin/v1/keys/{new_id}"),
        Some(&admin.csrf),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = with_cookie(&s, &other, Method::GET, "/admin/v1/runs", None, None).await;
    assert_eq!(status, 401, "a revoked key's session ends");
    let (status, _, _) = sign_in(&s, &other_key).await;
    assert_eq!(status, 401, "a revoked key opens no session");

    // Sign-in attempts are audited, without the key.
    let (_, audit) = s
        .admin(Method::GET, "/admin/v1/audit?limit=500", None)
        .await;
    let text = audit.to_string();
    assert!(text.contains("/console/session"), "{text}");
    assert!(!text.contains(&s.admin_key));
}

#[tokio::test]
async fn console_bundle_and_security_headers() {
    let s = Server::start().await;
    const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
    for path in [
        "/console",
        "/console/",
        "/console/flows/crm-sync",
        "/console/assets/app.js",
        "/console/assets/app.css",
        "/console/assets/missing.js",
        "/console/session",
    ] {
        let res = s.get(path).send().await.unwrap();
        let h = res.headers();
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
    let res = s.get("/console/runs/123").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    let html = res.text().await.unwrap();
    assert!(html.contains("/console/assets/app.js"), "{html}");
    assert!(!html.contains("<script>"), "no inline script");

    let res = s.get("/console/assets/app.js").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"'));
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let res = s
        .get("/console/assets/app.js")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 304);
    let res = s.get("/console/assets/app.css").send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/css; charset=utf-8");
    let res = s.get("/console/assets/missing.js").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn check_script_api_and_server_side_fixtures() {
    let s = Server::start().await;
    let manifest =
        "name = \"checked\"\n\n[[trigger]]\nkind = \"http\"\n\n[auth]\nmode = \"none\"\n";
    let check = |files: Value| {
        let s = &s;
        async move {
            let (status, v) = s
                .admin(
                    Method::POST,
                    "/admin/v1/check",
                    Some(json!({"files": files})),
                )
                .await;
            assert_eq!(status, 200, "{v}");
            v["problems"].as_array().unwrap().clone()
        }
    };
    // Fine.
    assert!(
        check(json!({"flow.toml": manifest, "main.rhai": "#{ ok: true }"}))
            .await
            .is_empty()
    );
    // A script syntax error: file, line and column.
    let p = check(json!({"flow.toml": manifest, "main.rhai": "let a = 1;\nlet b = ;\n"})).await;
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0]["file"], "main.rhai");
    assert_eq!(p[0]["line"], 2);
    assert!(p[0]["column"].as_u64().unwrap() >= 1);
    assert_eq!(p[0]["severity"], "error");
    // An unknown manifest key: file and line.
    let p = check(json!({"flow.toml": format!("{manifest}colour = \"blue\"\n"), "main.rhai": "1"}))
        .await;
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0]["file"], "flow.toml");
    assert_eq!(p[0]["line"], 8, "{p:?}");
    assert!(
        p[0]["message"].as_str().unwrap().contains("colour"),
        "{p:?}"
    );
    // Several at once: a bad schema, a bad fixture.
    let p = check(json!({
        "flow.toml": manifest, "main.rhai": "1",
        "input.schema.json": "{\n  \"type\": \n}",
        "tests/a.json": "{\"expect\": {\"status\": 200}, \"surprise\": 1}",
    }))
    .await;
    let files: Vec<&str> = p.iter().map(|x| x["file"].as_str().unwrap()).collect();
    assert_eq!(files, ["input.schema.json", "tests/a.json"], "{p:?}");
    assert_eq!(p[0]["line"], 3);

    // The script API catalogue.
    let (status, api) = s.admin(Method::GET, "/admin/v1/script-api", None).await;
    assert_eq!(status, 200);
    let items = api["items"].as_array().unwrap();
    let find = items
        .iter()
        .find(|i| i["name"] == "users::find_by_email")
        .expect("users::find_by_email is listed");
    assert_eq!(find["kind"], "function");
    assert_eq!(find["namespace"], "users");
    assert!(find["signature"]
        .as_str()
        .unwrap()
        .starts_with("users::find_by_email("));
    assert!(!find["doc"].as_str().unwrap().is_empty());
    assert!(items
        .iter()
        .any(|i| i["name"] == "request" && i["kind"] == "variable"));
    assert!(items
        .iter()
        .all(|i| !i["doc"].as_str().unwrap_or("").is_empty()));

    // Fixtures on the server: one passes, one fails with its difference.
    let files = json!({
        "flow.toml": manifest,
        "main.rhai": "#{ greeting: `hello ${request.body.name}` }",
        "tests/ok.json": json!({"name": "greets", "request": {"body": {"name": "Ann"}}, "expect": {"status": 200, "body": {"greeting": "hello Ann"}}}).to_string(),
        "tests/wrong.json": json!({"request": {"body": {"name": "Bob"}}, "expect": {"body": {"greeting": "hi Bob"}}}).to_string(),
    });
    let (status, report) = s
        .admin(
            Method::POST,
            "/admin/v1/test",
            Some(json!({"files": files})),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["passed"], 1);
    assert_eq!(report["failed"], 1);
    let results = report["results"].as_array().unwrap();
    assert_eq!(results[0]["file"], "tests/ok.json");
    assert_eq!(results[0]["name"], "greets");
    assert_eq!(results[0]["passed"], true);
    assert_eq!(results[1]["passed"], false);
    let diff = results[1]["differences"][0].as_str().unwrap();
    assert!(
        diff.contains("/body/greeting") && diff.contains("hello Bob"),
        "{diff}"
    );
    // A package that does not compile: 422 with its problems.
    let (status, p) = s
        .admin(
            Method::POST,
            "/admin/v1/test",
            Some(json!({"files": {"flow.toml": manifest, "main.rhai": "let = ;"}})),
        )
        .await;
    assert_eq!(status, 422, "{p}");
    assert_eq!(p["problems"][0]["file"], "main.rhai");
    // flows:write is needed to run fixtures.
    let reader = s.key(&["flows:read"]).await;
    let res = s
        .request(Method::POST, "/admin/v1/test")
        .bearer_auth(&reader)
        .json(&json!({"files": files}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
}

#[tokio::test]
async fn version_diff() {
    let s = Server::start().await;
    s.deploy("greeter", http_flow("greeter", "#{ v: 1 }", ""))
        .await;
    let mut v2 = http_flow("greeter", "#{ v: 2 }", "");
    v2["input.schema.json"] = json!(
        json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}})
            .to_string()
    );
    let (status, created) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/greeter/versions",
            Some(json!({"files": v2})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    // Default: live (1) against the latest (2).
    let (status, d) = s
        .admin(Method::GET, "/admin/v1/flows/greeter/diff", None)
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!((d["from"].as_i64(), d["to"].as_i64()), (Some(1), Some(2)));
    let by_name = |n: &str| {
        d["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("main.rhai")["status"], "modified");
    assert_eq!(by_name("main.rhai")["from"], "#{ v: 1 }");
    assert_eq!(by_name("main.rhai")["to"], "#{ v: 2 }");
    assert_eq!(by_name("flow.toml")["status"], "unchanged");
    assert_eq!(by_name("input.schema.json")["status"], "added");
    assert_eq!(by_name("input.schema.json")["from"], Value::Null);
    assert_eq!(d["compatibility"]["breaking"], true, "{d}");
    assert!(!d["compatibility"]["changes"].as_array().unwrap().is_empty());
    // Explicit and reversed.
    let (status, d) = s
        .admin(
            Method::GET,
            "/admin/v1/flows/greeter/diff?from=2&to=1",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        d["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "input.schema.json")
            .unwrap()["status"],
        "removed"
    );
    let (status, _) = s
        .admin(
            Method::GET,
            "/admin/v1/flows/greeter/diff?from=1&to=9",
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .admin(Method::GET, "/admin/v1/flows/nope/diff", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .admin(Method::GET, "/admin/v1/flows/greeter/diff?from=x", None)
        .await;
    assert_eq!(status, 400);
}

/// A partner API on 127.0.0.1 answering every request with one JSON body.
async fn partner_stub(body: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let res = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(res.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (port, task)
}

/// Writes the package `files` plus `fixture` as `tests/from-run.json` into a
/// temporary folder and runs `flowgate test` on it offline, with an empty
/// environment; answers the exit status and standard output.
fn flowgate_test_with_fixture(
    flow: &str,
    files: &Value,
    fixture: &Value,
) -> (std::process::Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join(flow);
    std::fs::create_dir_all(pkg.join("tests")).unwrap();
    for (name, content) in files.as_object().unwrap() {
        std::fs::write(pkg.join(name), content.as_str().unwrap()).unwrap();
    }
    std::fs::write(
        pkg.join("tests/from-run.json"),
        serde_json::to_string_pretty(fixture).unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new(common::binary())
        .arg("test")
        .arg(&pkg)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

#[tokio::test]
async fn a_run_becomes_a_fixture_that_passes_offline() {
    let (port, stub) = partner_stub(r#"{"name": "Ann", "plan": "pro"}"#).await;
    let s = Server::start_with(None, &[("FLOWGATE_ALLOW_PRIVATE_HOSTS", "true")]).await;
    let script = format!(
        r#"let token = secrets::get("CRM_TOKEN");
let r = http::get(`http://127.0.0.1:{port}/contacts?email=${{request.body.email}}`, #{{ headers: #{{ authorization: `Bearer ${{token}}` }} }});
log::info(`looked up ${{request.body.email}}`);
#{{ name: r.body.name, plan: r.body.plan, status: r.status }}"#
    );
    let files = http_flow("crm-lookup", &script, "\n[http]\nallow = [\"127.0.0.1\"]\n");
    s.deploy("crm-lookup", files.clone()).await;
    let (status, _) = s
        .admin(
            Method::PUT,
            "/admin/v1/secrets/CRM_TOKEN",
            Some(json!({"value": "crm-s3cret-value"})),
        )
        .await;
    assert!(status == 200 || status == 201 || status == 204, "{status}");
    let res = s
        .request(Method::POST, "/flows/crm-lookup")
        .json(&json!({"email": "ann@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer, json!({"name": "Ann", "plan": "pro", "status": 200}));

    // The run shows its request, response body and the outbound call.
    let (_, runs) = s
        .admin(Method::GET, "/admin/v1/runs?flow=crm-lookup", None)
        .await;
    let id = runs["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, run) = s
        .admin(Method::GET, &format!("/admin/v1/runs/{id}"), None)
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["request"]["body"], json!({"email": "ann@example.com"}));
    assert_eq!(run["response_body"], answer);
    let calls = run["http_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{run}");
    assert_eq!(calls[0]["method"], "GET");
    assert_eq!(calls[0]["status"], 200);
    let url = calls[0]["url"].as_str().unwrap();
    assert!(
        url.contains("email=[redacted]") || url.contains("email=%5Bredacted%5D"),
        "{url}"
    );
    assert!(!url.contains("ann@example.com"), "{url}");
    assert_eq!(
        calls[0]["response_body"],
        json!({"name": "Ann", "plan": "pro"})
    );
    assert!(!run.to_string().contains("crm-s3cret-value"));

    // Its fixture: no secret values, mocks for the call, the response as expectation.
    let (status, fixture) = s
        .admin(Method::GET, &format!("/admin/v1/runs/{id}/fixture"), None)
        .await;
    assert_eq!(status, 200, "{fixture}");
    assert_eq!(fixture["secrets"], json!({"CRM_TOKEN": "test-value"}));
    assert_eq!(fixture["expect"]["status"], 200);
    assert_eq!(fixture["expect"]["body"], answer);
    assert_eq!(fixture["http"].as_array().unwrap().len(), 1);
    assert!(!fixture.to_string().contains("crm-s3cret-value"));
    let reader = s.key(&["flows:read"]).await;
    let res = s
        .get(&format!("/admin/v1/runs/{id}/fixture"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403, "runs:read is needed");

    // With the partner gone, `flowgate test` passes on the saved fixture offline.
    stub.abort();
    let _ = stub.await;
    let (out, stdout) = flowgate_test_with_fixture("crm-lookup", &files, &fixture);
    assert!(out.status.success(), "flowgate test failed:\n{stdout}");
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
    // And so does the server's own fixture runner.
    let mut with_fixture = files.clone();
    with_fixture["tests/from-run.json"] = json!(fixture.to_string());
    let (status, report) = s
        .admin(
            Method::POST,
            "/admin/v1/test",
            Some(json!({"files": with_fixture})),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["passed"], 1, "{report}");
}

/// SPEC §8 / issue acceptance: a fixture saved from a run of the example
/// `crm-sync` (an event flow calling a partner API) passes `flowgate test`
/// offline. The partner's URL is pointed at a loopback stub; nothing else of
/// the package changes, and the saved fixture is used as the server wrote it.
#[tokio::test]
async fn a_crm_sync_run_becomes_a_fixture_that_passes_offline() {
    let (port, stub) = partner_stub(r#"{"id": "C-2001", "email": "ann@example.com"}"#).await;
    let s = Server::start_with(None, &[("FLOWGATE_ALLOW_PRIVATE_HOSTS", "true")]).await;
    let mut files = common::package_files(&common::repo_root().join("scripts/crm-sync"));
    let m = files.as_object_mut().unwrap();
    m.retain(|name, _| !name.starts_with("tests/"));
    let script = m["main.rhai"].as_str().unwrap().replace(
        "https://api.crm.example/v1/contacts",
        &format!("http://127.0.0.1:{port}/v1/contacts"),
    );
    m.insert("main.rhai".into(), json!(script));
    let manifest = m["flow.toml"]
        .as_str()
        .unwrap()
        .replace("allow = [\"api.crm.example\"]", "allow = [\"127.0.0.1\"]");
    m.insert("flow.toml".into(), json!(manifest));
    s.deploy("crm-sync", files.clone()).await;
    let (status, _) = s
        .admin(
            Method::PUT,
            "/admin/v1/secrets/CRM_API_TOKEN",
            Some(json!({"value": "crm-live-t0ken"})),
        )
        .await;
    assert!(status == 200 || status == 204, "{status}");
    let (status, user) = s
        .admin(
            Method::POST,
            "/admin/v1/users",
            Some(
                json!({"email": "ann@example.com", "display_name": "Ann Smith",
                        "attributes": {"plan": "pro", "locale": "nl-NL"}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{user}");

    // The user.created run syncs the contact (and a user.updated run skips our write-back).
    let mut synced = None;
    for _ in 0..200 {
        let (_, runs) = s
            .admin(
                Method::GET,
                "/admin/v1/runs?flow=crm-sync&status=succeeded",
                None,
            )
            .await;
        for r in runs["items"].as_array().cloned().unwrap_or_default() {
            let id = r["id"].as_str().unwrap_or_default().to_owned();
            let (_, run) = s
                .admin(Method::GET, &format!("/admin/v1/runs/{id}"), None)
                .await;
            if run["response_body"]["synced"] == json!(true) {
                synced = Some(id);
            }
        }
        if synced.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let id = synced.expect("crm-sync synced the new user");
    let (status, fixture) = s
        .admin(Method::GET, &format!("/admin/v1/runs/{id}/fixture"), None)
        .await;
    assert_eq!(status, 200, "{fixture}");
    assert!(!fixture.to_string().contains("crm-live-t0ken"));
    assert_eq!(
        fixture["expect"]["body"],
        json!({"synced": true, "crm_id": "C-2001"})
    );

    stub.abort();
    let _ = stub.await;
    let (out, stdout) = flowgate_test_with_fixture("crm-sync", &files, &fixture);
    assert!(
        out.status.success(),
        "flowgate test failed:\n{stdout}\n{fixture:#}"
    );
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
}
