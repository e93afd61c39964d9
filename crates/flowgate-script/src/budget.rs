//! The per-run memory and value-depth budget: an approximate measure of what a run
//! retains (every value reachable from its variables, closures and curried function
//! pointers included), taken periodically while the script runs.
//!
//! Rhai limits each value on its own; a run can still spread data over many
//! variables or capture it in closures, and nothing bounds how deeply maps and
//! arrays nest. The engine measures the whole scope every few thousand operations
//! (amortized over the size of the last measure) and ends the run with
//! `flow_limit_exceeded` when it is over budget or nested too deeply.

use rhai::{Array, Blob, Dynamic, FnPtr, ImmutableString, Map, Scope};
use std::cell::Cell;
use std::collections::HashSet;

/// Approximate fixed cost of one value slot.
const SLOT: usize = 16;
/// Strings at least this long are counted once however many values share them.
const SHARED_STRING_MIN: usize = 256;
/// Fewest operations between two measures.
const MIN_INTERVAL: u64 = 128;
/// Most operations between two measures (bounds how deep a value, and how much
/// retained data, can grow between them).
const MAX_INTERVAL: u64 = 8 * 1024;

/// What a measure found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    /// Approximate bytes retained.
    pub bytes: usize,
    /// Values visited.
    pub nodes: usize,
    /// Whether some map or array nests deeper than the limit.
    pub too_deep: bool,
    /// Whether a shared value could not be read (locked by the running script).
    pub locked: bool,
}

struct Walker {
    max_depth: usize,
    max_bytes: usize,
    seen: HashSet<usize>,
    m: Measure,
}

impl Walker {
    fn done(&self) -> bool {
        self.m.too_deep || self.m.bytes > self.max_bytes
    }

    fn walk(&mut self, d: &Dynamic, depth: usize) {
        if self.done() {
            return;
        }
        self.m.nodes += 1;
        self.m.bytes += SLOT;
        if d.is_shared() {
            match d.read_lock::<Dynamic>() {
                Some(inner) => {
                    let addr = std::ptr::from_ref::<Dynamic>(&inner) as usize;
                    if self.seen.insert(addr) {
                        self.walk(&inner, depth);
                    }
                }
                None => self.m.locked = true,
            }
            return;
        }
        // One cheap test of the variant before each read: most values are
        // scalars, counted by their slot alone.
        if d.is_string() {
            if let Some(s) = d.read_lock::<ImmutableString>() {
                let len = s.len();
                if len >= SHARED_STRING_MIN && !self.seen.insert(s.as_ptr() as usize) {
                    return;
                }
                self.m.bytes += len + SLOT;
            }
        } else if d.is_map() {
            if let Some(map) = d.read_lock::<Map>() {
                if depth >= self.max_depth {
                    self.m.too_deep = true;
                    return;
                }
                self.m.bytes += 48;
                for (k, x) in map.iter() {
                    self.m.bytes += k.len() + 32;
                    self.walk(x, depth + 1);
                }
            }
        } else if d.is_array() {
            if let Some(a) = d.read_lock::<Array>() {
                if depth >= self.max_depth {
                    self.m.too_deep = true;
                    return;
                }
                self.m.bytes += 24;
                for x in a.iter() {
                    self.walk(x, depth + 1);
                }
            }
        } else if d.is_blob() {
            if let Some(b) = d.read_lock::<Blob>() {
                self.m.bytes += b.len() + 24;
            }
        } else if d.is_fnptr() {
            if let Some(f) = d.read_lock::<FnPtr>() {
                if depth >= self.max_depth {
                    self.m.too_deep = true;
                    return;
                }
                self.m.bytes += f.fn_name().len() + 32;
                for x in f.iter_curry() {
                    self.walk(x, depth + 1);
                }
            }
        }
    }
}

/// Measures `values` (a scope's variables, `this`), stopping early once over
/// `max_bytes` or deeper than `max_depth`. Never recurses deeper than `max_depth`.
pub fn measure<'a>(
    values: impl IntoIterator<Item = &'a Dynamic>,
    max_depth: usize,
    max_bytes: usize,
) -> Measure {
    let mut w = Walker {
        max_depth,
        max_bytes,
        seen: HashSet::new(),
        m: Measure::default(),
    };
    for v in values {
        w.walk(v, 0);
        if w.done() {
            break;
        }
    }
    w.m
}

/// Measures a scope and an optional `this`.
pub fn measure_scope(
    scope: &Scope<'_>,
    this: Option<&Dynamic>,
    max_depth: usize,
    max_bytes: usize,
) -> Measure {
    measure(
        scope.iter_raw().map(|(_, _, v)| v).chain(this),
        max_depth,
        max_bytes,
    )
}

/// The schedule of measures of the run on this thread.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    ops: u64,
    next: u64,
}

thread_local! {
    static SCHEDULE: Cell<Schedule> = const { Cell::new(Schedule { ops: 0, next: MIN_INTERVAL }) };
}

/// Resets the schedule at the start of a run.
pub(crate) fn reset() {
    SCHEDULE.with(|s| {
        s.set(Schedule {
            ops: 0,
            next: MIN_INTERVAL,
        });
    });
}

/// Records the run's operation count (from the progress callback).
pub(crate) fn set_ops(ops: u64) {
    SCHEDULE.with(|s| {
        let mut v = s.get();
        v.ops = ops;
        s.set(v);
    });
}

/// Whether a measure is due.
pub(crate) fn due() -> bool {
    SCHEDULE.with(|s| {
        let v = s.get();
        v.ops >= v.next
    })
}

/// Schedules the next measure after one that visited `nodes` values: at least
/// as many operations later as it visited (so measuring costs about one visit
/// per operation), within [`MIN_INTERVAL`, `MAX_INTERVAL`]; later when a value
/// was locked (reading it waited).
pub(crate) fn measured(m: &Measure) {
    SCHEDULE.with(|s| {
        let mut v = s.get();
        let mut gap = u64::try_from(m.nodes)
            .unwrap_or(u64::MAX)
            .clamp(MIN_INTERVAL, MAX_INTERVAL);
        if m.locked {
            gap = MAX_INTERVAL * 4;
        }
        v.next = v.ops.saturating_add(gap);
        s.set(v);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_bytes_depth_and_shared_strings_once() {
        let big: ImmutableString = "x".repeat(10_000).into();
        let arr: Array = (0..10).map(|_| Dynamic::from(big.clone())).collect();
        let m = measure([&Dynamic::from_array(arr)], 8, usize::MAX);
        assert!(m.bytes >= 10_000 && m.bytes < 20_000, "{m:?}");
        let distinct: Array = (0..10)
            .map(|i| Dynamic::from(format!("{i}{}", "y".repeat(10_000))))
            .collect();
        let m = measure([&Dynamic::from_array(distinct)], 8, usize::MAX);
        assert!(m.bytes >= 100_000, "{m:?}");

        let mut v = Dynamic::from_int(1);
        for _ in 0..10 {
            v = Dynamic::from_array(vec![v]);
        }
        assert!(!measure([&v], 10, usize::MAX).too_deep);
        assert!(measure([&v], 9, usize::MAX).too_deep);
        let m = measure([&Dynamic::from("z".repeat(5000))], 8, 1000);
        assert!(m.bytes > 1000);
    }
}
