//! Traffic shaping in the delivery stage: per-provider limits and adaptive backoff.
//!
//! What it does: applies the shaping file to a routed destination (connection and message
//! limits, rates, TLS policy, retry schedule, by provider matched on the MX host names, then
//! domain, then source address), feeds every failure reply to the rule engine and carries out
//! what a rule decides (suspend the destination, lower its rate or connection limit, bounce
//! what is queued for it), returns the limits step by step as the receiver recovers, and
//! classifies failures into bounce classes for the log and metrics.
//!
//! What it does not do: no parsing of the file or the rules (see `crate::shaping`), no I/O.
//!
//! Invariants: the limits in force for a destination are always its shaped limits with the
//! current rule adjustment applied; without a shaping file, limits come from the configuration
//! alone and no rule fires.

use std::rc::Rc;
use std::time::Instant;

use super::*;
use crate::shaping::{ActionKind, BounceClass};
use crate::smtp::Reply;

impl Stage {
    /// The destination as the shaping file wants it (the target unchanged without a file).
    pub(super) fn shape(&self, target: Rc<Target>, domain: &str) -> Rc<Target> {
        let Some(shaping) = self.shaping.borrow().clone() else {
            return target;
        };
        let mut mx: Vec<String> = target.hops.iter().map(|(n, _)| n.clone()).collect();
        mx.dedup();
        let shape = shaping.resolve(domain, &mx, target.source);
        let retry = (shape.retry_first.is_some() || shape.retry_max.is_some())
            .then(|| shape.retry(&self.retry_policy));
        Rc::new(Target {
            key: target.key.clone(),
            hops: target.hops.clone(),
            source: target.source,
            limits: shape.limits(&target.limits),
            tls: shape.tls_policy(target.tls),
            retry,
            helo: target.helo.clone(),
        })
    }

    /// The limits in force for a destination: shaped, with the rule adjustment applied.
    pub(super) fn apply_limits(&self, target: &Target, now: Instant) {
        let adjustment = self.rules.borrow().current(&target.key.0, now);
        self.sched
            .borrow_mut()
            .set_limits(&target.key, adjustment.apply(&target.limits));
    }

    /// Re-applies every destination's limits (rules relax step by step as time passes), and
    /// forgets the routing of destinations the scheduler has dropped as idle (so the map does
    /// not grow with every domain ever sent to).
    pub(super) fn refresh_limits(&self) {
        let now = Instant::now();
        self.rules.borrow_mut().prune(now);
        {
            let sched = self.sched.borrow();
            let live: std::collections::HashSet<&DestinationKey> = sched.destinations().collect();
            self.targets.borrow_mut().retain(|k, _| live.contains(k));
            self.last_error.borrow_mut().retain(|k, _| live.contains(k));
        }
        let targets: Vec<Rc<Target>> = self.targets.borrow().values().cloned().collect();
        for t in targets {
            self.apply_limits(&t, now);
        }
    }

    /// Shows a failure reply to the rules and carries out what fires.
    pub(super) async fn observe(self: &Rc<Self>, dest: &DestinationKey, reply: &Reply) {
        if reply.is_positive_completion() {
            return;
        }
        let now = Instant::now();
        let action = self.rules.borrow_mut().observe(&dest.0, reply, now);
        let Some(action) = action else { return };
        tracing::info!(destination = %dest.0, rule = %action.name, explain = %action.explain, "shaping rule fired");
        match action.kind {
            ActionKind::Suspend { until } => {
                self.sched
                    .borrow_mut()
                    .suspend(dest, until, action.explain.clone());
            }
            ActionKind::ReduceRate { .. } | ActionKind::ReduceConnections { .. } => {
                let target = self.targets.borrow().get(dest).cloned();
                if let Some(t) = target {
                    self.apply_limits(&t, now);
                }
            }
            ActionKind::Bounce => {
                let jobs = self.sched.borrow_mut().drain_destination(dest);
                let status = reply.status.unwrap_or(EnhancedStatus::new(5, 0, 0));
                let status = EnhancedStatus::new(5, status.subject, status.detail);
                let o = Outcome::bounce(
                    status,
                    format!("bounced by shaping rule {}: {}", action.name, reply.text()),
                );
                // Boxed: recording these jobs may show the rules more replies (a recursion).
                Box::pin(self.fail_jobs(jobs, &o, &dest.0)).await;
            }
        }
    }

    /// The bounce class of a failure, from its reply text (which starts with the code).
    pub(super) fn classify(&self, status: EnhancedStatus, diagnostic: &str) -> BounceClass {
        let code = diagnostic
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or(if status.class == 5 { 550 } else { 450 });
        match self.shaping.borrow().as_ref() {
            Some(s) => s
                .bounce_classifier()
                .classify(code, Some(status), diagnostic),
            None => crate::shaping::classify(code, Some(status), diagnostic),
        }
    }

    /// Replaces the shaping file (on reload); rule state is kept.
    pub fn reload_shaping(&self, shaping: Option<Arc<crate::shaping::Shaping>>) {
        *self.shaping.borrow_mut() = shaping;
        self.route_cache.borrow_mut().clear();
    }
}
