//! Authentication failure throttling per client address.
//!
//! What it does: counts failed AUTH attempts per [`IpAddr`] inside a sliding window and says
//! whether an address has reached the limit; a success clears the address.
//!
//! What it does not do: no clock reads (every call takes `now`), no locks (one throttle per
//! shard, used from one thread), no reply timing or disconnect policy, no subnet grouping.
//!
//! Invariants: at most [`ThrottleLimits::max_tracked`] addresses are tracked (the one whose
//! latest failure is oldest is evicted first); each address keeps at most `max_failures`
//! timestamps, all within `window` of the latest call that touched it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// When an address counts as throttled, and how much memory the throttle may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Failures within `window` that throttle an address; 0 disables throttling.
    pub max_failures: u32,
    /// How far back failures count.
    pub window: Duration,
    /// Most addresses tracked at once.
    pub max_tracked: usize,
}

impl Default for ThrottleLimits {
    /// 5 failures within 5 minutes, at most 10 000 addresses tracked.
    fn default() -> Self {
        ThrottleLimits {
            max_failures: 5,
            window: Duration::from_secs(300),
            max_tracked: 10_000,
        }
    }
}

/// Recent failure times per address.
#[derive(Debug, Clone)]
pub struct FailureThrottle {
    limits: ThrottleLimits,
    failures: HashMap<IpAddr, VecDeque<Instant>>,
}

impl Default for FailureThrottle {
    fn default() -> Self {
        FailureThrottle::new(ThrottleLimits::default())
    }
}

impl FailureThrottle {
    /// A throttle with the given limits and nothing recorded.
    pub fn new(limits: ThrottleLimits) -> FailureThrottle {
        FailureThrottle {
            limits,
            failures: HashMap::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> ThrottleLimits {
        self.limits
    }

    /// The number of addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.failures.len()
    }

    /// Records a failed attempt from `ip` at `now`.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) {
        if self.limits.max_failures == 0 || self.limits.max_tracked == 0 {
            return;
        }
        if !self.failures.contains_key(&ip) && self.failures.len() >= self.limits.max_tracked {
            self.prune(now);
            if self.failures.len() >= self.limits.max_tracked {
                self.evict_oldest();
            }
        }
        let window = self.limits.window;
        let cap = usize::try_from(self.limits.max_failures).unwrap_or(usize::MAX);
        let times = self.failures.entry(ip).or_default();
        drop_expired(times, now, window);
        times.push_back(now);
        while times.len() > cap {
            times.pop_front();
        }
    }

    /// True when `ip` has at least `max_failures` failures within `window` before `now`.
    pub fn is_throttled(&self, ip: IpAddr, now: Instant) -> bool {
        if self.limits.max_failures == 0 {
            return false;
        }
        let Some(times) = self.failures.get(&ip) else {
            return false;
        };
        let recent = times
            .iter()
            .filter(|&&t| !expired(t, now, self.limits.window))
            .count();
        u32::try_from(recent).unwrap_or(u32::MAX) >= self.limits.max_failures
    }

    /// Forgets `ip`'s failures after a successful authentication.
    pub fn record_success(&mut self, ip: IpAddr) {
        self.failures.remove(&ip);
    }

    /// Drops every address whose failures have all left the window.
    pub fn prune(&mut self, now: Instant) {
        let window = self.limits.window;
        self.failures.retain(|_, times| {
            drop_expired(times, now, window);
            !times.is_empty()
        });
    }

    /// Evicts the address whose latest failure is the oldest.
    fn evict_oldest(&mut self) {
        let oldest = self
            .failures
            .iter()
            .min_by_key(|(_, times)| times.back().copied())
            .map(|(ip, _)| *ip);
        if let Some(ip) = oldest {
            self.failures.remove(&ip);
        }
    }
}

/// True when a failure at `at` no longer counts at `now`.
fn expired(at: Instant, now: Instant, window: Duration) -> bool {
    now.saturating_duration_since(at) >= window
}

fn drop_expired(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times.front().is_some_and(|&t| expired(t, now, window)) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    fn limits(max_failures: u32, secs: u64, max_tracked: usize) -> ThrottleLimits {
        ThrottleLimits {
            max_failures,
            window: Duration::from_secs(secs),
            max_tracked,
        }
    }

    #[test]
    fn defaults() {
        let l = ThrottleLimits::default();
        assert_eq!(l.max_failures, 5);
        assert_eq!(l.window, Duration::from_secs(300));
        assert_eq!(l.max_tracked, 10_000);
    }

    #[test]
    fn throttles_at_limit_within_window() {
        let t0 = Instant::now();
        let mut th = FailureThrottle::default();
        let a = ip(1);
        for i in 0..4 {
            th.record_failure(a, t0 + Duration::from_secs(i * 10));
            assert!(!th.is_throttled(a, t0 + Duration::from_secs(i * 10)));
        }
        th.record_failure(a, t0 + Duration::from_secs(40));
        assert!(th.is_throttled(a, t0 + Duration::from_secs(40)));
        assert!(!th.is_throttled(ip(2), t0 + Duration::from_secs(40)));
        // The first failure leaves the window at t0 + 300s.
        assert!(th.is_throttled(a, t0 + Duration::from_secs(299)));
        assert!(!th.is_throttled(a, t0 + Duration::from_secs(300)));
    }

    #[test]
    fn spread_out_failures_do_not_throttle() {
        let t0 = Instant::now();
        let mut th = FailureThrottle::new(limits(3, 60, 100));
        let a = IpAddr::V6(Ipv6Addr::LOCALHOST);
        for i in 0..10 {
            let now = t0 + Duration::from_secs(i * 31);
            th.record_failure(a, now);
            assert!(!th.is_throttled(a, now), "at {i}");
        }
    }

    #[test]
    fn success_clears() {
        let t0 = Instant::now();
        let mut th = FailureThrottle::new(limits(2, 60, 100));
        th.record_failure(ip(1), t0);
        th.record_failure(ip(1), t0);
        assert!(th.is_throttled(ip(1), t0));
        th.record_success(ip(1));
        assert!(!th.is_throttled(ip(1), t0));
        assert_eq!(th.tracked(), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = Instant::now();
        let mut th = FailureThrottle::new(limits(5, 300, 100));
        for n in 0..1000 {
            th.record_failure(ip(n), t0 + Duration::from_millis(u64::from(n)));
            assert!(th.tracked() <= 100);
        }
        // The newest addresses survive; the oldest were evicted.
        assert!(th.failures.contains_key(&ip(999)));
        assert!(!th.failures.contains_key(&ip(0)));
        // Per-address history is capped at max_failures.
        for _ in 0..50 {
            th.record_failure(ip(999), t0 + Duration::from_secs(1));
        }
        assert_eq!(th.failures[&ip(999)].len(), 5);
    }

    #[test]
    fn expired_entries_are_pruned_before_evicting() {
        let t0 = Instant::now();
        let mut th = FailureThrottle::new(limits(2, 60, 3));
        th.record_failure(ip(1), t0);
        th.record_failure(ip(1), t0);
        th.record_failure(ip(2), t0 + Duration::from_secs(50));
        th.record_failure(ip(3), t0 + Duration::from_secs(50));
        // ip(1) expired at t0 + 60s: it is pruned, ip(2) and ip(3) stay.
        th.record_failure(ip(4), t0 + Duration::from_secs(70));
        assert_eq!(th.tracked(), 3);
        assert!(!th.failures.contains_key(&ip(1)));
        th.prune(t0 + Duration::from_secs(200));
        assert_eq!(th.tracked(), 0);
    }

    #[test]
    fn zero_limits_never_throttle() {
        let t0 = Instant::now();
        let mut th = FailureThrottle::new(limits(0, 60, 10));
        th.record_failure(ip(1), t0);
        assert!(!th.is_throttled(ip(1), t0));
        assert_eq!(th.tracked(), 0);
    }
}
