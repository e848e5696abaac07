//! Limits that hold for the whole host: one state per destination, shared by every shard's
//! scheduler, so that "2 connections and 300 messages a minute" means that on a 32-core host
//! too; and, when the host is one node of a cluster, this host's share of those limits.
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
//! In a cluster (`with_cluster`) the node's cluster agent sets a cap on the leases (the
//! leases the node holds in Redis), fills token buckets from the cluster-wide rate schedules,
//! and hears of every suspension and reduction decided here ([`Note`]); while the cluster
//! state is degraded, rates run on the local GCRA at `1 / nodes` of the limit.
//!
//! What it does not do: no waiting (a caller told "not now" asks again at the time it is
//! given), no I/O.
//!
//! Invariants: the leases of a destination never exceed the `max_connections` each taker
//! passes, nor the cluster cap (the cap and the count live in one atomic word, so a cap
//! lowered by the agent is never raced past); a shard spends only tokens the cluster
//! granted; times are nanoseconds since the registry's epoch, so all shards (threads of one
//! process) compare them; arithmetic saturates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::Rate;
use super::cluster_share::{Bucket, ClusterLink, Note};
use super::cluster_share::{instant_of_ms, unix_ms};
use super::gcra::Gcra;
pub use super::gcra::Reduction;

/// The registry of every destination's shared state.
#[derive(Debug)]
pub struct HostLimits {
    epoch: Instant,
    dests: Mutex<HashMap<String, Arc<SharedDest>>>,
    cluster: Option<Arc<ClusterLink>>,
    /// Set when a destination is added (the cluster agent then looks at the registry).
    added: AtomicBool,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits::new()
    }
}

impl HostLimits {
    /// An empty registry for one host.
    pub fn new() -> HostLimits {
        HostLimits {
            epoch: Instant::now(),
            dests: Mutex::new(HashMap::new()),
            cluster: None,
            added: AtomicBool::new(false),
        }
    }

    /// An empty registry for one node of a cluster, linked to its agent.
    pub fn with_cluster(link: Arc<ClusterLink>) -> HostLimits {
        HostLimits {
            cluster: Some(link),
            ..HostLimits::new()
        }
    }

    /// The link to the cluster agent, on a clustered host.
    pub fn cluster(&self) -> Option<&Arc<ClusterLink>> {
        self.cluster.as_ref()
    }

    /// The shared state of destination `key` (made on first use).
    pub fn entry(&self, key: &str) -> Arc<SharedDest> {
        let mut dests = self.dests.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = dests.get(key) {
            return d.clone();
        }
        let d = Arc::new(SharedDest::new(self.epoch, key, self.cluster.clone()));
        dests.insert(key.to_owned(), d.clone());
        self.added.store(true, Ordering::Release);
        d
    }

    /// The shared state of destination `key`, if any shard or node used it.
    pub fn get(&self, key: &str) -> Option<Arc<SharedDest>> {
        let dests = self.dests.lock().unwrap_or_else(|e| e.into_inner());
        dests.get(key).cloned()
    }

    /// Every destination, if one was added since the last call (for the cluster agent, which
    /// keeps weak references so that pruning still forgets them).
    pub fn added_since_last(&self) -> Option<Vec<(String, Weak<SharedDest>)>> {
        if !self.added.swap(false, Ordering::AcqRel) {
            return None;
        }
        let dests = self.dests.lock().unwrap_or_else(|e| e.into_inner());
        Some(
            dests
                .iter()
                .map(|(k, d)| (k.clone(), Arc::downgrade(d)))
                .collect(),
        )
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

    /// Nanoseconds since the registry's epoch at `t`.
    pub fn ns_at(&self, t: Instant) -> u64 {
        SharedDest::ns(self.epoch, t)
    }
}

/// The cluster cap of a host that is not clustered.
const NO_CAP: u64 = u32::MAX as u64;

/// One destination's host-wide state.
#[derive(Debug)]
pub struct SharedDest {
    epoch: Instant,
    key: Box<str>,
    /// Leases held (low 32 bits) and the cluster's cap on them (high 32 bits).
    leases: AtomicU64,
    /// The `max_connections` the shards last asked with.
    max_seen: AtomicUsize,
    messages: Gcra,
    connections: Gcra,
    cluster: Option<Arc<ClusterLink>>,
    message_tokens: Bucket,
    connection_tokens: Bucket,
    /// Nanoseconds since the epoch; 0 = not suspended.
    suspended_until: AtomicU64,
    /// When a shard was last refused a lease (nanoseconds since the epoch; 0 = never).
    refused_at: AtomicU64,
    /// When the cluster last said another node waits for a lease (0 = never).
    elsewhere_at: AtomicU64,
    /// A shaping rule's reduction of the message rate, packed ([`Reduction`]; 0 = none).
    rate_reduction: AtomicU64,
    /// A shaping rule's reduction of the connection limit, packed (0 = none).
    conn_reduction: AtomicU64,
    reason: Mutex<String>,
}

fn held(word: u64) -> u64 {
    word & 0xffff_ffff
}

fn cap(word: u64) -> u64 {
    word >> 32
}

impl SharedDest {
    fn new(epoch: Instant, key: &str, cluster: Option<Arc<ClusterLink>>) -> SharedDest {
        // A clustered destination starts with no lease of the cluster's: the agent asks.
        let cap = if cluster.is_some() { 0 } else { NO_CAP };
        SharedDest {
            epoch,
            key: key.into(),
            leases: AtomicU64::new(cap << 32),
            max_seen: AtomicUsize::new(0),
            messages: Gcra::default(),
            connections: Gcra::default(),
            cluster,
            message_tokens: Bucket::default(),
            connection_tokens: Bucket::default(),
            suspended_until: AtomicU64::new(0),
            refused_at: AtomicU64::new(0),
            elsewhere_at: AtomicU64::new(0),
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
        let word = self.leases.load(Ordering::Acquire);
        held(word) > 0
            || (cap(word) > 0 && cap(word) != NO_CAP)
            || self.suspended_until.load(Ordering::Acquire) > now
            || self.messages.tat.load(Ordering::Acquire) > now
            || self.connections.tat.load(Ordering::Acquire) > now
    }

    /// The destination's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Takes a connection lease if fewer than `max` (and than the cluster's cap) are held
    /// host-wide.
    pub fn try_lease(&self, max: usize) -> bool {
        if self.max_seen.load(Ordering::Relaxed) != max {
            self.max_seen.store(max, Ordering::Relaxed);
        }
        let max = u64::try_from(max).unwrap_or(u64::MAX);
        self.leases
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (held(w) < max.min(cap(w))).then_some(w + 1)
            })
            .is_ok()
    }

    /// Notes that a shard wanted a lease at `now` and found none; returns the mark it left,
    /// by which that shard knows a refusal of its own from another shard's ([`Self::contended`]).
    pub fn refused(&self, now: Instant) -> u64 {
        let n = Self::ns(self.epoch, now).max(1);
        self.refused_at.store(n, Ordering::Release);
        n
    }

    /// Notes that another node waits for one of this destination's leases.
    pub fn wanted_elsewhere(&self, now: Instant) {
        let n = Self::ns(self.epoch, now).max(1);
        self.elsewhere_at.store(n, Ordering::Release);
    }

    fn within(&self, cell: &AtomicU64, now: Instant, within: Duration) -> bool {
        let at = cell.load(Ordering::Acquire);
        let now = Self::ns(self.epoch, now);
        at != 0 && now.saturating_sub(at) <= u64::try_from(within.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a shard of this host was refused a lease within `within` of `now`.
    pub fn refused_within(&self, now: Instant, within: Duration) -> bool {
        self.within(&self.refused_at, now, within)
    }

    /// Whether another shard of this host was refused a lease within `within` of `now` (the
    /// last refusal is not `own`, the mark of the asking shard's last refusal), or another node
    /// waits while this host holds more than its fair share of the cluster's limit: an idle
    /// connection then gives its lease back rather than wait for mail of its own shard. A
    /// shard's own refusal does not count (it would close a connection only to open one), nor
    /// does another node's wait within this host's fair share (the agent keeps that share, so
    /// the lease would not reach the other node).
    pub fn contended(&self, now: Instant, within: Duration, own: u64) -> bool {
        let at = self.refused_at.load(Ordering::Acquire);
        let other_shard = at != own && self.within(&self.refused_at, now, within);
        other_shard || (self.within(&self.elsewhere_at, now, within) && self.above_fair_share())
    }

    /// Whether this host holds more leases than its fair share of the cluster's limit
    /// (`max_connections / nodes`, rounded up); false when not clustered.
    fn above_fair_share(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|link| self.leases() > self.max_seen().div_ceil(link.nodes().max(1)))
    }

    /// Gives a lease back.
    pub fn release(&self) {
        let _ = self
            .leases
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (held(w) > 0).then(|| w - 1)
            });
    }

    /// Leases held host-wide.
    pub fn leases(&self) -> usize {
        held(self.leases.load(Ordering::Acquire)) as usize
    }

    /// The cluster's cap on this host's leases (None when not clustered).
    pub fn cluster_cap(&self) -> Option<usize> {
        let c = cap(self.leases.load(Ordering::Acquire));
        (c != NO_CAP).then_some(c as usize)
    }

    /// True when more leases are held than the cluster's cap allows (the cap was lowered):
    /// a connection then closes at its next message boundary.
    pub fn over_cap(&self) -> bool {
        let w = self.leases.load(Ordering::Acquire);
        held(w) > cap(w)
    }

    /// The `max_connections` the shards last asked with (0 = none asked yet).
    pub fn max_seen(&self) -> usize {
        self.max_seen.load(Ordering::Relaxed)
    }

    /// Sets the cluster's cap to `cap` (for the agent).
    pub fn set_cluster_cap(&self, new: usize) {
        let new = u64::try_from(new).unwrap_or(NO_CAP).min(NO_CAP - 1);
        let _ = self
            .leases
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some((new << 32) | held(w))
            });
    }

    /// Lowers the cluster's cap to `target`, but not below the leases held (for the agent,
    /// before it gives leases back to the cluster); returns the cap set.
    pub fn lower_cluster_cap(&self, target: usize) -> usize {
        let target = u64::try_from(target).unwrap_or(NO_CAP);
        let mut set = 0;
        let _ = self
            .leases
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                set = target.max(held(w)).min(cap(w));
                Some((set << 32) | held(w))
            });
        set as usize
    }

    /// The cluster token bucket of the message rate (for the agent).
    pub fn message_bucket(&self) -> &Bucket {
        &self.message_tokens
    }

    /// The cluster token bucket of the connection rate (for the agent).
    pub fn connection_bucket(&self) -> &Bucket {
        &self.connection_tokens
    }

    /// The schedule a rate is taken from: the cluster's buckets, or the local GCRA (at the
    /// node's share while the cluster state is degraded).
    fn rate_source(&self, rate: Rate) -> Result<&ClusterLink, Rate> {
        match &self.cluster {
            Some(link) if !link.degraded() => Ok(link),
            Some(link) => Err(link.local_share(rate)),
            None => Err(rate),
        }
    }

    /// Takes a message token at `now`, or says when one is due.
    pub fn take_message(&self, now: Instant, rate: Rate) -> Result<(), Instant> {
        let n = Self::ns(self.epoch, now);
        match self.rate_source(rate) {
            Ok(_) => self.message_tokens.take(n, rate),
            Err(rate) => self.messages.take(n, rate),
        }
        .map_err(|t| self.at(t))
    }

    /// When a message token is due, if none is available at `now`.
    pub fn message_due(&self, now: Instant, rate: Rate) -> Option<Instant> {
        let n = Self::ns(self.epoch, now);
        match self.rate_source(rate) {
            Ok(_) => self.message_tokens.due(n, rate),
            Err(rate) => self.messages.due(n, rate),
        }
        .map(|t| self.at(t))
    }

    /// Message tokens available at `now` (for operators).
    pub fn message_tokens(&self, now: Instant, rate: Rate) -> f64 {
        let n = Self::ns(self.epoch, now);
        match self.rate_source(rate) {
            Ok(_) => self.message_tokens.available(n),
            Err(rate) => self.messages.available(n, rate),
        }
    }

    /// Takes a new-connection token at `now`, or says when one is due.
    pub fn take_connection(&self, now: Instant, rate: Rate) -> Result<(), Instant> {
        let n = Self::ns(self.epoch, now);
        match self.rate_source(rate) {
            Ok(_) => self.connection_tokens.take(n, rate),
            Err(rate) => self.connections.take(n, rate),
        }
        .map_err(|t| self.at(t))
    }

    /// Publishes a shaping rule's reduction (factor `value` of rule `rule` at `now`, doubling
    /// back every `recover_after` of that rule) of the message rate (`rate`) or the connection
    /// limit, unless a deeper one is in force: every shard (and every node) then applies it.
    pub fn reduce(
        &self,
        rate: bool,
        reduction: Reduction,
        now: Instant,
        recover_after: impl Fn(usize) -> Option<Duration>,
    ) {
        let cell = self.reduction_cell(rate);
        let new = reduction.pack(self.epoch);
        let replaced = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
            let current = Reduction::unpack(old, self.epoch)
                .map_or(1.0, |r| r.at(now, recover_after(r.rule)));
            (reduction.value < current).then_some(new)
        });
        if let (Ok(_), Some(link)) = (replaced, &self.cluster) {
            link.note(Note::Reduce {
                key: self.key.to_string(),
                rate,
                rule: reduction.rule,
                value: reduction.value,
                since_ms: unix_ms(reduction.since),
            });
        }
    }

    fn reduction_cell(&self, rate: bool) -> &AtomicU64 {
        match rate {
            true => &self.rate_reduction,
            false => &self.conn_reduction,
        }
    }

    /// Applies a reduction another node decided (Unix milliseconds `since_ms`): it replaces
    /// the one in force if it is deeper or newer.
    pub fn apply_reduction(&self, rate: bool, rule: usize, value: f64, since_ms: u64) {
        let reduction = Reduction {
            rule,
            value,
            since: instant_of_ms(since_ms),
        };
        let new = reduction.pack(self.epoch);
        let _ =
            self.reduction_cell(rate)
                .fetch_update(
                    Ordering::AcqRel,
                    Ordering::Acquire,
                    |old| match Reduction::unpack(old, self.epoch) {
                        Some(r) if r.value <= value && r.since >= reduction.since => None,
                        _ => Some(new),
                    },
                );
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

    /// Suspends the destination (for every shard, and every node) until `until`, for
    /// `reason`.
    pub fn suspend(&self, until: Instant, reason: String) {
        if let Some(link) = &self.cluster {
            link.note(Note::Suspend {
                key: self.key.to_string(),
                until_ms: unix_ms(until),
                reason: reason.clone(),
            });
        }
        self.apply_suspension(until, reason);
    }

    /// Applies a suspension (decided here or by another node), telling no one.
    pub fn apply_suspension(&self, until: Instant, reason: String) {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason;
        let n = Self::ns(self.epoch, until).max(1);
        self.suspended_until.store(n, Ordering::Release);
    }

    /// Lifts a suspension (for every shard, and every node).
    pub fn resume(&self) {
        if let Some(link) = &self.cluster {
            link.note(Note::Resume {
                key: self.key.to_string(),
            });
        }
        self.apply_resume();
    }

    /// Lifts a suspension, telling no one.
    pub fn apply_resume(&self) {
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

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
