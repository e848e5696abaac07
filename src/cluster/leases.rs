//! What this node asks of one destination's connection leases in the cluster, and the cap it
//! keeps when the cluster state is degraded.
//!
//! What it does: [`next_ask`] turns what the shards did (a refused lease, leases held, the
//! cap in force, the nodes in the cluster) into the total this node asks for:
//! - while shards are refused under the destination's limit, twice what it holds, and at least
//!   its fair share (`max_connections / nodes`, rounded up); an ask for more that Redis refused
//!   is not repeated for half a second;
//! - once no shard was refused for five seconds, the leases in use;
//! - when another node waits for a lease, the leases in use or the fair share, whichever is
//!   more (a node never gives away the share it may need itself);
//! - the same again when the grant is due for renewal.
//!
//! [`degraded_cap`] is the cap while Redis cannot be reached: the grant while its lease is still
//! valid, then no more than the local share, then the local share once every node's leases have
//! expired.
//!
//! What it does not do: no I/O; the agent sends the asks and sets the caps.
//!
//! Invariants: an ask is never above the destination's `max_connections`; a cap is lowered
//! (to the leases held, never below) before the lower ask is sent, so the node never uses
//! more than Redis records for it; while degraded the cap only grows to the local share after
//! `2 × lease_ttl`, by when every node's grants have expired and every node has fallen to
//! its own share.

use std::time::{Duration, Instant};

use crate::queue::SharedDest;

/// How recently a refused lease means "wants more".
const WANTS_WITHIN: Duration = Duration::from_millis(250);
/// How long leases go unused before the surplus is given back.
const UNUSED_FOR: Duration = Duration::from_secs(5);
/// The least time between two asks for more of one destination.
const ASK_EVERY: Duration = Duration::from_millis(50);
/// How long after a refused ask for more the next one waits.
pub const REFUSED_PAUSE: Duration = Duration::from_millis(500);

/// What the agent knows of one destination's leases in the cluster.
#[derive(Clone, Debug, Default)]
pub struct Track {
    /// The total this node last asked for (what Redis records as its ask).
    pub asked: usize,
    /// Until when the last grant is surely still recorded in Redis.
    pub valid_until: Option<Instant>,
    /// When the grant should be renewed.
    pub renew_at: Option<Instant>,
    /// When this node last asked for more.
    pub last_more: Option<Instant>,
    /// The last reply said another node waits for a lease.
    pub others_waiting: bool,
    /// The last ask for more was refused: no other before this time (the grant is renewed as
    /// usual, and leases another node gives back come with it).
    pub more_refused_until: Option<Instant>,
}

/// The total to ask for now, if anything is to be asked.
pub fn next_ask(d: &SharedDest, t: &Track, now: Instant, nodes: usize) -> Option<usize> {
    let max = d.max_seen();
    let cap = d.cluster_cap()?;
    if max == 0 {
        return None;
    }
    let held = d.leases();
    let refused = |within| d.refused_within(now, within);
    if refused(WANTS_WITHIN) && cap < max {
        let due = t
            .last_more
            .is_none_or(|at| now.saturating_duration_since(at) >= ASK_EVERY)
            && t.more_refused_until.is_none_or(|until| now >= until);
        // At once this node's fair share of the limit, then doubling, as slow start does.
        let fair = max.div_ceil(nodes.max(1));
        return due.then(|| (cap.max(held) * 2).max(fair).clamp(1, max));
    }
    // Leases unused for a while go back; another node waiting gets what this node holds
    // beyond its fair share, not the share itself (both nodes would fall below it).
    if cap > held && !refused(UNUSED_FOR) {
        return Some(d.lower_cluster_cap(held));
    }
    let fair = max.div_ceil(nodes.max(1));
    if t.others_waiting && cap > held.max(fair) {
        return Some(d.lower_cluster_cap(held.max(fair)));
    }
    if t.asked > cap && !refused(UNUSED_FOR) {
        return Some(cap);
    }
    let renew = t.renew_at.is_some_and(|at| now >= at);
    (renew && (cap > 0 || t.asked > 0)).then_some(cap)
}

/// What this node needs at least: one more than it holds while its shards are refused under
/// the limit, else 0 (another node that sees a need unmet gives back what it does not use).
pub fn need(d: &SharedDest, now: Instant) -> usize {
    let (max, cap) = (d.max_seen(), d.cluster_cap().unwrap_or(0));
    match d.refused_within(now, WANTS_WITHIN) && cap < max {
        true => (cap.max(d.leases()) + 1).min(max),
        false => 0,
    }
}

/// The cap while degraded since `since`: the grant until its validity ends, then at most the
/// local share (`max_connections / nodes`), then the local share from `since + 2 × ttl`.
pub fn degraded_cap(
    d: &SharedDest,
    t: &Track,
    now: Instant,
    since: Instant,
    ttl: Duration,
    nodes: usize,
) -> Option<usize> {
    let cap = d.cluster_cap()?;
    let share = d.max_seen() / nodes.max(1);
    if t.valid_until.is_some_and(|v| now < v) {
        return Some(cap);
    }
    if now < crate::queue::later(since, 2 * ttl) {
        return Some(cap.min(share));
    }
    Some(share)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{ClusterLink, HostLimits};
    use std::sync::Arc;

    fn clustered() -> (HostLimits, std::sync::mpsc::Receiver<crate::queue::Note>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (HostLimits::with_cluster(Arc::new(ClusterLink::new(tx))), rx)
    }

    #[test]
    fn a_refused_shard_asks_for_double_and_unused_leases_go_back() {
        let (host, _rx) = clustered();
        let d = host.entry("route:a");
        let t0 = Instant::now();
        let mut t = Track::default();
        assert_eq!(next_ask(&d, &t, t0, 3), None, "no shard asked yet");
        assert!(!d.try_lease(3), "no lease of the cluster's yet");
        d.refused(t0);
        assert_eq!(
            next_ask(&d, &t, t0, 1),
            Some(3),
            "alone: the whole limit at once"
        );
        assert_eq!(next_ask(&d, &t, t0, 3), Some(1));
        t.last_more = Some(t0);
        t.asked = 1;
        assert_eq!(next_ask(&d, &t, t0, 3), None, "not again so soon");
        d.set_cluster_cap(1);
        assert!(d.try_lease(3));
        assert!(!d.try_lease(3), "the cap holds");
        let later = t0 + ASK_EVERY;
        d.refused(later);
        assert_eq!(next_ask(&d, &t, later, 3), Some(2));
        d.set_cluster_cap(2);
        t.asked = 2;
        // No refusal for five seconds: the surplus goes back, after the cap is lowered.
        let idle = later + UNUSED_FOR + Duration::from_millis(1);
        assert_eq!(next_ask(&d, &t, idle, 3), Some(1));
        assert_eq!(d.cluster_cap(), Some(1));
        // Asks for more double what is held.
        t.asked = 1;
        // Renewal when due.
        assert_eq!(next_ask(&d, &t, idle, 3), None);
        t.renew_at = Some(idle);
        assert_eq!(next_ask(&d, &t, idle, 3), Some(1));
        // The limit caps the ask.
        d.set_cluster_cap(3);
        assert!(d.try_lease(3) && d.try_lease(3));
        (t.asked, t.renew_at) = (3, Some(idle + Duration::from_secs(1)));
        d.refused(idle);
        assert_eq!(
            next_ask(&d, &t, idle, 3),
            None,
            "at the limit: nothing more to ask"
        );
    }

    #[test]
    fn a_waiting_node_gets_the_surplus_above_the_fair_share_only() {
        let (host, _rx) = clustered();
        let d = host.entry("route:c");
        assert!(!d.try_lease(10));
        let t0 = Instant::now();
        d.refused(t0);
        d.set_cluster_cap(8);
        for _ in 0..3 {
            assert!(d.try_lease(10));
        }
        // This node was refused a moment ago (it still ramps up), so it keeps asking.
        let waiting = Track {
            asked: 8,
            others_waiting: true,
            last_more: Some(t0),
            ..Track::default()
        };
        let soon = t0 + WANTS_WITHIN + Duration::from_millis(1);
        // Another node waits: 8 granted, 3 held, fair share 5 of 10: 3 go back, not 5.
        assert_eq!(next_ask(&d, &waiting, soon, 2), Some(5));
        assert_eq!(d.cluster_cap(), Some(5));
        // At the fair share nothing more goes back while this node may need it.
        assert_eq!(
            next_ask(
                &d,
                &Track {
                    asked: 5,
                    ..waiting.clone()
                },
                soon,
                2
            ),
            None
        );
        // Idle for five seconds: down to what is held.
        let idle = t0 + UNUSED_FOR + Duration::from_millis(1);
        assert_eq!(
            next_ask(
                &d,
                &Track {
                    asked: 5,
                    ..waiting
                },
                idle,
                2
            ),
            Some(3)
        );
    }

    #[test]
    fn degraded_caps_keep_the_grant_then_fall_to_the_share() {
        let (host, _rx) = clustered();
        let d = host.entry("route:b");
        assert!(!d.try_lease(4));
        d.set_cluster_cap(3);
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let t = Track {
            valid_until: Some(t0 + Duration::from_secs(5)),
            ..Track::default()
        };
        assert_eq!(degraded_cap(&d, &t, t0, t0, ttl, 2), Some(3));
        let t6 = t0 + Duration::from_secs(6);
        assert_eq!(degraded_cap(&d, &t, t6, t0, ttl, 2), Some(2));
        d.set_cluster_cap(0);
        assert_eq!(degraded_cap(&d, &t, t6, t0, ttl, 2), Some(0));
        let t21 = t0 + Duration::from_secs(21);
        assert_eq!(degraded_cap(&d, &t, t21, t0, ttl, 2), Some(2));
        assert_eq!(degraded_cap(&d, &t, t21, t0, ttl, 5), Some(0));
    }
}
