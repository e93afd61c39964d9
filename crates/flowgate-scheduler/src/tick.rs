//! Ticks: what a schedule owes between its last recorded tick and now.
//!
//! Due times always come from the expression's fixed grid (never "now + period
//! after the last run"), so every node computes the same `(flow, due_at)` keys and
//! the store's unique constraint decides which node records (and dispatches) each.
//!
//! Misfires: a due time older than the grace (default [`DEFAULT_MISFIRE_GRACE`],
//! 5 s) when it is planned was missed — no node ran, or the loop was stalled (the
//! database was down). `misfire = "skip"` records each missed due time as
//! `skipped_misfire`; `misfire = "run_once"` dispatches the latest missed due time
//! and records the others as skipped. Only the newest
//! [`DEFAULT_MAX_MISFIRE_RECORDS`] (100) missed due times are recorded; older ones
//! are left out (the scheduler logs that it did so), which keeps a per-second
//! schedule after a week of downtime from writing 600,000 rows.
//!
//! A schedule with no recorded tick (new, or never fired) owes nothing: its first
//! tick is its next due time.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use flowgate_core::manifest::{Misfire, Overlap, ScheduleTrigger};

use crate::{CronSpec, Result};

/// Due times older than this when planned are misfires.
pub const DEFAULT_MISFIRE_GRACE: Duration = Duration::from_secs(5);
/// At most this many missed due times are recorded per plan.
pub const DEFAULT_MAX_MISFIRE_RECORDS: usize = 100;
/// At most this many on-time due times per plan (a per-second job within the grace).
const MAX_ON_TIME: usize = 64;

/// What happened to one due time. Stored as [`TickState::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TickState {
    /// A run was dispatched for it.
    Dispatched,
    /// `overlap = "skip"` and the previous run was still running.
    SkippedOverlap,
    /// Missed while no node ran; `misfire = "skip"` (or not the latest with `run_once`).
    SkippedMisfire,
}

impl TickState {
    /// Stored and API form: `dispatched`, `skipped_overlap`, `skipped_misfire`
    /// (snake_case, like the manifest's `run_once`).
    pub fn as_str(self) -> &'static str {
        match self {
            TickState::Dispatched => "dispatched",
            TickState::SkippedOverlap => "skipped_overlap",
            TickState::SkippedMisfire => "skipped_misfire",
        }
    }

    /// Inverse of [`TickState::as_str`].
    pub fn parse(s: &str) -> Option<TickState> {
        match s {
            "dispatched" => Some(TickState::Dispatched),
            "skipped_overlap" => Some(TickState::SkippedOverlap),
            "skipped_misfire" => Some(TickState::SkippedMisfire),
            _ => None,
        }
    }
}

impl std::fmt::Display for TickState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scheduled flow: its live version and its schedule trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleEntry {
    /// Flow name.
    pub flow: String,
    /// The live version, dispatched for each due time.
    pub version: i64,
    /// When it fires.
    pub spec: CronSpec,
    /// What to do while the previous run still runs.
    pub overlap: Overlap,
    /// What to do with due times missed while no node ran.
    pub misfire: Misfire,
}

impl ScheduleEntry {
    /// Builds an entry from a manifest's schedule trigger.
    pub fn from_trigger(flow: &str, version: i64, t: &ScheduleTrigger) -> Result<ScheduleEntry> {
        Ok(ScheduleEntry {
            flow: flow.to_string(),
            version,
            spec: CronSpec::from_trigger(t)?,
            overlap: t.overlap,
            misfire: t.misfire,
        })
    }
}

/// One due time to record. A `Dispatched` tick becomes `SkippedOverlap` at
/// execution time when `overlap = "skip"` and the flow is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedTick {
    /// The due time on the schedule's grid.
    pub due_at: DateTime<Utc>,
    /// Intended state.
    pub state: TickState,
}

impl PlannedTick {
    /// The due time as epoch milliseconds (the store's key).
    pub fn due_at_ms(&self) -> i64 {
        self.due_at.timestamp_millis()
    }
}

/// Knobs of [`plan_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Due times older than this are misfires.
    pub misfire_grace: Duration,
    /// Most missed due times recorded per plan.
    pub max_misfire_records: usize,
}

impl Default for PlanLimits {
    fn default() -> Self {
        PlanLimits {
            misfire_grace: DEFAULT_MISFIRE_GRACE,
            max_misfire_records: DEFAULT_MAX_MISFIRE_RECORDS,
        }
    }
}

/// [`plan_with`] with the default limits.
pub fn plan(entry: &ScheduleEntry, last_tick: Option<i64>, now: DateTime<Utc>) -> Vec<PlannedTick> {
    plan_with(entry, last_tick, now, &PlanLimits::default()).0
}

/// The ticks owed by `entry` in `(last_tick, now]`, ascending, and whether older
/// missed due times were left out. `last_tick` is the latest recorded due time
/// (epoch ms) of the flow; `None` means it owes nothing yet.
pub fn plan_with(
    entry: &ScheduleEntry,
    last_tick: Option<i64>,
    now: DateTime<Utc>,
    limits: &PlanLimits,
) -> (Vec<PlannedTick>, bool) {
    let Some(last_ms) = last_tick else {
        return (Vec::new(), false);
    };
    let Some(from) = DateTime::<Utc>::from_timestamp_millis(last_ms) else {
        return (Vec::new(), false);
    };
    if from >= now {
        return (Vec::new(), false);
    }
    let grace = TimeDelta::from_std(limits.misfire_grace).unwrap_or(TimeDelta::seconds(5));
    let edge = now - grace;
    let spec = &entry.spec;

    let mut out = Vec::new();
    let mut left_out = false;
    if from < edge {
        let (missed, older) = spec.latest_between(from, edge, limits.max_misfire_records);
        left_out = older;
        let last = missed.len().checked_sub(1);
        for (i, due_at) in missed.into_iter().enumerate() {
            let state = match entry.misfire {
                Misfire::RunOnce if Some(i) == last => TickState::Dispatched,
                _ => TickState::SkippedMisfire,
            };
            out.push(PlannedTick { due_at, state });
        }
        // `run_once` owes one run even when every missed time was left out.
        if left_out && out.is_empty() && entry.misfire == Misfire::RunOnce {
            if let Some(due_at) = spec.latest_between(from, edge, 1).0.pop() {
                out.push(PlannedTick {
                    due_at,
                    state: TickState::Dispatched,
                });
            }
        }
    }
    for due_at in spec.due_between(from.max(edge), now, MAX_ON_TIME) {
        out.push(PlannedTick {
            due_at,
            state: TickState::Dispatched,
        });
    }
    (out, left_out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn entry(cron: &str, misfire: Misfire) -> ScheduleEntry {
        ScheduleEntry {
            flow: "nightly".into(),
            version: 3,
            spec: CronSpec::parse(cron, "UTC").unwrap(),
            overlap: Overlap::Skip,
            misfire,
        }
    }

    fn ms(s: &str) -> i64 {
        utc(s).timestamp_millis()
    }

    fn summary(v: &[PlannedTick]) -> Vec<(String, &'static str)> {
        v.iter()
            .map(|t| (t.due_at.format("%H:%M:%S").to_string(), t.state.as_str()))
            .collect()
    }

    #[test]
    fn tick_state_strings_round_trip() {
        for s in [
            TickState::Dispatched,
            TickState::SkippedOverlap,
            TickState::SkippedMisfire,
        ] {
            assert_eq!(TickState::parse(s.as_str()), Some(s));
        }
        assert_eq!(TickState::SkippedOverlap.to_string(), "skipped_overlap");
        assert_eq!(TickState::parse("skipped: overlap"), None);
    }

    #[test]
    fn no_recorded_tick_owes_nothing() {
        let e = entry("* * * * * *", Misfire::RunOnce);
        assert!(plan(&e, None, utc("2026-05-01T10:00:00Z")).is_empty());
    }

    #[test]
    fn on_time_tick_is_dispatched() {
        let e = entry("0 * * * * *", Misfire::Skip);
        let got = plan(
            &e,
            Some(ms("2026-05-01T10:00:00Z")),
            utc("2026-05-01T10:01:00.300Z"),
        );
        assert_eq!(summary(&got), [("10:01:00".to_string(), "dispatched")]);
        // Nothing due yet.
        let got = plan(
            &e,
            Some(ms("2026-05-01T10:01:00Z")),
            utc("2026-05-01T10:01:59Z"),
        );
        assert!(got.is_empty());
        // A due time within the grace is still on time.
        let got = plan(
            &e,
            Some(ms("2026-05-01T10:00:00Z")),
            utc("2026-05-01T10:01:04Z"),
        );
        assert_eq!(summary(&got), [("10:01:00".to_string(), "dispatched")]);
    }

    #[test]
    fn misfire_skip_records_each_missed_tick() {
        let e = entry("0 * * * * *", Misfire::Skip);
        // Node down from 10:00:30 to 10:05:00.2: 10:01..10:04 missed, 10:05 on time.
        let got = plan(
            &e,
            Some(ms("2026-05-01T10:00:00Z")),
            utc("2026-05-01T10:05:00.200Z"),
        );
        assert_eq!(
            summary(&got),
            [
                ("10:01:00".to_string(), "skipped_misfire"),
                ("10:02:00".to_string(), "skipped_misfire"),
                ("10:03:00".to_string(), "skipped_misfire"),
                ("10:04:00".to_string(), "skipped_misfire"),
                ("10:05:00".to_string(), "dispatched"),
            ]
        );
    }

    #[test]
    fn misfire_run_once_dispatches_the_latest_missed() {
        let e = entry("0 * * * * *", Misfire::RunOnce);
        let got = plan(
            &e,
            Some(ms("2026-05-01T10:00:00Z")),
            utc("2026-05-01T10:04:30Z"),
        );
        assert_eq!(
            summary(&got),
            [
                ("10:01:00".to_string(), "skipped_misfire"),
                ("10:02:00".to_string(), "skipped_misfire"),
                ("10:03:00".to_string(), "skipped_misfire"),
                ("10:04:00".to_string(), "dispatched"),
            ]
        );
    }

    #[test]
    fn long_gap_is_bounded_to_the_newest_records() {
        let e = entry("* * * * * *", Misfire::RunOnce);
        let (got, left_out) = plan_with(
            &e,
            Some(ms("2026-05-01T00:00:00Z")),
            utc("2026-05-08T00:00:00Z"),
            &PlanLimits::default(),
        );
        assert!(left_out);
        let missed: Vec<_> = got
            .iter()
            .filter(|t| t.due_at <= utc("2026-05-07T23:59:55Z"))
            .collect();
        assert_eq!(missed.len(), DEFAULT_MAX_MISFIRE_RECORDS);
        assert_eq!(missed[0].due_at, utc("2026-05-07T23:58:16Z"));
        let dispatched: Vec<_> = got
            .iter()
            .filter(|t| t.state == TickState::Dispatched)
            .map(|t| t.due_at.format("%H:%M:%S").to_string())
            .collect();
        // The latest missed one, then the five on-time ones within the grace.
        assert_eq!(
            dispatched,
            ["23:59:55", "23:59:56", "23:59:57", "23:59:58", "23:59:59", "00:00:00"]
        );
        for w in got.windows(2) {
            assert!(w[0].due_at < w[1].due_at);
        }
    }

    #[test]
    fn zero_records_still_runs_once() {
        let e = entry("0 * * * * *", Misfire::RunOnce);
        let limits = PlanLimits {
            misfire_grace: Duration::from_secs(2),
            max_misfire_records: 0,
        };
        let (got, left_out) = plan_with(
            &e,
            Some(ms("2026-05-01T10:00:00Z")),
            utc("2026-05-01T10:04:30Z"),
            &limits,
        );
        assert!(left_out);
        assert_eq!(summary(&got), [("10:04:00".to_string(), "dispatched")]);
    }

    #[test]
    fn recorded_tick_in_the_future_owes_nothing() {
        let e = entry("* * * * * *", Misfire::Skip);
        assert!(plan(
            &e,
            Some(ms("2026-05-01T10:00:10Z")),
            utc("2026-05-01T10:00:05Z")
        )
        .is_empty());
    }
}
