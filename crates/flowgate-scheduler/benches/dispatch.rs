//! Scheduler throughput: next-fire computation and planning 10,000 schedules.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use flowgate_core::manifest::{Misfire, Overlap};
use flowgate_scheduler::{plan, CronSpec, ScheduleEntry};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const EXPRS: &[(&str, &str)] = &[
    ("*/15 * * * * *", "UTC"),
    ("30 2 * * *", "Europe/Amsterdam"),
    ("0 9 * * 1-5", "America/New_York"),
    ("*/5 * * * *", "Europe/Amsterdam"),
    ("0 0 L * *", "UTC"),
    ("15 3 29 2 *", "Asia/Kolkata"),
];

fn next_fire(c: &mut Criterion) {
    let mut g = c.benchmark_group("next_after");
    g.throughput(Throughput::Elements(1));
    let t = utc("2026-05-01T10:00:07.250Z");
    for (expr, tz) in EXPRS {
        let spec = CronSpec::parse(expr, tz).unwrap();
        g.bench_function(format!("{expr} {tz}"), |b| {
            b.iter(|| black_box(spec.next_after(black_box(t))))
        });
    }
    // Worst cases: an interval job inside the first half of a fold, a gap day.
    let every_second = CronSpec::parse("* * * * * *", "Europe/Amsterdam").unwrap();
    let in_fold = utc("2026-10-25T00:30:00Z");
    g.bench_function("every second, first half of fold", |b| {
        b.iter(|| black_box(every_second.next_after(black_box(in_fold))))
    });
    let fixed = CronSpec::parse("30 2 * * *", "Europe/Amsterdam").unwrap();
    let before_gap = utc("2026-03-28T12:00:00Z");
    g.bench_function("02:30 daily across the gap", |b| {
        b.iter(|| black_box(fixed.next_after(black_box(before_gap))))
    });
    g.finish();

    c.bench_function("parse", |b| {
        b.iter(|| {
            black_box(CronSpec::parse(
                black_box("0 */15 8-18 * * MON-FRI"),
                "Europe/Amsterdam",
            ))
        })
    });
}

fn entries(n: usize) -> Vec<ScheduleEntry> {
    (0..n)
        .map(|i| {
            let (expr, tz) = EXPRS[i % EXPRS.len()];
            ScheduleEntry {
                flow: format!("flow-{i}"),
                version: 1,
                spec: CronSpec::parse(expr, tz).unwrap(),
                overlap: Overlap::Skip,
                misfire: if i % 2 == 0 {
                    Misfire::Skip
                } else {
                    Misfire::RunOnce
                },
            }
        })
        .collect()
}

fn planning(c: &mut Criterion) {
    let list = entries(10_000);
    let now = utc("2026-05-01T10:00:00.300Z");
    let mut g = c.benchmark_group("plan");
    g.throughput(Throughput::Elements(list.len() as u64));
    g.sample_size(20);
    // Steady state: each schedule last ticked a second ago.
    let recent = (now - TimeDelta::seconds(1)).timestamp_millis();
    g.bench_function("10k schedules, steady", |b| {
        b.iter(|| {
            let mut n = 0;
            for e in &list {
                n += plan(e, Some(recent), now).len();
            }
            black_box(n)
        })
    });
    // Catch-up after an hour of downtime (misfire records bounded at 100 each).
    let hour_ago = (now - TimeDelta::hours(1)).timestamp_millis();
    g.bench_function("10k schedules, after 1 h downtime", |b| {
        b.iter(|| {
            let mut n = 0;
            for e in &list {
                n += plan(e, Some(hour_ago), now).len();
            }
            black_box(n)
        })
    });
    // The loop's per-wake-up cost: next due time of every schedule into a heap.
    g.bench_function("10k schedules, build wake-up heap", |b| {
        b.iter_batched(
            std::collections::BinaryHeap::new,
            |mut heap| {
                for (i, e) in list.iter().enumerate() {
                    if let Some(t) = e.spec.next_after(now) {
                        heap.push(std::cmp::Reverse((t.timestamp_millis(), i)));
                    }
                }
                black_box(heap.len())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, next_fire, planning);
criterion_main!(benches);
