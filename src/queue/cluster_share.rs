//! This host's share of limits that hold across a cluster of nodes: the link to the node's
//! cluster agent, and the token buckets the agent fills from the shared rate schedules.
//!
//! What it does: [`ClusterLink`] is what every destination of a clustered host shares: whether
//! the cluster state is degraded (Redis unreachable: every rate then runs on a local share of
//! `1 / nodes`), how many nodes there are, the counters of the agent, and the channel on
//! which the shards tell the agent about the suspensions and reductions they decide
//! ([`Note`]). [`Bucket`] holds message (or connection) tokens that the agent fetched in a
//! batch from the cluster-wide schedule; shards spend them with one atomic decrement and
//! note when they wanted one, so the agent knows which destinations to refill.
//!
//! What it does not do: no I/O (the agent in `crate::cluster` talks to Redis), no waiting.
//!
//! Invariants: a token is spent at most once and only while the bucket's validity (renewed by
//! each refill) lasts: tokens left when it ends are dropped; times are nanoseconds since the
//! host registry's epoch.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Rate;

/// What a shard decided that every node must apply.
#[derive(Clone, Debug, PartialEq)]
pub enum Note {
    /// Destination `key` is suspended until `until_ms` (Unix milliseconds) for `reason`.
    Suspend {
        /// The destination key.
        key: String,
        /// Until when (Unix milliseconds).
        until_ms: u64,
        /// Why.
        reason: String,
    },
    /// Destination `key`'s suspension is lifted.
    Resume {
        /// The destination key.
        key: String,
    },
    /// A shaping rule reduced destination `key`'s message rate (`rate`) or connection limit.
    Reduce {
        /// The destination key.
        key: String,
        /// The message rate (true) or the connection limit (false).
        rate: bool,
        /// The rule's index in the shaping file.
        rule: usize,
        /// The factor.
        value: f64,
        /// When it was set (Unix milliseconds).
        since_ms: u64,
    },
}

/// Counters of the cluster agent, for metrics.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Redis commands sent.
    pub commands: AtomicU64,
    /// Times the agent lost Redis (each starts a degraded period).
    pub failures: AtomicU64,
}

/// The link between a clustered host's destinations and its cluster agent.
#[derive(Debug)]
pub struct ClusterLink {
    degraded: AtomicBool,
    nodes: AtomicUsize,
    notes: mpsc::Sender<Note>,
    /// The agent's counters.
    pub stats: ClusterStats,
}

impl ClusterLink {
    /// A link whose notes go to `notes`; it starts degraded (no Redis seen yet), as one node.
    pub fn new(notes: mpsc::Sender<Note>) -> ClusterLink {
        ClusterLink {
            degraded: AtomicBool::new(true),
            nodes: AtomicUsize::new(1),
            notes,
            stats: ClusterStats::default(),
        }
    }

    /// True while the cluster state cannot be read or written.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// Sets the degraded state; returns the previous one.
    pub fn set_degraded(&self, degraded: bool) -> bool {
        self.degraded.swap(degraded, Ordering::AcqRel)
    }

    /// Nodes in the cluster, as last seen (at least 1).
    pub fn nodes(&self) -> usize {
        self.nodes.load(Ordering::Acquire).max(1)
    }

    /// Records the number of nodes.
    pub fn set_nodes(&self, n: usize) {
        self.nodes.store(n.max(1), Ordering::Release);
    }

    /// Tells the agent (a dropped agent is ignored: the state is then local anyway).
    pub fn note(&self, note: Note) {
        let _ = self.notes.send(note);
    }

    /// This node's share of `rate` while degraded: `1 / nodes` of it (at least 1 message).
    pub fn local_share(&self, rate: Rate) -> Rate {
        let n = u32::try_from(self.nodes()).unwrap_or(u32::MAX);
        Rate {
            messages: (rate.messages / n).max(1),
            per: rate.per,
        }
    }
}

/// Unix milliseconds of `t` (an `Instant`), read against the clocks now.
pub fn unix_ms(t: Instant) -> u64 {
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let wall = if t >= now {
        wall.saturating_add(t - now)
    } else {
        wall.saturating_sub(now - t)
    };
    u64::try_from(wall.as_millis()).unwrap_or(u64::MAX)
}

/// The `Instant` of Unix milliseconds `ms`, read against the clocks now.
pub fn instant_of_ms(ms: u64) -> Instant {
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = Duration::from_millis(ms);
    if at >= wall {
        super::later(now, at - wall)
    } else {
        now.checked_sub(wall - at).unwrap_or(now)
    }
}

/// How long a shard that found no token waits before it looks again.
const EMPTY_WAIT_NS: u64 = 5_000_000;

/// Tokens fetched from a cluster-wide schedule, spent locally.
#[derive(Debug, Default)]
pub struct Bucket {
    tokens: AtomicU64,
    /// The batch's end of validity (nanoseconds since the epoch).
    valid_until: AtomicU64,
    /// When a shard last took or wanted a token (0 = never).
    wanted_at: AtomicU64,
    /// The schedule refused: no refill is asked before this time.
    not_before: AtomicU64,
    /// The rate the shards asked with, packed (messages << 32 | milliseconds per period).
    rate: AtomicU64,
}

impl Bucket {
    fn note_rate(&self, rate: Rate) {
        let per = u64::try_from(rate.per.as_millis())
            .unwrap_or(u64::MAX)
            .min(u32::MAX.into());
        let packed = (u64::from(rate.messages) << 32) | per;
        if self.rate.load(Ordering::Relaxed) != packed {
            self.rate.store(packed, Ordering::Relaxed);
        }
    }

    /// Takes a token at `now`, or says when to look again.
    pub fn take(&self, now: u64, rate: Rate) -> Result<(), u64> {
        self.note_rate(rate);
        self.wanted_at.store(now.max(1), Ordering::Relaxed);
        if self.valid_until.load(Ordering::Acquire) > now
            && self
                .tokens
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
        {
            return Ok(());
        }
        Err(self.retry_at(now))
    }

    /// When a token is due, if none is at hand at `now` (noting that one is wanted).
    pub fn due(&self, now: u64, rate: Rate) -> Option<u64> {
        self.note_rate(rate);
        self.wanted_at.store(now.max(1), Ordering::Relaxed);
        (self.available(now) < 1.0).then(|| self.retry_at(now))
    }

    fn retry_at(&self, now: u64) -> u64 {
        self.not_before
            .load(Ordering::Acquire)
            .max(now.saturating_add(EMPTY_WAIT_NS))
    }

    /// Tokens at hand at `now`.
    pub fn available(&self, now: u64) -> f64 {
        match self.valid_until.load(Ordering::Acquire) > now {
            true => self.tokens.load(Ordering::Acquire) as f64,
            false => 0.0,
        }
    }

    /// The rate the shards last asked with, if any.
    pub fn rate(&self) -> Option<Rate> {
        let packed = self.rate.load(Ordering::Relaxed);
        (packed != 0).then(|| Rate {
            messages: (packed >> 32) as u32,
            per: Duration::from_millis(packed & 0xffff_ffff),
        })
    }

    /// Whether a shard took or wanted a token within `within` of `now`.
    pub fn wanted(&self, now: u64, within: u64) -> bool {
        let at = self.wanted_at.load(Ordering::Relaxed);
        at != 0 && now.saturating_sub(at) <= within
    }

    /// Whether the batch at hand ends within `within` of `now` (or has ended).
    pub fn ends_within(&self, now: u64, within: u64) -> bool {
        self.valid_until.load(Ordering::Acquire) <= now.saturating_add(within)
    }

    /// Whether the agent may ask the schedule again at `now`.
    pub fn may_ask(&self, now: u64) -> bool {
        self.not_before.load(Ordering::Acquire) <= now
    }

    /// Adds `n` tokens valid until `until` (tokens of an expired batch are dropped first).
    pub fn fill(&self, n: u64, now: u64, until: u64) {
        if self.valid_until.load(Ordering::Acquire) <= now {
            self.tokens.store(0, Ordering::Release);
        }
        self.tokens.fetch_add(n, Ordering::AcqRel);
        self.valid_until.store(until, Ordering::Release);
    }

    /// The schedule refused until `at`.
    pub fn refused_until(&self, at: u64) {
        self.not_before.store(at, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Rate = Rate {
        messages: 100,
        per: Duration::from_secs(1),
    };

    #[test]
    fn a_bucket_spends_its_batch_once_and_never_after_its_validity() {
        let b = Bucket::default();
        assert!(b.take(10, R).is_err(), "empty");
        assert!(b.wanted(10, 0));
        assert_eq!(b.rate(), Some(R));
        b.fill(3, 10, 1_000);
        assert_eq!(b.available(10), 3.0);
        for _ in 0..3 {
            b.take(20, R).unwrap();
        }
        assert!(b.take(20, R).is_err());
        b.fill(5, 30, 1_000);
        assert_eq!(b.take(1_000, R), Err(1_000 + EMPTY_WAIT_NS), "expired");
        // A refill after expiry does not revive the old batch.
        b.fill(1, 2_000, 3_000);
        assert_eq!(b.available(2_000), 1.0);
        b.refused_until(9_000_000_000);
        assert!(!b.may_ask(2_000));
        b.take(2_000, R).unwrap();
        assert_eq!(b.take(2_001, R), Err(9_000_000_000));
    }

    #[test]
    fn unix_milliseconds_round_trip() {
        let t = Instant::now() + Duration::from_secs(30);
        let back = instant_of_ms(unix_ms(t));
        let diff = if back > t { back - t } else { t - back };
        assert!(diff < Duration::from_millis(5), "{diff:?}");
    }

    #[test]
    fn a_degraded_share_divides_the_rate_by_the_nodes() {
        let (tx, _rx) = mpsc::channel();
        let link = ClusterLink::new(tx);
        assert!(link.degraded());
        link.set_nodes(3);
        assert_eq!(link.local_share(R).messages, 33);
        link.set_nodes(1000);
        assert_eq!(link.local_share(R).messages, 1);
    }
}
