//! Rate limits: GCRA per (caller, flow) from a flow's `[limits] rate`/`burst`,
//! a global per-IP limiter for unauthenticated traffic, and a sampler that
//! keeps `security.rate_limited` events to one per (caller, flow) per period.
//!
//! Decisions carry what the IETF httpapi RateLimit headers need:
//! `RateLimit-Policy: "flow";q=600;w=60`, `RateLimit: "flow";r=42;t=17` and,
//! when refused, `Retry-After`.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use flowgate_core::manifest::RateSpec;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use moka::sync::Cache;

use crate::error::ceil_secs;

/// Policy name used in the headers of per-flow limits.
pub const FLOW_POLICY: &str = "flow";
/// Policy name used in the headers of the per-IP limit.
pub const IP_POLICY: &str = "ip";

/// The outcome of one rate-limit check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the call may proceed.
    pub allowed: bool,
    /// Policy name (`flow` or `ip`).
    pub policy: &'static str,
    /// Calls per window (`q`).
    pub quota: u32,
    /// Window in seconds (`w`).
    pub window_secs: u32,
    /// Calls still allowed right now (`r`).
    pub remaining: u32,
    /// Seconds until the full burst is available again (`t`).
    pub reset_secs: u64,
    /// Seconds to wait before retrying (refusals only; at least 1).
    pub retry_after_secs: Option<u64>,
}

impl RateDecision {
    /// `RateLimit-Policy`, `RateLimit` and, when refused, `Retry-After`.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            policy_header(self.policy, self.quota, self.window_secs),
            (
                "RateLimit".to_owned(),
                format!(
                    "\"{}\";r={};t={}",
                    self.policy, self.remaining, self.reset_secs
                ),
            ),
        ];
        if let Some(s) = self.retry_after_secs {
            h.push(("Retry-After".to_owned(), s.to_string()));
        }
        h
    }
}

/// The `RateLimit-Policy` header of a policy, e.g. `"flow";q=600;w=60`.
pub fn policy_header(policy: &str, quota: u32, window_secs: u32) -> (String, String) {
    (
        "RateLimit-Policy".to_owned(),
        format!("\"{policy}\";q={quota};w={window_secs}"),
    )
}

type KeyedLimiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// One GCRA limiter over many keys, with the numbers its headers need.
struct Gcra<K: Hash + Eq + Clone> {
    count: u32,
    window_secs: u32,
    burst: u32,
    period: Duration,
    limiter: KeyedLimiter<K>,
}

impl<K: Hash + Eq + Clone> Gcra<K> {
    fn new(count: u32, window_secs: u32, burst: Option<u32>) -> Self {
        let count = count.max(1);
        let window_secs = window_secs.max(1);
        let burst = burst.filter(|b| *b > 0).unwrap_or(count);
        let period = Duration::from_secs(u64::from(window_secs)) / count;
        let period = period.max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self {
            count,
            window_secs,
            burst,
            period,
            limiter: RateLimiter::dashmap(quota).with_middleware::<StateInformationMiddleware>(),
        }
    }

    fn check(&self, key: &K, policy: &'static str) -> RateDecision {
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity().min(self.burst);
                let used = self.burst - remaining;
                RateDecision {
                    allowed: true,
                    policy,
                    quota: self.count,
                    window_secs: self.window_secs,
                    remaining,
                    reset_secs: secs_ceil_or_zero(self.period * used),
                    retry_after_secs: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                let full = wait + self.period * self.burst.saturating_sub(1);
                RateDecision {
                    allowed: false,
                    policy,
                    quota: self.count,
                    window_secs: self.window_secs,
                    remaining: 0,
                    reset_secs: ceil_secs(full),
                    retry_after_secs: Some(ceil_secs(wait)),
                }
            }
        }
    }

    fn same_spec(&self, count: u32, window_secs: u32, burst: Option<u32>) -> bool {
        self.count == count.max(1)
            && self.window_secs == window_secs.max(1)
            && self.burst == burst.filter(|b| *b > 0).unwrap_or(count.max(1))
    }

    fn housekeeping(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

fn secs_ceil_or_zero(d: Duration) -> u64 {
    if d.is_zero() {
        0
    } else {
        ceil_secs(d)
    }
}

/// Per-flow limiters keyed by caller, created on first use and replaced
/// when a flow's rate or burst changes.
#[derive(Default)]
pub struct RateLimits {
    flows: RwLock<HashMap<String, Arc<Gcra<String>>>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("flows", &self.flow_count())
            .finish()
    }
}

impl RateLimits {
    /// An empty set of limiters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks (and counts) one call of `caller` to `flow` under `spec`/`burst`.
    ///
    /// `caller` is a stable caller key such as [`crate::Principal::caller_key`]
    /// (or `ip:<addr>` for anonymous callers).
    pub fn check(
        &self,
        flow: &str,
        spec: &RateSpec,
        burst: Option<u32>,
        caller: &str,
    ) -> RateDecision {
        self.limiter_for(flow, spec, burst)
            .check(&caller.to_owned(), FLOW_POLICY)
    }

    fn limiter_for(&self, flow: &str, spec: &RateSpec, burst: Option<u32>) -> Arc<Gcra<String>> {
        if let Ok(map) = self.flows.read() {
            if let Some(l) = map.get(flow) {
                if l.same_spec(spec.count, spec.window_secs, burst) {
                    return l.clone();
                }
            }
        }
        let mut map = match self.flows.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        match map.get(flow) {
            Some(l) if l.same_spec(spec.count, spec.window_secs, burst) => l.clone(),
            _ => {
                let l = Arc::new(Gcra::new(spec.count, spec.window_secs, burst));
                map.insert(flow.to_owned(), l.clone());
                l
            }
        }
    }

    /// Drops the limiter of a flow (disabled, or its limit removed).
    pub fn remove_flow(&self, flow: &str) {
        if let Ok(mut map) = self.flows.write() {
            map.remove(flow);
        }
    }

    /// Number of flows with a limiter (for `/metrics`).
    pub fn flow_count(&self) -> usize {
        self.flows.read().map(|m| m.len()).unwrap_or(0)
    }

    /// Drops idle per-caller state; call now and then (e.g. every minute).
    pub fn housekeeping(&self) {
        let limiters: Vec<_> = match self.flows.read() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => return,
        };
        for l in limiters {
            l.housekeeping();
        }
    }
}

/// A global per-IP limiter for unauthenticated traffic (default 300/minute).
pub struct IpRateLimiter {
    gcra: Gcra<IpAddr>,
}

impl std::fmt::Debug for IpRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpRateLimiter")
            .field("quota", &self.gcra.count)
            .field("window_secs", &self.gcra.window_secs)
            .finish()
    }
}

impl Default for IpRateLimiter {
    fn default() -> Self {
        Self::new(300, 60, None)
    }
}

impl IpRateLimiter {
    /// `count` calls per `window_secs`, `burst` at once (default: `count`).
    pub fn new(count: u32, window_secs: u32, burst: Option<u32>) -> Self {
        Self {
            gcra: Gcra::new(count, window_secs, burst),
        }
    }

    /// Built from a rate such as `300/minute`.
    pub fn from_spec(spec: &RateSpec, burst: Option<u32>) -> Self {
        Self::new(spec.count, spec.window_secs, burst)
    }

    /// Checks (and counts) one call from `ip`.
    pub fn check(&self, ip: IpAddr) -> RateDecision {
        self.gcra.check(&ip, IP_POLICY)
    }

    /// Drops idle per-IP state.
    pub fn housekeeping(&self) {
        self.gcra.housekeeping();
    }
}

/// Lets one event through per (caller, flow) and period, so a flood of 429s
/// produces a trickle of `security.rate_limited` events.
pub struct Sampler {
    seen: Cache<(String, String), ()>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler").finish_non_exhaustive()
    }
}

impl Sampler {
    /// At most one `true` per key and `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            seen: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(period)
                .build(),
        }
    }

    /// `true` when the gateway should emit the event now.
    pub fn should_emit(&self, caller: &str, flow: &str) -> bool {
        self.seen
            .entry((caller.to_owned(), flow.to_owned()))
            .or_insert(())
            .is_fresh()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(s: &str) -> RateSpec {
        RateSpec::parse(s).unwrap()
    }

    #[test]
    fn n_plus_first_call_is_refused_with_retry_after() {
        let rl = RateLimits::new();
        let s = spec("10/minute");
        for i in 0..10 {
            let d = rl.check("f", &s, None, "api_key:a");
            assert!(d.allowed, "call {i}");
            assert_eq!(d.remaining, 9 - i);
        }
        let d = rl.check("f", &s, None, "api_key:a");
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        // One call per 6 s replenishes.
        let ra = d.retry_after_secs.unwrap();
        assert!((5..=6).contains(&ra), "{ra}");
        let h = d.headers();
        assert_eq!(
            h[0],
            ("RateLimit-Policy".into(), "\"flow\";q=10;w=60".into())
        );
        assert!(h[1].1.starts_with("\"flow\";r=0;t="), "{:?}", h[1]);
        assert_eq!(h[2].0, "Retry-After");
        assert_eq!(h[2].1, ra.to_string());
        // Another caller, and the same caller on another flow, are unaffected.
        assert!(rl.check("f", &s, None, "api_key:b").allowed);
        assert!(rl.check("g", &s, None, "api_key:a").allowed);
    }

    #[test]
    fn headers_exactly_as_spec() {
        let rl = RateLimits::new();
        let d = rl.check("f", &spec("600/minute"), None, "c");
        assert_eq!(
            d.headers(),
            vec![
                (
                    "RateLimit-Policy".to_string(),
                    "\"flow\";q=600;w=60".to_string()
                ),
                ("RateLimit".to_string(), "\"flow\";r=599;t=1".to_string()),
            ]
        );
        let d = rl.check("f", &spec("600/minute"), None, "c");
        assert_eq!(d.headers()[1].1, "\"flow\";r=598;t=1");
    }

    #[test]
    fn burst_and_spec_changes_replace_the_limiter() {
        let rl = RateLimits::new();
        let s = spec("600/minute");
        for _ in 0..3 {
            assert!(rl.check("f", &s, Some(3), "c").allowed);
        }
        let d = rl.check("f", &s, Some(3), "c");
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs, Some(1));
        // A new burst is a new limiter with fresh state.
        let d = rl.check("f", &s, Some(5), "c");
        assert!(d.allowed);
        assert_eq!(d.remaining, 4);
        // A new rate too.
        let d = rl.check("f", &spec("2/second"), Some(5), "c");
        assert_eq!((d.allowed, d.quota, d.window_secs), (true, 2, 1));
        assert_eq!(rl.flow_count(), 1);
        rl.remove_flow("f");
        assert_eq!(rl.flow_count(), 0);
    }

    #[test]
    fn per_ip_limiter() {
        let ipl = IpRateLimiter::new(2, 60, None);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(ipl.check(a).allowed);
        assert!(ipl.check(a).allowed);
        let d = ipl.check(a);
        assert!(!d.allowed);
        assert!(d.retry_after_secs.unwrap() >= 29);
        assert_eq!(d.headers()[0].1, "\"ip\";q=2;w=60");
        assert!(ipl.check(b).allowed);
        assert!(IpRateLimiter::default().check(a).allowed);
    }

    #[test]
    fn sampler_once_per_period() {
        let s = Sampler::new(Duration::from_millis(200));
        assert!(s.should_emit("c", "f"));
        assert!(!s.should_emit("c", "f"));
        assert!(s.should_emit("c", "g"));
        assert!(s.should_emit("d", "f"));
        std::thread::sleep(Duration::from_millis(250));
        assert!(s.should_emit("c", "f"));
    }
}
