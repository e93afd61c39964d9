//! flowgate-scheduler: cron schedules for flows.
//!
//! * [`CronSpec`] parses a cron expression in an IANA zone and computes fire
//!   times, with written-down DST rules (see [`cron`]).
//! * [`plan`] turns "last recorded tick" and "now" into the ticks to record,
//!   applying the misfire policy; pure, so it is tested with any clock.
//! * [`Scheduler`] runs the loop: sleeps until the earliest due time, records each
//!   tick through a [`TickStore`] (whose unique `(flow, due_at)` makes exactly one
//!   node win) and only the winner dispatches through a [`Dispatcher`].
//!
//! The engine crate implements the two traits on the store and the run queue.

pub mod cron;
pub mod engine;
pub mod tick;

pub use cron::CronSpec;
pub use engine::{
    Clock, Dispatcher, Scheduler, SchedulerConfig, SystemClock, TickRequest, TickStore,
};
pub use tick::{
    plan, plan_with, PlanLimits, PlannedTick, ScheduleEntry, TickState,
    DEFAULT_MAX_MISFIRE_RECORDS, DEFAULT_MISFIRE_GRACE,
};

use flowgate_core::manifest::{Pos, ScheduleTrigger};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The zone is not an IANA time zone name.
    #[error("unknown time zone `{0}` (expected an IANA name such as `Europe/Amsterdam` or `UTC`)")]
    UnknownTimeZone(String),
    /// The cron expression does not parse or never fires.
    #[error("cron `{expr}`: {reason}")]
    InvalidCron {
        /// The expression as given.
        expr: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ScheduleError {
    /// Where in the manifest the error points: the `timezone` or the `cron` value.
    pub fn pos_in(&self, trigger: &ScheduleTrigger) -> Pos {
        match self {
            ScheduleError::UnknownTimeZone(_) => trigger.timezone_pos,
            ScheduleError::InvalidCron { .. } => trigger.cron_pos,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = ScheduleError> = std::result::Result<T, E>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flowgate_core::manifest::{Misfire, Overlap};

    fn trigger(cron: &str, tz: &str) -> ScheduleTrigger {
        ScheduleTrigger {
            cron: cron.into(),
            cron_pos: Pos { line: 7, column: 8 },
            timezone: tz.into(),
            timezone_pos: Pos {
                line: 8,
                column: 12,
            },
            overlap: Overlap::Queue,
            misfire: Misfire::RunOnce,
        }
    }

    #[test]
    fn errors_point_at_the_offending_manifest_value() {
        let t = trigger("0 * * * *", "Mars/Base");
        let e = ScheduleEntry::from_trigger("nightly", 2, &t).unwrap_err();
        assert_eq!(e.pos_in(&t), t.timezone_pos);
        let t = trigger("0 * * *", "UTC");
        let e = ScheduleEntry::from_trigger("nightly", 2, &t).unwrap_err();
        assert_eq!(e.pos_in(&t), t.cron_pos);
    }

    #[test]
    fn entry_carries_the_trigger_policies() {
        let t = trigger("0 */15 * * * *", "Europe/Amsterdam");
        let e = ScheduleEntry::from_trigger("nightly", 2, &t).unwrap();
        assert_eq!((e.flow.as_str(), e.version), ("nightly", 2));
        assert_eq!((e.overlap, e.misfire), (Overlap::Queue, Misfire::RunOnce));
        assert_eq!(e.spec.expr(), "0 */15 * * * *");
        assert_eq!(e.spec.timezone(), chrono_tz::Europe::Amsterdam);
    }
}
