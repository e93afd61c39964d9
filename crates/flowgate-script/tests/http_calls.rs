//! Runs record their outbound HTTP calls, and a fixture built from such a record
//! replays offline.

#![allow(clippy::unwrap_used)]

use flowgate_core::{FlowName, FlowPackage, Manifest};
use flowgate_script::fixtures::run_fixture_source;
use flowgate_script::{
    FlowRuntime, FlowVersion, Host, HttpCallRecord, MemoryRepo, MockHttp, MockResponse, RunInput,
    RuntimeConfig,
};
use serde_json::json;
use std::sync::Arc;

const TOML: &str = r#"
name = "t"
[[trigger]]
kind = "http"
[limits]
timeout_ms = 2000
[http]
allow = ["api.partner.example"]
"#;

fn version(script: &str) -> FlowVersion {
    let mut pkg = FlowPackage::default();
    pkg.files.insert("flow.toml".into(), TOML.into());
    pkg.files.insert("main.rhai".into(), script.into());
    FlowVersion::new(1, Manifest::parse(TOML).unwrap(), pkg)
}

const SCRIPT: &str = r#"
    let token = secrets::get("CRM_TOKEN");
    let r = http::get("https://api.partner.example/v1/customers", #{
        query: #{ since: 41, key: token },
        headers: #{ authorization: `Bearer ${token}` }
    });
    try { http::get("https://api.partner.example/missing?key=" + token); } catch { }
    try { http::get("https://evil.example/"); } catch { }
    #{ n: r.body.items.len(), echoed: r.body.token_echo }
"#;

fn mock(url: &str) -> MockResponse {
    MockResponse {
        method: "GET".into(),
        url: url.into(),
        status: 200,
        headers: Default::default(),
        body: json!({"items": [1, 2], "token_echo": "s3cr3t-value"}),
    }
}

#[test]
fn runs_record_outbound_calls_with_query_values_and_secrets_redacted() {
    let store = Arc::new(MemoryRepo::new());
    store.set_secret("CRM_TOKEN", "s3cr3t-value");
    let http = Arc::new(MockHttp::new(vec![mock(
        "https://api.partner.example/v1/customers?key=s3cr3t-value&since=41",
    )]));
    let host = Host {
        users: store.clone(),
        kv: store.clone(),
        secrets: store.clone(),
        http,
        flow: FlowName::parse("t").unwrap(),
    };
    let rt = FlowRuntime::new(RuntimeConfig::default());
    let out = rt
        .execute_blocking(&version(SCRIPT), RunInput::default(), host)
        .unwrap();
    assert!(out.result.is_ok(), "{:?}", out.result);
    let calls = &out.http_calls;
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[0].method, "GET");
    assert_eq!(
        calls[0].url,
        "https://api.partner.example/v1/customers?key=[redacted]&since=[redacted]"
    );
    assert_eq!(calls[0].status, Some(200));
    assert_eq!(calls[0].error, None);
    assert_eq!(
        calls[0].response_body,
        Some(json!({"items": [1, 2], "token_echo": "[redacted]"}))
    );
    // an unmocked call: no status, an error that does not quote the query
    assert_eq!(calls[1].status, None);
    assert_eq!(
        calls[1].url,
        "https://api.partner.example/missing?key=[redacted]"
    );
    let err = calls[1].error.clone().unwrap();
    assert!(err.contains("no mock for GET"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
    // a refused host is recorded with its error
    assert_eq!(calls[2].status, None);
    assert!(calls[2].error.as_deref().unwrap().contains("allow list"));
    // the whole record serializes without the secret and reads back
    let text = serde_json::to_string(&out.http_calls).unwrap();
    assert!(!text.contains("s3cr3t"), "{text}");
    let back: Vec<HttpCallRecord> = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, calls);
}

#[test]
fn large_response_bodies_are_not_recorded() {
    let store = Arc::new(MemoryRepo::new());
    let mut m = mock("https://api.partner.example/big");
    m.body = json!({"blob": "x".repeat(70 * 1024)});
    let host = Host {
        users: store.clone(),
        kv: store.clone(),
        secrets: store.clone(),
        http: Arc::new(MockHttp::new(vec![m])),
        flow: FlowName::parse("t").unwrap(),
    };
    let rt = FlowRuntime::new(RuntimeConfig::default());
    let out = rt
        .execute_blocking(
            &version(r#"http::get("https://api.partner.example/big").status"#),
            RunInput::default(),
            host,
        )
        .unwrap();
    assert_eq!(out.http_calls[0].status, Some(200));
    assert_eq!(out.http_calls[0].response_body, None);
}

#[test]
fn fixture_mocks_with_redacted_query_values_match_any_value() {
    let rt = FlowRuntime::new(RuntimeConfig::default());
    let v = version(SCRIPT);
    // a fixture as saved from a recorded run: query values are "[redacted]",
    // and the secret is a placeholder
    let fx = json!({
        "secrets": {"CRM_TOKEN": "test-value"},
        "http": [
            {"method": "GET", "url": "https://api.partner.example/v1/customers?key=[redacted]&since=[redacted]",
             "status": 200, "body": {"items": [1, 2], "token_echo": "[redacted]"}},
            {"method": "GET", "url": "https://api.partner.example/missing?key=[redacted]", "status": 404}
        ],
        "expect": {"status": 200, "body": {"n": 2}}
    });
    let r = run_fixture_source(&rt, &v, "tests/saved.json", &fx.to_string());
    assert!(r.passed(), "{:?}", r.diffs);
    let out = r.outcome.unwrap();
    assert_eq!(out.http_calls.len(), 3, "fixture runs record calls too");
    assert_eq!(out.http_calls[1].status, Some(404));

    // "[redacted]" stands for a value, not for a missing or different parameter
    let fx = json!({
        "http": [{"method": "GET", "url": "https://api.partner.example/v1/customers?other=[redacted]"}],
        "expect": {"status": 200}
    });
    let v = version(r#"http::get("https://api.partner.example/v1/customers?since=1").status"#);
    let r = run_fixture_source(&rt, &v, "tests/other.json", &fx.to_string());
    assert!(!r.passed());
}
