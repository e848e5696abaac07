//! One destination's queue inside the scheduler: ready jobs (per priority class, new and
//! retried), connection counts, slow start and failure backoff, over the host-wide state of
//! the destination (leases, rates, suspension) that every shard shares.
//!
//! What it does: the per-destination half of the scheduler's rules. Jobs wait in one lane per
//! priority class; each pick serves the highest class waiting, except that in every round of
//! `share` picks one slot is kept for each lower class ([`Lanes::pick`]).
//!
//! What it does not do: no timers of its own (the scheduler's heap), no I/O.
//!
//! Invariants: `open + pending_opens` counts this shard's share of the destination's leases
//! (one taken for each yes of `wants_connection`, given back when that connection closes or
//! fails to open), so the host never holds more than `limits.max_connections`; a job is
//! handed out only with a message token of the host-wide rate, whatever its class (classes
//! change the order, never the limits); a lower class that has jobs waiting through any
//! `share` consecutive picks is served at least once in them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shared::SharedDest;
use super::{DestinationState, Job, Limits};
use crate::priority::Class;

/// One class's ready jobs: new mail and retries, taken in turn so neither starves the other.
#[derive(Default)]
struct Lane {
    new: VecDeque<Job>,
    retry: VecDeque<Job>,
    retry_turn: bool,
}

impl Lane {
    fn len(&self) -> usize {
        self.new.len() + self.retry.len()
    }

    fn take(&mut self) -> Option<Job> {
        let take_retry = (self.retry_turn && !self.retry.is_empty()) || self.new.is_empty();
        self.retry_turn = !self.retry_turn;
        match take_retry {
            true => self.retry.pop_front(),
            false => self.new.pop_front(),
        }
    }
}

/// The ready jobs of every class, and where the round of picks is.
#[derive(Default)]
pub(super) struct Lanes {
    lanes: [Lane; Class::COUNT],
    /// Picks made so far in the current round of `share`.
    turn: u32,
}

impl Lanes {
    /// The class the next pick serves, if any job waits: slot `share - k` of each round is
    /// kept for the `k`-th class from the bottom (bulk last, then normal, ...) when it has
    /// jobs; every other slot, or a kept slot whose class has none, goes to the highest class
    /// waiting. O(number of classes).
    pub(super) fn pick(&mut self, share: u32) -> Option<Class> {
        let share = share.max(Class::COUNT as u32);
        let slot = self.turn;
        self.turn = (self.turn + 1) % share;
        let kept = (share - slot) as usize;
        let reserved = (kept < Class::COUNT).then(|| Class::ALL[Class::COUNT - kept]);
        reserved
            .filter(|c| self.lanes[c.index()].len() > 0)
            .or_else(|| {
                Class::ALL
                    .into_iter()
                    .find(|c| self.lanes[c.index()].len() > 0)
            })
    }

    fn take(&mut self, share: u32) -> Option<Job> {
        let class = self.pick(share)?;
        self.lanes[class.index()].take()
    }

    fn queue(&mut self, class: Class, retry: bool) -> &mut VecDeque<Job> {
        let lane = &mut self.lanes[class.index()];
        match retry {
            true => &mut lane.retry,
            false => &mut lane.new,
        }
    }

    /// Ready jobs of each class, highest first.
    pub(super) fn by_class(&self) -> [usize; Class::COUNT] {
        std::array::from_fn(|i| self.lanes[i].len())
    }

    fn len(&self) -> usize {
        self.lanes.iter().map(Lane::len).sum()
    }
}

pub(super) struct Destination {
    pub(super) limits: Limits,
    pub(super) lanes: Lanes,
    pub(super) open: usize,
    pub(super) pending_opens: usize,
    /// The host-wide state: leases, rates, suspension.
    pub(super) shared: Arc<SharedDest>,
    pub(super) failures: u32,
    pub(super) backoff: Option<Duration>,
    last_active: Option<Instant>,
    /// The mark of this shard's last refused lease (`SharedDest::refused`), 0 = none.
    pub(super) own_refusal: u64,
}

/// How long an empty destination is kept (its failure backoff survives that long).
const KEEP_IDLE: Duration = Duration::from_secs(300);

/// How many ready jobs [`Destination::take_siblings`] looks at. A message's jobs are queued
/// one after the other when it arrives (and when its retries come due together), so its
/// siblings are at the front; the bound keeps a look cheap when a message has none.
const SIBLING_WINDOW: usize = 64;

/// How soon a destination at its host-wide connection limit looks again (another shard's
/// connection may have closed).
pub(super) const LEASE_RETRY: Duration = Duration::from_millis(100);

impl Destination {
    pub(super) fn new(shared: Arc<SharedDest>) -> Destination {
        Destination {
            limits: Limits::default(),
            lanes: Lanes::default(),
            open: 0,
            pending_opens: 0,
            shared,
            failures: 0,
            backoff: None,
            last_active: None,
            own_refusal: 0,
        }
    }

    pub(super) fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub(super) fn submit(&mut self, job: Job, now: Instant) {
        self.last_active = Some(now);
        let max = self.limits.max_recipients_per_transaction.max(1);
        let queue = self.lanes.queue(job.priority, job.attempts > 0);
        if job.recipients.len() <= max {
            queue.push_back(job);
            return;
        }
        for chunk in job.recipients.chunks(max) {
            queue.push_back(Job {
                recipients: chunk.into(),
                ..job.clone()
            });
        }
    }

    fn suspended_until(&self, now: Instant) -> Option<Instant> {
        self.shared.suspended_until(now)
    }

    /// Takes one waiting job, new or retried, of any class, ignoring limits (for an operator
    /// or a rule that empties the queue).
    pub(super) fn take_any(&mut self) -> Option<Job> {
        self.lanes
            .lanes
            .iter_mut()
            .find_map(|l| l.new.pop_front().or_else(|| l.retry.pop_front()))
    }

    pub(super) fn ready_len(&self) -> usize {
        self.lanes.len()
    }

    /// Ok if one more connection should be opened (a host-wide lease is then held for it);
    /// Err(Some(t)) if not before t.
    pub(super) fn wants_connection(&mut self, now: Instant) -> Result<(), Option<Instant>> {
        if self.ready_len() == 0 {
            return Err(None);
        }
        if let Some(until) = self.suspended_until(now) {
            return Err(Some(until));
        }
        if self.open + self.pending_opens >= self.limits.max_connections {
            return Err(None);
        }
        if let Some(rate) = self.limits.rate
            && let Some(at) = self.shared.message_due(now, rate)
        {
            return Err(Some(at));
        }
        // Slow start: with connections already open, add one only if jobs outnumber them.
        if self.open > 0 && self.ready_len() <= self.open + self.pending_opens {
            return Err(None);
        }
        if !self.shared.try_lease(self.limits.max_connections) {
            self.own_refusal = self.shared.refused(now);
            return Err(Some(super::later(now, LEASE_RETRY)));
        }
        if let Some(rate) = self.limits.connection_rate
            && let Err(at) = self.shared.take_connection(now, rate)
        {
            self.shared.release();
            return Err(Some(at));
        }
        Ok(())
    }

    pub(super) fn next_job(&mut self, now: Instant, share: u32) -> Option<Job> {
        if self.suspended_until(now).is_some() || self.ready_len() == 0 {
            return None;
        }
        if let Some(rate) = self.limits.rate
            && self.shared.take_message(now, rate).is_err()
        {
            return None;
        }
        let job = self.lanes.take(share)?;
        self.last_active = Some(now);
        Some(job)
    }

    /// Takes the ready jobs of `first`'s message that can share its transaction: from the
    /// queue `first` came from (its class, new or retried), among the first [`SIBLING_WINDOW`] jobs, while the recipients
    /// stay within `max_recipients_per_transaction`. No rate token is taken: the transaction
    /// is one message.
    pub(super) fn take_siblings(&mut self, first: &Job) -> Vec<Job> {
        let max = self.limits.max_recipients_per_transaction.max(1);
        let mut room = max.saturating_sub(first.recipients.len());
        let queue = self.lanes.queue(first.priority, first.attempts > 0);
        let mut out = Vec::new();
        let (mut i, mut looked) = (0, 0);
        while room > 0 && i < queue.len() && looked < SIBLING_WINDOW {
            looked += 1;
            let job = &queue[i];
            if job.message == first.message && job.recipients.len() <= room {
                room -= job.recipients.len();
                out.extend(queue.remove(i));
            } else {
                i += 1;
            }
        }
        out
    }

    pub(super) fn is_idle(&self, now: Instant) -> bool {
        self.ready_len() == 0
            && self.open == 0
            && self.pending_opens == 0
            && self.suspended_until(now).is_none()
            && self
                .last_active
                .is_none_or(|t| now.saturating_duration_since(t) > KEEP_IDLE)
    }

    pub(super) fn remove_where(&mut self, pick: &impl Fn(&Job) -> bool) -> Vec<Job> {
        let mut out = Vec::new();
        let queues = self.lanes.lanes.iter_mut();
        for q in queues.flat_map(|l| [&mut l.new, &mut l.retry]) {
            if !q.iter().any(pick) {
                continue;
            }
            let (gone, keep): (Vec<Job>, Vec<Job>) = q.drain(..).partition(|j| pick(j));
            q.extend(keep);
            out.extend(gone);
        }
        out
    }

    pub(super) fn explain(&self, now: Instant) -> DestinationState {
        DestinationState {
            ready_new: self.lanes.lanes.iter().map(|l| l.new.len()).sum(),
            ready_retry: self.lanes.lanes.iter().map(|l| l.retry.len()).sum(),
            ready_by_class: self.lanes.by_class(),
            connections: self.open,
            pending_opens: self.pending_opens,
            host_connections: self.shared.leases(),
            cluster_connections: self.shared.cluster_cap(),
            suspended: self.shared.suspension(now),
            tokens: self.limits.rate.map(|r| self.shared.message_tokens(now, r)),
            limits: self.limits.clone(),
        }
    }
}
