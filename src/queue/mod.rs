//! The delivery scheduler of one shard: pure scheduling, no I/O, no clock (time is a parameter).
//!
//! What it does: keeps one ready queue per destination and priority class (new mail and
//! retries in two queues taken in turn, so neither starves the other; higher classes first,
//! with a kept share for lower ones: `destination.rs`), a timer heap of deferred jobs (each with the
//! destination its last attempt went through, for an operator's flush), per-destination limits
//! (connections, message and connection rates) and suspensions (after a `421` or repeated
//! connection failures, with doubling backoff) that hold for the whole host (`shared.rs`: every
//! shard's scheduler takes leases and tokens from one state per destination), and the retry
//! policy (exponential backoff with jitter, queue
//! lifetime). `poll(now)` says which retries are due, which destinations should get one more
//! connection, and when to call again — like Postfix's qmgr loop, there are no hidden timers.
//!
//! What it does not do: no routing (the caller resolves destinations and re-resolves due jobs),
//! no connections, no records, no bodies: it holds message ids and recipient indices only, so its
//! memory stays flat whatever the message sizes.
//!
//! Invariants: a destination never has more than `max_connections` connections open plus asked
//! for on the whole host; at most one new connection per destination per poll (slow start); a job is in exactly one
//! place (a ready queue, the timer heap, or handed out) until the caller reports on it; time
//! arithmetic saturates ([`later`], [`secs_f64`]): no wait, however large, panics.

mod cluster_share;
mod deferred;
mod destination;
mod domains;
mod gcra;
mod shared;
mod types;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::priority::Class;
pub use cluster_share::{Bucket, ClusterLink, Note, instant_of_ms, unix_ms};
use deferred::Deferred;
use destination::Destination;
pub use domains::DomainNames;
pub use shared::{HostLimits, Reduction, SharedDest};
pub use types::{
    DeferOutcome, DestinationKey, DestinationState, FailurePolicy, Job, Limits, Poll, Rate,
    Recipients, RetryPolicy,
};

/// The scheduler.
pub struct Scheduler {
    retry: RetryPolicy,
    failures: FailurePolicy,
    rng: u64,
    dests: HashMap<DestinationKey, Destination>,
    /// Each deferred job, with the destination its last attempt went through, if known.
    deferred: Deferred,
    host: Arc<HostLimits>,
    /// `priority.share`: picks per round, one kept for each lower class waiting.
    share: u32,
}

impl Scheduler {
    /// A scheduler with a retry policy and a seed for the jitter, whose limits hold for itself
    /// alone.
    pub fn new(retry: RetryPolicy, seed: u64) -> Self {
        Scheduler::with_host(retry, seed, Arc::new(HostLimits::new()))
    }

    /// A scheduler whose destinations' limits it shares with every scheduler given `host`.
    pub fn with_host(retry: RetryPolicy, seed: u64, host: Arc<HostLimits>) -> Self {
        Scheduler {
            host,
            retry,
            failures: FailurePolicy::default(),
            rng: seed | 1,
            dests: HashMap::new(),
            deferred: Deferred::default(),
            share: crate::priority::PrioritySection::default().share,
        }
    }

    /// Sets `priority.share`: of every `share` jobs a destination hands out, one slot is kept
    /// for each lower class that has jobs waiting (at least the number of classes).
    pub fn set_priority_share(&mut self, share: u32) {
        self.share = share.max(Class::COUNT as u32);
    }

    /// Replaces the retry policy (a reload): jobs already deferred keep their time.
    pub fn set_retry_policy(&mut self, retry: RetryPolicy) {
        self.retry = retry;
    }

    /// Sets the consecutive-connection-failure policy.
    pub fn set_failure_policy(&mut self, p: FailurePolicy) {
        self.failures = p;
    }

    fn dest(&mut self, key: &DestinationKey) -> &mut Destination {
        let host = &self.host;
        self.dests
            .entry(key.clone())
            .or_insert_with(|| Destination::new(host.entry(&key.0)))
    }

    /// The host-wide state of destination `dest` (leases, rates, suspension, reductions).
    pub fn shared(&mut self, dest: &DestinationKey) -> &SharedDest {
        &self.dest(dest).shared
    }

    /// The host-wide limit state this scheduler shares with the other shards'.
    pub fn host(&self) -> &Arc<HostLimits> {
        &self.host
    }

    /// True when the scheduler has a queue for `dest` (mail waiting, a connection, a
    /// suspension, or recent activity).
    pub fn knows(&self, dest: &DestinationKey) -> bool {
        self.dests.contains_key(dest)
    }

    /// Sets or updates a destination's limits.
    pub fn set_limits(&mut self, dest: &DestinationKey, limits: Limits) {
        self.dest(dest).set_limits(limits);
    }

    /// Queues a job that is ready now (split by the recipient limit).
    pub fn submit(&mut self, dest: &DestinationKey, job: Job, now: Instant) {
        self.dest(dest).submit(job, now);
    }

    fn random_unit(&mut self) -> f64 {
        (xorshift64(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The wait before the retry after `attempts` attempts, without jitter.
    pub fn backoff(&self, attempts: u32) -> Duration {
        backoff(&self.retry, attempts)
    }

    /// Schedules the retry of a job that failed temporarily, or expires it.
    pub fn defer(&mut self, job: Job, now: Instant) -> DeferOutcome {
        self.defer_from(job, None, now, None)
    }

    /// Like [`Scheduler::defer`], with a destination's own retry schedule.
    pub fn defer_with(&mut self, job: Job, now: Instant, policy: &RetryPolicy) -> DeferOutcome {
        self.defer_from(job, None, now, Some(policy))
    }

    /// Like [`Scheduler::defer`], for a job whose attempt went through destination `via`
    /// (kept for [`Scheduler::flush_matching`]), under `policy` or the global schedule.
    pub fn defer_from(
        &mut self,
        job: Job,
        via: Option<DestinationKey>,
        now: Instant,
        policy: Option<&RetryPolicy>,
    ) -> DeferOutcome {
        let policy = policy.unwrap_or(&self.retry).clone();
        let base = backoff(&policy, job.attempts.max(1));
        let spread = (self.random_unit() * 2.0 - 1.0) * policy.jitter;
        let wait = secs_f64(base.as_secs_f64() * (1.0 + spread).max(0.0));
        let at = later(now, wait);
        if at > later(job.arrival, policy.lifetime) {
            return DeferOutcome::Expired(job);
        }
        self.defer_until_from(job, via, at);
        DeferOutcome::Scheduled { at }
    }

    /// Schedules a job for a given time (e.g. restored after a restart).
    pub fn defer_until(&mut self, job: Job, at: Instant) {
        self.defer_until_from(job, None, at);
    }

    fn defer_until_from(&mut self, job: Job, via: Option<DestinationKey>, at: Instant) {
        self.deferred.push(job, via, at);
    }

    /// What to do now and when to look again.
    pub fn poll(&mut self, now: Instant) -> Poll {
        let mut poll = Poll::default();
        while let Some(job) = self.deferred.pop_due(now) {
            poll.due.push(job);
        }
        poll.next_wakeup = self.deferred.next_due();
        let mut idle = Vec::new();
        for (key, d) in &mut self.dests {
            match d.wants_connection(now) {
                Ok(()) => {
                    d.pending_opens += 1;
                    poll.open.push(key.clone());
                }
                Err(Some(when)) => {
                    poll.next_wakeup = Some(poll.next_wakeup.map_or(when, |w| w.min(when)));
                }
                Err(None) if d.is_idle(now) => idle.push(key.clone()),
                Err(None) => {}
            }
        }
        for key in idle {
            self.dests.remove(&key);
        }
        poll.open.sort();
        poll
    }

    /// Whether `dest` has nothing ready on this shard while another shard wants one of its
    /// connection leases (was refused one lately), or another node does and this host holds
    /// more than its share: an idle connection of this shard should then close and give its
    /// lease back.
    pub fn yield_lease(&self, dest: &DestinationKey, now: Instant) -> bool {
        self.dests.get(dest).is_some_and(|d| {
            d.ready_len() == 0
                && d.shared
                    .contended(now, 2 * destination::LEASE_RETRY, d.own_refusal)
        })
    }

    /// True when the host holds more of `dest`'s connections than the cluster now allows: a
    /// connection then closes rather than take another job.
    pub fn over_cap(&self, dest: &DestinationKey) -> bool {
        self.dests.get(dest).is_some_and(|d| d.shared.over_cap())
    }

    /// The next job for a connection to `dest`, if not suspended and the rate allows: of the
    /// highest priority class waiting, except in the slots kept for lower classes.
    pub fn next_job(&mut self, dest: &DestinationKey, now: Instant) -> Option<Job> {
        let share = self.share;
        self.dests.get_mut(dest)?.next_job(now, share)
    }

    /// The ready jobs of `first`'s message (just taken with [`Scheduler::next_job`]) that go
    /// in the same transaction: together at most `max_recipients_per_transaction` recipients.
    pub fn take_siblings(&mut self, dest: &DestinationKey, first: &Job) -> Vec<Job> {
        self.dests
            .get_mut(dest)
            .map_or_else(Vec::new, |d| d.take_siblings(first))
    }

    /// A connection asked for by `poll` was opened.
    pub fn connection_opened(&mut self, dest: &DestinationKey) {
        let d = self.dest(dest);
        d.pending_opens = d.pending_opens.saturating_sub(1);
        d.open += 1;
    }

    /// A connection asked for by `poll` could not be opened.
    pub fn connection_open_failed(&mut self, dest: &DestinationKey) {
        let d = self.dest(dest);
        if d.pending_opens > 0 {
            d.pending_opens -= 1;
            d.shared.release();
        }
    }

    /// An open connection was closed.
    pub fn connection_closed(&mut self, dest: &DestinationKey) {
        let d = self.dest(dest);
        if d.open > 0 {
            d.open -= 1;
            d.shared.release();
        }
    }

    /// Suspends a destination until `until`.
    pub fn suspend(&mut self, dest: &DestinationKey, until: Instant, reason: String) {
        self.dest(dest).shared.suspend(until, reason);
    }

    /// Lifts a suspension.
    pub fn resume(&mut self, dest: &DestinationKey) {
        self.dest(dest).shared.resume();
    }

    /// Counts a failed connection; suspends after `threshold` in a row (doubling backoff).
    pub fn connect_failed(&mut self, dest: &DestinationKey, now: Instant) -> Option<Instant> {
        let p = self.failures;
        let d = self.dest(dest);
        d.failures += 1;
        if d.failures < p.threshold {
            return None;
        }
        d.failures = 0;
        let wait = d
            .backoff
            .map_or(p.backoff, |b| b.saturating_mul(2).min(p.max_backoff));
        d.backoff = Some(wait);
        let until = later(now, wait);
        let why = format!("{} consecutive connection failures", p.threshold);
        d.shared.suspend(until, why);
        Some(until)
    }

    /// A connection succeeded: the failure count and backoff start over.
    pub fn connect_succeeded(&mut self, dest: &DestinationKey) {
        let d = self.dest(dest);
        d.failures = 0;
        d.backoff = None;
    }

    /// Takes every job waiting in a destination's ready queues (deferred jobs stay: they are
    /// routed again when due).
    pub fn drain_destination(&mut self, dest: &DestinationKey) -> Vec<Job> {
        let mut jobs = Vec::new();
        if let Some(d) = self.dests.get_mut(dest) {
            while let Some(job) = d.take_any() {
                jobs.push(job);
            }
        }
        jobs
    }

    /// Removes every queued job of a message.
    pub fn remove_message(&mut self, message: u64) -> Vec<Job> {
        self.remove_where(|j| j.message == message)
    }

    /// Removes every queued job (ready or deferred) that `pick` selects, in one pass.
    pub fn remove_where(&mut self, pick: impl Fn(&Job) -> bool) -> Vec<Job> {
        let mut out = Vec::new();
        for d in self.dests.values_mut() {
            out.extend(d.remove_where(&pick));
        }
        out.extend(self.deferred.remove_where(pick));
        out
    }

    /// Takes every job waiting in any destination's ready queues (deferred jobs stay).
    pub fn drain_ready(&mut self) -> Vec<Job> {
        let keys: Vec<DestinationKey> = self.dests.keys().cloned().collect();
        keys.iter()
            .flat_map(|k| self.drain_destination(k))
            .collect()
    }

    /// When each message's earliest deferred job is due.
    pub fn next_attempts(&self) -> HashMap<u64, Instant> {
        let mut out: HashMap<u64, Instant> = HashMap::new();
        for (job, at) in self.deferred.iter() {
            let e = out.entry(job.message).or_insert(at);
            *e = (*e).min(at);
        }
        out
    }

    /// Makes every deferred job due now; returns how many.
    pub fn flush(&mut self, now: Instant) -> usize {
        self.deferred.make_due(now, |_, _| true)
    }

    /// Makes the deferred jobs that `matches` selects due now; returns how many. `matches` is
    /// given each job and the destination its last attempt went through, if known.
    pub fn flush_matching(
        &mut self,
        now: Instant,
        matches: impl Fn(&Job, Option<&DestinationKey>) -> bool,
    ) -> usize {
        self.deferred.make_due(now, matches)
    }

    /// A destination's state.
    pub fn explain(&self, dest: &DestinationKey, now: Instant) -> Option<DestinationState> {
        self.dests.get(dest).map(|d| d.explain(now))
    }

    /// The host-wide suspension of `dest` (decided by another shard or node), even when this
    /// scheduler has no queue for it.
    pub fn host_suspension(
        &self,
        dest: &DestinationKey,
        now: Instant,
    ) -> Option<(Instant, String)> {
        self.host.get(&dest.0)?.suspension(now)
    }

    /// Known destinations.
    pub fn destinations(&self) -> impl Iterator<Item = &DestinationKey> {
        self.dests.keys()
    }

    /// Deferred jobs.
    pub fn deferred_len(&self) -> usize {
        self.deferred.len()
    }

    /// Ready jobs over all destinations.
    pub fn ready_len(&self) -> usize {
        self.dests.values().map(Destination::ready_len).sum()
    }
}

/// One step of the xorshift64 generator (jitter, weighted picks: not for secrets). The state
/// must not be 0.
pub fn xorshift64(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// The wait before retry number `attempts` (1-based) under `policy`, before jitter.
fn backoff(policy: &RetryPolicy, attempts: u32) -> Duration {
    let exp = policy
        .multiplier
        .powi(attempts.saturating_sub(1).min(64) as i32);
    let secs = (policy.first.as_secs_f64() * exp).min(policy.max.as_secs_f64());
    secs_f64(secs)
}

/// The longest wait [`later`] adds: a hundred years, far past any queue lifetime.
pub const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `now + wait`, saturating: a wait longer than [`FAR_FUTURE`] (or one that would overflow
/// the clock) ends at `now + FAR_FUTURE`.
pub fn later(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait.min(FAR_FUTURE))
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// `secs` seconds as a duration, saturating: negative or NaN is zero, too large is
/// `Duration::MAX` (where `Duration::from_secs_f64` would panic).
pub fn secs_f64(secs: f64) -> Duration {
    match Duration::try_from_secs_f64(secs) {
        Ok(d) => d,
        Err(_) if secs > 0.0 => Duration::MAX,
        Err(_) => Duration::ZERO,
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "priority_tests.rs"]
mod priority_tests;
