//! Flow lifecycle over HTTP: create → draft not callable → publish → call live
//! and pinned → v2 → rollback → retire (410); refusals of bad packages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{http_flow, Server};
use reqwest::Method;
use serde_json::{json, Value};

async fn call(s: &Server, path: &str) -> (u16, Value) {
    let res = s
        .request(Method::POST, path)
        .json(&json!({}))
        .send()
        .await
        .expect("call");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn whole_lifecycle() {
    let s = Server::start().await;
    let v1 = http_flow(
        "greeter",
        r#"#{ greeting: "hello", version: ctx.version }"#,
        "",
    );
    let (st, created) = s
        .admin(Method::POST, "/admin/v1/flows", Some(json!({"files": v1})))
        .await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["flow"], "greeter");
    assert_eq!(created["version"], 1);
    assert_eq!(created["status"], "draft");
    assert_eq!(created["sha256"].as_str().map(str::len), Some(64));

    // A draft is not callable, neither live nor pinned.
    assert_eq!(call(&s, "/flows/greeter").await.0, 404);
    assert_eq!(call(&s, "/flows/greeter/v1").await.0, 404);

    let (st, body) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/greeter/versions/1/publish",
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["live_version"], 1);
    let (st, body) = call(&s, "/flows/greeter").await;
    assert_eq!(
        (st, body["greeting"].as_str(), body["version"].as_i64()),
        (200, Some("hello"), Some(1))
    );
    assert_eq!(call(&s, "/flows/greeter/v1").await.1["version"], 1);

    // v2 goes live; v1 stays callable pinned.
    let v2 = http_flow(
        "greeter",
        r#"#{ greeting: "hi", version: ctx.version }"#,
        "",
    );
    let (st, created) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/greeter/versions",
            Some(json!({"files": v2})),
        )
        .await;
    assert_eq!(
        (st, created["version"].as_i64()),
        (201, Some(2)),
        "{created}"
    );
    let (st, body) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/greeter/versions/2/publish",
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["previous_live_version"], 1);
    // The next request runs the new version (no stale cache on this node).
    assert_eq!(call(&s, "/flows/greeter").await.1["greeting"], "hi");
    assert_eq!(call(&s, "/flows/greeter/v1").await.1["greeting"], "hello");
    assert_eq!(call(&s, "/flows/greeter/v2").await.1["greeting"], "hi");

    // Bodies that are not JSON objects are refused, even where serde would
    // read an array as the struct's fields in order.
    for (path, body) in [
        ("/admin/v1/flows/greeter/rollback", json!([1])),
        ("/admin/v1/flows/greeter/versions/1/publish", json!([])),
        ("/admin/v1/flows/greeter/versions/1/publish", json!([true])),
    ] {
        let (st, problem) = s.admin(Method::POST, path, Some(body)).await;
        assert_eq!(st, 422, "{path}: {problem}");
        assert_eq!(problem["code"], "validation_failed", "{problem}");
    }
    assert_eq!(call(&s, "/flows/greeter").await.1["greeting"], "hi");

    // Rollback moves live back to v1.
    let (st, body) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/greeter/rollback",
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(call(&s, "/flows/greeter").await.1["greeting"], "hello");

    // Retire v2: its pinned URL answers 410; live (v1) unaffected.
    let (st, body) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/greeter/versions/2/retire",
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = call(&s, "/flows/greeter/v2").await;
    assert_eq!(st, 410, "{body}");
    assert_eq!(body["code"], "gone");
    assert_eq!(call(&s, "/flows/greeter").await.0, 200);

    // The flow shows its versions and the live pointer.
    let (st, flow) = s.admin(Method::GET, "/admin/v1/flows/greeter", None).await;
    assert_eq!(st, 200);
    assert_eq!(flow["live_version"], 1);
    let statuses: Vec<&str> = flow["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["status"].as_str())
        .collect();
    assert_eq!(statuses, vec!["published", "retired"]);

    // The version with its source.
    let (st, v) = s
        .admin(Method::GET, "/admin/v1/flows/greeter/versions/1", None)
        .await;
    assert_eq!(st, 200);
    assert!(v["files"]["main.rhai"].as_str().unwrap().contains("hello"));

    // Unknown version and unknown flow → 404; disabled flow → 404.
    assert_eq!(call(&s, "/flows/greeter/v9").await.0, 404);
    assert_eq!(call(&s, "/flows/nobody").await.0, 404);
    let (st, _) = s
        .admin(Method::DELETE, "/admin/v1/flows/greeter", None)
        .await;
    assert_eq!(st, 204);
    assert_eq!(call(&s, "/flows/greeter").await.0, 404);

    // Runs were recorded.
    let (st, runs) = s
        .admin(Method::GET, "/admin/v1/runs?flow=greeter", None)
        .await;
    assert_eq!(st, 200);
    assert!(runs["items"].as_array().unwrap().len() >= 6, "{runs}");
}

#[tokio::test]
async fn bad_packages_are_refused_with_location_and_nothing_is_stored() {
    let s = Server::start().await;
    let broken_script = http_flow("broken", "let x = ;", "");
    let (st, body) = s
        .admin(
            Method::POST,
            "/admin/v1/flows",
            Some(json!({"files": broken_script})),
        )
        .await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["file"], "main.rhai");
    assert_eq!(body["line"], 1);
    assert!(body["column"].as_u64().is_some(), "{body}");
    assert_eq!(
        s.admin(Method::GET, "/admin/v1/flows/broken", None).await.0,
        404
    );

    let bad_manifest = json!({"flow.toml": "name = \"bad\"\ncolour = 1\n[[trigger]]\nkind = \"http\"\n", "main.rhai": "1"});
    let (st, body) = s
        .admin(
            Method::POST,
            "/admin/v1/flows",
            Some(json!({"files": bad_manifest})),
        )
        .await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(
        (
            body["file"].as_str(),
            body["line"].as_u64(),
            body["key"].as_str()
        ),
        (Some("flow.toml"), Some(2), Some("colour"))
    );

    let bad_cron = json!({"flow.toml": "name = \"cronny\"\n[[trigger]]\nkind = \"schedule\"\ncron = \"61 * * * *\"\n", "main.rhai": "1"});
    let (st, body) = s
        .admin(
            Method::POST,
            "/admin/v1/flows",
            Some(json!({"files": bad_cron})),
        )
        .await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(
        (body["line"].as_u64(), body["key"].as_str()),
        (Some(4), Some("trigger.cron"))
    );

    // The manifest's name must match the flow it is uploaded to.
    s.deploy("alpha", http_flow("alpha", "1", "")).await;
    let (st, body) = s
        .admin(
            Method::POST,
            "/admin/v1/flows/alpha/versions",
            Some(json!({"files": http_flow("beta", "1", "")})),
        )
        .await;
    assert_eq!(st, 422, "{body}");
    // Creating an existing flow again is a conflict.
    let (st, _) = s
        .admin(
            Method::POST,
            "/admin/v1/flows",
            Some(json!({"files": http_flow("alpha", "2", "")})),
        )
        .await;
    assert_eq!(st, 409);
    // Malformed bodies.
    let res = s
        .request(Method::POST, "/admin/v1/flows")
        .bearer_auth(&s.admin_key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn concurrent_publishes_leave_exactly_one_live_version() {
    let s = Server::start().await;
    s.deploy("race", http_flow("race", "1", "")).await;
    for i in 2..=5 {
        let (st, _) = s
            .admin(
                Method::POST,
                "/admin/v1/flows/race/versions",
                Some(json!({"files": http_flow("race", &i.to_string(), "")})),
            )
            .await;
        assert_eq!(st, 201);
    }
    let mut tasks = Vec::new();
    for n in 2..=5 {
        let client = s.client.clone();
        let url = format!("{}/admin/v1/flows/race/versions/{n}/publish", s.url);
        let key = s.admin_key.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(key)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    let (_, flow) = s.admin(Method::GET, "/admin/v1/flows/race", None).await;
    let live: Vec<&Value> = flow["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["live"] == true)
        .collect();
    assert_eq!(live.len(), 1, "{flow}");
    assert_eq!(live[0]["version"], flow["live_version"]);
    let (_, body) = call(&s, "/flows/race").await;
    assert_eq!(body, flow["live_version"]);
}

#[tokio::test]
async fn methods_paths_and_params() {
    let s = Server::start().await;
    let files = json!({
        "flow.toml": "name = \"invoices\"\n[[trigger]]\nkind = \"http\"\nmethod = \"GET\"\npath = \"/invoices/{invoice_id}\"\n[auth]\nmode = \"none\"\n",
        "main.rhai": "#{ id: request.params.invoice_id, q: request.query.expand, path: request.path }",
    });
    s.deploy("invoices", files).await;
    let res = s
        .get("/flows/invoices/invoices/42?expand=lines")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"id": "42", "q": "lines", "path": "/invoices/42"})
    );
    let res = s
        .request(Method::POST, "/flows/invoices/invoices/42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(res.headers()["allow"], "GET");
    let res = s.get("/flows/invoices/nothing-here").send().await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}
