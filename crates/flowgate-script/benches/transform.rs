//! A small transform flow (read 5 fields, branch, build a map): cached AST vs compiling
//! every run vs the same transform in plain Rust (the floor).

use criterion::{criterion_group, criterion_main, Criterion};
use flowgate_core::{FlowName, FlowPackage, Manifest};
use flowgate_script::{
    FlowRuntime, FlowVersion, Host, MemoryRepo, MockHttp, RunInput, RuntimeConfig,
};
use serde_json::{json, Map, Value};
use std::hint::black_box;
use std::sync::Arc;

const TOML: &str = "name = \"bench\"\n[[trigger]]\nkind = \"http\"\n";
const SCRIPT: &str = r#"
let b = request.body;
let tier = if b.amount > 1000 { "gold" } else if b.amount > 100 { "silver" } else { "bronze" };
#{ customer: b.customer, email: b.email.to_lower(), tier: tier,
   total: b.amount * b.quantity, express: b.country == "NL" && tier != "bronze" }
"#;

fn body() -> Value {
    json!({"customer": "c-17", "email": "Ann@Example.com", "amount": 420, "quantity": 3, "country": "NL"})
}

fn plain_rust(b: &Value) -> Value {
    let amount = b["amount"].as_i64().unwrap_or(0);
    let tier = if amount > 1000 {
        "gold"
    } else if amount > 100 {
        "silver"
    } else {
        "bronze"
    };
    let mut m = Map::new();
    m.insert("customer".into(), b["customer"].clone());
    m.insert(
        "email".into(),
        json!(b["email"].as_str().unwrap_or("").to_lowercase()),
    );
    m.insert("tier".into(), json!(tier));
    m.insert(
        "total".into(),
        json!(amount * b["quantity"].as_i64().unwrap_or(0)),
    );
    m.insert(
        "express".into(),
        json!(b["country"] == "NL" && tier != "bronze"),
    );
    Value::Object(m)
}

fn bench(c: &mut Criterion) {
    let rt = FlowRuntime::new(RuntimeConfig::default());
    let mut pkg = FlowPackage::default();
    pkg.files.insert("flow.toml".into(), TOML.into());
    pkg.files.insert("main.rhai".into(), SCRIPT.into());
    let version = FlowVersion::new(1, Manifest::parse(TOML).expect("manifest"), pkg);
    let store = Arc::new(MemoryRepo::new());
    let host = Host {
        users: store.clone(),
        kv: store.clone(),
        secrets: store,
        http: Arc::new(MockHttp::new(vec![])),
        flow: FlowName::parse("bench").expect("name"),
    };
    let input = RunInput {
        body: None,
        stored: None,
        request: json!({"method": "POST", "path": "", "params": {}, "query": {}, "headers": {}, "body": body()}),
        caller: json!({"kind": "api_key"}),
        trigger: json!({"kind": "http"}),
        ctx: flowgate_script::JsonBody::stored(json!({"flow": "bench", "version": 1}).to_string()),
        reads: Default::default(),
    };
    let expected = plain_rust(&body());
    let check = rt
        .execute_blocking(&version, input.clone(), host.clone())
        .expect("run");
    assert_eq!(check.result.expect("ok").body, expected);

    let mut g = c.benchmark_group("transform");
    g.bench_function("cached_ast", |b| {
        b.iter(|| {
            let ast = rt.compile(&version).expect("compile");
            black_box(rt.run_compiled(&ast, &version, &input, host.clone()))
        })
    });
    g.bench_function("compile_every_run", |b| {
        b.iter(|| {
            let ast = rt.check("main.rhai", SCRIPT).expect("compile");
            black_box(rt.run_compiled(&ast, &version, &input, host.clone()))
        })
    });
    g.bench_function("plain_rust", |b| {
        b.iter(|| black_box(plain_rust(black_box(&body()))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
