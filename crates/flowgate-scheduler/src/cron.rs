//! Cron expressions bound to an IANA time zone: parsing and DST-correct fire times.
//!
//! Matching is done by croner on the *wall clock* of the zone (a `NaiveDateTime`);
//! this module maps each matching wall-clock time to real instants itself, so the
//! DST rules are ours and written down here:
//!
//! * **Gap (spring forward)** — a wall-clock time that does not exist that day
//!   (02:30 in Amsterdam on 2026-03-29) fires once, at the first real instant
//!   after the gap (03:00 local), when the expression names specific hours.
//!   Several times inside one gap collapse into that one firing, and it also
//!   coincides with (and is not repeated by) a real 03:00 match. When the hour
//!   field matches every hour (`*`, `0-23`, `@hourly`, per-minute and
//!   per-second jobs) the schedule is an interval in absolute time, so the
//!   missing wall-clock times are simply not there.
//! * **Fold (fall back)** — a wall-clock time that occurs twice (02:30 in
//!   Amsterdam on 2026-10-25) fires once, at its earlier occurrence, when the
//!   expression names specific hours. When the hour field matches every hour,
//!   it fires at both occurrences (an every-minute job keeps firing every
//!   minute through the repeated hour).
//!
//! Results are whole seconds. Day-of-month and day-of-week combine with OR when
//! both are restricted (Vixie cron), weekdays count Sunday = 0 (or 7), Monday = 1.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;

use crate::ScheduleError;

/// The largest UTC offset change (and so the longest gap or fold) handled exactly.
const MAX_SHIFT_SECS: i64 = 3 * 3600;
/// Bound on wall-clock candidates examined by one `next_after` call.
const MAX_CANDIDATES: usize = 20_000;

/// A parsed cron expression with its time zone. Parse once, keep the value.
#[derive(Debug, Clone)]
pub struct CronSpec {
    expr: String,
    tz: Tz,
    cron: Cron,
    /// The hour field matches all 24 hours: interval semantics across DST changes.
    every_hour: bool,
}

impl PartialEq for CronSpec {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.tz == other.tz
    }
}

impl Eq for CronSpec {}

impl CronSpec {
    /// Parses a 5-field (`min hour dom month dow`) or 6-field (leading seconds)
    /// expression, or one of `@hourly @daily @weekly @monthly @yearly @annually`,
    /// in the IANA zone `timezone`.
    pub fn parse(expr: &str, timezone: &str) -> Result<CronSpec, ScheduleError> {
        let tz: Tz = timezone
            .trim()
            .parse()
            .map_err(|_| ScheduleError::UnknownTimeZone(timezone.to_string()))?;
        let trimmed = expr.trim();
        let invalid = |reason: String| ScheduleError::InvalidCron {
            expr: expr.to_string(),
            reason,
        };
        if !trimmed.starts_with('@') {
            let fields = trimmed.split_whitespace().count();
            if fields != 5 && fields != 6 {
                return Err(invalid(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) \
                     or 6 (with a leading seconds field), found {fields}"
                )));
            }
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(trimmed)
            .map_err(|e| invalid(e.to_string()))?;
        let every_hour = (0..24).all(|h| cron.pattern.hour_match(h).unwrap_or(false));
        let spec = CronSpec {
            expr: trimmed.to_string(),
            tz,
            cron,
            every_hour,
        };
        // A pattern such as `0 0 30 2 *` parses but names no real date.
        let probe = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default(); // 2026-01-01
        if spec.next_after(probe).is_none() {
            return Err(invalid(
                "matches no date (for example February 30)".to_string(),
            ));
        }
        Ok(spec)
    }

    /// Builds the spec of a manifest's `kind = "schedule"` trigger.
    pub fn from_trigger(
        t: &flowgate_core::manifest::ScheduleTrigger,
    ) -> Result<CronSpec, ScheduleError> {
        CronSpec::parse(&t.cron, &t.timezone)
    }

    /// The expression as written (trimmed).
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The time zone.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// True when the hour field matches every hour (both fold occurrences fire,
    /// gap times are skipped); false when it names hours (once per wall-clock time).
    pub fn is_interval(&self) -> bool {
        self.every_hour
    }

    /// The first fire time strictly after `t`, or `None` when there is none
    /// (search limits of about a year per step, or the end of the calendar).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let whole = t.with_nanosecond(0).unwrap_or(t);
        let first = self.first_after(self.wall(whole), false, t);
        // An interval schedule asked from the first occurrence of a repeated range
        // also owes the second occurrences, which start at the fold's first wall
        // time: search from there too and keep the earlier answer.
        if !self.every_hour {
            return first;
        }
        match (
            first,
            self.fold_start_ahead(t)
                .and_then(|w| self.first_after(w, true, t)),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Walks matching wall-clock times from `cursor` and returns the first instant
    /// after `t` that they map to under the DST rules of this module.
    fn first_after(
        &self,
        mut cursor: NaiveDateTime,
        mut inclusive: bool,
        t: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        for _ in 0..MAX_CANDIDATES {
            let wall = self.cron.find_next_occurrence(&cursor, inclusive).ok()?;
            cursor = wall;
            inclusive = false;
            match self.tz.from_local_datetime(&wall) {
                LocalResult::Single(dt) => {
                    let dt = dt.with_timezone(&Utc);
                    if dt > t {
                        return Some(dt);
                    }
                }
                LocalResult::Ambiguous(earlier, later) => {
                    let (e, l) = (earlier.with_timezone(&Utc), later.with_timezone(&Utc));
                    if e > t {
                        return Some(e);
                    }
                    if self.every_hour {
                        if l > t {
                            return Some(l);
                        }
                    } else if let Some(tr) = self.transition_between(e, l) {
                        // This wall time already fired at its first occurrence, and so
                        // did every later one in the repeated range: jump to its end.
                        cursor = cursor.max(self.wall(tr - TimeDelta::seconds(1)));
                    }
                }
                LocalResult::None => {
                    if let Some(end) = self.gap_end(wall) {
                        if !self.every_hour && end > t {
                            return Some(end);
                        }
                        // Every later wall time inside the gap maps to `end` too.
                        let after = self.wall(end);
                        if after > cursor {
                            cursor = after;
                            inclusive = true;
                        }
                    }
                }
            }
        }
        None
    }

    /// The next `n` fire times after `after`, ascending.
    pub fn next_n(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(x) => {
                    out.push(x);
                    t = x;
                }
                None => break,
            }
        }
        out
    }

    /// Fire times in `(from_exclusive, to_inclusive]`, ascending, at most `max`
    /// (the earliest ones).
    pub fn due_between(
        &self,
        from_exclusive: DateTime<Utc>,
        to_inclusive: DateTime<Utc>,
        max: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = from_exclusive;
        while out.len() < max {
            match self.next_after(t) {
                Some(x) if x <= to_inclusive => {
                    out.push(x);
                    t = x;
                }
                _ => break,
            }
        }
        out
    }

    /// The *latest* fire times in `(from_exclusive, to_inclusive]`, ascending, at
    /// most `max`, and whether older ones in the range were left out. Searches
    /// windows doubling back from `to_inclusive`, so a long range with a dense
    /// schedule costs about `max` steps, not the whole range.
    pub fn latest_between(
        &self,
        from_exclusive: DateTime<Utc>,
        to_inclusive: DateTime<Utc>,
        max: usize,
    ) -> (Vec<DateTime<Utc>>, bool) {
        if max == 0 || to_inclusive <= from_exclusive {
            let any = self
                .next_after(from_exclusive)
                .is_some_and(|x| x <= to_inclusive);
            return (Vec::new(), any);
        }
        let mut width = TimeDelta::minutes(1);
        loop {
            let lo = (to_inclusive - width).max(from_exclusive);
            let mut window = std::collections::VecDeque::with_capacity(max);
            let mut total = 0usize;
            let mut t = lo;
            while let Some(x) = self.next_after(t).filter(|x| *x <= to_inclusive) {
                if window.len() == max {
                    window.pop_front();
                }
                window.push_back(x);
                total += 1;
                t = x;
            }
            if total >= max || lo == from_exclusive {
                let older = total > max
                    || (lo > from_exclusive
                        && self.next_after(from_exclusive).is_some_and(|x| x <= lo));
                return (window.into(), older);
            }
            width = width.checked_mul(2).unwrap_or(TimeDelta::MAX);
        }
    }

    /// When `t` lies in the first occurrence of a repeated wall-clock range (a
    /// fold, within [`MAX_SHIFT_SECS`]), the wall time at which the second
    /// occurrence begins.
    fn fold_start_ahead(&self, t: DateTime<Utc>) -> Option<NaiveDateTime> {
        let ahead = t + TimeDelta::seconds(MAX_SHIFT_SECS);
        let now_off = self.offset_secs(t);
        if self.offset_secs(ahead) >= now_off {
            return None;
        }
        let tr = self.transition_between(t, ahead)?;
        let shift = now_off - self.offset_secs(tr);
        ((tr - t).num_seconds() <= shift).then(|| self.wall(tr))
    }

    /// The wall-clock time of instant `x` in this zone.
    fn wall(&self, x: DateTime<Utc>) -> NaiveDateTime {
        x.with_timezone(&self.tz).naive_local()
    }

    /// UTC offset in seconds at instant `x`.
    fn offset_secs(&self, x: DateTime<Utc>) -> i64 {
        i64::from(
            self.tz
                .offset_from_utc_datetime(&x.naive_utc())
                .fix()
                .local_minus_utc(),
        )
    }

    /// The first whole-second instant in `(a, b]` whose offset differs from `a`'s.
    fn transition_between(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let base = self.offset_secs(a);
        if self.offset_secs(b) == base {
            return None;
        }
        let (mut lo, mut hi) = (a.timestamp(), b.timestamp());
        // Invariant: offset(lo) == base, offset(hi) != base.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let m = DateTime::<Utc>::from_timestamp(mid, 0)?;
            if self.offset_secs(m) == base {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        DateTime::<Utc>::from_timestamp(hi, 0)
    }

    /// The first real instant after the gap that swallows wall time `w`.
    fn gap_end(&self, w: NaiveDateTime) -> Option<DateTime<Utc>> {
        // Wall time rises with the instant around a gap: find the first instant
        // whose wall clock is past `w`.
        let as_utc = w.and_utc().timestamp();
        let (mut lo, mut hi) = (as_utc - 15 * 3600, as_utc + 15 * 3600);
        let past = |s: i64| -> Option<bool> {
            let x = DateTime::<Utc>::from_timestamp(s, 0)?;
            Some(self.wall(x) > w)
        };
        if past(lo)? || !past(hi)? {
            return None;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if past(mid)? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        DateTime::<Utc>::from_timestamp(hi, 0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{Datelike, Weekday};
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec(e: &str, tz: &str) -> CronSpec {
        CronSpec::parse(e, tz).unwrap()
    }

    fn fmt(v: &[DateTime<Utc>]) -> Vec<String> {
        v.iter()
            .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect()
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let e = CronSpec::parse("0 * * * *", "Mars/Base").unwrap_err();
        assert!(
            e.to_string().contains("unknown time zone `Mars/Base`"),
            "{e}"
        );
        let e = CronSpec::parse("0 * * *", "UTC").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cron `0 * * *`: expected 5 fields"),
            "{e}"
        );
        let e = CronSpec::parse("0 0 0 1 1 * 2030", "UTC").unwrap_err();
        assert!(e.to_string().contains("found 7"), "{e}");
        let e = CronSpec::parse("61 * * * *", "UTC").unwrap_err();
        assert!(e.to_string().starts_with("cron `61 * * * *`: "), "{e}");
        let e = CronSpec::parse("0 0 30 2 *", "UTC").unwrap_err();
        assert!(e.to_string().contains("matches no date"), "{e}");
        let e = CronSpec::parse("", "UTC").unwrap_err();
        assert!(e.to_string().contains("found 0"), "{e}");
        assert!(CronSpec::parse("0 */15 * * * *", "Europe/Amsterdam").is_ok());
        assert!(CronSpec::parse("@daily", "UTC").is_ok());
        assert!(CronSpec::parse(" 0 9 * * MON-FRI ", " UTC ").is_ok());
    }

    #[test]
    fn amsterdam_spring_forward_fixed_time_fires_once_at_0300() {
        let s = spec("30 2 * * *", "Europe/Amsterdam");
        let got = s.next_n(utc("2026-03-27T12:00:00Z"), 4);
        assert_eq!(
            fmt(&got),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // gap: 03:00 CEST, the first valid instant
                "2026-03-30T00:30:00Z", // 02:30 CEST
                "2026-03-31T00:30:00Z",
            ]
        );
    }

    #[test]
    fn amsterdam_gap_collapses_several_times_and_a_real_0300() {
        let s = spec("0,30 2,3 * * *", "Europe/Amsterdam");
        let got = s.next_n(utc("2026-03-28T23:00:00Z"), 3);
        // 02:00 and 02:30 do not exist and 03:00 is real: one firing at 03:00 CEST.
        assert_eq!(
            fmt(&got),
            [
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:30:00Z",
                "2026-03-30T00:00:00Z"
            ]
        );
    }

    #[test]
    fn amsterdam_fall_back_fixed_time_fires_once() {
        let s = spec("30 2 * * *", "Europe/Amsterdam");
        let got = s.next_n(utc("2026-10-24T12:00:00Z"), 3);
        assert_eq!(
            fmt(&got),
            [
                "2026-10-25T00:30:00Z", // 02:30 CEST, first occurrence only
                "2026-10-26T01:30:00Z", // 02:30 CET
                "2026-10-27T01:30:00Z",
            ]
        );
        // Asked from inside the repeated hour (second occurrence), still once.
        assert_eq!(
            s.next_after(utc("2026-10-25T01:10:00Z")),
            Some(utc("2026-10-26T01:30:00Z"))
        );
        // Asked from between the occurrences.
        assert_eq!(
            s.next_after(utc("2026-10-25T00:45:00Z")),
            Some(utc("2026-10-26T01:30:00Z"))
        );
    }

    #[test]
    fn amsterdam_fall_back_stepped_minutes_in_named_hour_fire_once_each() {
        let s = spec("*/20 2 * * *", "Europe/Amsterdam");
        let got = s.due_between(utc("2026-10-24T23:00:00Z"), utc("2026-10-25T23:00:00Z"), 10);
        assert_eq!(
            fmt(&got),
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T00:20:00Z",
                "2026-10-25T00:40:00Z"
            ]
        );
    }

    #[test]
    fn amsterdam_every_fifteen_minutes_runs_through_both_halves_of_the_fold() {
        let s = spec("*/15 * * * *", "Europe/Amsterdam");
        let got = s.due_between(utc("2026-10-24T23:50:00Z"), utc("2026-10-25T01:20:00Z"), 20);
        assert_eq!(
            fmt(&got),
            [
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T00:15:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-25T00:45:00Z",
                "2026-10-25T01:00:00Z", // 02:00 CET
                "2026-10-25T01:15:00Z",
            ]
        );
        // From inside the first half the next one is 15 minutes on, not the
        // second occurrence of an earlier wall time.
        assert_eq!(
            s.next_after(utc("2026-10-25T00:20:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        // Spring forward: 02:xx does not exist and is skipped; 01:45 CET → 03:00 CEST.
        let got = s.due_between(utc("2026-03-29T00:40:00Z"), utc("2026-03-29T01:20:00Z"), 10);
        assert_eq!(
            fmt(&got),
            [
                "2026-03-29T00:45:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:15:00Z"
            ]
        );
    }

    #[test]
    fn every_second_through_the_fold_is_every_second() {
        let s = spec("* * * * * *", "Europe/Amsterdam");
        let start = utc("2026-10-25T00:59:58Z");
        let got = s.next_n(start, 4);
        assert_eq!(
            fmt(&got),
            [
                "2026-10-25T00:59:59Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T01:00:01Z",
                "2026-10-25T01:00:02Z"
            ]
        );
        assert_eq!(
            s.next_after(utc("2026-10-25T00:30:00Z")),
            Some(utc("2026-10-25T00:30:01Z"))
        );
    }

    #[test]
    fn new_york_transitions() {
        let s = spec("30 2 * * *", "America/New_York");
        // 2026-03-08: 02:00 EST → 03:00 EDT; 02:30 does not exist → 03:00 EDT = 07:00Z.
        assert_eq!(
            fmt(&s.next_n(utc("2026-03-07T12:00:00Z"), 3)),
            [
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z",
                "2026-03-10T06:30:00Z"
            ]
        );
        // 2026-11-01: 02:00 EDT → 01:00 EST; 01:30 occurs twice, fires once (EDT).
        let s = spec("30 1 * * *", "America/New_York");
        assert_eq!(
            fmt(&s.next_n(utc("2026-10-31T12:00:00Z"), 2)),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
        // Hourly fires at both 01:00 EDT and 01:00 EST.
        let s = spec("0 * * * *", "America/New_York");
        assert_eq!(
            fmt(&s.due_between(utc("2026-11-01T04:30:00Z"), utc("2026-11-01T07:30:00Z"), 10)),
            [
                "2026-11-01T05:00:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T07:00:00Z"
            ]
        );
    }

    #[test]
    fn feb_29_end_of_month_weekday_and_seconds() {
        let s = spec("0 0 29 2 *", "UTC");
        assert_eq!(
            s.next_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2028-02-29T00:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2028-02-29T00:00:00Z")),
            Some(utc("2032-02-29T00:00:00Z"))
        );

        let s = spec("0 0 L * *", "UTC");
        assert_eq!(
            fmt(&s.next_n(utc("2026-01-15T00:00:00Z"), 4)),
            [
                "2026-01-31T00:00:00Z",
                "2026-02-28T00:00:00Z",
                "2026-03-31T00:00:00Z",
                "2026-04-30T00:00:00Z"
            ]
        );
        let s = spec("0 0 L 2 *", "UTC");
        assert_eq!(
            s.next_after(utc("2027-03-01T00:00:00Z")),
            Some(utc("2028-02-29T00:00:00Z"))
        );
        let s = spec("0 0 31 * *", "UTC");
        assert_eq!(
            fmt(&s.next_n(utc("2026-01-31T00:00:00Z"), 2)),
            ["2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"]
        );

        let s = spec("*/15 * * * * *", "UTC");
        assert_eq!(
            fmt(&s.next_n(utc("2026-05-01T10:00:07.250Z"), 4)),
            [
                "2026-05-01T10:00:15Z",
                "2026-05-01T10:00:30Z",
                "2026-05-01T10:00:45Z",
                "2026-05-01T10:01:00Z"
            ]
        );

        // Monday = 1; 2026-05-01 is a Friday.
        let s = spec("0 9 * * 1", "Europe/Amsterdam");
        let next = s.next_after(utc("2026-05-01T00:00:00Z")).unwrap();
        assert_eq!(next, utc("2026-05-04T07:00:00Z"));
        assert_eq!(next.with_timezone(&s.timezone()).weekday(), Weekday::Mon);
        let s = spec("0 9 * * 7", "UTC");
        assert_eq!(
            s.next_after(utc("2026-05-01T00:00:00Z")).unwrap().weekday(),
            Weekday::Sun
        );
        let s = spec("0 9 * * MON-FRI", "UTC");
        assert_eq!(
            s.next_after(utc("2026-05-01T10:00:00Z")),
            Some(utc("2026-05-04T09:00:00Z"))
        );
    }

    #[test]
    fn sub_second_input_is_strictly_before_the_result() {
        let s = spec("* * * * * *", "UTC");
        assert_eq!(
            s.next_after(utc("2026-05-01T10:00:00.999Z")),
            Some(utc("2026-05-01T10:00:01Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-05-01T10:00:01Z")),
            Some(utc("2026-05-01T10:00:02Z"))
        );
    }

    #[test]
    fn latest_between_keeps_the_newest_and_reports_older() {
        let s = spec("* * * * * *", "UTC");
        let (v, older) =
            s.latest_between(utc("2026-01-01T00:00:00Z"), utc("2026-06-01T00:00:00Z"), 3);
        assert_eq!(
            fmt(&v),
            [
                "2026-05-31T23:59:58Z",
                "2026-05-31T23:59:59Z",
                "2026-06-01T00:00:00Z"
            ]
        );
        assert!(older);
        let s = spec("0 0 1 * *", "UTC");
        let (v, older) =
            s.latest_between(utc("2026-01-01T00:00:00Z"), utc("2026-04-01T00:00:00Z"), 10);
        assert_eq!(
            fmt(&v),
            [
                "2026-02-01T00:00:00Z",
                "2026-03-01T00:00:00Z",
                "2026-04-01T00:00:00Z"
            ]
        );
        assert!(!older);
    }

    const EXPRS: &[&str] = &[
        "* * * * *",
        "*/7 * * * * *",
        "30 2 * * *",
        "0,30 1-3 * * *",
        "*/15 * * * *",
        "0 0 L * *",
        "0 9 * * 1-5",
        "15 3 29 2 *",
        "0 */2 * * *",
        "@hourly",
    ];
    const ZONES: &[&str] = &[
        "UTC",
        "Europe/Amsterdam",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
    ];

    /// Independent statement of the DST rules, checked minute by minute.
    fn oracle(s: &CronSpec, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut i = from.with_second(0).unwrap().with_nanosecond(0).unwrap();
        while i <= to {
            if i > from {
                let wall = s.wall(i);
                let first_occurrence = match s.tz.from_local_datetime(&wall) {
                    LocalResult::Ambiguous(e, _) => e.with_timezone(&Utc) == i,
                    _ => true,
                };
                let matches = s.cron.is_time_matching(&wall).unwrap();
                let prev = i - TimeDelta::minutes(1);
                let gap_ends_here = s.offset_secs(prev) < s.offset_secs(i);
                let gap_matched = gap_ends_here && {
                    let mut w = s.wall(prev) + TimeDelta::minutes(1);
                    let mut any = false;
                    while w < wall {
                        any |= s.cron.is_time_matching(&w).unwrap();
                        w += TimeDelta::minutes(1);
                    }
                    any
                };
                let fires = if s.every_hour {
                    matches
                } else {
                    (matches && first_occurrence) || gap_matched
                };
                if fires {
                    out.push(i);
                }
            }
            i += TimeDelta::minutes(1);
        }
        out
    }

    const MINUTE_EXPRS: &[&str] = &[
        "* * * * *",
        "30 2 * * *",
        "0,30 1-3 * * *",
        "*/15 * * * *",
        "*/20 2 * * *",
        "0 */2 * * *",
        "45 1,2 * * 0",
        "@hourly",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn next_after_is_strictly_increasing_and_skips_nothing(
            ei in 0..EXPRS.len(),
            zi in 0..ZONES.len(),
            // 2024-01-01 .. 2031-01-01, with millisecond noise
            start in 1_704_067_200_000i64..1_924_992_000_000i64,
            // land near DST changes often
            near_dst in any::<bool>(),
            probe in 0.0f64..1.0,
        ) {
            let s = spec(EXPRS[ei], ZONES[zi]);
            let mut t = DateTime::<Utc>::from_timestamp_millis(start).unwrap();
            if near_dst {
                // Snap to the last Sunday of March or October, around 00:00-03:00 UTC.
                let d = t.date_naive();
                let month = if d.month() <= 6 { 3 } else { 10 };
                let last = (25..=31).rev().map(|day| chrono::NaiveDate::from_ymd_opt(d.year(), month, day).unwrap())
                    .find(|x| x.weekday() == Weekday::Sun).unwrap();
                t = last.and_hms_opt(0, 0, 0).unwrap().and_utc() + TimeDelta::milliseconds(start.rem_euclid(4 * 3_600_000));
            }
            let seq = s.next_n(t, 6);
            prop_assert!(!seq.is_empty());
            prop_assert!(seq[0] > t);
            for w in seq.windows(2) {
                prop_assert!(w[0] < w[1], "not increasing: {:?}", w);
            }
            // Any point between t and the first result gives the same first result.
            let gap = (seq[0] - t).num_milliseconds();
            let mid = t + TimeDelta::milliseconds((gap as f64 * probe) as i64);
            if mid < seq[0] {
                prop_assert_eq!(s.next_after(mid), Some(seq[0]));
            }
            // due_between agrees with the chain of next_after calls.
            let last = *seq.last().unwrap();
            let between = s.due_between(t, last, 100);
            prop_assert_eq!(&between, &seq);
            // Every result is a matching wall time, or the first instant after a gap.
            for x in &seq {
                let wall = s.wall(*x);
                let matches = s.cron.is_time_matching(&wall).unwrap();
                let at_transition = s.offset_secs(*x - TimeDelta::seconds(1)) != s.offset_secs(*x);
                prop_assert!(matches || at_transition, "{} ({}) does not match {}", x, wall, s.expr());
                prop_assert_eq!(x.timestamp_subsec_nanos(), 0);
            }
        }

        #[test]
        fn dst_days_match_the_minute_by_minute_oracle(
            ei in 0..MINUTE_EXPRS.len(),
            zi in 1..4usize,
            year in 2024i32..2032,
            autumn in any::<bool>(),
            offset_min in 0i64..(24 * 60),
        ) {
            let zone = ["UTC", "Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe"][zi];
            let s = spec(MINUTE_EXPRS[ei], zone);
            // Start somewhere on the day before the month's DST change window.
            let month = if autumn { 10 } else { 3 };
            let month = if zone == "Australia/Lord_Howe" { if autumn { 4 } else { 10 } } else if zone == "America/New_York" && autumn { 11 } else { month };
            let day = if zone == "Europe/Amsterdam" { 24 } else { 1 };
            let from = chrono::NaiveDate::from_ymd_opt(year, month, day).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc()
                + TimeDelta::minutes(offset_min);
            let to = from + TimeDelta::days(if zone == "Europe/Amsterdam" { 8 } else { 10 });
            let got = s.due_between(from, to, 100_000);
            let want = oracle(&s, from, to);
            prop_assert_eq!(fmt(&got), fmt(&want));
        }

        #[test]
        fn due_between_is_sorted_unique_and_bounded(
            ei in 0..EXPRS.len(),
            zi in 0..ZONES.len(),
            start in 1_704_067_200i64..1_924_992_000i64,
            span in 1i64..(8 * 3_600),
            max in 0usize..50,
        ) {
            let s = spec(EXPRS[ei], ZONES[zi]);
            let from = DateTime::<Utc>::from_timestamp(start, 0).unwrap();
            let to = from + TimeDelta::seconds(span);
            let v = s.due_between(from, to, max);
            prop_assert!(v.len() <= max);
            for w in v.windows(2) { prop_assert!(w[0] < w[1]); }
            for x in &v { prop_assert!(*x > from && *x <= to); }
            let (latest, _) = s.latest_between(from, to, max);
            let all = s.due_between(from, to, usize::MAX);
            let tail = &all[all.len().saturating_sub(max)..];
            prop_assert_eq!(&latest[..], tail);
        }
    }
}
