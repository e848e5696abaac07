//! Limits that hold for the whole host: one state per destination, shared by every shard's
//! scheduler, so that "2 connections and 300 messages a minute" means that on a 32-core host
//! too.
//!
//! What it does: keeps, per destination key, the connections open or being opened host-wide
//! (leases), the message rate and the connection rate as GCRA schedules (one theoretical
//! arrival time each), and a suspension with its reason, all in atomics (the reason behind a
//! mutex that only suspensions and operators take). A shard takes a lease before it opens a
//! connection and gives it back when the connection closes or fails to open (an idle
//! connection closes at once when another shard was refused a lease); it takes a rate token
//! before it hands a job to a connection. The registry of keys is behind a mutex taken
//! when a shard starts using a destination and once a second to forget unused ones.
//!
//! What it does not do: no waiting (a caller told "not now" asks again at the time it is
//! given), no I/O, no knowledge of other hosts.
//!
//! Invariants: the leases of a destination never exceed the `max_connections` each taker
//! passes; a GCRA never grants more than `messages` tokens in any window of `per` (after a
//! burst of `messages` at the start); times are nanoseconds since the registry's epoch, so all
//! shards (threads of one process) compare them; arithmetic saturates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Rate;

/// The registry of every destination's shared state.
#[derive(Debug)]
pub struct HostLimits {
    epoch: Instant,
    dests: Mutex<HashMap<String, Arc<SharedDest>>>,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits::new()
    }
}

impl HostLimits {
    /// An empty registry.
    pub fn new() -> HostLimits {
        HostLimits {
            epoch: Instant::now(),
            dests: Mutex::new(HashMap::new()),
        }
    }

    /// The shared state of destination `key` (made on first use).
    pub fn entry(&self, key: &str) -> Arc<SharedDest> {
        let mut dests = self.dests.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = dests.get(key) {
            return d.clone();
        }
        let d = Arc::new(SharedDest::new(self.epoch));
        dests.insert(key.to_owned(), d.clone());
        d
    }

    /// Forgets destinations no shard uses any more, with nothing in force: no lease, no
    /// suspension, no rate debt (a rate's schedule is kept until it has caught up with now).
    pub fn prune(&self, now: Instant) {
        let now = SharedDest::ns(self.epoch, now);
        let mut dests = self.dests.lock().unwrap_or_else(|e| e.into_inner());
        dests.retain(|_, d| Arc::strong_count(d) > 1 || d.in_force(now));
    }

    /// Destinations known.
    pub fn len(&self) -> usize {
        self.dests.lock().map_or(0, |d| d.len())
    }

    /// True when no destination is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One destination's host-wide state.
#[derive(Debug)]
pub struct SharedDest {
    epoch: Instant,
    leases: AtomicUsize,
    messages: Gcra,
    connections: Gcra,
    /// Nanoseconds since the epoch; 0 = not suspended.
    suspended_until: AtomicU64,
    /// When a shard was last refused a lease (nanoseconds since the epoch; 0 = never).
    refused_at: AtomicU64,
    /// A shaping rule's reduction of the message rate, packed ([`Reduction`]; 0 = none).
    rate_reduction: AtomicU64,
    /// A shaping rule's reduction of the connection limit, packed (0 = none).
    conn_reduction: AtomicU64,
    reason: Mutex<String>,
}

impl SharedDest {
    fn new(epoch: Instant) -> SharedDest {
        SharedDest {
            epoch,
            leases: AtomicUsize::new(0),
            messages: Gcra::default(),
            connections: Gcra::default(),
            suspended_until: AtomicU64::new(0),
            refused_at: AtomicU64::new(0),
            rate_reduction: AtomicU64::new(0),
            conn_reduction: AtomicU64::new(0),
            reason: Mutex::new(String::new()),
        }
    }

    fn ns(epoch: Instant, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn at(&self, ns: u64) -> Instant {
        super::later(self.epoch, Duration::from_nanos(ns))
    }

    fn in_force(&self, now: u64) -> bool {
        self.leases.load(Ordering::Acquire) > 0
            || self.suspended_until.load(Ordering::Acquire) > now
            || self.messages.tat.load(Ordering::Acquire) > now
            || self.connections.tat.load(Ordering::Acquire) > now
    }

    /// Takes a connection lease if fewer than `max` are held host-wide.
    pub fn try_lease(&self, max: usize) -> bool {
        self.leases
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Notes that a shard wanted a lease at `now` and found none.
    pub fn refused(&self, now: Instant) {
        let n = Self::ns(self.epoch, now).max(1);
        self.refused_at.store(n, Ordering::Release);
    }

    /// Whether a shard was refused a lease within `within` of `now`: an idle connection then
    /// gives its lease back rather than wait for mail of its own shard.
    pub fn contended(&self, now: Instant, within: Duration) -> bool {
        let at = self.refused_at.load(Ordering::Acquire);
        let now = Self::ns(self.epoch, now);
        at != 0 && now.saturating_sub(at) <= u64::try_from(within.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Gives a lease back.
    pub fn release(&self) {
        let _ = self
            .leases
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Leases held host-wide.
    pub fn leases(&self) -> usize {
        self.leases.load(Ordering::Acquire)
    }

    /// Takes a message token at `now`, or says when one is due.
    pub fn take_message(&self, now: Instant, rate: Rate) -> Result<(), Instant> {
        let n = Self::ns(self.epoch, now);
        self.messages.take(n, rate).map_err(|t| self.at(t))
    }

    /// When a message token is due, if none is available at `now`.
    pub fn message_due(&self, now: Instant, rate: Rate) -> Option<Instant> {
        let n = Self::ns(self.epoch, now);
        self.messages.due(n, rate).map(|t| self.at(t))
    }

    /// Message tokens available at `now` (for operators).
    pub fn message_tokens(&self, now: Instant, rate: Rate) -> f64 {
        self.messages.available(Self::ns(self.epoch, now), rate)
    }

    /// Takes a new-connection token at `now`, or says when one is due.
    pub fn take_connection(&self, now: Instant, rate: Rate) -> Result<(), Instant> {
        let n = Self::ns(self.epoch, now);
        self.connections.take(n, rate).map_err(|t| self.at(t))
    }

    /// Publishes a shaping rule's reduction (factor `value` of rule `rule` at `now`, doubling
    /// back every `recover_after` of that rule) of the message rate (`rate`) or the connection
    /// limit, unless a deeper one is in force: every shard then applies it.
    pub fn reduce(
        &self,
        rate: bool,
        reduction: Reduction,
        now: Instant,
        recover_after: impl Fn(usize) -> Option<Duration>,
    ) {
        let cell = if rate {
            &self.rate_reduction
        } else {
            &self.conn_reduction
        };
        let new = reduction.pack(self.epoch);
        let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
            let current = Reduction::unpack(old, self.epoch)
                .map_or(1.0, |r| r.at(now, recover_after(r.rule)));
            (reduction.value < current).then_some(new)
        });
    }

    /// The reductions in force at `now` (message rate, connections), 1.0 for none; a rule the
    /// caller no longer knows (`recover_after` says None) reduces nothing.
    pub fn reductions(
        &self,
        now: Instant,
        recover_after: impl Fn(usize) -> Option<Duration>,
    ) -> (f64, f64) {
        let at = |cell: &AtomicU64| {
            Reduction::unpack(cell.load(Ordering::Acquire), self.epoch)
                .map_or(1.0, |r| r.at(now, recover_after(r.rule)))
        };
        (at(&self.rate_reduction), at(&self.conn_reduction))
    }

    /// Suspends the destination (for every shard) until `until`, for `reason`.
    pub fn suspend(&self, until: Instant, reason: String) {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason;
        let n = Self::ns(self.epoch, until).max(1);
        self.suspended_until.store(n, Ordering::Release);
    }

    /// Lifts a suspension.
    pub fn resume(&self) {
        self.suspended_until.store(0, Ordering::Release);
    }

    /// Until when the destination is suspended at `now`, if it is.
    pub fn suspended_until(&self, now: Instant) -> Option<Instant> {
        let until = self.suspended_until.load(Ordering::Acquire);
        (until > Self::ns(self.epoch, now)).then(|| self.at(until))
    }

    /// The suspension in force at `now`, with its reason.
    pub fn suspension(&self, now: Instant) -> Option<(Instant, String)> {
        let until = self.suspended_until(now)?;
        let reason = self
            .reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Some((until, reason))
    }
}

/// A shaping rule's reduction: a factor in `(0, 1)` set at `since` by rule `rule`, doubling
/// back every `recover_after` of the rule. Packed in 64 bits to be read and replaced whole:
/// rule (12 bits), factor (16 bits, in 1/65535), since (36 bits, in 10 ms since the epoch:
/// about 21 years).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reduction {
    /// The rule's index in the shaping file.
    pub rule: usize,
    /// The factor when set.
    pub value: f64,
    /// When it was set.
    pub since: Instant,
}

impl Reduction {
    const TICK_NS: u128 = 10_000_000;

    fn pack(&self, epoch: Instant) -> u64 {
        let rule = (self.rule as u64).min(0xfff);
        let value = (self.value.clamp(0.0, 1.0) * 65535.0).round() as u64;
        let since = (self.since.saturating_duration_since(epoch).as_nanos() / Self::TICK_NS)
            .min((1 << 36) - 1) as u64;
        // Never 0: 0 means "none".
        (rule << 52) | (value << 36) | since.max(1)
    }

    fn unpack(bits: u64, epoch: Instant) -> Option<Reduction> {
        if bits == 0 {
            return None;
        }
        let since = Duration::from_nanos((bits & ((1 << 36) - 1)).saturating_mul(10_000_000));
        Some(Reduction {
            rule: (bits >> 52) as usize,
            value: ((bits >> 36) & 0xffff) as f64 / 65535.0,
            since: super::later(epoch, since),
        })
    }

    /// The factor at `now`: doubled for every `recover_after` gone by, at most 1.
    fn at(&self, now: Instant, recover_after: Option<Duration>) -> f64 {
        let Some(every) = recover_after else {
            return 1.0;
        };
        let steps = now.saturating_duration_since(self.since).as_nanos() / every.as_nanos().max(1);
        let steps = i32::try_from(steps.min(64)).unwrap_or(64);
        (self.value * 2f64.powi(steps)).min(1.0)
    }
}

/// A generic cell rate algorithm schedule: the theoretical arrival time of the next token.
#[derive(Debug, Default)]
struct Gcra {
    tat: AtomicU64,
}

/// Nanoseconds per token, and the tolerance that allows a burst of `messages`.
fn period(rate: Rate) -> (u64, u64) {
    let per = u64::try_from(rate.per.as_nanos()).unwrap_or(u64::MAX);
    let n = u64::from(rate.messages.max(1));
    let t = (per / n).max(1);
    (t, t.saturating_mul(n - 1))
}

impl Gcra {
    fn take(&self, now: u64, rate: Rate) -> Result<(), u64> {
        let (t, tolerance) = period(rate);
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let base = tat.max(now);
            if base - now > tolerance {
                return Err(base - tolerance);
            }
            match self.tat.compare_exchange_weak(
                tat,
                base.saturating_add(t),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => tat = seen,
            }
        }
    }

    fn due(&self, now: u64, rate: Rate) -> Option<u64> {
        let (_, tolerance) = period(rate);
        let base = self.tat.load(Ordering::Acquire).max(now);
        (base - now > tolerance).then(|| base - tolerance)
    }

    fn available(&self, now: u64, rate: Rate) -> f64 {
        let (t, tolerance) = period(rate);
        let base = self.tat.load(Ordering::Acquire).max(now);
        let room = tolerance.saturating_add(t).saturating_sub(base - now);
        room as f64 / t as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(messages: u32, secs: u64) -> Rate {
        Rate {
            messages,
            per: Duration::from_secs(secs),
        }
    }

    #[test]
    fn leases_never_pass_the_limit_across_threads() {
        let host = Arc::new(HostLimits::new());
        let taken = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (host, taken) = (host.clone(), taken.clone());
                std::thread::spawn(move || {
                    let d = host.entry("mx:a");
                    for _ in 0..10_000 {
                        if d.try_lease(3) {
                            let now = taken.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= 3, "{now} leases");
                            taken.fetch_sub(1, Ordering::SeqCst);
                            d.release();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(host.entry("mx:a").leases(), 0);
        host.entry("mx:a").release();
        assert_eq!(
            host.entry("mx:a").leases(),
            0,
            "a release never goes below zero"
        );
    }

    #[test]
    fn a_rate_grants_its_burst_then_one_token_per_period() {
        let host = HostLimits::new();
        let d = host.entry("mx:a");
        let r = rate(5, 1);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(d.take_message(t0, r).is_ok());
        }
        let due = d.take_message(t0, r).unwrap_err();
        let wait = due.duration_since(t0);
        assert!(
            wait > Duration::from_millis(190) && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        assert_eq!(d.message_due(t0, r), Some(due));
        assert!(d.take_message(due, r).is_ok());
        assert!(d.take_message(due, r).is_err());
        // Over 10 s from the start: at most the burst plus 10 s of tokens.
        let mut granted = 6;
        let mut now = due;
        let end = t0 + Duration::from_secs(10);
        while now < end {
            if d.take_message(now, r).is_ok() {
                granted += 1;
            }
            now += Duration::from_millis(7);
        }
        assert!((54..=55).contains(&granted), "{granted}");
        assert!(d.message_tokens(now + Duration::from_secs(60), r) >= 4.99);
    }

    #[test]
    fn shards_share_a_rate_and_a_suspension() {
        let host = Arc::new(HostLimits::new());
        let r = rate(100, 1);
        let t0 = Instant::now();
        let counts: Vec<usize> = (0..2)
            .map(|_| {
                let host = host.clone();
                std::thread::spawn(move || {
                    let d = host.entry("mx:b");
                    (0..1000).filter(|_| d.take_message(t0, r).is_ok()).count()
                })
            })
            .map(|h| h.join().unwrap())
            .collect();
        assert_eq!(counts.iter().sum::<usize>(), 100, "{counts:?}");
        let d = host.entry("mx:b");
        d.suspend(t0 + Duration::from_secs(60), "421 from a rule".into());
        let other = host.entry("mx:b");
        let (until, why) = other.suspension(t0).unwrap();
        assert_eq!(
            (until, why.as_str()),
            (t0 + Duration::from_secs(60), "421 from a rule")
        );
        other.resume();
        assert!(d.suspended_until(t0).is_none());
    }

    #[test]
    fn a_reduction_is_shared_the_deepest_wins_and_it_doubles_back() {
        let host = HostLimits::new();
        let (a, b) = (host.entry("mx:r"), host.entry("mx:r"));
        let t0 = Instant::now();
        let every = |_: usize| Some(Duration::from_secs(60));
        assert_eq!(b.reductions(t0, every), (1.0, 1.0));
        let half = Reduction {
            rule: 3,
            value: 0.5,
            since: t0,
        };
        a.reduce(true, half, t0, every);
        let (rate, conns) = b.reductions(t0, every);
        assert!((rate - 0.5).abs() < 1e-4 && conns == 1.0, "{rate} {conns}");
        // A shallower one does not replace it; a deeper one does.
        a.reduce(
            true,
            Reduction {
                value: 0.75,
                ..half
            },
            t0,
            every,
        );
        assert!((b.reductions(t0, every).0 - 0.5).abs() < 1e-4);
        a.reduce(
            true,
            Reduction {
                value: 0.25,
                ..half
            },
            t0,
            every,
        );
        assert!((b.reductions(t0, every).0 - 0.25).abs() < 1e-4);
        // It doubles back every minute, and a rule no longer known ends it.
        let later = t0 + Duration::from_secs(61);
        assert!((b.reductions(later, every).0 - 0.5).abs() < 1e-3);
        assert_eq!(b.reductions(later + Duration::from_secs(120), every).0, 1.0);
        assert_eq!(b.reductions(t0, |_| None).0, 1.0);
    }

    #[test]
    fn unused_destinations_are_forgotten_once_nothing_is_in_force() {
        let host = HostLimits::new();
        let t0 = Instant::now();
        {
            let d = host.entry("mx:c");
            d.take_message(t0, rate(1, 3600)).unwrap();
            let e = host.entry("mx:e");
            assert!(e.try_lease(1));
            host.entry("mx:d");
        }
        host.prune(t0);
        // mx:c still owes its rate and mx:e holds a lease; mx:d is gone.
        assert_eq!(host.len(), 2);
        host.entry("mx:e").release();
        host.prune(t0 + Duration::from_secs(3601));
        assert!(host.is_empty());
    }
}
