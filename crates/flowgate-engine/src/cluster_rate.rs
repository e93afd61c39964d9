//! `[limits] scope = "cluster"`: one rate budget shared by every node on the
//! database, in fixed windows of the rate's length.
//!
//! A node takes the budget in batches (a tenth of the window's count, at
//! most 50, at least 1) from a counter row per (flow, caller, window) and
//! admits calls from its batch without touching the database, so a busy
//! caller costs one database write per batch, not per call. The database
//! never grants more than the count per window, so the cluster never admits
//! more than the rate within a window; calls a node holds but does not use
//! by the window's end are lost (the cluster may admit up to
//! `nodes × (batch − 1)` fewer), and as with any fixed window up to twice the
//! count may pass around a window boundary. `limits.burst` does not apply.

use std::sync::Arc;

use flowgate_auth::ratelimit::{RateDecision, FLOW_POLICY};
use flowgate_core::manifest::RateSpec;
use flowgate_store::Store;

/// Per-key allowance this node holds in the current window.
#[derive(Debug, Default)]
struct Allowance {
    window_start: i64,
    granted: u64,
    used: u64,
    /// The window's total granted to all nodes at the last refill.
    total: u64,
    /// The database refused a refill: the window is spent.
    spent: bool,
}

/// The batch a node takes from a window of `count` calls.
pub fn batch_size(count: u32) -> u64 {
    u64::from((count / 10).clamp(1, 50))
}

/// Shared fixed-window limiters (PostgreSQL).
pub struct ClusterRateLimits {
    store: Store,
    held: moka::sync::Cache<(String, String), Arc<tokio::sync::Mutex<Allowance>>>,
}

impl ClusterRateLimits {
    /// Limiters counting in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            held: moka::sync::Cache::builder()
                .max_capacity(flowgate_auth::ratelimit::MAX_TRACKED_KEYS)
                .time_to_idle(std::time::Duration::from_secs(24 * 3600))
                .build(),
        }
    }

    /// Checks (and counts) one call of `caller` to `flow` under `spec`.
    pub async fn check(
        &self,
        flow: &str,
        spec: &RateSpec,
        caller: &str,
    ) -> flowgate_store::Result<RateDecision> {
        let window_ms = i64::from(spec.window_secs.max(1)) * 1000;
        let now = flowgate_core::now_ms();
        let start = now - now.rem_euclid(window_ms);
        let reset_secs = u64::try_from((start + window_ms - now + 999) / 1000)
            .unwrap_or(1)
            .max(1);
        let cell = self
            .held
            .get_with((flow.to_owned(), caller.to_owned()), Default::default);
        let mut a = cell.lock().await;
        if a.window_start != start {
            *a = Allowance {
                window_start: start,
                ..Allowance::default()
            };
        }
        if a.used >= a.granted && !a.spent {
            let (f, c, want) = (flow.to_owned(), caller.to_owned(), batch_size(spec.count));
            let limit = u64::from(spec.count);
            let (granted, total) = self
                .store
                .call(move |s| s.take_rate_allowance(&f, &c, start, limit, want))
                .await?;
            metrics::counter!("flowgate_cluster_rate_refills_total").increment(1);
            a.granted += granted;
            a.total = total;
            a.spent = granted == 0;
        }
        let allowed = a.used < a.granted;
        if allowed {
            a.used += 1;
        }
        let held = a.granted - a.used;
        let remaining = u64::from(spec.count).saturating_sub(a.total) + held;
        Ok(RateDecision {
            allowed,
            policy: FLOW_POLICY,
            quota: spec.count,
            window_secs: spec.window_secs,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_secs,
            retry_after_secs: (!allowed).then_some(reset_secs),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_a_tenth_between_one_and_fifty() {
        assert_eq!(batch_size(1), 1);
        assert_eq!(batch_size(5), 1);
        assert_eq!(batch_size(100), 10);
        assert_eq!(batch_size(600), 50);
    }

    #[tokio::test]
    async fn two_nodes_share_one_budget() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/fg.db", dir.path().display());
        let store = Store::open_and_migrate(&url, [1u8; 32]).unwrap();
        let a = ClusterRateLimits::new(store.clone());
        let b = ClusterRateLimits::new(Store::open(&url, [1u8; 32]).unwrap());
        // A day-long window, so the test never straddles a boundary.
        let spec = RateSpec::parse("30/day").unwrap();
        let mut admitted = 0;
        for i in 0..40 {
            let node = if i % 2 == 0 { &a } else { &b };
            if node.check("f", &spec, "caller").await.unwrap().allowed {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 30);
        let refused = a.check("f", &spec, "caller").await.unwrap();
        assert!(!refused.allowed);
        assert!(refused.retry_after_secs.is_some_and(|s| s >= 1));
        // Another caller has its own budget.
        assert!(b.check("f", &spec, "other").await.unwrap().allowed);
    }
}
