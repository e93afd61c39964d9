//! Storage test suite: every test runs on SQLite (temp file) and, when
//! `FLOWGATE_TEST_POSTGRES_URL` is set, on PostgreSQL in a fresh schema.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use serde_json::json;

use flowgate_core::event::{types, Event};
use flowgate_core::repo::{KvRepo, SecretRepo, UserRepo};
use flowgate_core::run::{LogLevel, LogLine, RunStatus, TriggerKind};
use flowgate_core::user::{NewUser, UserFilter, UserStatus};
use flowgate_core::{now_ms, EventId, FlowName, KeyId, RunId, SecretString, UserId};
use flowgate_store::*;

const KEY: [u8; 32] = [7u8; 32];

struct Db {
    store: Store,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    /// A second, independent pool on the same database.
    fn second(&self) -> Store {
        Store::open(&self.url, KEY).unwrap()
    }
}

fn sqlite_db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/dir/flowgate.db", dir.path().display());
    let store = Store::open_and_migrate(&url, KEY).unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    Db {
        store,
        url,
        _dir: Some(dir),
    }
}

fn pg_db() -> Option<Db> {
    let Ok(base) = std::env::var("FLOWGATE_TEST_POSTGRES_URL") else {
        eprintln!("PostgreSQL half SKIPPED: FLOWGATE_TEST_POSTGRES_URL not set");
        return None;
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut c = PgConnection::establish(&base).expect("connect to FLOWGATE_TEST_POSTGRES_URL");
    c.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    let store = Store::open_and_migrate(&url, KEY).unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    Some(Db {
        store,
        url,
        _dir: None,
    })
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&super::sqlite_db());
            }
            #[test]
            fn postgres() {
                if let Some(db) = super::pg_db() {
                    super::$name(&db);
                }
            }
        }
    )*};
}

both!(
    flows_and_versions,
    publish_concurrency,
    runs_insert_get_and_paginate,
    a_run_whose_stored_documents_do_not_parse_is_still_listed,
    recorded_runs_survive_a_refused_record_and_show_their_attempt,
    many_recorded_runs_all_land_with_their_logs,
    queue_lease_expiry_reclaims,
    a_started_run_is_a_claimed_one,
    queue_retry_release_and_dead,
    attempts_get_a_row_only_when_they_do_not_end_the_run,
    queue_claims_many_oldest_first,
    queue_concurrent_claims_are_exclusive,
    run_events_only_with_completion,
    users_repo,
    users_unique_email_ignores_case,
    api_keys,
    secrets_encrypted,
    kv_ttl,
    events_dedup_and_outbox,
    idempotency_sequence,
    idempotency_concurrent_begin,
    ticks_once_across_nodes,
    audit_batch_and_query,
    retention_purges_only_old_finished_work,
    console_sessions_bounded_ended_and_shared,
    run_http_calls_are_kept,
    group_commit_isolates_refused_writes_and_acks_after_commit,
    committed_records_resolve_after_their_commit_and_report_a_refusal,
    gone_nodes_release_their_leases,
    change_notices_reach_every_listener,
);

/// Records of sync runs share one insert; one that the database refuses (a
/// run id already stored) must not take the others of its batch with it.
fn recorded_runs_survive_a_refused_record_and_show_their_attempt(db: &Db) {
    let s = &db.store;
    let run = |i: i32| finished_http_run("rec", i);
    let first = run(0);
    s.insert_run(&first, &[], &[]).unwrap();
    let mut again = first.clone();
    again.input = json!({"i": "again"});
    let (b, c) = (run(1), run(2));
    s.record_run(&again, vec![line("dup")]);
    s.record_run(&b, vec![line("x"), line("y")]);
    s.record_run(&c, vec![]);

    let detail = s.get_run(b.id).unwrap().expect("b was recorded");
    assert_eq!(detail.run.input, json!({"i": 1}));
    let logs: Vec<_> = detail
        .logs
        .iter()
        .map(|l| (l.seq, l.message.as_str()))
        .collect();
    assert_eq!(logs, [(1, "x"), (2, "y")]);
    assert_eq!(detail.attempts.len(), 1, "the one attempt of a sync run");
    let a = &detail.attempts[0];
    assert_eq!(
        (a.attempt, a.started_at, a.finished_at, a.outcome.as_deref()),
        (1, b.started_at.unwrap(), b.finished_at, Some("succeeded"))
    );
    assert!(s.get_run(c.id).unwrap().is_some(), "c was recorded");
    let kept = s.get_run(first.id).unwrap().unwrap();
    assert_eq!(
        kept.run.input,
        json!({"i": 0}),
        "the refused record changed nothing"
    );
    assert!(kept.logs.is_empty());
}

/// Records somebody waits for (async runs done before their 202) share the
/// batch's insert too; each one's `Committed` resolves after the commit that
/// holds it, with an error for the one the database refused, the others
/// readable from any connection by then.
fn committed_records_resolve_after_their_commit_and_report_a_refusal(db: &Db) {
    let s = &db.store;
    let run = |i: i32| finished_http_run("acked", i);
    let first = run(0);
    s.insert_run(&first, &[], &[]).unwrap();
    let (b, c) = (run(1), run(2));
    let waits = [
        s.submit_record(&b, vec![line("b")]),
        s.submit_record(&first, vec![line("dup")]),
        s.submit_record(&c, vec![]),
    ];
    s.record_run(&run(3), vec![]);
    let results: Vec<bool> = waits.into_iter().map(|w| w.wait().is_ok()).collect();
    assert_eq!(results, [true, false, true]);
    let d = s.get_run(b.id).unwrap().expect("b was committed");
    assert_eq!(d.run.input, json!({"i": 1}));
    assert_eq!(d.logs.len(), 1);
    assert!(s.get_run(c.id).unwrap().is_some(), "c was committed");
    assert!(
        s.get_run(first.id).unwrap().unwrap().logs.is_empty(),
        "the refused record changed nothing"
    );
}

/// A batch of records goes in statements of 16, 4 and 1 rows on SQLite:
/// 23 records (16 + 4 + 1 + 1 + 1 when they share a batch) all land, each
/// with its own logs.
fn many_recorded_runs_all_land_with_their_logs(db: &Db) {
    let s = &db.store;
    let runs: Vec<Run> = (0..23).map(|i| finished_http_run("many", i)).collect();
    for (i, r) in runs.iter().enumerate() {
        s.record_run(r, vec![line(&format!("a{i}")), line(&format!("b{i}"))]);
    }
    for (i, r) in runs.iter().enumerate() {
        let d = s
            .get_run(r.id)
            .unwrap()
            .unwrap_or_else(|| panic!("run {i} was not recorded"));
        assert_eq!(d.run.input, json!({"i": i}));
        let logs: Vec<_> = d.logs.iter().map(|l| l.message.clone()).collect();
        assert_eq!(logs, [format!("a{i}"), format!("b{i}")]);
    }
}

fn flow(s: &str) -> FlowName {
    FlowName::parse(s).unwrap()
}

fn files(n: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("flow.toml".to_string(), format!("name = \"f\" # {n}")),
        ("main.rhai".to_string(), format!("{n}")),
    ])
}

fn line(msg: &str) -> LogLine {
    LogLine {
        time: now_ms(),
        level: LogLevel::Info,
        message: msg.into(),
    }
}

/// A succeeded HTTP run of `name` whose input is `{"i": i}`.
fn finished_http_run(name: &str, i: i32) -> Run {
    Run::finished(
        flow(name),
        1,
        TriggerKind::Http,
        json!({"i": i}),
        now_ms(),
        &ok_outcome(vec![]),
    )
}

fn ok_outcome(logs: Vec<LogLine>) -> RunOutcome {
    RunOutcome {
        status: RunStatus::Succeeded,
        finished_at: now_ms(),
        duration_ms: 3,
        response_status: Some(200),
        response: Some(json!({"status": 200, "headers": {}, "body": {"ok": true}})),
        error: None,
        logs,
        http_calls: None,
    }
}

fn queued(f: &str, available_at: i64, max_attempts: u32) -> Run {
    Run::queued(
        flow(f),
        1,
        TriggerKind::Webhook,
        json!({"request": {"body": {"n": 1}}}),
        max_attempts,
        available_at,
    )
}

// ---------------------------------------------------------------- flows

fn flows_and_versions(db: &Db) {
    let s = &db.store;
    let f = flow("billing");
    let rec = s.create_flow(&f).unwrap();
    assert_eq!(rec.live_version, None);
    assert!(!rec.disabled);
    assert!(matches!(s.create_flow(&f), Err(StoreError::Conflict(_))));
    for n in ["a1", "a2", "a3"] {
        s.create_flow(&flow(n)).unwrap();
    }
    let p1 = s.list_flows(None, 2).unwrap();
    assert_eq!(
        p1.items.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["a1", "a2"]
    );
    let p2 = s.list_flows(p1.next_cursor.as_deref(), 2).unwrap();
    assert_eq!(
        p2.items.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["a3", "billing"]
    );
    assert_eq!(p2.next_cursor, None);

    assert!(s.set_flow_disabled(&f, true).unwrap().disabled);
    assert!(!s.set_flow_disabled(&f, false).unwrap().disabled);
    assert!(s
        .set_flow_disabled(&flow("nope"), true)
        .unwrap_err()
        .is_not_found());
    assert!(s
        .insert_version(&flow("nope"), &files(1), "x")
        .unwrap_err()
        .is_not_found());

    for n in 1..=3u32 {
        let v = s.insert_version(&f, &files(n), &format!("sha{n}")).unwrap();
        assert_eq!((v.version, v.status), (n, VersionStatus::Draft));
    }
    let v2 = s.get_version(&f, 2).unwrap().unwrap();
    assert_eq!(v2.package.files, files(2));
    assert_eq!(v2.info.sha256, "sha2");
    assert!(s.get_version(&f, 9).unwrap().is_none());
    assert_eq!(s.latest_version(&f).unwrap().unwrap().version, 3);
    assert_eq!(s.list_versions(&f).unwrap().len(), 3);

    assert_eq!(s.publish_version(&f, 1).unwrap(), None);
    assert_eq!(s.publish_version(&f, 2).unwrap(), Some(1));
    assert_eq!(s.get_flow(&f).unwrap().unwrap().live_version, Some(2));
    assert!(s
        .get_version(&f, 2)
        .unwrap()
        .unwrap()
        .info
        .published_at
        .is_some());
    // A draft cannot be rolled back to.
    assert!(matches!(s.rollback(&f, 3), Err(StoreError::Conflict(_))));
    assert!(s.rollback(&f, 9).unwrap_err().is_not_found());
    assert_eq!(s.rollback(&f, 1).unwrap(), Some(2));
    assert_eq!(s.get_flow(&f).unwrap().unwrap().live_version, Some(1));
    // Live version with another published one: refuse.
    assert!(matches!(
        s.retire_version(&f, 1),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.retire_version(&f, 2).unwrap(), RetireOutcome::Retired);
    assert_eq!(
        s.retire_version(&f, 2).unwrap(),
        RetireOutcome::AlreadyRetired
    );
    assert!(matches!(
        s.publish_version(&f, 2),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(s.rollback(&f, 2), Err(StoreError::Conflict(_))));
    // Only published version and live: retired, no live version left.
    assert_eq!(s.retire_version(&f, 1).unwrap(), RetireOutcome::RetiredLive);
    assert_eq!(s.get_flow(&f).unwrap().unwrap().live_version, None);
    assert_eq!(s.retire_version(&f, 3).unwrap(), RetireOutcome::Retired);
    let st: Vec<_> = s
        .list_versions(&f)
        .unwrap()
        .into_iter()
        .map(|v| v.status)
        .collect();
    assert_eq!(st, [VersionStatus::Retired; 3]);
}

fn publish_concurrency(db: &Db) {
    let f = flow("race");
    db.store.create_flow(&f).unwrap();
    // Concurrent uploads get distinct numbers.
    let barrier = Arc::new(Barrier::new(2));
    let hs: Vec<_> = (0..2)
        .map(|i| {
            let (s, b, f) = (db.second(), barrier.clone(), f.clone());
            std::thread::spawn(move || {
                b.wait();
                s.insert_version(&f, &files(i), "h").unwrap().version
            })
        })
        .collect();
    let mut nums: Vec<u32> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    nums.sort();
    assert_eq!(nums, [1, 2]);

    for round in 0..5 {
        let barrier = Arc::new(Barrier::new(2));
        let hs: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|n| {
                let (s, b, f) = (db.second(), barrier.clone(), f.clone());
                std::thread::spawn(move || {
                    b.wait();
                    (n, s.publish_version(&f, n).unwrap())
                })
            })
            .collect();
        let res: Vec<(u32, Option<u32>)> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        let live = db
            .store
            .get_flow(&f)
            .unwrap()
            .unwrap()
            .live_version
            .unwrap();
        // Serialised: the last publisher is live and saw the other as previous.
        let (last, prev) = res.iter().find(|(n, _)| *n == live).copied().unwrap();
        let (other, _) = res.iter().find(|(n, _)| *n != live).copied().unwrap();
        assert_eq!(last, live, "round {round}");
        assert_eq!(prev, Some(other), "round {round}: {res:?}");
        let published = db
            .store
            .list_versions(&f)
            .unwrap()
            .iter()
            .filter(|v| v.status == VersionStatus::Published)
            .count();
        assert_eq!(published, 2);
    }
}

// ---------------------------------------------------------------- runs

fn runs_insert_get_and_paginate(db: &Db) {
    let s = &db.store;
    let mut ids = Vec::new();
    for i in 0..25 {
        let f = if i % 2 == 0 { "even" } else { "odd" };
        let mut outcome = ok_outcome(vec![]);
        if i % 5 == 0 {
            outcome.status = RunStatus::Failed;
            outcome.error = Some("boom".into());
            outcome.response_status = Some(500);
        }
        let run = Run::finished(
            flow(f),
            1,
            TriggerKind::Http,
            json!({"i": i}),
            now_ms(),
            &outcome,
        );
        s.insert_run(&run, &[line(&format!("a{i}")), line("b")], &[])
            .unwrap();
        ids.push(run.id);
    }
    let detail = s.get_run(ids[3]).unwrap().unwrap();
    assert_eq!(detail.run.input, json!({"i": 3}));
    assert_eq!(detail.run.status, RunStatus::Succeeded);
    assert_eq!(detail.run.response.as_ref().unwrap()["body"]["ok"], true);
    let msgs: Vec<_> = detail.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(msgs, ["a3", "b"]);
    assert_eq!(detail.attempts.len(), 1);
    assert!(s.get_run(RunId::new()).unwrap().is_none());

    s.append_logs(ids[3], 1, &[line("c")]).unwrap();
    let detail = s.get_run(ids[3]).unwrap().unwrap();
    assert_eq!(
        detail.logs.iter().map(|l| l.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );

    // All, newest first, in pages of 10.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let p = s
            .list_runs(&RunFilter::default(), cursor.as_deref(), 10)
            .unwrap();
        assert!(p.items.len() <= 10);
        seen.extend(p.items.iter().map(|r| r.id));
        cursor = p.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    let odd = s
        .list_runs(
            &RunFilter {
                flow: Some(flow("odd")),
                status: None,
            },
            None,
            100,
        )
        .unwrap();
    assert_eq!(odd.items.len(), 12);
    assert!(odd.items.iter().all(|r| r.flow.as_str() == "odd"));
    let failed = s
        .list_runs(
            &RunFilter {
                flow: None,
                status: Some(RunStatus::Failed),
            },
            None,
            100,
        )
        .unwrap();
    assert_eq!(failed.items.len(), 5);
    assert!(matches!(
        s.list_runs(&RunFilter::default(), Some("junk"), 10),
        Err(StoreError::Invalid(_))
    ));
}

/// Runs SQL on the database behind `db` (not through the store).
/// How many `run_attempts` rows run `id` has.
fn attempt_rows(db: &Db, id: RunId) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let sql = format!("SELECT count(*) AS n FROM run_attempts WHERE run_id = '{id}'");
    let n: N = match db.store.backend() {
        Backend::Sqlite => {
            let path = db.url.strip_prefix("sqlite://").unwrap();
            diesel::sql_query(sql)
                .get_result(&mut SqliteConnection::establish(path).unwrap())
                .unwrap()
        }
        Backend::Postgres => diesel::sql_query(sql)
            .get_result(&mut PgConnection::establish(&db.url).unwrap())
            .unwrap(),
    };
    n.n
}

fn raw_execute(db: &Db, sql: &str) {
    match db.store.backend() {
        Backend::Sqlite => {
            let path = db.url.strip_prefix("sqlite://").unwrap();
            SqliteConnection::establish(path)
                .unwrap()
                .batch_execute(sql)
                .unwrap();
        }
        Backend::Postgres => PgConnection::establish(&db.url)
            .unwrap()
            .batch_execute(sql)
            .unwrap(),
    }
}

fn a_run_whose_stored_documents_do_not_parse_is_still_listed(db: &Db) {
    let s = &db.store;
    let mut ids = Vec::new();
    for i in 0..3 {
        let run = Run::finished(
            flow("listed"),
            1,
            TriggerKind::Http,
            json!({"i": i}),
            now_ms(),
            &ok_outcome(vec![]),
        );
        s.insert_run(&run, &[], &[]).unwrap();
        ids.push(run.id);
    }
    // What no release writes, but a damaged or hand-edited row may hold.
    raw_execute(
        db,
        &format!(
            "UPDATE runs SET input = '{{\"i\": ', response = 'not json', http_calls = '[' WHERE id = '{}'",
            ids[1]
        ),
    );
    let page = s.list_runs(&RunFilter::default(), None, 10).unwrap();
    let listed: Vec<_> = page.items.iter().map(|r| r.id).collect();
    assert_eq!(listed, [ids[2], ids[1], ids[0]]);
    let damaged = &page.items[1];
    assert_eq!(damaged.status, RunStatus::Succeeded);
    assert_eq!(damaged.response_status, Some(200));
    assert!(damaged.input.is_null() && damaged.response.is_none() && damaged.http_calls.is_none());
    // The others keep their documents.
    assert_eq!(page.items[0].input, json!({"i": 2}));
    assert!(page.items[0].response.is_some());
    // Reading that one run shows it cannot be read, not a made-up input.
    assert!(s.get_run(ids[1]).is_err());
    assert!(s.get_run(ids[0]).unwrap().is_some());
}

/// A run queued already started by its worker (`submit_start`) is stored as
/// a claim would have left it: nobody claims it while its lease holds, its
/// worker finishes it, and another claims it again once the lease expires.
fn a_started_run_is_a_claimed_one(db: &Db) {
    let s = &db.store;
    let t0 = now_ms();
    let started = |owner: &str| Run {
        status: RunStatus::Running,
        attempt: 1,
        lease_owner: Some(owner.into()),
        lease_expires_at: Some(t0 + 1_000),
        started_at: Some(t0),
        ..queued("started", t0, 3)
    };
    assert!(
        s.submit_start(queued("started", t0, 3)).wait().is_err(),
        "a queued run is not a started one"
    );
    let a = started("w1");
    assert_eq!(s.submit_start(a.clone()).wait().ok(), Some(a.id));
    let stored = s.get_run(a.id).unwrap().unwrap().run;
    assert_eq!((stored.status, stored.attempt), (RunStatus::Running, 1));
    assert_eq!(stored.lease_owner.as_deref(), Some("w1"));
    assert!(s.claim_next("w2", 1_000, t0 + 500).unwrap().is_none());
    assert!(s
        .complete_run(a.id, "w1", &ok_outcome(vec![line("done")]))
        .unwrap());
    let d = s.get_run(a.id).unwrap().unwrap();
    assert_eq!((d.run.status, d.run.attempt), (RunStatus::Succeeded, 1));
    assert_eq!(d.logs.len(), 1);

    // Its worker goes silent: the run is claimed again with attempt 2.
    let b = started("w1");
    s.submit_start(b.clone()).wait().unwrap();
    let again = s.claim_next("w2", 1_000, t0 + 1_500).unwrap().unwrap();
    assert_eq!((again.id, again.attempt), (b.id, 2));
    assert!(!s.complete_run(b.id, "w1", &ok_outcome(vec![])).unwrap());
}

fn queue_lease_expiry_reclaims(db: &Db) {
    let s = &db.store;
    let t0 = now_ms();
    let run = queued("q", t0, 3);
    s.enqueue(&run).unwrap();
    assert!(s
        .enqueue(&Run {
            status: RunStatus::Running,
            ..queued("q", t0, 1)
        })
        .is_err());

    let c1 = s.claim_next("w1", 1_000, t0).unwrap().unwrap();
    assert_eq!(
        (c1.id, c1.attempt, c1.status),
        (run.id, 1, RunStatus::Running)
    );
    assert_eq!(c1.lease_owner.as_deref(), Some("w1"));
    assert!(s.claim_next("w2", 1_000, t0 + 500).unwrap().is_none());
    assert!(s.renew_lease(run.id, "w1", t0 + 1_500).unwrap());
    assert!(s.claim_next("w2", 1_000, t0 + 1_200).unwrap().is_none());

    // w1 goes silent; its lease expires and w2 takes over with attempt 2.
    let c2 = s.claim_next("w2", 1_000, t0 + 1_600).unwrap().unwrap();
    assert_eq!((c2.id, c2.attempt), (run.id, 2));
    assert_eq!(c2.lease_owner.as_deref(), Some("w2"));
    assert!(!s.renew_lease(run.id, "w1", t0 + 9_000).unwrap());
    assert!(!s.complete_run(run.id, "w1", &ok_outcome(vec![])).unwrap());
    assert!(s
        .complete_run(run.id, "w2", &ok_outcome(vec![line("done")]))
        .unwrap());
    assert!(!s.complete_run(run.id, "w2", &ok_outcome(vec![])).unwrap());

    let d = s.get_run(run.id).unwrap().unwrap();
    assert_eq!((d.run.status, d.run.attempt), (RunStatus::Succeeded, 2));
    assert_eq!(
        d.run.lease_owner.as_deref(),
        Some("w2"),
        "an ended run names the worker of its last attempt"
    );
    assert_eq!(d.run.lease_expires_at, None);
    let outcomes: Vec<_> = d
        .attempts
        .iter()
        .map(|a| a.outcome.clone().unwrap())
        .collect();
    assert_eq!(outcomes, ["lease_expired", "succeeded"]);
    assert_eq!(d.attempts[0].owner, "w1");
    assert_eq!(d.logs[0].attempt, 2);
    assert!(s.claim_next("w3", 1_000, t0 + 99_000).unwrap().is_none());
}

/// A claimed run's attempt lives in the run's own row: only an attempt that
/// ends without ending the run (a retry, an expired lease) is written as a
/// row of its own, and every attempt still shows, with its worker. An open
/// row an older version wrote at the claim is completed when the run ends.
fn attempts_get_a_row_only_when_they_do_not_end_the_run(db: &Db) {
    let s = &db.store;
    let t0 = now_ms();
    let once = queued("att", t0 - 10, 3);
    s.enqueue(&once).unwrap();
    let c = s.claim_next("w1", 5_000, t0).unwrap().unwrap();
    let running = s.get_run(c.id).unwrap().unwrap();
    let a = &running.attempts[..];
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!((a[0].attempt, a[0].owner.as_str()), (1, "w1"));
    assert_eq!((a[0].started_at, a[0].finished_at), (t0, None));
    assert_eq!(a[0].outcome, None);
    assert!(s.complete_run(c.id, "w1", &ok_outcome(vec![])).unwrap());
    assert_eq!(attempt_rows(db, c.id), 0, "a first try that ends the run");
    let d = s.get_run(c.id).unwrap().unwrap();
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.attempts[0].owner, "w1");
    assert_eq!(d.attempts[0].outcome.as_deref(), Some("succeeded"));
    assert_eq!(d.attempts[0].finished_at, d.run.finished_at);

    // A retry, an expired lease, then success: two rows, three attempts.
    let twice = queued("att", t0 - 5, 3);
    s.enqueue(&twice).unwrap();
    let c = s.claim_next("w1", 5_000, t0).unwrap().unwrap();
    assert_eq!(c.id, twice.id);
    assert!(s.retry_run(c.id, "w1", t0, "HTTP 503", &[]).unwrap());
    let c = s.claim_next("w2", 1_000, t0 + 100).unwrap().unwrap();
    assert_eq!(c.attempt, 2);
    let c = s.claim_next("w3", 5_000, t0 + 1_200).unwrap().unwrap();
    assert_eq!((c.id, c.attempt), (twice.id, 3));
    assert!(s.complete_run(c.id, "w3", &ok_outcome(vec![])).unwrap());
    assert_eq!(attempt_rows(db, c.id), 2);
    let d = s.get_run(c.id).unwrap().unwrap();
    let seen: Vec<_> = d
        .attempts
        .iter()
        .map(|a| (a.attempt, a.owner.as_str(), a.outcome.as_deref().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, "w1", "retry"),
            (2, "w2", "lease_expired"),
            (3, "w3", "succeeded")
        ]
    );
    assert_eq!(d.attempts[0].error.as_deref(), Some("HTTP 503"));
    assert_eq!(d.attempts[1].started_at, t0 + 100);
    assert_eq!(d.attempts[1].finished_at, Some(t0 + 1_200));
    assert_eq!(d.attempts[2].error, None);

    // An open row from a version that wrote one at the claim.
    let old = queued("att", t0 - 1, 3);
    s.enqueue(&old).unwrap();
    let c = s.claim_next("w1", 5_000, t0).unwrap().unwrap();
    assert_eq!(c.id, old.id);
    raw_execute(
        db,
        &format!(
            "INSERT INTO run_attempts (run_id, attempt, owner, started_at) \
             VALUES ('{}', 1, 'w1', {t0})",
            c.id
        ),
    );
    assert!(s.retry_run(c.id, "w1", t0, "boom", &[]).unwrap());
    let c = s.claim_next("w1", 5_000, t0 + 10).unwrap().unwrap();
    raw_execute(
        db,
        &format!(
            "INSERT INTO run_attempts (run_id, attempt, owner, started_at) \
             VALUES ('{}', 2, 'w1', {})",
            c.id,
            t0 + 10
        ),
    );
    assert!(s.complete_run(c.id, "w1", &ok_outcome(vec![])).unwrap());
    let d = s.get_run(c.id).unwrap().unwrap();
    let seen: Vec<_> = d
        .attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_deref(), a.error.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, Some("retry"), Some("boom")),
            (2, Some("succeeded"), None)
        ]
    );
    assert_eq!(d.attempts[1].finished_at, d.run.finished_at);
}

/// One batched claim takes the due runs oldest first, expired leases among
/// them, and stops at `n` or at the last due run.
fn queue_claims_many_oldest_first(db: &Db) {
    let s = &db.store;
    let t0 = now_ms();
    let runs: Vec<Run> = (0..5).map(|i| queued("q", t0 - 50 + i, 3)).collect();
    for r in runs.iter().rev() {
        s.enqueue(r).unwrap();
    }
    s.enqueue(&queued("q", t0 + 60_000, 3)).unwrap(); // not yet due
                                                      // The oldest goes to w1, whose lease then expires.
    let first = s.claim_next("w1", 1_000, t0).unwrap().unwrap();
    assert_eq!(first.id, runs[0].id);

    let later = t0 + 2_000;
    let got = s
        .submit_claims("w2".into(), 5_000, later, 3)
        .wait()
        .unwrap();
    let ids: Vec<_> = got.iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        [runs[0].id, runs[1].id, runs[2].id],
        "oldest first, the expired one included"
    );
    assert_eq!(got.iter().map(|r| r.attempt).collect::<Vec<_>>(), [2, 1, 1]);
    assert!(got
        .iter()
        .all(|r| r.status == RunStatus::Running && r.lease_owner.as_deref() == Some("w2")));
    // A claimed run is built from the row it read, not read again: it must be
    // exactly what the database now holds (input, lease, start, attempt),
    // its input as the stored text.
    for r in &got {
        let stored = s.get_run(r.id).unwrap().unwrap().run;
        assert!(r.input.is_null() && r.input_json.is_some());
        assert_eq!(r.input_value(), stored.input);
        let as_read = Run {
            input: r.input_value(),
            input_json: None,
            ..r.clone()
        };
        assert_eq!(as_read, stored);
        assert_eq!(r.started_at, Some(later));
        assert_eq!(r.lease_expires_at, Some(later + 5_000));
    }
    assert_eq!(
        got[1].input_value(),
        runs[1].input,
        "the stored input comes back"
    );

    let rest = s
        .submit_claims("w3".into(), 5_000, later, 10)
        .wait()
        .unwrap();
    let ids: Vec<_> = rest.iter().map(|r| r.id).collect();
    assert_eq!(ids, [runs[3].id, runs[4].id], "only what is due");
    assert!(s
        .submit_claims("w3".into(), 5_000, later, 10)
        .wait()
        .unwrap()
        .is_empty());
    let d = s.get_run(runs[0].id).unwrap().unwrap();
    let owners: Vec<_> = d.attempts.iter().map(|a| a.owner.as_str()).collect();
    assert_eq!(owners, ["w1", "w2"]);
}

fn queue_retry_release_and_dead(db: &Db) {
    let s = &db.store;
    let t0 = now_ms();
    let a = queued("q", t0 - 10, 2);
    let b = queued("q", t0 + 60_000, 2); // not yet available
    s.enqueue(&b).unwrap();
    s.enqueue(&a).unwrap();

    let c = s.claim_next("w", 5_000, t0).unwrap().unwrap();
    assert_eq!(c.id, a.id, "oldest available first; future runs wait");
    assert!(s.claim_next("w", 5_000, t0).unwrap().is_none());

    // Shutdown: release without consuming the attempt.
    assert!(s.release_run(a.id, "w").unwrap());
    assert!(!s.release_run(a.id, "w").unwrap());
    let c = s.claim_next("w", 5_000, t0).unwrap().unwrap();
    assert_eq!((c.id, c.attempt), (a.id, 1));

    // Failed attempt with backoff.
    assert!(s
        .retry_run(a.id, "w", t0 + 2_000, "HTTP 503", &[line("try 1")])
        .unwrap());
    assert!(s.claim_next("w", 5_000, t0 + 1_000).unwrap().is_none());
    let c = s.claim_next("w", 5_000, t0 + 2_000).unwrap().unwrap();
    assert_eq!((c.id, c.attempt), (a.id, 2));
    assert!(s.mark_dead(a.id, "w", "HTTP 503 again", &[]).unwrap());
    let d = s.get_run(a.id).unwrap().unwrap();
    assert_eq!(d.run.status, RunStatus::Dead);
    assert_eq!(d.run.error.as_deref(), Some("HTTP 503 again"));
    let outcomes: Vec<_> = d
        .attempts
        .iter()
        .map(|x| x.outcome.clone().unwrap())
        .collect();
    assert_eq!(outcomes, ["retry", "dead"]);
    assert_eq!(d.attempts[0].error.as_deref(), Some("HTTP 503"));

    // A lease that expires on the last attempt ends the run as dead, with an event.
    let last = queued("q", t0, 1);
    s.enqueue(&last).unwrap();
    let c = s.claim_next("w", 1_000, t0).unwrap().unwrap();
    assert_eq!(c.id, last.id);
    let next = s.claim_next("w2", 1_000, t0 + 70_000).unwrap().unwrap();
    assert_eq!(
        next.id, b.id,
        "the exhausted run is skipped, the next one claimed"
    );
    let d = s.get_run(last.id).unwrap().unwrap();
    assert_eq!(d.run.status, RunStatus::Dead);
    let evs = s.pending_events(100).unwrap();
    let failed: Vec<_> = evs.iter().filter(|e| e.kind == types::RUN_FAILED).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].data["run_id"], last.id.to_string());

    let depth: std::collections::HashMap<_, _> =
        s.queue_depth_by_status().unwrap().into_iter().collect();
    assert_eq!(depth.get(&RunStatus::Dead), Some(&2));
    assert_eq!(depth.get(&RunStatus::Running), Some(&1));
    assert_eq!(s.active_runs(&flow("q")).unwrap(), 1);

    // What `overlap = "skip"` asks once per due time: the flows with a run
    // queued or running; a flow whose runs all ended is not among them.
    let ended = queued("ended", t0 - 10, 1);
    s.enqueue(&ended).unwrap();
    assert!(s.active_flows().unwrap().contains("ended"));
    let c = s.claim_next("w", 5_000, t0 + 70_000).unwrap().unwrap();
    assert_eq!(c.id, ended.id);
    assert!(s.mark_dead(ended.id, "w", "gave up", &[]).unwrap());
    let active = s.active_flows().unwrap();
    assert!(active.contains("q"), "{active:?}");
    assert!(!active.contains("ended"), "{active:?}");
}

fn queue_concurrent_claims_are_exclusive(db: &Db) {
    let t0 = now_ms();
    for _ in 0..20 {
        db.store.enqueue(&queued("many", t0, 1)).unwrap();
    }
    let hs: Vec<_> = (0..4)
        .map(|w| {
            let s = db.second();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Some(r) = s.claim_next(&format!("w{w}"), 60_000, t0).unwrap() {
                    got.push(r.id);
                }
                got
            })
        })
        .collect();
    let all: Vec<RunId> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let uniq: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 20);
    assert_eq!(uniq.len(), 20);
}

/// Writes handed to the writer together: a refused one (a duplicate run id)
/// does not undo the others, and each `Committed` resolves only when its rows
/// are visible to another connection.
fn group_commit_isolates_refused_writes_and_acks_after_commit(db: &Db) {
    let t0 = now_ms();
    let first = queued("grouped", t0, 1);
    let dup = first.clone();
    let other = db.second();
    let mut pending = vec![db.store.submit_enqueue(first.clone())];
    pending.push(db.store.submit_enqueue(dup));
    let rest: Vec<Run> = (0..50).map(|_| queued("grouped", t0, 1)).collect();
    pending.extend(rest.iter().map(|r| db.store.submit_enqueue(r.clone())));
    let claim = db.store.submit_claim("w".into(), 60_000, t0);
    let results: Vec<_> = pending.into_iter().map(Committed::wait).collect();
    assert_eq!(results[0].as_ref().ok(), Some(&first.id));
    assert!(
        matches!(results[1], Err(StoreError::Conflict(_))),
        "{:?}",
        results[1]
    );
    for (r, run) in results[2..].iter().zip(&rest) {
        assert_eq!(r.as_ref().ok(), Some(&run.id));
        // Committed: another pool (no read barrier of this store) sees it.
        assert!(other.get_run(run.id).unwrap().is_some());
    }
    // The claim queued behind them sees the oldest of them.
    let claimed = claim.wait().unwrap().expect("a run to claim");
    assert_eq!(claimed.status, RunStatus::Running);
    let runs = other
        .list_runs(&RunFilter::default(), None, 100)
        .unwrap()
        .items;
    assert_eq!(runs.len(), 51);
}

fn run_events_only_with_completion(db: &Db) {
    let s = &db.store;
    let t0 = now_ms();
    let r = queued("emit", t0, 3);
    s.enqueue(&r).unwrap();
    s.claim_next("w1", 100, t0).unwrap().unwrap();
    s.claim_next("w2", 100, t0 + 200).unwrap().unwrap(); // w1 lost the lease
    let ev = Event::new("billing.paid", "flow:emit", json!({"n": 1}));
    assert!(!s
        .finish_run_with_events(r.id, "w1", &ok_outcome(vec![]), std::slice::from_ref(&ev))
        .unwrap());
    assert!(s.get_event(ev.id).unwrap().is_none());
    assert!(s
        .finish_run_with_events(r.id, "w2", &ok_outcome(vec![]), std::slice::from_ref(&ev))
        .unwrap());
    assert_eq!(s.get_event(ev.id).unwrap().unwrap().data, json!({"n": 1}));

    // Sync runs: run row, logs and emitted events together.
    let ev2 = Event::new("billing.paid", "flow:emit", json!({"n": 2}));
    let run = Run::finished(
        flow("emit"),
        1,
        TriggerKind::Http,
        json!({}),
        t0,
        &ok_outcome(vec![]),
    );
    s.insert_run(&run, &[line("x")], std::slice::from_ref(&ev2))
        .unwrap();
    assert!(s.get_event(ev2.id).unwrap().is_some());
    assert!(matches!(
        s.finish_run_with_events(
            run.id,
            "w",
            &RunOutcome {
                status: RunStatus::Running,
                ..ok_outcome(vec![])
            },
            &[]
        ),
        Err(StoreError::Invalid(_))
    ));
}

// ---------------------------------------------------------------- users

fn new_user(email: &str, attrs: serde_json::Value) -> NewUser {
    NewUser::from_json(&json!({"email": email, "attributes": attrs})).unwrap()
}

fn users_repo(db: &Db) {
    let s = &db.store;
    let repo: &dyn UserRepo = s;
    let ann = repo
        .create_user(
            NewUser::from_json(&json!({
                "email": "Ann@Example.com", "display_name": "Ann",
                "attributes": {"plan": "free", "prefs": {"lang": "nl"}},
                "external_ids": {"crm": "C-1", "erp": 42}
            }))
            .unwrap(),
        )
        .unwrap();
    assert_eq!(ann.status, UserStatus::Active);
    let bob = repo
        .create_user(new_user("bob@example.com", json!({"plan": "pro"})))
        .unwrap();
    let cy = repo
        .create_user(new_user("cy@example.com", json!({"plan": "pro"})))
        .unwrap();

    assert_eq!(repo.get_user(ann.id).unwrap().unwrap(), ann);
    assert_eq!(
        repo.find_user_by_email("ANN@example.COM")
            .unwrap()
            .unwrap()
            .id,
        ann.id
    );
    assert!(repo
        .find_user_by_email("nobody@example.com")
        .unwrap()
        .is_none());
    assert_eq!(
        repo.find_user_by_external_id("crm", "C-1")
            .unwrap()
            .unwrap()
            .id,
        ann.id
    );
    assert_eq!(
        repo.find_user_by_external_id("erp", "42")
            .unwrap()
            .unwrap()
            .id,
        ann.id
    );
    assert!(repo
        .find_user_by_external_id("crm", "C-2")
        .unwrap()
        .is_none());

    let pro = UserFilter::from_json(&json!({"attributes.plan": "pro"})).unwrap();
    let found: Vec<_> = repo
        .find_users(&pro, 10)
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(found, [bob.id, cy.id]);
    assert_eq!(repo.find_users(&pro, 1).unwrap().len(), 1);
    let f =
        UserFilter::from_json(&json!({"email": "BOB@example.com", "status": "active"})).unwrap();
    assert_eq!(repo.find_users(&f, 10).unwrap()[0].id, bob.id);
    let f =
        UserFilter::from_json(&json!({"external_ids.crm": "C-1", "attributes.prefs.lang": "nl"}))
            .unwrap();
    assert_eq!(repo.find_users(&f, 10).unwrap()[0].id, ann.id);
    let f = UserFilter::from_json(&json!({"status": "suspended"})).unwrap();
    assert!(repo.find_users(&f, 10).unwrap().is_empty());

    // Merge patch: nested attributes merge, null removes.
    let upd = repo
        .update_user(
            ann.id,
            &json!({"attributes": {"plan": "pro", "prefs": null}, "status": "suspended"}),
        )
        .unwrap();
    assert_eq!(upd.attributes, *json!({"plan": "pro"}).as_object().unwrap());
    assert_eq!(upd.status, UserStatus::Suspended);
    assert_eq!(repo.get_user(ann.id).unwrap().unwrap(), upd);
    // Unchanged patch: no event.
    repo.update_user(ann.id, &json!({"attributes": {"plan": "pro"}}))
        .unwrap();
    let e = repo
        .update_user(ann.id, &json!({"email": "BOB@EXAMPLE.COM"}))
        .unwrap_err();
    assert!(matches!(e, flowgate_core::Error::Conflict(_)), "{e:?}");
    assert!(matches!(
        repo.update_user(UserId::new(), &json!({})),
        Err(flowgate_core::Error::NotFound(_))
    ));
    assert!(matches!(
        repo.set_user_status(UserId::new(), UserStatus::Active),
        Err(flowgate_core::Error::NotFound(_))
    ));
    repo.update_user(ann.id, &json!({"external_ids": {"crm": "C-9"}}))
        .unwrap();
    assert!(repo
        .find_user_by_external_id("crm", "C-1")
        .unwrap()
        .is_none());
    assert_eq!(
        repo.find_user_by_external_id("crm", "C-9")
            .unwrap()
            .unwrap()
            .id,
        ann.id
    );

    let st = repo.set_user_status(bob.id, UserStatus::Disabled).unwrap();
    assert_eq!(st.status, UserStatus::Disabled);
    repo.set_user_status(bob.id, UserStatus::Disabled).unwrap(); // no change, no event
    assert!(repo.delete_user(cy.id).unwrap());
    assert!(!repo.delete_user(cy.id).unwrap());
    assert!(repo.get_user(cy.id).unwrap().is_none());

    let evs = s.pending_events(100).unwrap();
    let kinds: Vec<_> = evs.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            types::USER_CREATED,
            types::USER_CREATED,
            types::USER_CREATED,
            types::USER_UPDATED,
            types::USER_STATUS_CHANGED,
            types::USER_UPDATED,
            types::USER_STATUS_CHANGED,
            types::USER_DELETED,
        ]
    );
    assert_eq!(evs[0].data["email"], "Ann@Example.com");
    assert_eq!(evs[3].data["changes"], json!(["status", "attributes"]));
    assert_eq!(evs[5].data["changes"], json!(["external_ids"]));
    assert_eq!(evs[6].data["previous_status"], "active");
    assert_eq!(evs[7].data["id"], cy.id.to_string());
    assert!(evs.iter().all(|e| e.source == "flowgate"));

    let p = s.list_users(None, 1).unwrap();
    assert_eq!(p.items.len(), 1);
    let p2 = s.list_users(p.next_cursor.as_deref(), 10).unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_eq!(p2.next_cursor, None);
}

fn users_unique_email_ignores_case(db: &Db) {
    let s = &db.store;
    s.create_user(new_user("Dana@Example.com", json!({})))
        .unwrap();
    let e = s
        .create_user(new_user("dana@EXAMPLE.COM", json!({})))
        .unwrap_err();
    assert!(e.is_conflict(), "{e:?}");
    let e = UserRepo::create_user(s, new_user("DANA@example.com", json!({}))).unwrap_err();
    assert!(matches!(e, flowgate_core::Error::Conflict(_)));
    assert!(matches!(
        s.create_user(NewUser {
            email: "bad".into(),
            ..Default::default()
        }),
        Err(StoreError::Invalid(_))
    ));
    // The failed inserts left no events behind.
    assert_eq!(s.pending_events(10).unwrap().len(), 1);
}

// ---------------------------------------------------------------- keys & secrets

fn api_keys(db: &Db) {
    let s = &db.store;
    let k = ApiKeyRecord {
        id: KeyId::new().to_string(),
        name: "ci".into(),
        hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        scopes: vec!["flows:read".into(), "admin".into()],
        created_at: now_ms(),
        expires_at: Some(now_ms() + 1000),
        last_used_at: None,
        revoked: false,
    };
    s.insert_key(&k).unwrap();
    assert!(s.insert_key(&k).unwrap_err().is_conflict());
    assert_eq!(s.get_key(&k.id).unwrap().unwrap(), k);
    assert!(s.touch_last_used(&k.id, 1234).unwrap());
    assert!(s.revoke_key(&k.id).unwrap());
    assert!(!s.revoke_key(&KeyId::new().to_string()).unwrap());
    let got = s.get_key(&k.id).unwrap().unwrap();
    assert!(got.revoked);
    assert_eq!(got.last_used_at, Some(1234));
    assert_eq!(s.list_keys().unwrap().len(), 1);
    assert!(s.get_key(&KeyId::new().to_string()).unwrap().is_none());
}

#[derive(QueryableByName)]
struct RawSecret {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    nonce: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    ciphertext: String,
}

fn raw_secrets(db: &Db) -> Vec<RawSecret> {
    let q = diesel::sql_query("SELECT name, nonce, ciphertext FROM secrets");
    match db.store.backend() {
        Backend::Sqlite => {
            let path = db.url.strip_prefix("sqlite://").unwrap();
            q.load(&mut SqliteConnection::establish(path).unwrap())
                .unwrap()
        }
        Backend::Postgres => q
            .load(&mut PgConnection::establish(&db.url).unwrap())
            .unwrap(),
    }
}

fn secrets_encrypted(db: &Db) {
    let s = &db.store;
    let plain = "sk_live_very-secret-value-1234";
    s.put_secret("PAYMENTS_KEY", &SecretString::new(plain))
        .unwrap();
    s.put_secret("OTHER", &SecretString::new(plain)).unwrap();
    assert_eq!(
        s.secret_get("PAYMENTS_KEY").unwrap().unwrap().expose(),
        plain
    );
    assert!(s.secret_get("MISSING").unwrap().is_none());
    assert!(matches!(
        s.put_secret("bad name", &SecretString::new("x")),
        Err(StoreError::Invalid(_))
    ));

    let raw = raw_secrets(db);
    assert_eq!(raw.len(), 2);
    let hex_plain = hex::encode(plain);
    for r in &raw {
        assert!(!r.ciphertext.contains(plain) && !r.ciphertext.contains(&hex_plain));
        assert!(!r.nonce.contains(plain));
    }
    assert_ne!(raw[0].nonce, raw[1].nonce, "fresh nonce per write");
    assert_ne!(raw[0].ciphertext, raw[1].ciphertext);
    assert!(raw.iter().any(|r| r.name == "OTHER"));

    // Overwrite re-encrypts with a new nonce.
    let before = raw
        .iter()
        .find(|r| r.name == "OTHER")
        .unwrap()
        .nonce
        .clone();
    s.put_secret("OTHER", &SecretString::new("v2")).unwrap();
    assert_eq!(s.get_secret("OTHER").unwrap().unwrap().expose(), "v2");
    let after = raw_secrets(db)
        .into_iter()
        .find(|r| r.name == "OTHER")
        .unwrap()
        .nonce;
    assert_ne!(before, after);

    let names: Vec<_> = s
        .list_secrets()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["OTHER", "PAYMENTS_KEY"]);
    // Another key cannot read them.
    let wrong = Store::open(&db.url, [9u8; 32]).unwrap();
    assert!(wrong.get_secret("OTHER").is_err());
    assert!(s.delete_secret("OTHER").unwrap());
    assert!(!s.delete_secret("OTHER").unwrap());
    assert!(s.get_secret("OTHER").unwrap().is_none());
}

// ---------------------------------------------------------------- kv

fn kv_ttl(db: &Db) {
    let s = &db.store;
    let (a, b) = (flow("a"), flow("b"));
    s.kv_set(&a, "cursor", &json!({"page": 3}), None).unwrap();
    assert_eq!(s.kv_get(&a, "cursor").unwrap(), Some(json!({"page": 3})));
    assert_eq!(s.kv_get(&b, "cursor").unwrap(), None, "scoped per flow");
    s.kv_set(&a, "cursor", &json!(4), Some(3600)).unwrap();
    assert_eq!(s.kv_get(&a, "cursor").unwrap(), Some(json!(4)));

    let now = now_ms();
    s.kv_put(&a, "token", &json!("t"), Some(now + 10_000))
        .unwrap();
    assert_eq!(
        s.kv_get_at(&a, "token", now + 9_999).unwrap(),
        Some(json!("t"))
    );
    assert_eq!(
        s.kv_get_at(&a, "token", now + 10_000).unwrap(),
        None,
        "expired = absent"
    );
    s.kv_put(&a, "old", &json!(1), Some(now - 1)).unwrap();
    assert_eq!(s.kv_get(&a, "old").unwrap(), None);
    assert!(
        !s.kv_delete(&a, "old").unwrap(),
        "an expired key does not count as deleted"
    );
    s.kv_put(&b, "old", &json!(1), Some(now - 1)).unwrap();
    assert_eq!(s.purge_expired_kv(now).unwrap(), 1);
    assert!(s.kv_delete(&a, "cursor").unwrap());
    assert!(!s.kv_delete(&a, "cursor").unwrap());
    assert!(matches!(
        s.kv_put(&a, "", &json!(1), None),
        Err(StoreError::Invalid(_))
    ));
}

// ---------------------------------------------------------------- events

fn events_dedup_and_outbox(db: &Db) {
    let s = &db.store;
    let e1 = Event::new("order.paid", "shop", json!({"order": 1}));
    assert_eq!(s.insert_event(&e1, Some("evt-1")).unwrap(), (e1.id, true));
    let again = Event::new("order.paid", "shop", json!({"order": 1}));
    assert_eq!(
        s.insert_event(&again, Some("evt-1")).unwrap(),
        (e1.id, false)
    );
    let other_source = Event::new("order.paid", "crm", json!({}));
    assert_eq!(
        s.insert_event(&other_source, Some("evt-1")).unwrap(),
        (other_source.id, true)
    );
    let no_ext = Event::new("x.y", "shop", json!(null));
    assert!(s.insert_event(&no_ext, None).unwrap().1);
    assert!(s.get_event(again.id).unwrap().is_none());
    assert_eq!(s.get_event(e1.id).unwrap().unwrap(), e1);

    let pending: Vec<EventId> = s.pending_events(10).unwrap().iter().map(|e| e.id).collect();
    assert_eq!(pending, [e1.id, other_source.id, no_ext.id]);
    assert!(s.mark_event_dispatched(no_ext.id).unwrap());
    assert!(!s.mark_event_dispatched(no_ext.id).unwrap());

    let run = Run {
        event_id: Some(e1.id),
        ..Run::queued(
            flow("sub"),
            1,
            TriggerKind::Event,
            e1.to_json(),
            5,
            now_ms(),
        )
    };
    assert!(s.dispatch_event(e1.id, std::slice::from_ref(&run)).unwrap());
    let dup = Run::queued(flow("sub"), 1, TriggerKind::Event, json!({}), 5, now_ms());
    assert!(
        !s.dispatch_event(e1.id, std::slice::from_ref(&dup)).unwrap(),
        "fanned out once"
    );
    assert!(s.get_run(dup.id).unwrap().is_none());
    assert_eq!(
        s.get_run(run.id).unwrap().unwrap().run.event_id,
        Some(e1.id)
    );
    let pending: Vec<EventId> = s.pending_events(10).unwrap().iter().map(|e| e.id).collect();
    assert_eq!(pending, [other_source.id]);
}

// ---------------------------------------------------------------- idempotency

fn idempotency_sequence(db: &Db) {
    let s = &db.store;
    let now = now_ms();
    let day = 86_400_000;
    assert_eq!(
        s.begin_idempotent("k:f:1", "h1", now, day).unwrap(),
        IdempotencyBegin::Started
    );
    assert_eq!(
        s.begin_idempotent("k:f:1", "h1", now, day).unwrap(),
        IdempotencyBegin::InFlight
    );
    assert_eq!(
        s.begin_idempotent("k:f:1", "h2", now, day).unwrap(),
        IdempotencyBegin::Mismatch
    );
    let resp = json!({"status": 201, "headers": {}, "body": {"id": 7}});
    assert!(s.complete_idempotent("k:f:1", &resp).unwrap());
    assert_eq!(
        s.begin_idempotent("k:f:1", "h1", now + 1, day).unwrap(),
        IdempotencyBegin::Done(resp)
    );
    assert!(
        !s.abandon_idempotent("k:f:1").unwrap(),
        "done records are kept"
    );
    // Expired: replaced by a new start.
    assert_eq!(
        s.begin_idempotent("k:f:1", "h2", now + day, day).unwrap(),
        IdempotencyBegin::Started
    );
    // Abandon lets a retry start.
    assert_eq!(
        s.begin_idempotent("k:f:2", "h", now, day).unwrap(),
        IdempotencyBegin::Started
    );
    assert!(s.abandon_idempotent("k:f:2").unwrap());
    assert_eq!(
        s.begin_idempotent("k:f:2", "h", now, day).unwrap(),
        IdempotencyBegin::Started
    );
    assert_eq!(s.purge_idempotency(now + 3 * day).unwrap(), 2);
}

fn idempotency_concurrent_begin(db: &Db) {
    let now = now_ms();
    for round in 0..10 {
        let key = format!("caller:flow:{round}");
        let barrier = Arc::new(Barrier::new(2));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (s, b, k) = (db.second(), barrier.clone(), key.clone());
                std::thread::spawn(move || {
                    b.wait();
                    s.begin_idempotent(&k, "h", now, 60_000).unwrap()
                })
            })
            .collect();
        let res: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        let started = res
            .iter()
            .filter(|r| **r == IdempotencyBegin::Started)
            .count();
        assert_eq!(started, 1, "round {round}: {res:?}");
        assert!(res.contains(&IdempotencyBegin::InFlight));
    }
}

// ---------------------------------------------------------------- ticks

fn ticks_once_across_nodes(db: &Db) {
    let f = flow("cron");
    let due = 1_700_000_000_000;
    for round in 0..5 {
        let barrier = Arc::new(Barrier::new(2));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (s, b, f) = (db.second(), barrier.clone(), f.clone());
                std::thread::spawn(move || {
                    let run = Run {
                        scheduled_at: Some(due + round),
                        ..Run::queued(f.clone(), 1, TriggerKind::Schedule, json!({}), 3, now_ms())
                    };
                    let tick = Tick {
                        flow: f,
                        due_at: due + round,
                        state: TickState::Dispatched,
                        run_id: Some(run.id),
                        created_at: now_ms(),
                        node: Some("node-a".into()),
                    };
                    b.wait();
                    s.insert_tick(&tick, Some(&run)).unwrap()
                })
            })
            .collect();
        let wins = hs
            .into_iter()
            .filter(|_| true)
            .map(|h| h.join().unwrap())
            .filter(|w| *w)
            .count();
        assert_eq!(wins, 1, "round {round}");
    }
    // Exactly one queued run per due time.
    let runs = db
        .store
        .list_runs(
            &RunFilter {
                flow: Some(f.clone()),
                status: None,
            },
            None,
            100,
        )
        .unwrap();
    assert_eq!(runs.items.len(), 5);
    let skip = Tick {
        flow: f.clone(),
        due_at: due + 10,
        state: TickState::SkippedOverlap,
        run_id: None,
        created_at: now_ms(),
        node: None,
    };
    assert!(db.store.insert_tick(&skip, None).unwrap());
    let ticks = db.store.list_ticks(&f, 3).unwrap();
    assert_eq!(ticks.len(), 3);
    assert_eq!(ticks[0], skip);
    assert_eq!(
        db.store.latest_tick(&f).unwrap().unwrap().state,
        TickState::SkippedOverlap
    );
    assert!(db.store.latest_tick(&flow("none")).unwrap().is_none());
}

// ---------------------------------------------------------------- audit

fn audit_entry(i: i64) -> AuditEntry {
    AuditEntry {
        time: 1_000 + i,
        request_id: format!("req-{i}"),
        caller: Some(if i % 2 == 0 {
            "key:a".into()
        } else {
            "key:b".into()
        }),
        flow: (i % 3 == 0).then(|| "billing".to_string()),
        version: (i % 3 == 0).then_some(2),
        method: "POST".into(),
        path: "/flows/billing".into(),
        status: if i % 10 == 0 { 429 } else { 200 },
        duration_ms: i,
        idempotency_key: None,
    }
}

fn audit_batch_and_query(db: &Db) {
    let s = &db.store;
    let entries: Vec<_> = (0..250).map(audit_entry).collect();
    s.append_audit(&entries).unwrap();
    s.append_audit(&[]).unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let p = s
            .query_audit(&AuditFilter::default(), cursor.as_deref(), 100)
            .unwrap();
        seen.extend(p.items);
        cursor = p.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 250);
    let mut expected = entries.clone();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, nothing lost or repeated");

    let q = |f: AuditFilter| s.query_audit(&f, None, 1000).unwrap().items;
    assert_eq!(
        q(AuditFilter {
            flow: Some("billing".into()),
            ..Default::default()
        })
        .len(),
        84
    );
    assert_eq!(
        q(AuditFilter {
            caller: Some("key:a".into()),
            ..Default::default()
        })
        .len(),
        125
    );
    assert_eq!(
        q(AuditFilter {
            status: Some(429),
            ..Default::default()
        })
        .len(),
        25
    );
    let w = q(AuditFilter {
        since: Some(1_010),
        until: Some(1_020),
        ..Default::default()
    });
    assert_eq!(w.len(), 10);
    assert_eq!(w[0].request_id, "req-19");
    assert!(matches!(
        s.query_audit(&AuditFilter::default(), Some("nope"), 1),
        Err(StoreError::Invalid(_))
    ));
}

// ---------------------------------------------------------------- opening

#[test]
fn memory_store_and_bad_urls() {
    for url in ["sqlite::memory:", "sqlite://:memory:"] {
        let s = Store::open_and_migrate(url, KEY).unwrap();
        s.create_flow(&flow("m")).unwrap();
        assert!(
            s.get_flow(&flow("m")).unwrap().is_some(),
            "{url}: one database for the pool"
        );
        assert_eq!(s.migrate().unwrap(), 0);
    }
    assert!(matches!(
        Store::open("mysql://x", KEY),
        Err(StoreError::Invalid(_))
    ));
    let t = Instant::now();
    let e = Store::open("postgres://flowgate:pw@127.0.0.1:1/db", KEY).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(!e.to_string().contains("pw@"), "password redacted: {e}");
    assert!(t.elapsed() < Duration::from_secs(7), "fails fast");
}

#[test]
fn migrate_is_idempotent_and_ping_works() {
    let db = sqlite_db();
    assert_eq!(db.store.migrate().unwrap(), 0);
    db.store.ping().unwrap();
    if let Some(pg) = pg_db() {
        assert_eq!(pg.store.migrate().unwrap(), 0);
        pg.store.ping().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_runs_off_the_async_workers() {
    let db = sqlite_db();
    let f = flow("async");
    let got = db
        .store
        .call(move |s| {
            s.create_flow(&f)?;
            s.get_flow(&f)
        })
        .await
        .unwrap();
    assert_eq!(got.unwrap().name.as_str(), "async");
    let e = db
        .store
        .call(|s| s.create_flow(&flow("async")))
        .await
        .unwrap_err();
    assert!(e.is_conflict());
}

// ---------------------------------------------------------------- retention

fn retention_purges_only_old_finished_work(db: &Db) {
    let s = &db.store;
    let old = now_ms() - 40 * 86_400_000;
    let mut outcome = ok_outcome(vec![]);
    outcome.finished_at = old;
    let mut ancient = Run::finished(flow("r"), 1, TriggerKind::Http, json!({}), old, &outcome);
    // A run's id is made when it starts (a UUIDv7 of that time).
    ancient.id =
        RunId(uuid::Builder::from_unix_timestamp_millis(old as u64 - 1, &[7; 10]).into_uuid());
    s.insert_run(&ancient, &[line("old")], &[]).unwrap();
    let recent = Run::finished(
        flow("r"),
        1,
        TriggerKind::Http,
        json!({}),
        now_ms(),
        &ok_outcome(vec![]),
    );
    s.insert_run(&recent, &[line("new")], &[]).unwrap();
    let mut waiting = queued("r", old, 3);
    waiting.created_at = old;
    s.enqueue(&waiting).unwrap();
    s.append_audit(&[
        AuditEntry {
            time: old,
            request_id: "a".into(),
            caller: None,
            flow: None,
            version: None,
            method: "GET".into(),
            path: "/x".into(),
            status: 200,
            duration_ms: 1,
            idempotency_key: None,
        },
        AuditEntry {
            time: now_ms(),
            request_id: "b".into(),
            caller: None,
            flow: None,
            version: None,
            method: "GET".into(),
            path: "/y".into(),
            status: 200,
            duration_ms: 1,
            idempotency_key: None,
        },
    ])
    .unwrap();
    let cutoff = now_ms() - 30 * 86_400_000;
    assert_eq!(s.purge_finished_runs(cutoff, 100).unwrap(), 1);
    assert!(s.get_run(ancient.id).unwrap().is_none());
    assert!(s.get_run(recent.id).unwrap().is_some());
    // A queued run is never purged, however old.
    assert!(s.get_run(waiting.id).unwrap().is_some());
    assert_eq!(s.purge_finished_runs(cutoff, 100).unwrap(), 0);
    assert_eq!(s.purge_audit(cutoff, 100).unwrap(), 1);
    let left = s.query_audit(&AuditFilter::default(), None, 100).unwrap();
    assert_eq!(left.items.len(), 1);
    assert_eq!(left.items[0].request_id, "b");
    // Pending events stay; dispatched old ones go.
    let pending = Event::new("a.b", "t", json!({}));
    s.insert_event(&pending, None).unwrap();
    assert_eq!(s.purge_dispatched_events(now_ms() + 1000, 100).unwrap(), 0);
    assert!(s.dispatch_event(pending.id, &[]).unwrap());
    assert_eq!(s.purge_dispatched_events(now_ms() + 1000, 100).unwrap(), 1);
    assert!(s.get_event(pending.id).unwrap().is_none());
}

// ---------------------------------------------------------------- console

fn console_sessions_bounded_ended_and_shared(db: &Db) {
    let s = &db.store;
    let key = ApiKeyRecord {
        id: KeyId::new().to_string(),
        name: "ann".into(),
        hash: "h".into(),
        scopes: vec!["flows:read".into()],
        created_at: now_ms(),
        expires_at: None,
        last_used_at: None,
        revoked: false,
    };
    s.insert_key(&key).unwrap();
    let t0 = now_ms();
    let session = |i: i64| ConsoleSession {
        id_hash: format!("hash-{i}"),
        key_id: key.id.clone(),
        csrf_token: format!("csrf-{i}"),
        created_at: t0 + i,
        last_seen_at: t0 + i,
        expires_at: t0 + i + 1_000,
    };
    for i in 0..4 {
        s.insert_console_session(&session(i), 3).unwrap();
    }
    // At most 3 per key: the oldest went.
    assert!(s.get_console_session("hash-0").unwrap().is_none());
    let (got, k) = s.get_console_session("hash-3").unwrap().unwrap();
    assert_eq!(got, session(3));
    assert_eq!(k.unwrap().name, "ann");
    // Another node on the same database sees it.
    assert!(db.second().get_console_session("hash-2").unwrap().is_some());
    s.touch_console_session("hash-3", t0 + 500).unwrap();
    assert_eq!(
        s.get_console_session("hash-3")
            .unwrap()
            .unwrap()
            .0
            .last_seen_at,
        t0 + 500
    );
    assert!(s.delete_console_session("hash-3").unwrap());
    assert!(!s.delete_console_session("hash-3").unwrap());
    // Idle since before t0 + 2: hash-1 goes; hash-2 stays.
    assert_eq!(s.purge_console_sessions(t0, t0 + 2).unwrap(), 1);
    assert!(s.get_console_session("hash-2").unwrap().is_some());
    // Past their absolute end.
    assert_eq!(s.purge_console_sessions(t0 + 10_000, 0).unwrap(), 1);
    s.insert_console_session(&session(7), 3).unwrap();
    assert_eq!(s.delete_console_sessions_of_key(&key.id).unwrap(), 1);
    assert!(s.get_console_session("hash-7").unwrap().is_none());
}

fn run_http_calls_are_kept(db: &Db) {
    let s = &db.store;
    let calls = json!([{"method": "GET", "url": "https://a.example/x?q=[redacted]", "status": 200, "duration_ms": 3, "response_body": {"ok": true}, "error": null}]);
    let outcome = RunOutcome {
        http_calls: Some(calls.clone()),
        ..ok_outcome(vec![])
    };
    let run = Run::finished(
        flow("calls"),
        1,
        TriggerKind::Http,
        json!({}),
        now_ms(),
        &outcome,
    );
    s.insert_run(&run, &[], &[]).unwrap();
    assert_eq!(
        s.get_run(run.id).unwrap().unwrap().run.http_calls,
        Some(calls.clone())
    );
    // A queued run gets the calls of the attempt that ends it.
    let q = queued("calls", now_ms() - 1, 1);
    s.enqueue(&q).unwrap();
    assert_eq!(s.get_run(q.id).unwrap().unwrap().run.http_calls, None);
    let claimed = s.claim_next("w", 10_000, now_ms()).unwrap().unwrap();
    assert!(s.complete_run(claimed.id, "w", &outcome).unwrap());
    assert_eq!(
        s.get_run(q.id).unwrap().unwrap().run.http_calls,
        Some(calls)
    );
}

fn gone_nodes_release_their_leases(db: &Db) {
    let t0 = now_ms();
    assert_eq!(db.store.register_node("a", "1.0.0", t0).unwrap(), 0);
    assert_eq!(db.store.register_node("b", "1.0.0", t0).unwrap(), 0);
    let run = queued("leased", t0 - 1, 3);
    db.store.enqueue(&run).unwrap();
    let claimed = db.store.claim_next("a", 60_000, t0).unwrap().unwrap();
    assert_eq!((claimed.id, claimed.attempt), (run.id, 1));
    assert_eq!(
        db.store.leased_runs_by_node().unwrap(),
        vec![("a".to_owned(), 1)]
    );

    // `a` heartbeats within the bound: nothing is released.
    db.store
        .heartbeat_node("a", "1.0.0", t0 + 500, t0 - 2_000)
        .unwrap();
    assert_eq!(
        db.store
            .heartbeat_node("b", "1.0.0", t0 + 1_000, t0 - 2_000)
            .unwrap(),
        0
    );
    assert!(db
        .store
        .claim_next("b", 60_000, t0 + 1_000)
        .unwrap()
        .is_none());

    // `a` falls silent: `b`'s heartbeat past the bound releases its lease
    // long before the 60 s lease would end, and `b` claims the run again.
    let later = t0 + 5_000;
    assert_eq!(
        db.store
            .heartbeat_node("b", "1.0.0", later, later - 3_000)
            .unwrap(),
        1
    );
    let again = db.store.claim_next("b", 60_000, later).unwrap().unwrap();
    assert_eq!((again.id, again.attempt), (run.id, 2));
    assert_eq!(again.lease_owner.as_deref(), Some("b"));
    // Released once: the next heartbeat finds nothing more of `a`'s.
    assert_eq!(
        db.store
            .heartbeat_node("b", "1.0.0", later + 1_000, later - 2_000)
            .unwrap(),
        0
    );

    // An idempotent request that `a` started and never answered: while `a`
    // heartbeats a retry gets "in flight"; once `a` is gone, the next
    // heartbeat of another node releases it and the retry runs at once.
    db.store.set_owner("a");
    let begin = |at| {
        db.store
            .begin_idempotent("gone-key", "h", at, 600_000)
            .unwrap()
    };
    assert!(matches!(begin(later), IdempotencyBegin::Started));
    db.store
        .heartbeat_node("a", "1.0.0", later + 100, later - 2_000)
        .unwrap();
    db.store
        .heartbeat_node("b", "1.0.0", later + 200, later - 2_000)
        .unwrap();
    assert!(matches!(begin(later + 300), IdempotencyBegin::InFlight));
    let silent = later + 10_000;
    db.store
        .heartbeat_node("b", "1.0.0", silent, silent - 3_000)
        .unwrap();
    assert!(matches!(begin(silent + 1), IdempotencyBegin::Started));

    let nodes = db.store.list_nodes().unwrap();
    let ids: Vec<_> = nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(nodes[1].last_heartbeat, silent);
    assert_eq!(nodes[0].stopped_at, None);

    // A process restarting under `b`'s id holds nothing: `b`'s leases go back at once.
    assert_eq!(
        db.store.register_node("b", "1.0.1", later + 2_000).unwrap(),
        1
    );
    let nodes = db.store.list_nodes().unwrap();
    assert_eq!(nodes[1].version, "1.0.1");
    assert_eq!(nodes[1].started_at, later + 2_000);

    db.store.stop_node("a", later).unwrap();
    assert_eq!(db.store.list_nodes().unwrap()[0].stopped_at, Some(later));
    assert_eq!(db.store.prune_nodes(later + 1_000).unwrap(), 1);
    assert_eq!(db.store.list_nodes().unwrap().len(), 1);
}

#[derive(QueryableByName)]
struct Terminated {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    done: bool,
}

fn change_notices_reach_every_listener(db: &Db) {
    let (tx, rx) = std::sync::mpsc::channel();
    let app = format!("listener-{}", uuid::Uuid::new_v4().simple());
    let listener = db.second().listen_changes(
        ListenOptions {
            name: app.clone(),
            poll: Duration::from_millis(10),
            check_every: Duration::from_millis(200),
        },
        move |c| {
            let _ = tx.send(c);
        },
    );
    let Some(listener) = listener else {
        // SQLite: one node, nothing to listen to.
        assert_eq!(db.store.backend(), Backend::Sqlite);
        return;
    };
    let wait_for = |want: &dyn Fn(&Change) -> bool, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(c) if want(&c) => return,
                Ok(_) => {}
                Err(_) => panic!("no {what} notice"),
            }
        }
    };
    // The sequence moving without a notice (a missed notification) is
    // reported as `All` by the periodic check. Repeated: the listener may
    // still be connecting (it then starts from the moved sequence).
    let mut c = PgConnection::establish(&db.url).unwrap();
    let fallback = (0..10).any(|_| {
        c.batch_execute("UPDATE cluster_changes SET seq = seq + 1")
            .unwrap();
        rx.recv_timeout(Duration::from_secs(1)) == Ok(Change::All)
    });
    assert!(fallback, "no fallback notice");

    let f = flow("notified");
    db.store.create_flow(&f).unwrap();
    let v = db.store.insert_version(&f, &files(1), "sha").unwrap();
    db.store.publish_version(&f, v.version).unwrap();
    wait_for(&|c| *c == Change::Flow("notified".into()), "publish");
    db.store.set_flow_disabled(&f, true).unwrap();
    wait_for(&|c| *c == Change::Flow("notified".into()), "disable");
    db.store
        .put_secret("TOKEN", &SecretString::new("x"))
        .unwrap();
    wait_for(&|c| *c == Change::Secret("TOKEN".into()), "secret");
    // A refused change (retired version cannot be published) notifies nobody:
    // the notice is sent by the commit. A later change still arrives in order.
    db.store.retire_version(&f, v.version).unwrap();
    wait_for(&|c| *c == Change::Flow("notified".into()), "retire");
    assert!(db.store.publish_version(&f, v.version).is_err());
    assert!(db.store.delete_secret("TOKEN").unwrap());
    let next = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(next, Change::Secret("TOKEN".into()));

    // The listening connection dies: the listener reconnects, and a change
    // made meanwhile arrives as its notice or, if missed, as `All`.
    let killed: Vec<bool> = diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity WHERE application_name = '{app}'"
    ))
    .load::<Terminated>(&mut c)
    .unwrap()
    .into_iter()
    .map(|t| t.done)
    .collect();
    assert_eq!(killed, [true]);
    db.store.set_flow_disabled(&f, false).unwrap();
    wait_for(
        &|c| matches!(c, Change::All) || *c == Change::Flow("notified".into()),
        "after reconnect",
    );
    // Once reconnected, notices flow again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let reconnected = loop {
        db.store
            .put_secret("AGAIN", &SecretString::new("y"))
            .unwrap();
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(Change::Secret(n)) if n == "AGAIN" => break true,
            _ if Instant::now() > deadline => break false,
            _ => {}
        }
    };
    assert!(reconnected, "no notice after the listener reconnected");
    drop(listener);
}
