//! 10,000 schedules on one node, through the real [`Scheduler`] loop with an
//! in-memory tick table and dispatcher (no database: this measures the loop).
//!
//! * Dispatch lag (dispatch call − due time), p50 / p99 / max, against one
//!   schedule as the baseline (the timer's own lag), for two loads run ~5 s each: all 10,000 on `* * * * * *` (a burst of 10,000 per second)
//!   and 10,000 per-minute schedules spread over the 60 seconds.
//! * CPU used while idle between ticks: 10,000 daily schedules (none due in the
//!   window) against an empty scheduler and against no scheduler, over the same
//!   window, from the process's CPU time (`/proc/self/task/*/schedstat`, ns).
//!
//! Run: `cargo bench -p flowgate-scheduler --bench scale`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use flowgate_core::manifest::{Misfire, Overlap};
use flowgate_scheduler::{CronSpec, Dispatcher, ScheduleEntry, Scheduler, TickState, TickStore};
use tokio::sync::watch;

const N: usize = 10_000;

/// The `(flow, due_at)` unique key, in memory.
#[derive(Default)]
struct MemTicks {
    rows: Mutex<HashSet<(String, i64)>>,
}

impl TickStore for MemTicks {
    fn insert_tick(
        &self,
        flow: &str,
        due_at_ms: i64,
        _state: TickState,
        _run_id: Option<String>,
    ) -> flowgate_core::Result<bool> {
        Ok(self
            .rows
            .lock()
            .unwrap()
            .insert((flow.to_owned(), due_at_ms)))
    }

    fn latest_tick(&self, _flow: &str) -> flowgate_core::Result<Option<i64>> {
        Ok(None)
    }

    fn attach_run(&self, _flow: &str, _due: i64, _run: &str) -> flowgate_core::Result<()> {
        Ok(())
    }
}

/// Records each dispatch's lag behind its due time.
#[derive(Default)]
struct LagRecorder {
    lags_us: Mutex<Vec<i64>>,
}

impl Dispatcher for LagRecorder {
    fn is_running(&self, _flow: &str) -> flowgate_core::Result<bool> {
        Ok(false)
    }

    fn dispatch(
        &self,
        _flow: &str,
        _version: i64,
        due_at_ms: i64,
    ) -> flowgate_core::Result<String> {
        let now_us = Utc::now().timestamp_micros();
        self.lags_us.lock().unwrap().push(now_us - due_at_ms * 1000);
        Ok(String::new())
    }
}

fn entries(n: usize, cron: impl Fn(usize) -> String) -> Vec<ScheduleEntry> {
    (0..n)
        .map(|i| ScheduleEntry {
            flow: format!("flow-{i}"),
            version: 1,
            spec: CronSpec::parse(&cron(i), "UTC").unwrap(),
            overlap: if i % 2 == 0 {
                Overlap::Skip
            } else {
                Overlap::Queue
            },
            misfire: Misfire::Skip,
        })
        .collect()
}

/// CPU time of this process's live threads, in ns.
fn cpu_ns() -> u64 {
    let mut total = 0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    dispatcher: Arc<LagRecorder>,
    _entries: watch::Sender<Arc<Vec<ScheduleEntry>>>,
}

fn start(list: Vec<ScheduleEntry>) -> Running {
    let store = Arc::new(MemTicks::default());
    let dispatcher = Arc::new(LagRecorder::default());
    let (etx, erx) = watch::channel(Arc::new(list));
    let (stx, srx) = watch::channel(false);
    let task = tokio::spawn(Scheduler::new(store, Arc::clone(&dispatcher)).run(erx, srx));
    Running {
        stop: stx,
        task,
        dispatcher,
        _entries: etx,
    }
}

async fn stop(r: Running) -> Vec<i64> {
    r.stop.send(true).unwrap();
    r.task.await.unwrap();
    let mut lags = r.dispatcher.lags_us.lock().unwrap().clone();
    lags.sort_unstable();
    lags
}

fn pct(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn lag_run(label: &str, list: Vec<ScheduleEntry>, secs: u64) -> (f64, f64) {
    let setup = Instant::now();
    let r = start(list);
    let cpu0 = cpu_ns();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = cpu_ns().saturating_sub(cpu0);
    let lags = stop(r).await;
    println!(
        "{label:<34} dispatches {:>6}  lag p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  CPU {:>6.1} ms/s ({:.2} µs/dispatch)  [{:.1} s]",
        lags.len(),
        pct(&lags, 0.50),
        pct(&lags, 0.99),
        lags.last().map_or(f64::NAN, |m| *m as f64 / 1000.0),
        cpu as f64 / 1e6 / secs as f64,
        if lags.is_empty() { f64::NAN } else { cpu as f64 / 1e3 / lags.len() as f64 },
        setup.elapsed().as_secs_f64(),
    );
    (pct(&lags, 0.50), pct(&lags, 0.99))
}

/// CPU (ms per second of wall time) over `secs` of idle, after 1.5 s to settle.
async fn idle_cpu(list: Option<Vec<ScheduleEntry>>, secs: u64) -> f64 {
    let r = list.map(start);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cpu0 = cpu_ns();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = cpu_ns().saturating_sub(cpu0);
    let wall = t0.elapsed().as_secs_f64();
    if let Some(r) = r {
        let lags = stop(r).await;
        assert!(
            lags.is_empty(),
            "a daily schedule fired during the idle window"
        );
    }
    cpu as f64 / 1e6 / wall
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("flowgate-scheduler scale bench: {N} schedules, 1 node, in-memory tick table");
        let base = lag_run(
            "baseline: 1 on `* * * * * *`",
            entries(1, |_| "* * * * * *".into()),
            5,
        )
        .await;
        let burst = lag_run(
            "burst: all on `* * * * * *`",
            entries(N, |_| "* * * * * *".into()),
            5,
        )
        .await;
        let spread = lag_run(
            "spread: per minute, 60 offsets",
            entries(N, |i| format!("{} * * * * *", i % 60)),
            5,
        )
        .await;
        for (label, (p50, p99)) in [("burst", burst), ("spread", spread)] {
            println!(
                "{label} vs baseline: p50 {:.1}x, p99 {:.1}x",
                p50 / base.0,
                p99 / base.1
            );
        }

        // Idle: daily schedules at hours away from now, so none is due.
        let hour = (Utc::now() + chrono::TimeDelta::hours(6)).format("%H").to_string();
        let daily = entries(N, |i| format!("{} {} {hour} * * *", i % 60, (i / 60) % 60));
        let secs = 5;
        let none = idle_cpu(None, secs).await;
        let empty = idle_cpu(Some(Vec::new()), secs).await;
        let full = idle_cpu(Some(daily), secs).await;
        println!(
            "idle CPU over {secs} s: no scheduler {none:.3} ms/s, empty scheduler {empty:.3} ms/s, \
             {N} daily schedules {full:.3} ms/s (extra vs empty: {:+.3} ms/s = {:.4}% of one core; ratio {:.2}x)",
            full - empty,
            (full - empty) / 10.0,
            if empty > 0.0 { full / empty } else { f64::NAN },
        );
    });
}
