//! Every ```rhai block of docs/writing-flows.md compiles and runs as documented:
//! `// => <json>` is the returned value, `// => fail <status>` a `fail`, `// => error` a runtime error.

#![allow(clippy::unwrap_used)]

use flowgate_core::{FlowName, FlowPackage, Manifest};
use flowgate_script::{
    FlowRuntime, FlowVersion, Host, MemoryRepo, MockHttp, MockResponse, RunFailure, RunInput,
    RuntimeConfig,
};
use serde_json::{json, Value};
use std::sync::Arc;

const TOML: &str =
    "name = \"guide\"\n[[trigger]]\nkind = \"http\"\n[http]\nallow = [\"api.partner.example\"]\n";

fn blocks(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, line) in md.lines().enumerate() {
        match (&mut cur, line.trim_end()) {
            (None, "```rhai") => cur = Some((i + 2, String::new())),
            (Some(_), "```") => out.extend(cur.take()),
            (Some((_, s)), l) => {
                s.push_str(l);
                s.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

#[test]
fn guide_examples_run_as_documented() {
    let md = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/writing-flows.md"
    ))
    .unwrap();
    let examples = blocks(&md);
    assert!(
        examples.len() >= 12,
        "found only {} examples",
        examples.len()
    );
    let rt = FlowRuntime::new(RuntimeConfig::default());
    let manifest = Manifest::parse(TOML).unwrap();
    for (line, src) in examples {
        let store = Arc::new(MemoryRepo::new());
        store
            .seed_user(
                &json!({"id": "0190a0a0-0000-7000-8000-000000000001", "email": "ann@example.com",
                "attributes": {"plan": "free"}, "external_ids": {"crm": "C-1"}}),
            )
            .unwrap();
        store.set_secret("PARTNER_TOKEN", "tok_123");
        let http = Arc::new(MockHttp::new(vec![
            MockResponse {
                method: "GET".into(),
                url: "https://api.partner.example/v1/customers/42".into(),
                status: 200,
                headers: Default::default(),
                body: json!({"id": 42, "tier": "gold"}),
            },
            MockResponse {
                method: "POST".into(),
                url: "https://api.partner.example/v1/orders".into(),
                status: 201,
                headers: Default::default(),
                body: json!({"id": "o-1"}),
            },
        ]));
        let host = Host {
            users: store.clone(),
            kv: store.clone(),
            secrets: store,
            http,
            flow: FlowName::parse("guide").unwrap(),
        };
        let mut pkg = FlowPackage::default();
        pkg.files.insert("flow.toml".into(), TOML.into());
        pkg.files.insert("main.rhai".into(), src.clone());
        let v = FlowVersion::new(1, manifest.clone(), pkg);
        let input = RunInput {
            body: None,
            stored: None,
            request: json!({"method": "POST", "path": "", "params": {}, "query": {}, "headers": {},
                "body": {"amount": 42, "email": "ann@example.com"}}),
            caller: json!({"kind": "api_key", "id": "k", "scopes": []}),
            trigger: json!({"kind": "http"}),
            ctx: flowgate_script::JsonBody::stored(json!({"flow": "guide", "version": 1, "run_id": "r", "request_id": "q", "attempt": 1}).to_string()),
        reads: Default::default(),
};
        let out = rt.execute_blocking(&v, input, host).unwrap_or_else(|e| {
            panic!("example at writing-flows.md:{line} does not compile: {e}\n{src}")
        });
        let expect = src
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("// =>"))
            .map(str::trim);
        let ctx = format!(
            "example at writing-flows.md:{line}\n{src}\noutcome: {:?}",
            out.result
        );
        match expect {
            Some("error") => assert!(
                matches!(out.result, Err(RunFailure::Error { line: Some(_), .. })),
                "{ctx}"
            ),
            Some(e) if e.starts_with("fail ") => {
                let status: u16 = e[5..].parse().unwrap();
                assert!(
                    matches!(&out.result, Err(RunFailure::Fail { status: s, .. }) if *s == status),
                    "{ctx}"
                );
            }
            Some(json_text) => {
                let want: Value = serde_json::from_str(json_text)
                    .unwrap_or_else(|e| panic!("bad expectation ({e}) in {ctx}"));
                let got = out.result.as_ref().map(|r| r.body.to_value());
                assert_eq!(got.as_ref().ok(), Some(&want), "{ctx}");
            }
            None => assert!(out.result.is_ok(), "{ctx}"),
        }
    }
}
