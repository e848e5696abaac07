//! The queue task's side of traffic shaping: what a failure reply makes a rule do, and the
//! limits a destination gets from its route, the shaping file and the rules in force.
//!
//! What it does: shows every failure reply to the shard's rule engine and carries out what
//! fires (a host-wide suspension, a rate or connection reduction published for every shard, a
//! bounce of what waits), and gives the scheduler a destination's limits with the deeper of
//! this shard's reduction and the one published host-wide.
//!
//! What it does not do: no rule matching (the engine's), no counting of replies across shards
//! (each shard counts what its connections see).
//!
//! Invariants: runs inside the queue task; a reduction is published only when it is deeper
//! than the one in force (`SharedDest::reduce`).

use std::time::Instant;

use super::ShardQueue;
use crate::delivery::classify::Outcome;
use crate::delivery::recorder::JobResult;
use crate::delivery::route::Target;
use crate::queue::{DestinationKey, Reduction};
use crate::shaping::ActionKind;
use crate::smtp::{EnhancedStatus, Reply};

impl ShardQueue {
    /// The limits in force for a destination: shaped, with the deeper of this shard's rule
    /// reduction and the one another shard's rule published for the whole host.
    pub(super) fn apply_limits(&mut self, target: &Target, now: Instant) {
        let mut adjustment = self.rules.current(&target.key.0, now);
        let rules = self.rules.rules();
        let every = |i: usize| rules.get(i).map(|r| r.recover_after);
        let (rate, connections) = self.sched.shared(&target.key).reductions(now, every);
        adjustment.rate_factor = adjustment.rate_factor.min(rate);
        adjustment.connection_factor = adjustment.connection_factor.min(connections);
        self.sched
            .set_limits(&target.key, adjustment.apply(&target.limits));
    }

    /// Shows a failure reply to the rules and carries out what fires.
    pub(super) fn observe(&mut self, dest: &DestinationKey, reply: &Reply) {
        if reply.is_positive_completion() {
            return;
        }
        let now = Instant::now();
        let Some(action) = self.rules.observe(&dest.0, reply, now) else {
            return;
        };
        tracing::info!(destination = %dest.0, rule = %action.name, explain = %action.explain, "shaping rule fired");
        match action.kind {
            ActionKind::Suspend { until } => {
                self.sched.suspend(dest, until, action.explain.clone());
            }
            ActionKind::ReduceRate { .. } | ActionKind::ReduceConnections { .. } => {
                // Published for every shard's scheduler: the host slows down as one.
                let current = self.rules.current(&dest.0, now);
                let rate = matches!(action.kind, ActionKind::ReduceRate { .. });
                let value = match rate {
                    true => current.rate_factor,
                    false => current.connection_factor,
                };
                let reduction = Reduction {
                    rule: action.rule,
                    value,
                    since: now,
                };
                let rules = self.rules.rules();
                let every = |i: usize| rules.get(i).map(|r| r.recover_after);
                self.sched.shared(dest).reduce(rate, reduction, now, every);
                if let Some(t) = self.routes.target(&dest.0).cloned() {
                    self.apply_limits(&t, now);
                }
            }
            ActionKind::Bounce => {
                let status = reply.status.unwrap_or(EnhancedStatus::new(5, 0, 0));
                let status = EnhancedStatus::new(5, status.subject, status.detail);
                let o = Outcome::bounce(
                    status,
                    format!("bounced by shaping rule {}: {}", action.name, reply.text()),
                );
                for job in self.sched.drain_destination(dest) {
                    self.finish(JobResult::decided(job, o.clone()), &dest.0);
                }
            }
        }
    }
}
