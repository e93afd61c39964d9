//! `flowgate deploy` (idempotent, refusals reported) and dry runs (nothing committed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{binary, http_flow, repo_root, Server};
use reqwest::Method;
use serde_json::{json, Value};
use std::process::Command;

fn deploy(s: &Server, dir: &std::path::Path, publish: bool) -> (i32, String) {
    let mut cmd = Command::new(binary());
    cmd.arg("deploy")
        .arg(dir)
        .args(["--url", &s.url, "--key", &s.admin_key]);
    if publish {
        cmd.arg("--publish");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn deploy_is_idempotent_and_reports_refusals() {
    let s = Server::start().await;
    let scripts = repo_root().join("scripts");
    let count = std::fs::read_dir(&scripts)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("flow.toml").exists())
        .count();
    let (code, out) = deploy(&s, &scripts, true);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.matches(": created v1, published").count(),
        count,
        "{out}"
    );
    // A second deploy of the same tree creates nothing.
    let (code, out) = deploy(&s, &scripts, true);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("0 created, {count} unchanged, 0 failed")),
        "{out}"
    );
    let (_, flows) = s.admin(Method::GET, "/admin/v1/flows", None).await;
    assert_eq!(flows["items"].as_array().unwrap().len(), count);
    assert!(
        flows["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["live_version"] == 1),
        "{flows}"
    );

    // A changed package becomes v2; a broken one is refused with the server's detail.
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("greeter");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("flow.toml"),
        "name = \"greeter\"\n[[trigger]]\nkind = \"http\"\n[auth]\nmode = \"none\"\n",
    )
    .unwrap();
    std::fs::write(pkg.join("main.rhai"), "\"v1\"").unwrap();
    assert_eq!(deploy(&s, dir.path(), true).0, 0);
    std::fs::write(pkg.join("main.rhai"), "\"v2\"").unwrap();
    let (code, out) = deploy(&s, dir.path(), false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("greeter: created v2"), "{out}");
    // Not published: live is still v1.
    let body: Value = s
        .request(Method::POST, "/flows/greeter")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body, "v1");
    std::fs::write(pkg.join("main.rhai"), "let = ;").unwrap();
    let (code, out) = deploy(&s, dir.path(), true);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL greeter: 422") && out.contains("main.rhai:1"),
        "{out}"
    );
}

#[tokio::test]
async fn dry_run_reports_changes_and_commits_nothing() {
    let s = Server::start().await;
    let script = r#"
        let u = users::create(#{ email: request.body.email, attributes: #{ plan: "pro" } });
        kv::set("last", u.email);
        events::emit("billing.signed_up", #{ email: u.email });
        let r = http::get("https://api.partner.example/ping");
        log::info("partner said " + r.body.ok);
        #{ id: u.id, partner: r.status }
    "#;
    let files = http_flow(
        "signup",
        script,
        "[http]\nallow = [\"api.partner.example\"]\n",
    );
    let (st, _) = s
        .admin(
            Method::POST,
            "/admin/v1/flows",
            Some(json!({"files": files})),
        )
        .await;
    assert_eq!(st, 201);
    // A draft can be dry-run.
    let (st, out) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/signup/versions/1/dry-run",
            Some(json!({
                "request": {"method": "POST", "body": {"email": "dry@example.com"}},
                "http": [{"method": "GET", "url": "https://api.partner.example/ping", "status": 200, "body": {"ok": "yes"}}],
            })),
        )
        .await;
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["response"]["status"], 200, "{out}");
    assert_eq!(out["response"]["body"]["partner"], 200);
    assert_eq!(out["changes"]["users"][0]["op"], "create", "{out}");
    assert_eq!(out["changes"]["kv"]["last"], "dry@example.com");
    assert_eq!(out["changes"]["events"][0]["type"], "billing.signed_up");
    assert!(out["logs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["message"].as_str().unwrap().contains("partner said yes")));
    // Nothing was committed: no user, no run.
    let (_, users) = s
        .admin(Method::GET, "/admin/v1/users?email=dry@example.com", None)
        .await;
    assert_eq!(users["items"].as_array().unwrap().len(), 0, "{users}");
    let (_, runs) = s
        .admin(Method::GET, "/admin/v1/runs?flow=signup", None)
        .await;
    assert_eq!(runs["items"].as_array().unwrap().len(), 0, "{runs}");
    // Without a mock the outbound call is refused, and the run reports the failure.
    let (st, out) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/signup/versions/1/dry-run",
            Some(json!({"request": {"body": {"email": "x@example.com"}}})),
        )
        .await;
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["response"]["status"], 500, "{out}");
    // Unknown versions and malformed requests are refused.
    assert_eq!(
        s.admin(
            Method::POST,
            "/admin/v1/flows/signup/versions/9/dry-run",
            Some(json!({}))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        s.admin(
            Method::POST,
            "/admin/v1/flows/signup/versions/1/dry-run",
            Some(json!({"bogus": 1}))
        )
        .await
        .0,
        422
    );
}

#[tokio::test]
async fn runs_are_listed_with_filters_and_cursor() {
    let s = Server::start().await;
    s.deploy("ok", http_flow("ok", "1", "")).await;
    s.deploy(
        "bad",
        http_flow("bad", "fail(409, \"taken\", \"already there\")", ""),
    )
    .await;
    for _ in 0..5 {
        assert_eq!(
            s.request(Method::POST, "/flows/ok")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            200
        );
    }
    let res = s.request(Method::POST, "/flows/bad").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 409);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(
        (problem["code"].as_str(), problem["detail"].as_str()),
        (Some("taken"), Some("already there"))
    );
    let (_, page1) = s
        .admin(Method::GET, "/admin/v1/runs?flow=ok&limit=3", None)
        .await;
    assert_eq!(page1["items"].as_array().unwrap().len(), 3);
    let cursor = page1["next_cursor"].as_str().unwrap().to_owned();
    let (_, page2) = s
        .admin(
            Method::GET,
            &format!("/admin/v1/runs?flow=ok&limit=3&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 2);
    assert!(page2["next_cursor"].is_null());
    let (_, failed) = s
        .admin(Method::GET, "/admin/v1/runs?status=failed", None)
        .await;
    let items = failed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["flow"], "bad");
    assert_eq!(items[0]["response_status"], 409);
    let (st, run) = s
        .admin(
            Method::GET,
            &format!("/admin/v1/runs/{}", items[0]["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(st, 200);
    for k in [
        "id",
        "flow",
        "version",
        "trigger",
        "status",
        "attempt",
        "started_at",
        "finished_at",
        "duration_ms",
        "response_status",
        "error",
        "scheduled_at",
        "event_id",
        "logs",
    ] {
        assert!(run.get(k).is_some(), "{k} missing in {run}");
    }
    assert_eq!(
        s.admin(Method::GET, "/admin/v1/runs?status=sideways", None)
            .await
            .0,
        400
    );
    assert_eq!(
        s.admin(Method::GET, "/admin/v1/runs?limit=0", None).await.0,
        400
    );
    for path in [
        "/admin/v1/runs?cursor=garbage",
        "/admin/v1/audit?cursor=garbage",
        "/admin/v1/users?cursor=garbage",
    ] {
        assert_eq!(s.admin(Method::GET, path, None).await.0, 400, "{path}");
    }
    assert_eq!(
        s.admin(Method::GET, "/admin/v1/runs/not-a-uuid", None)
            .await
            .0,
        404
    );
}

/// A problem's `title` depends on its status only: the same 422 answered by a
/// live sync call, reported by a dry run and answered by an admin validation
/// error reads the same, with a `type` under the same base.
#[tokio::test]
async fn a_status_has_one_title_on_every_path() {
    let s = Server::start().await;
    s.deploy(
        "refuser",
        http_flow("refuser", r#"fail(422, "bad_plan", "no such plan")"#, ""),
    )
    .await;
    let res = s
        .request(Method::POST, "/flows/refuser")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 422);
    let live: Value = res.json().await.unwrap();
    let (st, dry) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/refuser/versions/1/dry-run",
            Some(json!({"request": {"body": {}}})),
        )
        .await;
    assert_eq!(st, 200, "{dry}");
    let dry = &dry["response"]["body"];
    assert_eq!(dry["status"], 422, "{dry}");
    let (st, admin) = s
        .admin(
            Method::POST,
            "/admin/v1/keys",
            Some(json!({"name": " ", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(st, 422, "{admin}");
    for (what, p) in [("live", &live), ("dry run", dry), ("admin", &admin)] {
        assert_eq!(p["title"], "Unprocessable Content", "{what}: {p}");
    }
    assert_eq!(
        live["type"], "https://flowgate.dev/problems/bad-plan",
        "{live}"
    );
    assert_eq!(
        admin["type"], "https://flowgate.dev/problems/validation-failed",
        "{admin}"
    );
}
