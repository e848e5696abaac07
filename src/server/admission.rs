//! Per-client-address admission of inbound connections, for the whole host.
//!
//! What it does: counts the open connections and the recent connection rate of each client
//! address and says whether a new connection from that address may start
//! (`[smtp] max_connections_per_ip`, `[smtp] max_connection_rate_per_ip`). The rate is a token
//! bucket per address: it holds at most `rate` tokens, refills at `rate` tokens per second, and
//! every admitted connection takes one. One table serves every shard (the kernel spreads one
//! address's connections over the shards), so the limits hold for the host.
//!
//! What it does not do: no I/O and no replies (the connection answers `421 4.7.0`), no grouping
//! of addresses into networks (each IPv6 address counts on its own), no shard-wide limit (the
//! accept loop has it).
//!
//! Invariants: the table is split into [`STRIPES`] parts by address, each behind its own
//! mutex, held only to look at and change one address (never across an `.await`); an address
//! has an entry only while it has open connections or a bucket that is not yet full; entries
//! older than one second with no open connection are swept at most once a second, so the
//! table stays bounded by the open connections plus the last second's new ones. A refused
//! connection takes no token and is not counted as open. New limits (a reload) apply to the
//! next connection; a connection admitted while nothing was limited is not counted, so a limit
//! set later counts only the connections that start after it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often idle entries are swept (also how long a drained bucket takes to refill).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Parts of the table, so that shards admitting different addresses rarely wait for each other.
pub const STRIPES: usize = 64;

/// The limits, 0 meaning unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Open connections per address.
    pub max_connections: usize,
    /// New connections per address per second (and the burst).
    pub rate: u32,
}

impl Limits {
    /// `smtp.max_connections_per_ip` and `smtp.max_connection_rate_per_ip`.
    pub fn from_config(config: &crate::config::Config) -> Limits {
        Limits {
            max_connections: config.smtp.max_connections_per_ip,
            rate: config.smtp.max_connection_rate_per_ip,
        }
    }
}

/// What one address is doing.
#[derive(Debug)]
struct Client {
    /// Connections open now.
    open: usize,
    /// Tokens left in the bucket.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    refilled: Instant,
}

/// The per-address table of the host.
#[derive(Debug)]
pub struct Admission {
    max_connections: AtomicUsize,
    rate: AtomicU32,
    stripes: Box<[Mutex<HashMap<IpAddr, Client>>]>,
    hasher: RandomState,
    epoch: Instant,
    /// When the last sweep ran, in milliseconds since `epoch`.
    swept_ms: AtomicU64,
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The address already has `max_connections_per_ip` connections open.
    TooManyOpen,
    /// The address opened too many connections in the last second.
    TooFast,
}

impl Admission {
    /// An empty table with these limits.
    pub fn new(limits: Limits) -> Self {
        Admission {
            max_connections: AtomicUsize::new(limits.max_connections),
            rate: AtomicU32::new(limits.rate),
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
            swept_ms: AtomicU64::new(0),
        }
    }

    /// The host's table for the limits of `[smtp]`.
    pub fn host(config: &crate::config::Config) -> Admission {
        Admission::new(Limits::from_config(config))
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections.load(Ordering::Relaxed),
            rate: self.rate.load(Ordering::Relaxed),
        }
    }

    /// Replaces the limits (a reload); connections already admitted stay counted.
    pub fn set_limits(&self, limits: Limits) {
        self.max_connections
            .store(limits.max_connections, Ordering::Relaxed);
        self.rate.store(limits.rate, Ordering::Relaxed);
    }

    /// True when neither limit is set (nothing is tracked then).
    pub fn unlimited(&self) -> bool {
        let l = self.limits();
        l.max_connections == 0 && l.rate == 0
    }

    fn stripe(&self, ip: IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Client>> {
        let i = (self.hasher.hash_one(ip) as usize) % STRIPES;
        self.stripes[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new connection from `ip` at `now`. `Ok(true)`: it is counted as open until
    /// [`Self::release`]; `Ok(false)`: nothing is limited, so nothing is counted (and nothing
    /// is to be released).
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<bool, Refusal> {
        let limits = self.limits();
        if limits.max_connections == 0 && limits.rate == 0 {
            return Ok(false);
        }
        self.sweep(now);
        let rate = f64::from(limits.rate);
        let mut clients = self.stripe(ip);
        let client = clients.entry(ip).or_insert(Client {
            open: 0,
            tokens: rate,
            refilled: now,
        });
        if limits.max_connections > 0 && client.open >= limits.max_connections {
            return Err(Refusal::TooManyOpen);
        }
        if limits.rate > 0 {
            let elapsed = now.saturating_duration_since(client.refilled).as_secs_f64();
            client.tokens = (client.tokens + elapsed * rate).min(rate);
            client.refilled = now;
            if client.tokens < 1.0 {
                return Err(Refusal::TooFast);
            }
            client.tokens -= 1.0;
        }
        client.open += 1;
        Ok(true)
    }

    /// A connection counted by [`Self::admit`] (`Ok(true)`) from `ip` ended.
    pub fn release(&self, ip: IpAddr) {
        let mut clients = self.stripe(ip);
        if let Some(client) = clients.get_mut(&ip) {
            client.open = client.open.saturating_sub(1);
            if client.open == 0 && self.limits().rate == 0 {
                clients.remove(&ip);
            }
        }
    }

    /// Addresses tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }

    /// Drops entries that have no open connection and a full bucket, at most once a second
    /// (whichever caller finds the sweep due does it, one stripe at a time).
    fn sweep(&self, now: Instant) {
        let now_ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        let last = self.swept_ms.load(Ordering::Acquire);
        let every = SWEEP_EVERY.as_millis() as u64;
        if now_ms.saturating_sub(last) < every
            || self
                .swept_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        for stripe in self.stripes.iter() {
            stripe
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, c| {
                    c.open > 0 || now.saturating_duration_since(c.refilled) < SWEEP_EVERY
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn open_connections_are_limited_per_address() {
        let a = Admission::new(Limits {
            max_connections: 2,
            rate: 0,
        });
        let now = Instant::now();
        assert_eq!(a.admit(A, now), Ok(true));
        assert_eq!(a.admit(A, now), Ok(true));
        assert_eq!(a.admit(A, now), Err(Refusal::TooManyOpen));
        assert_eq!(a.admit(B, now), Ok(true));
        a.release(A);
        assert_eq!(a.admit(A, now), Ok(true));
        a.release(A);
        a.release(A);
        a.release(B);
        assert_eq!(a.tracked(), 0);
    }

    #[test]
    fn rate_is_a_token_bucket_with_a_burst_of_the_rate() {
        let a = Admission::new(Limits {
            max_connections: 0,
            rate: 3,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(a.admit(A, t0), Ok(true));
            a.release(A);
        }
        assert_eq!(a.admit(A, t0), Err(Refusal::TooFast));
        assert_eq!(a.admit(B, t0), Ok(true));
        // One token comes back every third of a second.
        let t1 = t0 + Duration::from_millis(340);
        assert_eq!(a.admit(A, t1), Ok(true));
        assert_eq!(a.admit(A, t1), Err(Refusal::TooFast));
    }

    #[test]
    fn idle_entries_are_swept() {
        let a = Admission::new(Limits {
            max_connections: 5,
            rate: 10,
        });
        let t0 = Instant::now();
        for i in 0..100u8 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, i));
            a.admit(ip, t0).unwrap();
            a.release(ip);
        }
        a.admit(A, t0).unwrap();
        assert_eq!(a.tracked(), 101);
        a.admit(B, t0 + Duration::from_secs(2)).unwrap();
        // A is still open; B was just admitted; the hundred idle ones are gone.
        assert_eq!(a.tracked(), 2);
    }

    #[test]
    fn new_limits_apply_to_the_next_connection() {
        let a = Admission::new(Limits::default());
        let now = Instant::now();
        // Unlimited: not counted, so nothing to release.
        assert_eq!(a.admit(A, now), Ok(false));
        a.set_limits(Limits {
            max_connections: 1,
            rate: 0,
        });
        assert_eq!(a.admit(A, now), Ok(true));
        assert_eq!(a.admit(A, now), Err(Refusal::TooManyOpen));
        a.set_limits(Limits {
            max_connections: 2,
            rate: 0,
        });
        assert_eq!(a.admit(A, now), Ok(true));
        // Back to unlimited: the counted ones are still released.
        a.set_limits(Limits::default());
        a.release(A);
        a.release(A);
        assert_eq!(a.tracked(), 0);
    }

    #[test]
    fn unlimited_tracks_nothing() {
        let a = Admission::new(Limits::default());
        for _ in 0..1000 {
            a.admit(A, Instant::now()).unwrap();
        }
        assert_eq!(a.tracked(), 0);
    }
}
