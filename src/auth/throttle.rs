//! Authentication failure throttling per client address.
//!
//! What it does: counts failed AUTH attempts per client (an IPv4 address, or an IPv6 /64: one
//! host's usual allocation) inside a sliding window and says whether a client has reached the
//! limit. An attempt is counted when it starts ([`FailureThrottle::begin`]), before the slow
//! password check, so that parallel attempts cannot get round the limit; a success takes back
//! only its own count ([`FailureThrottle::refund`]), never the failures of other connections.
//!
//! What it does not do: no clock reads (every call takes `now`), no locks (its owner decides),
//! no reply timing or disconnect policy.
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

    /// Replaces the limits (a reload); failures already counted stay (a lower
    /// `max_failures` keeps only the latest ones at the next failure).
    pub fn set_limits(&mut self, limits: ThrottleLimits) {
        self.limits = limits;
    }

    /// The number of addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.failures.len()
    }

    /// An attempt from `ip` starts at `now`: false if `ip` is throttled; otherwise the attempt
    /// is counted as a failure until [`FailureThrottle::refund`] takes it back.
    pub fn begin(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.is_throttled(ip, now) {
            return false;
        }
        self.record_failure(ip, now);
        true
    }

    /// The attempt that [`FailureThrottle::begin`] counted at `at` succeeded: that one count
    /// goes, the others stay.
    pub fn refund(&mut self, ip: IpAddr, at: Instant) {
        let ip = client_key(ip);
        if let Some(times) = self.failures.get_mut(&ip) {
            if let Some(i) = times.iter().rposition(|&t| t == at) {
                times.remove(i);
            }
            if times.is_empty() {
                self.failures.remove(&ip);
            }
        }
    }

    /// Records a failed attempt from `ip` at `now`.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) {
        let ip = client_key(ip);
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
        let ip = client_key(ip);
        let Some(times) = self.failures.get(&ip) else {
            return false;
        };
        let recent = times
            .iter()
            .filter(|&&t| !expired(t, now, self.limits.window))
            .count();
        u32::try_from(recent).unwrap_or(u32::MAX) >= self.limits.max_failures
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

/// The key a client is counted under: IPv4 as is (IPv4-mapped IPv6 as IPv4), IPv6 by its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
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
    fn attempts_count_when_they_start_and_a_success_refunds_only_itself() {
        let t0 = Instant::now();
        let mut th = FailureThrottle::new(limits(3, 60, 100));
        // Three parallel attempts from one address: each is counted before its check.
        let starts: Vec<Instant> = (0..3).map(|i| t0 + Duration::from_millis(i)).collect();
        for &at in &starts {
            assert!(th.begin(ip(1), at));
        }
        assert!(
            !th.begin(ip(1), t0 + Duration::from_millis(5)),
            "a fourth waits"
        );
        // One of them succeeds: the other connections' failures stay.
        th.refund(ip(1), starts[1]);
        assert_eq!(th.failures[&ip(1)].len(), 2);
        assert!(th.begin(ip(1), t0 + Duration::from_millis(6)));
        assert!(th.is_throttled(ip(1), t0 + Duration::from_millis(7)));
        // Refunding everything forgets the address.
        let mut one = FailureThrottle::new(limits(3, 60, 100));
        assert!(one.begin(ip(2), t0));
        one.refund(ip(2), t0);
        assert_eq!(one.tracked(), 0);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64() {
        let t0 = Instant::now();
        let mut th = FailureThrottle::new(limits(2, 60, 100));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        th.record_failure(a, t0);
        th.record_failure(b, t0);
        assert!(th.is_throttled(a, t0) && th.is_throttled(b, t0), "one /64");
        assert!(!th.is_throttled(other, t0), "another /64");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        th.record_failure(mapped, t0);
        th.record_failure("192.0.2.1".parse().unwrap(), t0);
        assert!(th.is_throttled("192.0.2.1".parse().unwrap(), t0));
        assert!(
            !th.is_throttled("192.0.2.2".parse().unwrap(), t0),
            "IPv4 is not grouped"
        );
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
