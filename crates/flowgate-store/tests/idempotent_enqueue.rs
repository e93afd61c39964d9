//! Async acknowledgement and its idempotency record commit together, and an
//! in-flight record left by a dead process is taken over after it goes stale.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use flowgate_core::run::{RunStatus, TriggerKind};
use flowgate_core::{now_ms, FlowName, RunId};
use flowgate_store::*;

const KEY: [u8; 32] = [7u8; 32];
const DAY_MS: i64 = 24 * 3600 * 1000;

fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/flowgate.db", dir.path().display());
    (Store::open_and_migrate(&url, KEY).unwrap(), dir)
}

fn run() -> Run {
    Run::queued(
        FlowName::parse("hook").unwrap(),
        1,
        TriggerKind::Webhook,
        json!({"request": {"body": {}}}),
        3,
        now_ms(),
    )
}

#[test]
fn enqueue_and_acknowledgement_commit_together() {
    let (s, _dir) = sqlite();
    let now = now_ms();
    assert_eq!(
        s.begin_idempotent("scope", "h", now, DAY_MS).unwrap(),
        IdempotencyBegin::Started
    );
    let r = run();
    let doc = json!({"status": 202, "body": {"run_id": r.id.to_string()}});
    assert_eq!(s.enqueue_with_idempotency(&r, "scope", &doc).unwrap(), r.id);
    let stored = s.get_run(r.id).unwrap().expect("the run is queued");
    assert_eq!(stored.run.status, RunStatus::Queued);
    assert_eq!(
        s.begin_idempotent("scope", "h", now + 1, DAY_MS).unwrap(),
        IdempotencyBegin::Done(doc)
    );
    // A run that is not fresh is refused and nothing is recorded.
    let mut bad = run();
    bad.attempt = 1;
    assert!(s
        .enqueue_with_idempotency(&bad, "scope", &json!({}))
        .is_err());
    assert!(s.get_run(bad.id).unwrap().is_none());
}

#[test]
fn a_started_run_and_its_acknowledgement_commit_together() {
    let (s, _dir) = sqlite();
    let now = now_ms();
    s.begin_idempotent("scope", "h", now, DAY_MS).unwrap();
    let r = Run {
        status: RunStatus::Running,
        attempt: 1,
        lease_owner: Some("node-a".into()),
        lease_expires_at: Some(now + 30_000),
        started_at: Some(now),
        ..run()
    };
    let doc = json!({"status": 202, "body": {"run_id": r.id.to_string()}});
    assert_eq!(s.enqueue_with_idempotency(&r, "scope", &doc).unwrap(), r.id);
    let stored = s.get_run(r.id).unwrap().expect("the run is stored");
    assert_eq!(stored.run.status, RunStatus::Running);
    assert_eq!(stored.run.lease_owner.as_deref(), Some("node-a"));
    assert_eq!(
        s.begin_idempotent("scope", "h", now + 1, DAY_MS).unwrap(),
        IdempotencyBegin::Done(doc)
    );
    // Running but not as a first claim leaves it: refused, nothing recorded.
    s.begin_idempotent("other", "h", now, DAY_MS).unwrap();
    let bad = Run {
        lease_owner: None,
        ..r.clone()
    };
    let bad = Run {
        id: RunId::new(),
        ..bad
    };
    assert!(s
        .enqueue_with_idempotency(&bad, "other", &json!({}))
        .is_err());
    assert!(s.get_run(bad.id).unwrap().is_none());
}

#[test]
fn stale_in_flight_record_is_taken_over() {
    let (s, _dir) = sqlite();
    let t0 = now_ms();
    assert_eq!(
        s.begin_idempotent("k", "h", t0, DAY_MS).unwrap(),
        IdempotencyBegin::Started
    );
    // Still plausibly running: 409 material.
    assert_eq!(
        s.begin_idempotent("k", "h", t0 + 60_000, DAY_MS).unwrap(),
        IdempotencyBegin::InFlight
    );
    // Its process died long ago: the retry starts (once).
    let later = t0 + 400_000;
    assert_eq!(
        s.begin_idempotent("k", "h", later, DAY_MS).unwrap(),
        IdempotencyBegin::Started
    );
    assert_eq!(
        s.begin_idempotent("k", "h", later + 1, DAY_MS).unwrap(),
        IdempotencyBegin::InFlight
    );
    assert!(s.complete_idempotent("k", &json!({"ok": true})).unwrap());
    assert_eq!(
        s.begin_idempotent("k", "h", later + 2, DAY_MS).unwrap(),
        IdempotencyBegin::Done(json!({"ok": true}))
    );
}
