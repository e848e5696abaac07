//! One destination's queue inside the scheduler: ready jobs (new and retried), connection
//! counts, rate tokens, suspension and failure backoff.
//!
//! What it does: the per-destination half of the scheduler's rules.
//!
//! What it does not do: no timers of its own (the scheduler's heap), no I/O.
//!
//! Invariants: `open + pending_opens <= limits.max_connections` whenever `wants_connection`
//! said yes; tokens never exceed the rate's burst.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{DestinationState, Job, Limits};

#[derive(Default)]
pub(super) struct Destination {
    pub(super) limits: Limits,
    new: VecDeque<Job>,
    retry: VecDeque<Job>,
    retry_turn: bool,
    pub(super) open: usize,
    pub(super) pending_opens: usize,
    pub(super) suspended: Option<(Instant, String)>,
    tokens: f64,
    refilled: Option<Instant>,
    conn_tokens: f64,
    conn_refilled: Option<Instant>,
    pub(super) failures: u32,
    pub(super) backoff: Option<Duration>,
    last_active: Option<Instant>,
}

/// How long an empty destination is kept (its failure backoff survives that long).
const KEEP_IDLE: Duration = Duration::from_secs(300);

impl Destination {
    pub(super) fn set_limits(&mut self, limits: Limits) {
        if self.refilled.is_none() {
            self.tokens = limits.rate.map_or(0.0, |r| f64::from(r.messages));
        }
        self.limits = limits;
    }

    pub(super) fn submit(&mut self, job: Job, now: Instant) {
        self.last_active = Some(now);
        let max = self.limits.max_recipients_per_transaction.max(1);
        let queue = if job.attempts == 0 {
            &mut self.new
        } else {
            &mut self.retry
        };
        if job.recipients.len() <= max {
            queue.push_back(job);
            return;
        }
        for chunk in job.recipients.chunks(max) {
            queue.push_back(Job {
                recipients: chunk.to_vec(),
                ..job.clone()
            });
        }
    }

    fn refill(&mut self, now: Instant) {
        let Some(rate) = self.limits.rate else { return };
        let burst = f64::from(rate.messages);
        if let Some(last) = self.refilled {
            let add =
                now.saturating_duration_since(last).as_secs_f64() / rate.per.as_secs_f64() * burst;
            self.tokens = (self.tokens + add).min(burst);
        } else {
            self.tokens = burst;
        }
        self.refilled = Some(now);
    }

    /// When the next token arrives, if one is missing.
    fn token_at(&self, now: Instant) -> Option<Instant> {
        let rate = self.limits.rate?;
        if self.tokens >= 1.0 {
            return None;
        }
        let per_token = rate.per.as_secs_f64() / f64::from(rate.messages);
        Some(super::later(
            now,
            super::secs_f64((1.0 - self.tokens) * per_token),
        ))
    }

    fn suspended_until(&mut self, now: Instant) -> Option<Instant> {
        match &self.suspended {
            Some((until, _)) if *until > now => Some(*until),
            Some(_) => {
                self.suspended = None;
                None
            }
            None => None,
        }
    }

    /// Takes one waiting job, new or retried, ignoring limits (for an operator or a rule that
    /// empties the queue).
    pub(super) fn take_any(&mut self) -> Option<Job> {
        self.new.pop_front().or_else(|| self.retry.pop_front())
    }

    pub(super) fn ready_len(&self) -> usize {
        self.new.len() + self.retry.len()
    }

    /// Ok if one more connection should be opened; Err(Some(t)) if not before t.
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
        self.refill(now);
        if let Some(at) = self.token_at(now) {
            return Err(Some(at));
        }
        if let Some(rate) = self.limits.connection_rate {
            let burst = f64::from(rate.messages);
            self.conn_tokens = match self.conn_refilled {
                Some(last) => (self.conn_tokens
                    + now.saturating_duration_since(last).as_secs_f64() / rate.per.as_secs_f64()
                        * burst)
                    .min(burst),
                None => burst,
            };
            self.conn_refilled = Some(now);
            if self.conn_tokens < 1.0 {
                let per = rate.per.as_secs_f64() / burst;
                return Err(Some(super::later(
                    now,
                    super::secs_f64((1.0 - self.conn_tokens) * per),
                )));
            }
        }
        // Slow start: with connections already open, add one only if jobs outnumber them.
        if self.open > 0 && self.ready_len() <= self.open + self.pending_opens {
            return Err(None);
        }
        if self.limits.connection_rate.is_some() {
            self.conn_tokens -= 1.0;
        }
        Ok(())
    }

    pub(super) fn next_job(&mut self, now: Instant) -> Option<Job> {
        if self.suspended_until(now).is_some() || self.ready_len() == 0 {
            return None;
        }
        self.refill(now);
        if self.limits.rate.is_some() && self.tokens < 1.0 {
            return None;
        }
        let take_retry = (self.retry_turn && !self.retry.is_empty()) || self.new.is_empty();
        self.retry_turn = !self.retry_turn;
        let job = if take_retry {
            self.retry.pop_front()
        } else {
            self.new.pop_front()
        }?;
        if self.limits.rate.is_some() {
            self.tokens -= 1.0;
        }
        self.last_active = Some(now);
        Some(job)
    }

    pub(super) fn is_idle(&self, now: Instant) -> bool {
        self.ready_len() == 0
            && self.open == 0
            && self.pending_opens == 0
            && self
                .suspended
                .as_ref()
                .is_none_or(|(until, _)| *until <= now)
            && self
                .last_active
                .is_none_or(|t| now.saturating_duration_since(t) > KEEP_IDLE)
    }

    pub(super) fn remove_message(&mut self, message: u64) -> Vec<Job> {
        let mut out = Vec::new();
        for q in [&mut self.new, &mut self.retry] {
            let (gone, keep): (Vec<Job>, Vec<Job>) =
                q.drain(..).partition(|j| j.message == message);
            q.extend(keep);
            out.extend(gone);
        }
        out
    }

    pub(super) fn explain(&self, now: Instant) -> DestinationState {
        DestinationState {
            ready_new: self.new.len(),
            ready_retry: self.retry.len(),
            connections: self.open,
            pending_opens: self.pending_opens,
            suspended: self.suspended.clone().filter(|(u, _)| *u > now),
            tokens: self.limits.rate.map(|_| self.tokens),
            limits: self.limits.clone(),
        }
    }
}
