//! Store benchmarks: run insert + fetch, and audit appends batched (100 per
//! transaction) against one by one (the baseline). SQLite always; PostgreSQL
//! when `FLOWGATE_TEST_POSTGRES_URL` is set (a fresh schema per bench run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use serde_json::json;

use flowgate_core::run::{RunStatus, TriggerKind};
use flowgate_core::{now_ms, FlowName};
use flowgate_store::{AuditEntry, Run, RunOutcome, Store};

const KEY: [u8; 32] = [1u8; 32];

fn stores() -> Vec<(&'static str, Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let mut out = vec![(
        "sqlite",
        Store::open_and_migrate(&url, KEY).unwrap(),
        Some(dir),
    )];
    match std::env::var("FLOWGATE_TEST_POSTGRES_URL") {
        Ok(base) => {
            let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
            let mut c = PgConnection::establish(&base).unwrap();
            c.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
            out.push((
                "postgres",
                Store::open_and_migrate(&url, KEY).unwrap(),
                None,
            ));
        }
        Err(_) => eprintln!("PostgreSQL benches SKIPPED: FLOWGATE_TEST_POSTGRES_URL not set"),
    }
    out
}

fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        time: now_ms(),
        request_id: format!("req-{i}"),
        caller: Some("key:bench".into()),
        flow: Some("billing".into()),
        version: Some(1),
        method: "POST".into(),
        path: "/flows/billing/invoices/42".into(),
        status: 200,
        duration_ms: 3,
        idempotency_key: None,
    }
}

fn benches(c: &mut Criterion) {
    let flow = FlowName::parse("billing").unwrap();
    let outcome = RunOutcome {
        status: RunStatus::Succeeded,
        finished_at: now_ms(),
        duration_ms: 2,
        response_status: Some(200),
        response: Some(json!({"status": 200, "headers": {}, "body": {"ok": true}})),
        error: None,
        logs: vec![],
        http_calls: None,
    };
    let batch: Vec<AuditEntry> = (0..100).map(entry).collect();
    for (name, store, _dir) in stores() {
        let mut g = c.benchmark_group(format!("store/{name}"));
        g.sample_size(20).measurement_time(Duration::from_secs(4));

        g.throughput(Throughput::Elements(1));
        g.bench_function("run_insert_and_fetch", |b| {
            b.iter(|| {
                let run = Run::finished(
                    flow.clone(),
                    1,
                    TriggerKind::Http,
                    json!({"request": {"body": {"amount": 10}}}),
                    now_ms(),
                    &outcome,
                );
                store.insert_run(&run, &[], &[]).unwrap();
                store.get_run(run.id).unwrap().unwrap()
            })
        });

        g.throughput(Throughput::Elements(100));
        g.bench_function("audit_100_batched", |b| {
            b.iter(|| store.append_audit(&batch).unwrap())
        });
        g.bench_function("audit_100_one_by_one", |b| {
            b.iter(|| {
                for e in &batch {
                    store.append_audit(std::slice::from_ref(e)).unwrap();
                }
            })
        });
        g.finish();
    }
}

criterion_group!(store_benches, benches);
criterion_main!(store_benches);
