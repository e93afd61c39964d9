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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use flowgate_core::manifest::RateSpec;
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
    /// `RateLimit-Policy`, `RateLimit` and, when refused, `Retry-After`,
    /// named in lower case as they go out.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::with_capacity(3);
        h.push(policy_header(self.policy, self.quota, self.window_secs));
        h.push((
            "ratelimit",
            quoted_fields(
                self.policy,
                ("r", u64::from(self.remaining)),
                ("t", self.reset_secs),
            ),
        ));
        if let Some(s) = self.retry_after_secs {
            h.push(("retry-after", itoa::Buffer::new().format(s).to_owned()));
        }
        h
    }
}

/// The `RateLimit-Policy` header of a policy, e.g. `"flow";q=600;w=60`
/// (its name in lower case).
pub fn policy_header(policy: &str, quota: u32, window_secs: u32) -> (&'static str, String) {
    (
        "ratelimit-policy",
        quoted_fields(
            policy,
            ("q", u64::from(quota)),
            ("w", u64::from(window_secs)),
        ),
    )
}

/// `"<policy>";<a>=<n>;<b>=<m>`, written straight into one string (these
/// headers go out on every answer of a rate-limited flow).
fn quoted_fields(policy: &str, (a, n): (&str, u64), (b, m): (&str, u64)) -> String {
    let mut digits = itoa::Buffer::new();
    let mut out = String::with_capacity(policy.len() + 32);
    out.push('"');
    out.push_str(policy);
    out.push_str("\";");
    out.push_str(a);
    out.push('=');
    out.push_str(digits.format(n));
    out.push(';');
    out.push_str(b);
    out.push('=');
    out.push_str(digits.format(m));
    out
}

/// Most callers (or addresses) one limiter tracks at once. Past this the
/// least useful entries are evicted, so callers cannot grow memory without
/// bound by inventing identities.
pub const MAX_TRACKED_KEYS: u64 = 100_000;

/// One GCRA limiter over many keys, with the numbers its headers need.
///
/// The state of a key is its theoretical arrival time (TAT, nanoseconds since
/// the limiter was built) in a bounded cache; an entry idle for a whole burst
/// is dropped, which is exactly the state of a key never seen.
struct Gcra<K: Hash + Eq + Clone + Send + Sync + 'static> {
    count: u32,
    window_secs: u32,
    burst: u32,
    period: Duration,
    base: Instant,
    tats: Cache<K, Arc<AtomicU64>>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Gcra<K> {
    fn new(count: u32, window_secs: u32, burst: Option<u32>) -> Self {
        Self::with_capacity(count, window_secs, burst, MAX_TRACKED_KEYS)
    }

    fn with_capacity(count: u32, window_secs: u32, burst: Option<u32>, capacity: u64) -> Self {
        let count = count.max(1);
        let window_secs = window_secs.max(1);
        let burst = burst.filter(|b| *b > 0).unwrap_or(count);
        let period = Duration::from_secs(u64::from(window_secs)) / count;
        let period = period.max(Duration::from_nanos(1));
        let idle = (period * burst).max(Duration::from_secs(1));
        Self {
            count,
            window_secs,
            burst,
            period,
            base: Instant::now(),
            tats: Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(idle)
                .build(),
        }
    }

    fn nanos(d: Duration) -> u64 {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    fn check(&self, key: &K, policy: &'static str) -> RateDecision {
        let t = Self::nanos(self.period);
        let tolerance = t.saturating_mul(u64::from(self.burst - 1));
        let now = Self::nanos(self.base.elapsed());
        let cell = self
            .tats
            .get_with_by_ref(key, || Arc::new(AtomicU64::new(0)));
        let mut tat = cell.load(Ordering::Acquire);
        loop {
            let start = tat.max(now);
            let ahead = start - now;
            if ahead > tolerance {
                let wait = Duration::from_nanos(ahead - tolerance);
                let full = wait + self.period * self.burst.saturating_sub(1);
                return RateDecision {
                    allowed: false,
                    policy,
                    quota: self.count,
                    window_secs: self.window_secs,
                    remaining: 0,
                    reset_secs: ceil_secs(full),
                    retry_after_secs: Some(ceil_secs(wait)),
                };
            }
            let next = start.saturating_add(t);
            match cell.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    // Cells now queued ahead of `now`, rounded up.
                    let used = u32::try_from((next - now).div_ceil(t)).unwrap_or(u32::MAX);
                    let remaining = self.burst.saturating_sub(used);
                    let used = self.burst - remaining;
                    return RateDecision {
                        allowed: true,
                        policy,
                        quota: self.count,
                        window_secs: self.window_secs,
                        remaining,
                        reset_secs: secs_ceil_or_zero(self.period * used),
                        retry_after_secs: None,
                    };
                }
                Err(current) => tat = current,
            }
        }
    }

    fn same_spec(&self, count: u32, window_secs: u32, burst: Option<u32>) -> bool {
        self.count == count.max(1)
            && self.window_secs == window_secs.max(1)
            && self.burst == burst.filter(|b| *b > 0).unwrap_or(count.max(1))
    }

    fn housekeeping(&self) {
        self.tats.run_pending_tasks();
    }

    fn tracked(&self) -> u64 {
        self.tats.entry_count()
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
pub struct RateLimits {
    flows: RwLock<HashMap<String, Arc<Gcra<String>>>>,
    capacity: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::with_capacity(MAX_TRACKED_KEYS)
    }
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

    /// Limiters that track at most `capacity` callers per flow.
    pub fn with_capacity(capacity: u64) -> Self {
        Self {
            flows: RwLock::default(),
            capacity,
        }
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
                let l = Arc::new(Gcra::with_capacity(
                    spec.count,
                    spec.window_secs,
                    burst,
                    self.capacity,
                ));
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

    /// Callers tracked now, over all flows (for `/metrics`).
    pub fn tracked_callers(&self) -> u64 {
        match self.flows.read() {
            Ok(m) => m.values().map(|l| l.tracked()).sum(),
            Err(_) => 0,
        }
    }

    /// Applies pending evictions of idle per-caller state (the state is
    /// bounded without it); the engine calls it every minute.
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

/// A global per-address limiter for unauthenticated traffic (default 300/minute).
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

    /// Checks (and counts) one call from `ip` (IPv6 addresses count per /64,
    /// see [`crate::client_addr::bucket`]).
    pub fn check(&self, ip: IpAddr) -> RateDecision {
        self.gcra.check(&crate::client_addr::bucket(ip), IP_POLICY)
    }

    /// Like [`IpRateLimiter::new`], tracking at most `capacity` addresses.
    pub fn with_capacity(count: u32, window_secs: u32, burst: Option<u32>, capacity: u64) -> Self {
        Self {
            gcra: Gcra::with_capacity(count, window_secs, burst, capacity),
        }
    }

    /// Addresses tracked now (for `/metrics`).
    pub fn tracked(&self) -> u64 {
        self.gcra.tracked()
    }

    /// Applies pending evictions of idle per-address state.
    pub fn housekeeping(&self) {
        self.gcra.housekeeping();
    }
}

/// Lets one event through per (caller, flow) and period, so a flood of 429s
/// or failed logins produces a trickle of events, and counts what it holds
/// back: each emitted event carries how many were suppressed since the
/// previous one for the same key, so a monitor can still count them all.
pub struct Sampler {
    period_ns: u64,
    base: Instant,
    seen: Cache<(String, String), Arc<SampleState>>,
}

#[derive(Default)]
struct SampleState {
    /// Nanoseconds since `base` of the last emitted event (+1, so 0 is "never").
    last_emit: AtomicU64,
    /// Events held back since then.
    suppressed: AtomicU64,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler").finish_non_exhaustive()
    }
}

impl Sampler {
    /// At most one event per key and `period`.
    pub fn new(period: Duration) -> Self {
        Self::with_capacity(period, MAX_TRACKED_KEYS)
    }

    /// Like [`Sampler::new`], tracking at most `capacity` keys.
    pub fn with_capacity(period: Duration, capacity: u64) -> Self {
        Self {
            period_ns: u64::try_from(period.as_nanos()).unwrap_or(u64::MAX).max(1),
            base: Instant::now(),
            seen: Cache::builder()
                .max_capacity(capacity)
                // Long enough that a held-back count reaches the next event.
                .time_to_idle((period * 12).max(Duration::from_secs(3_600)))
                .build(),
        }
    }

    /// `Some(suppressed)` when the event should be emitted now, with the
    /// number held back for this key since the last emitted one; `None` when
    /// this one is held back (and counted).
    pub fn sample(&self, caller: &str, flow: &str) -> Option<u64> {
        let state = self
            .seen
            .get_with((caller.to_owned(), flow.to_owned()), Arc::default);
        let now = u64::try_from(self.base.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = state.last_emit.load(Ordering::Acquire);
        let due = last == 0 || now.saturating_sub(last) >= self.period_ns;
        if due
            && state
                .last_emit
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Some(state.suppressed.swap(0, Ordering::AcqRel));
        }
        state.suppressed.fetch_add(1, Ordering::AcqRel);
        None
    }

    /// `true` when the event should be emitted now (see [`Sampler::sample`]).
    pub fn should_emit(&self, caller: &str, flow: &str) -> bool {
        self.sample(caller, flow).is_some()
    }

    /// Keys tracked now (for `/metrics`).
    pub fn tracked(&self) -> u64 {
        self.seen.entry_count()
    }

    /// Applies pending evictions.
    pub fn housekeeping(&self) {
        self.seen.run_pending_tasks();
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
        assert_eq!(h[0], ("ratelimit-policy", "\"flow\";q=10;w=60".to_owned()));
        assert!(h[1].1.starts_with("\"flow\";r=0;t="), "{:?}", h[1]);
        assert_eq!(h[2].0, "retry-after");
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
                ("ratelimit-policy", "\"flow\";q=600;w=60".to_string()),
                ("ratelimit", "\"flow\";r=599;t=1".to_string()),
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
    fn per_caller_state_is_bounded() {
        let rl = RateLimits::with_capacity(100);
        let s = spec("10/minute");
        for i in 0..5_000 {
            rl.check("f", &s, None, &format!("anonymous:{i}"));
        }
        rl.housekeeping();
        assert!(rl.tracked_callers() <= 100, "{}", rl.tracked_callers());
        let ipl = IpRateLimiter::with_capacity(10, 60, None, 50);
        for i in 0..5_000u32 {
            ipl.check(IpAddr::V4(std::net::Ipv4Addr::from(i)));
        }
        ipl.housekeeping();
        assert!(ipl.tracked() <= 50, "{}", ipl.tracked());
        let sm = Sampler::with_capacity(Duration::from_secs(5), 20);
        for i in 0..1_000 {
            sm.sample(&i.to_string(), "auth");
        }
        sm.housekeeping();
        assert!(sm.tracked() <= 20, "{}", sm.tracked());
    }

    #[test]
    fn ipv6_addresses_share_their_64_prefix() {
        let ipl = IpRateLimiter::new(2, 60, None);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(ipl.check(a).allowed);
        assert!(ipl.check(b).allowed);
        assert!(!ipl.check(a).allowed, "same /64");
        assert!(ipl.check(c).allowed, "another /64");
    }

    #[test]
    fn sampler_counts_what_it_suppresses() {
        let s = Sampler::new(Duration::from_secs(3_600));
        assert_eq!(s.sample("192.0.2.1", "auth"), Some(0));
        for _ in 0..7 {
            assert_eq!(s.sample("192.0.2.1", "auth"), None);
        }
        assert_eq!(s.sample("192.0.2.2", "auth"), Some(0));
        let s = Sampler::new(Duration::from_millis(1));
        assert_eq!(s.sample("c", "f"), Some(0));
        let mut held = 0;
        let n = loop {
            match s.sample("c", "f") {
                Some(n) => break n,
                None => held += 1,
            }
        };
        assert_eq!(n, held);
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
