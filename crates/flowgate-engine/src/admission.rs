//! Fair shares of the run pool. The script runtime has a fixed number of
//! execution slots; without shares one caller (or one slow flow) could hold
//! every slot and every other flow would answer 503. Before a run takes a
//! slot it takes a ticket here: a flow may hold at most `flow_percent` of the
//! slots (and at most its manifest's `[limits] concurrency`), one caller at
//! most `caller_percent`. Counters exist only while runs hold them, so the
//! maps never hold more entries than there are running runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// How the pool is shared (percentages of the pool's slots, at least one slot each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FairShare {
    /// Most slots one flow may hold, in percent of the pool.
    pub flow_percent: u8,
    /// Most slots one caller may hold, in percent of the pool.
    pub caller_percent: u8,
}

impl Default for FairShare {
    fn default() -> Self {
        Self {
            flow_percent: 50,
            caller_percent: 25,
        }
    }
}

/// Why a run was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The flow already holds its share (or its manifest's concurrency).
    Flow {
        /// Runs of the flow allowed at once.
        limit: usize,
    },
    /// The caller already holds its share.
    Caller {
        /// Runs of one caller allowed at once.
        limit: usize,
    },
}

/// Runs held under one key, and the key itself, shared with their tickets
/// (a ticket taken while others hold the key allocates nothing).
struct Held {
    key: Arc<str>,
    runs: usize,
}

#[derive(Default)]
struct Counts {
    flows: HashMap<Arc<str>, Held>,
    callers: HashMap<Arc<str>, Held>,
}

fn held(map: &HashMap<Arc<str>, Held>, key: &str) -> usize {
    map.get(key).map_or(0, |h| h.runs)
}

fn take(map: &mut HashMap<Arc<str>, Held>, key: &str) -> Arc<str> {
    if let Some(h) = map.get_mut(key) {
        h.runs += 1;
        return Arc::clone(&h.key);
    }
    let key: Arc<str> = key.into();
    map.insert(
        Arc::clone(&key),
        Held {
            key: Arc::clone(&key),
            runs: 1,
        },
    );
    key
}

struct Inner {
    counts: Mutex<Counts>,
    flow_cap: usize,
    caller_cap: usize,
    freed: tokio::sync::Notify,
}

/// Per-flow and per-caller run counters; cheap to clone.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

/// Held while a run executes; gives its share back when dropped.
pub struct Ticket {
    inner: Arc<Inner>,
    flow: Arc<str>,
    caller: Option<Arc<str>>,
}

/// The counters stay consistent under a panic elsewhere (each update is one
/// statement), so a poisoned lock is used as is.
fn lock(m: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn share(pool: usize, percent: u8) -> usize {
    (pool.saturating_mul(usize::from(percent.min(100))) / 100).max(1)
}

impl Admission {
    /// Shares of a pool of `pool_size` slots.
    pub fn new(pool_size: usize, share_cfg: FairShare) -> Self {
        let pool = pool_size.max(1);
        Self {
            inner: Arc::new(Inner {
                counts: Mutex::new(Counts::default()),
                flow_cap: share(pool, share_cfg.flow_percent),
                caller_cap: share(pool, share_cfg.caller_percent),
                freed: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Runs one flow may hold at once, given its manifest's `concurrency`.
    pub fn flow_limit(&self, concurrency: Option<u32>) -> usize {
        concurrency.map_or(self.inner.flow_cap, |c| {
            self.inner
                .flow_cap
                .min(usize::try_from(c).unwrap_or(usize::MAX).max(1))
        })
    }

    /// Runs one caller may hold at once.
    pub fn caller_limit(&self) -> usize {
        self.inner.caller_cap
    }

    /// Takes a ticket for a run of `flow` by `caller` (`None`: no caller
    /// share applies, e.g. queued runs), or says which share is used up.
    pub fn try_admit(
        &self,
        flow: &str,
        caller: Option<&str>,
        concurrency: Option<u32>,
    ) -> Result<Ticket, Refusal> {
        let flow_limit = self.flow_limit(concurrency);
        let mut c = lock(&self.inner.counts);
        if let Some(k) = caller {
            if held(&c.callers, k) >= self.inner.caller_cap {
                return Err(Refusal::Caller {
                    limit: self.inner.caller_cap,
                });
            }
        }
        if held(&c.flows, flow) >= flow_limit {
            return Err(Refusal::Flow { limit: flow_limit });
        }
        let flow = take(&mut c.flows, flow);
        let caller = caller.map(|k| take(&mut c.callers, k));
        Ok(Ticket {
            inner: Arc::clone(&self.inner),
            flow,
            caller,
        })
    }

    /// Takes a ticket, waiting up to `wait` while the flow's or the caller's
    /// share is used up: a busy caller's extra calls queue behind its own runs
    /// (and never take another caller's slots); past `wait` it says which
    /// share is used up.
    pub async fn admit_within(
        &self,
        flow: &str,
        caller: Option<&str>,
        concurrency: Option<u32>,
        wait: std::time::Duration,
    ) -> Result<Ticket, Refusal> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.inner.freed.notified();
            match self.try_admit(flow, caller, concurrency) {
                Ok(t) => return Ok(t),
                Err(r) if tokio::time::Instant::now() >= deadline => return Err(r),
                Err(_) => {
                    let _ = tokio::time::timeout_at(deadline, freed).await;
                }
            }
        }
    }

    /// Waits until a ticket for `flow` (no caller share) is free.
    pub async fn admit_waiting(&self, flow: &str, concurrency: Option<u32>) -> Ticket {
        loop {
            let freed = self.inner.freed.notified();
            if let Ok(t) = self.try_admit(flow, None, concurrency) {
                return t;
            }
            // A ticket given back wakes every waiter; the timeout is a backstop.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(500), freed).await;
        }
    }

    /// Runs currently admitted.
    pub fn running(&self) -> usize {
        lock(&self.inner.counts)
            .flows
            .values()
            .map(|h| h.runs)
            .sum()
    }
}

/// How long a sync run over its flow's or caller's share waits for a slot
/// of that share before it is refused (503 or 429).
pub const ADMISSION_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl crate::Engine {
    /// Takes a share of the run pool for a run of `version` now, or answers
    /// which share is used up (the flow's: 503; the caller's: 429).
    /// A call over its share waits up to [`ADMISSION_WAIT`] for one of its
    /// own runs (or its flow's) to end before it is refused.
    pub async fn admit_run(
        &self,
        version: &crate::LoadedVersion,
        caller: Option<&str>,
    ) -> crate::Result<Ticket> {
        let flow = version.flow.as_str();
        self.admission()
            .admit_within(
                flow,
                caller,
                version.manifest().limits.concurrency,
                ADMISSION_WAIT,
            )
            .await
            .map_err(|r| {
                metrics::counter!("flowgate_runs_refused_total", "share" => match r {
                    Refusal::Flow { .. } => "flow",
                    Refusal::Caller { .. } => "caller",
                })
                .increment(1);
                match r {
                    Refusal::Flow { limit } => crate::EngineError::FlowAtCapacity {
                        detail: format!(
                            "flow `{flow}` is already running {limit} run{} at once, its share of this server; retry shortly",
                            if limit == 1 { "" } else { "s" }
                        ),
                        retry_after_secs: 1,
                    },
                    Refusal::Caller { limit } => crate::EngineError::CallerAtCapacity {
                        detail: format!(
                            "this caller already has {limit} run{} in progress, the most one caller may have at once; retry when one finishes",
                            if limit == 1 { "" } else { "s" }
                        ),
                        retry_after_secs: 1,
                    },
                }
            })
    }
}

fn release(map: &mut HashMap<Arc<str>, Held>, key: &str) {
    if let Some(h) = map.get_mut(key) {
        h.runs = h.runs.saturating_sub(1);
        if h.runs == 0 {
            map.remove(key);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        {
            let mut c = lock(&self.inner.counts);
            release(&mut c.flows, &self.flow);
            if let Some(k) = &self.caller {
                release(&mut c.callers, k);
            }
        }
        self.inner.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_over_its_share_waits_for_its_own_run_then_is_refused() {
        let a = Admission::new(4, FairShare::default());
        // Pool 4, caller share 25 %: one run per caller.
        let held = a.try_admit("f", Some("k"), None).expect("first");
        let a2 = a.clone();
        let waiter = tokio::spawn(async move {
            a2.admit_within("f", Some("k"), None, std::time::Duration::from_secs(5))
                .await
                .is_ok()
        });
        // Another caller is not held up by the waiting one.
        let other = a.try_admit("f", Some("j"), None);
        assert!(other.is_ok());
        drop(held);
        assert!(
            waiter.await.expect("join"),
            "admitted once its own run ended"
        );
        // With nothing ending, the wait runs out and says which share is used up.
        let refused = a
            .admit_within("f", Some("j"), None, std::time::Duration::from_millis(20))
            .await;
        assert!(matches!(refused, Err(Refusal::Caller { limit: 1 })));
    }

    #[test]
    fn shares_bound_flows_and_callers_and_are_given_back() {
        let a = Admission::new(8, FairShare::default());
        assert_eq!((a.flow_limit(None), a.caller_limit()), (4, 2));
        let t1 = a.try_admit("slow", Some("k1"), None).unwrap();
        let _t2 = a.try_admit("slow", Some("k1"), None).unwrap();
        assert_eq!(
            a.try_admit("slow", Some("k1"), None).err(),
            Some(Refusal::Caller { limit: 2 })
        );
        let _t3 = a.try_admit("slow", Some("k2"), None).unwrap();
        let _t4 = a.try_admit("slow", Some("k3"), None).unwrap();
        assert_eq!(
            a.try_admit("slow", Some("k4"), None).err(),
            Some(Refusal::Flow { limit: 4 })
        );
        // Another flow is unaffected.
        assert!(a.try_admit("fast", Some("k4"), None).is_ok());
        drop(t1);
        assert!(a.try_admit("slow", Some("k1"), None).is_ok());
    }

    #[test]
    fn manifest_concurrency_lowers_but_never_raises_the_flow_share() {
        let a = Admission::new(8, FairShare::default());
        assert_eq!(a.flow_limit(Some(1)), 1);
        assert_eq!(a.flow_limit(Some(100)), 4);
        let _t = a.try_admit("one", None, Some(1)).unwrap();
        assert_eq!(
            a.try_admit("one", None, Some(1)).err(),
            Some(Refusal::Flow { limit: 1 })
        );
    }

    #[test]
    fn counters_are_pruned() {
        let a = Admission::new(4, FairShare::default());
        for i in 0..100 {
            let _t = a.try_admit(&format!("f{i}"), Some(&format!("c{i}")), None);
        }
        assert_eq!(a.running(), 0);
        assert!(lock(&a.inner.counts).callers.is_empty());
    }
}
