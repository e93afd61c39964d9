//! Property tests at the script/host boundary: arbitrary JSON in (deep, wide,
//! unicode) and arbitrary values built by scripts out never panic or abort; they
//! round-trip, or end as a named limit.

#![allow(clippy::unwrap_used)]

use flowgate_core::{FlowName, FlowPackage, Manifest};
use flowgate_script::{
    FlowRuntime, FlowVersion, Host, MemoryRepo, MockHttp, RunFailure, RunInput, RunOutcome,
    RuntimeConfig,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};

const TOML: &str = r#"
name = "p"
[[trigger]]
kind = "http"
[limits]
timeout_ms = 5000
"#;

fn runtime() -> &'static FlowRuntime {
    static RT: OnceLock<FlowRuntime> = OnceLock::new();
    RT.get_or_init(|| FlowRuntime::new(RuntimeConfig::default()))
}

fn run(script: &str, body: Value) -> RunOutcome {
    let mut pkg = FlowPackage::default();
    pkg.files.insert("flow.toml".into(), TOML.into());
    pkg.files.insert("main.rhai".into(), script.into());
    let version = FlowVersion::new(1, Manifest::parse(TOML).unwrap(), pkg);
    let store = Arc::new(MemoryRepo::new());
    let host = Host {
        users: store.clone(),
        kv: store.clone(),
        secrets: store,
        http: Arc::new(MockHttp::new(vec![])),
        flow: FlowName::parse("p").unwrap(),
    };
    let input = RunInput {
        body: None,
        stored: None,
        request: json!({ "body": body }),
        ..RunInput::default()
    };
    runtime().execute_blocking(&version, input, host).unwrap()
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
    ]
}

fn wide_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 256, 12, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..12).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..12)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A chain of arrays and objects of a random depth, around a random leaf.
fn deep_json() -> impl Strategy<Value = Value> {
    (prop::collection::vec(any::<bool>(), 0..400), leaf()).prop_map(|(wraps, mut v)| {
        for as_array in wraps {
            v = if as_array {
                Value::Array(vec![v])
            } else {
                json!({ "k": v })
            };
        }
        v
    })
}

fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn check_in(body: &Value) {
    let out = run(
        "let b = request.body; log::info(b); to_json(#{ b: b }); b",
        body.clone(),
    );
    match &out.result {
        Ok(r) => {
            assert!(depth(body) < 128, "a too deep input was accepted");
            assert!(
                same_json(&r.body.to_value(), body),
                "{} != {}",
                r.body,
                body
            );
        }
        Err(RunFailure::LimitExceeded { limit, .. }) => {
            assert!(
                matches!(*limit, "value_depth" | "memory" | "response_size"),
                "{limit}"
            );
        }
        Err(other) => panic!("unexpected failure {other:?}"),
    }
}

/// Scripts that build values: random nesting, strings, numbers and closures.
fn value_script() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        any::<i32>().prop_map(|i| i.to_string()),
        any::<f32>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("()".to_string()),
        Just("true".to_string()),
        Just("request.body".to_string()),
        Just("|| 1".to_string()),
        Just("'c'".to_string()),
    ];
    let expr = atom.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| {
                let fields: Vec<String> = v
                    .iter()
                    .enumerate()
                    .map(|(i, x)| format!("f{i}: {x}"))
                    .collect();
                format!("#{{{}}}", fields.join(", "))
            }),
            inner
                .clone()
                .prop_map(|x| format!("parse_json(to_json([{x}]))")),
            inner.clone().prop_map(|x| format!("`${{{x}}}`")),
        ]
    });
    (expr, 0..3000usize, any::<bool>()).prop_map(|(e, n, as_map)| {
        let wrap = if as_map { "#{ x: v }" } else { "[v]" };
        format!("let v = {e}; for i in 0..{n} {{ v = {wrap}; }} debug(v); print(v); v")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_wide_json_in_round_trips(body in wide_json()) {
        check_in(&body);
    }

    #[test]
    fn arbitrary_deep_json_in_never_aborts(body in deep_json()) {
        check_in(&body);
    }

    #[test]
    fn arbitrary_values_out_never_abort(script in value_script(), body in wide_json()) {
        let out = run(&script, body);
        if let Err(f) = &out.result {
            // a named limit or an ordinary error, never anything else
            prop_assert!(
                matches!(f, RunFailure::LimitExceeded { .. } | RunFailure::Error { .. }),
                "{f:?}"
            );
        }
    }
}
