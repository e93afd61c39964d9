//! The example flow packages in `scripts/`: every fixture passes under
//! `flowgate test`, a broken expectation makes it fail with a readable
//! difference, and every package is accepted by a real server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{binary, repo_root, Server};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every example package; each must have fixtures.
const PACKAGES: &[&str] = &[
    "account-status",
    "auth-event",
    "bulk-users",
    "crm-sync",
    "legacy-import",
    "payment-webhook",
    "periodic-refresh",
    "system-status",
    "user-profile-update",
    "user-search",
];

/// Runs `flowgate test <path>`; returns (exit code, stdout + stderr).
fn flowgate_test(path: &Path) -> (Option<i32>, String) {
    let out = Command::new(binary())
        .arg("test")
        .arg(path)
        .output()
        .expect("run flowgate test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn scripts_dir() -> PathBuf {
    repo_root().join("scripts")
}

#[test]
fn every_example_fixture_passes() {
    let (code, out) = flowgate_test(&scripts_dir());
    assert_eq!(code, Some(0), "flowgate test scripts/ failed:\n{out}");
    for pkg in PACKAGES {
        let oks = out
            .lines()
            .filter(|l| l.starts_with(&format!("ok   {pkg}/tests/")))
            .count();
        assert!(
            oks >= 2,
            "{pkg}: expected at least 2 passing fixtures:\n{out}"
        );
    }
    assert!(!out.contains("FAIL"), "{out}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
    // No package in scripts/ is left out of the list above.
    let mut on_disk: Vec<String> = std::fs::read_dir(scripts_dir())
        .expect("scripts/")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("flow.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    assert_eq!(
        on_disk, PACKAGES,
        "update PACKAGES in tests/tests/examples.rs"
    );
}

#[test]
fn a_broken_expectation_fails_with_expected_and_actual() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pkg = tmp.path().join("system-status");
    copy_dir(&scripts_dir().join("system-status"), &pkg);

    // Sanity: the copy passes as it is.
    let (code, out) = flowgate_test(&pkg);
    assert_eq!(code, Some(0), "{out}");

    // Expect "down" where the flow really stores "degraded".
    let file = pkg.join("tests/degraded.json");
    let mut fx: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    fx["expect"]["body"]["status"] = json!("down");
    std::fs::write(&file, serde_json::to_string_pretty(&fx).expect("json")).expect("write");

    let (code, out) = flowgate_test(&pkg);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL system-status/tests/degraded.json")),
        "{out}"
    );
    assert!(
        out.contains(r#"/body/status: expected "down", got "degraded""#),
        "{out}"
    );
    // The other fixtures of the package still pass and are counted.
    assert!(out.contains("3 passed, 1 failed"), "{out}");
}

#[tokio::test]
async fn every_example_deploys_to_a_server_and_two_answer_over_http() {
    let s = Server::start().await;
    for pkg in PACKAGES {
        let files = common::package_files(&scripts_dir().join(pkg));
        s.deploy(pkg, files).await;
    }

    let key = s.key(&["status:write"]).await;
    let report = |body: Value| {
        s.request(Method::POST, "/flows/system-status")
            .header("x-api-key", key.clone())
            .json(&body)
            .send()
    };
    let res = report(json!({"system": "ledger", "status": "degraded", "message": "slow"}))
        .await
        .expect("call");
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        (body["changed"].as_bool(), body["status"].as_str()),
        (Some(true), Some("degraded"))
    );

    let res = report(json!({"system": "ledger", "status": "degraded"}))
        .await
        .expect("call");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["changed"], false, "{body}");
    assert_eq!(body["previous_status"], "degraded", "{body}");

    // input.schema.json is enforced by the gateway before the script runs.
    let res = report(json!({"system": "ledger", "status": "on-fire"}))
        .await
        .expect("call");
    assert_eq!(res.status().as_u16(), 422);

    // Query parameters reach the script as strings; `limit` is validated there.
    let reader = s.key(&["users:read"]).await;
    let search = |query: &'static str| {
        s.request(Method::GET, &format!("/flows/user-search{query}"))
            .header("x-api-key", reader.clone())
            .send()
    };
    let res = search("?plan=pro&limit=5").await.expect("call");
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        (body["count"].as_i64(), body["limit"].as_i64()),
        (Some(0), Some(5))
    );
    let res = search("?limit=0").await.expect("call");
    assert_eq!(res.status().as_u16(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "invalid_limit", "{body}");
}
