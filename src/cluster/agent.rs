//! The node's cluster agent: a thread that owns the Redis connection and keeps this host's
//! share of the cluster's limits, so that no shard ever waits on Redis.
//!
//! What it does: every tick (10 ms, or at once when a shard decides a suspension) it sends
//! one pipeline with what is due: the node's heartbeat (every second), the suspensions,
//! resumptions and reductions the shards decided (stored and published), lease asks
//! (`leases::next_ask`) and token refills for the destinations whose shards spent or wanted
//! tokens. Replies set the caps and fill the buckets in the host registry. When Redis fails
//! or is slower than `timeout`, the state is degraded: rates run on the local share, caps
//! follow `leases::degraded_cap`, notes wait (up to 4,096) to be sent, and the agent
//! reconnects with a doubling backoff (100 ms to 5 s). Once reconnected, for 6 seconds it asks
//! for no more than the larger of its cap and the local share (computed with the node count
//! from before), because Redis may have lost what the other nodes hold and they have not all
//! re-registered yet. At stop it gives every lease back and leaves the node registry.
//!
//! What it does not do: no listening to other nodes (`subscriber.rs`), no limits of its own
//! (the shards pass theirs).
//!
//! Invariants: at most one pipeline in flight; every Redis call has the configured timeout;
//! a refill tops a bucket up to one batch (a fifth of a second of the rate, at least 1, at
//! most the burst), so a node never holds more than one batch of unspent tokens of a
//! destination, and tokens not spent within half a second of the last refill are dropped;
//! calls are counted in `ClusterStats::commands`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::{Cmd, Connection, Value};

use super::leases::{self, Track};
use super::scripts::{self, LeaseAsk, Scripts};
use super::{Keys, Settings, wire};
use crate::queue::{Bucket, ClusterLink, HostLimits, Note, Rate, SharedDest};

const TICK: Duration = Duration::from_millis(10);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const TOKEN_VALIDITY: Duration = Duration::from_millis(500);
const MAX_PENDING_NOTES: usize = 4096;
/// The longest wait between two attempts to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// After Redis is reached again, how long asks stay within the local share: Redis may have
/// lost what every node holds (a restart, or grants expired while it was away), and every other
/// node that can reach it again has re-registered its leases by then (its next attempt comes
/// within `MAX_BACKOFF`, its first pipeline renews every lease, its heartbeat follows).
const REJOIN_GRACE: Duration = Duration::from_secs(6);

/// What one reply of a pipeline is for.
enum Pending {
    Heartbeat,
    Ignore,
    Lease {
        key: String,
        sent: Instant,
        /// The ask was for more than the cap in force.
        more: bool,
        ask: usize,
    },
    Tokens {
        key: String,
        connections: bool,
    },
}

struct Dest {
    shared: Weak<SharedDest>,
    leases: Track,
}

/// The agent's state.
pub struct Agent {
    settings: Settings,
    keys: Keys,
    host: Arc<HostLimits>,
    link: Arc<ClusterLink>,
    notes: Receiver<Note>,
    stop: Arc<AtomicBool>,
    scripts: Scripts,
    conn: Option<Connection>,
    retry_at: Instant,
    backoff: Duration,
    degraded_since: Instant,
    next_heartbeat: Instant,
    pending: VecDeque<Note>,
    dests: HashMap<String, Dest>,
    /// The current degraded period was logged (the first one starts with the process).
    announced: bool,
    /// Redis was reached once: a later connection is a rejoin.
    was_connected: bool,
    /// Until when asks stay within the local share after a rejoin (see [`REJOIN_GRACE`]).
    rejoin_until: Option<Instant>,
    /// The node count the local share is computed with while rejoining (the count before Redis
    /// was lost: a Redis that lost its state first reports this node alone).
    rejoin_nodes: usize,
}

/// How many tokens one refill asks for: a fifth of a second of the rate, at least 1, at most
/// the burst.
pub fn batch(rate: Rate) -> u64 {
    let per_sec = f64::from(rate.messages) / rate.per.as_secs_f64().max(1e-3);
    ((per_sec * 0.2).round() as u64).clamp(1, u64::from(rate.messages.max(1)))
}

impl Agent {
    /// An agent for `host`, whose shards send notes on the channel `notes` comes from.
    pub fn new(
        settings: Settings,
        host: Arc<HostLimits>,
        link: Arc<ClusterLink>,
        notes: Receiver<Note>,
        stop: Arc<AtomicBool>,
    ) -> Agent {
        let now = Instant::now();
        link.set_nodes(settings.assume_nodes);
        Agent {
            keys: Keys::new(&settings.prefix),
            settings,
            host,
            link,
            notes,
            stop,
            scripts: Scripts::default(),
            conn: None,
            retry_at: now,
            backoff: Duration::from_millis(100),
            degraded_since: now,
            next_heartbeat: now,
            pending: VecDeque::new(),
            dests: HashMap::new(),
            announced: false,
            was_connected: false,
            rejoin_until: None,
            rejoin_nodes: 1,
        }
    }

    /// Runs until stopped, then gives the leases back.
    pub fn run(mut self) {
        while !self.stop.load(Ordering::Acquire) {
            match self.notes.recv_timeout(TICK) {
                Ok(note) => self.queue_note(note),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(TICK),
            }
            while let Ok(note) = self.notes.try_recv() {
                self.queue_note(note);
            }
            self.tick(Instant::now());
        }
        self.leave();
    }

    fn queue_note(&mut self, note: Note) {
        if self.pending.len() >= MAX_PENDING_NOTES {
            self.pending.pop_front();
        }
        self.pending.push_back(note);
    }

    fn connect(&mut self, now: Instant) -> bool {
        if self.conn.is_some() {
            return true;
        }
        if now < self.retry_at {
            return false;
        }
        match self.open() {
            Ok(conn) => {
                self.conn = Some(conn);
                self.backoff = Duration::from_millis(100);
                if self.was_connected {
                    self.rejoin_until = Some(now + REJOIN_GRACE);
                    self.rejoin_nodes = self.link.nodes();
                }
                self.was_connected = true;
                self.next_heartbeat = now;
                for d in self.dests.values_mut() {
                    d.leases.renew_at = Some(now);
                }
                true
            }
            Err(e) => {
                self.failed(now, &e);
                false
            }
        }
    }

    fn open(&self) -> redis::RedisResult<Connection> {
        let client = redis::Client::open(self.settings.redis.as_str())?;
        let mut conn = client.get_connection_with_timeout(self.settings.timeout)?;
        conn.set_read_timeout(Some(self.settings.timeout))?;
        conn.set_write_timeout(Some(self.settings.timeout))?;
        let mut pipe = redis::pipe();
        for c in self.scripts.load() {
            pipe.add_command(c);
        }
        pipe.query::<Vec<Value>>(&mut conn)?;
        self.link.stats.commands.fetch_add(3, Ordering::Relaxed);
        Ok(conn)
    }

    fn failed(&mut self, now: Instant, e: &redis::RedisError) {
        self.conn = None;
        self.retry_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        let was_degraded = self.link.set_degraded(true);
        if !was_degraded || !self.announced {
            if !was_degraded {
                self.degraded_since = now;
            }
            self.announced = true;
            self.link.stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, redis = %self.settings.redis,
                "cluster state degraded: Redis unreachable, running on this node's local share");
        }
    }

    fn refresh(&mut self) {
        let Some(all) = self.host.added_since_last() else {
            return;
        };
        for (key, shared) in all {
            self.dests.entry(key).or_insert(Dest {
                shared,
                leases: Track::default(),
            });
        }
    }

    fn tick(&mut self, now: Instant) {
        self.refresh();
        self.dests.retain(|_, d| d.shared.strong_count() > 0);
        if !self.connect(now) {
            self.degraded_caps(now);
            return;
        }
        let (cmds, pending) = self.due(now);
        if cmds.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for c in cmds {
            pipe.add_command(c);
        }
        let sent = pending.len();
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let result = pipe.query::<Vec<Value>>(conn);
        self.link
            .stats
            .commands
            .fetch_add(sent as u64, Ordering::Relaxed);
        match result {
            Ok(values) => {
                if self.link.set_degraded(false) {
                    self.announced = false;
                    tracing::info!(redis = %self.settings.redis, "cluster state restored");
                }
                self.pending.clear();
                for (p, v) in pending.into_iter().zip(values.iter()) {
                    self.apply(p, v, now);
                }
            }
            Err(e) => {
                self.failed(now, &e);
                self.degraded_caps(now);
            }
        }
    }

    /// The commands due now, each with what its reply is for.
    fn due(&mut self, now: Instant) -> (Vec<Cmd>, Vec<Pending>) {
        let (mut cmds, mut pending) = (Vec::new(), Vec::new());
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + HEARTBEAT_EVERY;
            let s = &self.settings;
            cmds.push(
                self.scripts
                    .heartbeat(&self.keys.nodes, &s.node, s.dead_after, true),
            );
            pending.push(Pending::Heartbeat);
        }
        for note in &self.pending {
            for c in self.publish(note) {
                cmds.push(c);
                pending.push(Pending::Ignore);
            }
        }
        let now_ns = self.host.ns_at(now);
        let rejoining = self.rejoining(now);
        for (key, d) in &mut self.dests {
            let Some(shared) = d.shared.upgrade() else {
                continue;
            };
            if let Some(mut ask) = leases::next_ask(&shared, &d.leases, now, self.link.nodes()) {
                let cap = shared.cluster_cap().unwrap_or(0);
                if let Some(nodes) = rejoining {
                    let within = cap.max(shared.max_seen() / nodes.max(1));
                    if ask > within {
                        ask = within;
                        d.leases.last_more = Some(now);
                    }
                }
                let more = ask > cap;
                if more {
                    d.leases.last_more = Some(now);
                }
                d.leases.asked = ask;
                cmds.push(self.scripts.lease(&LeaseAsk {
                    key: &self.keys.lease(key),
                    nodes: &self.keys.nodes,
                    node: &self.settings.node,
                    ask,
                    need: leases::need(&shared, now),
                    limit: shared.max_seen(),
                    ttl: self.settings.lease_ttl,
                    stale: self.settings.stale(),
                    dead: self.settings.dead_after,
                }));
                pending.push(Pending::Lease {
                    key: key.clone(),
                    sent: now,
                    more,
                    ask,
                });
            }
            for (bucket, connections) in [
                (shared.message_bucket(), false),
                (shared.connection_bucket(), true),
            ] {
                if let Some((rate, want)) = refill(bucket, now_ns) {
                    let k = self.keys.rate(key, connections);
                    let period = rate.per / rate.messages.max(1);
                    cmds.push(self.scripts.gcra(&k, period, rate.messages, want));
                    pending.push(Pending::Tokens {
                        key: key.clone(),
                        connections,
                    });
                }
            }
        }
        (cmds, pending)
    }

    fn publish(&self, note: &Note) -> Vec<Cmd> {
        let node = &self.settings.node;
        let mut store = match note {
            Note::Suspend {
                key,
                until_ms,
                reason,
            } => {
                let mut c = redis::cmd("HSET");
                c.arg(&self.keys.suspensions)
                    .arg(key)
                    .arg(wire::suspension(node, *until_ms, reason));
                Some(c)
            }
            Note::Resume { key } => {
                let mut c = redis::cmd("HDEL");
                c.arg(&self.keys.suspensions).arg(key);
                Some(c)
            }
            Note::Reduce { .. } => None,
        };
        let mut out: Vec<Cmd> = store.take().into_iter().collect();
        let mut c = redis::cmd("PUBLISH");
        c.arg(&self.keys.channel).arg(wire::encode(node, note));
        out.push(c);
        out
    }

    fn apply(&mut self, p: Pending, v: &Value, now: Instant) {
        match p {
            Pending::Ignore => {}
            Pending::Heartbeat => {
                let seen = usize::try_from(scripts::int(v)).unwrap_or(1);
                let rejoin = self.rejoining(now).unwrap_or(0);
                self.link
                    .set_nodes(seen.max(self.settings.assume_nodes).max(rejoin));
            }
            Pending::Lease {
                key,
                sent,
                more,
                ask,
            } => {
                let Some(d) = self.dests.get_mut(&key) else {
                    return;
                };
                let Some(shared) = d.shared.upgrade() else {
                    return;
                };
                let (grant, waiting) = scripts::pair(v);
                shared.set_cluster_cap(usize::try_from(grant).unwrap_or(0));
                let ttl = self.settings.lease_ttl;
                d.leases.valid_until = Some(sent + ttl / 2);
                d.leases.renew_at = Some(sent + ttl / 4);
                d.leases.others_waiting = waiting != 0;
                d.leases.more_refused_until = (more && usize::try_from(grant).unwrap_or(0) < ask)
                    .then(|| now + leases::REFUSED_PAUSE);
                if waiting != 0 {
                    shared.wanted_elsewhere(now);
                }
            }
            Pending::Tokens { key, connections } => {
                let Some(shared) = self.dests.get(&key).and_then(|d| d.shared.upgrade()) else {
                    return;
                };
                let bucket = match connections {
                    true => shared.connection_bucket(),
                    false => shared.message_bucket(),
                };
                let (n, wait_us) = scripts::pair(v);
                let now_ns = self.host.ns_at(now);
                if n > 0 {
                    let until = now_ns.saturating_add(TOKEN_VALIDITY.as_nanos() as u64);
                    bucket.fill(n as u64, now_ns, until);
                } else {
                    let wait = (wait_us.max(1) as u64).min(1_000_000) * 1_000;
                    bucket.refused_until(now_ns.saturating_add(wait));
                }
            }
        }
    }

    /// While rejoining (see [`REJOIN_GRACE`]), the node count of the local share.
    fn rejoining(&self, now: Instant) -> Option<usize> {
        self.rejoin_until
            .is_some_and(|until| now < until)
            .then_some(self.rejoin_nodes)
    }

    fn degraded_caps(&mut self, now: Instant) {
        let (since, ttl, nodes) = (
            self.degraded_since,
            self.settings.lease_ttl,
            self.link.nodes(),
        );
        for d in self.dests.values() {
            if let Some(shared) = d.shared.upgrade()
                && let Some(cap) = leases::degraded_cap(&shared, &d.leases, now, since, ttl, nodes)
                && shared.cluster_cap() != Some(cap)
            {
                shared.set_cluster_cap(cap);
            }
        }
    }

    /// Gives every lease back and leaves the registry (best effort, at stop).
    fn leave(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let mut pipe = redis::pipe();
        for key in self.dests.keys() {
            pipe.add_command(self.scripts.lease(&LeaseAsk {
                key: &self.keys.lease(key),
                nodes: &self.keys.nodes,
                node: &self.settings.node,
                ask: 0,
                need: 0,
                limit: 0,
                ttl: self.settings.lease_ttl,
                stale: self.settings.stale(),
                dead: self.settings.dead_after,
            }));
        }
        let s = &self.settings;
        pipe.add_command(
            self.scripts
                .heartbeat(&self.keys.nodes, &s.node, s.dead_after, false),
        );
        if let Err(e) = pipe.query::<Vec<Value>>(conn) {
            tracing::warn!(error = %e, "could not give the cluster leases back at stop");
        }
    }
}

/// Whether `bucket` needs a refill at `now_ns`, and how many tokens: a shard spent or wanted
/// a token within the last second, the schedule did not refuse, and fewer than half a batch
/// are at hand or the batch ends within 150 ms. The refill tops the bucket up to one batch.
fn refill(bucket: &Bucket, now_ns: u64) -> Option<(Rate, u64)> {
    let rate = bucket.rate()?;
    if rate.messages == 0 || rate.per.is_zero() {
        return None;
    }
    let full = batch(rate);
    let at_hand = bucket.available(now_ns) as u64;
    let low = at_hand * 2 < full || bucket.ends_within(now_ns, 150_000_000);
    let want = full.saturating_sub(at_hand);
    (want > 0 && low && bucket.wanted(now_ns, 1_000_000_000) && bucket.may_ask(now_ns))
        .then_some((rate, want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_a_fifth_of_a_second_within_the_burst() {
        let r = |messages, secs| Rate {
            messages,
            per: Duration::from_secs(secs),
        };
        assert_eq!(batch(r(50, 1)), 10);
        assert_eq!(batch(r(300, 60)), 1);
        assert_eq!(batch(r(100_000, 1)), 20_000);
        assert_eq!(batch(r(3, 1)), 1);
        assert_eq!(batch(r(1000, 1)), 200);
    }
}
