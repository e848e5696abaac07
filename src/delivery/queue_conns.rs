//! The queue task's side of its connections: what a connection task reports (opened, a job's
//! result, refused, closed, a TLS fallback), the next transaction it is given, and the jobs of
//! a destination that no hop answered.
//!
//! What it does: hands a connection the destination's next job with the message's other jobs
//! for the same next hop (not for a VERP message: each recipient has its own envelope sender),
//! after taking out what is paused or suppressed; counts connections open; defers every waiting
//! job of a destination that could not be reached.
//!
//! What it does not do: no outcome decisions (`finish` and the recorder), no scheduling policy.
//!
//! Invariants: runs inside the queue task; a job handed out is never also kept in the
//! scheduler; a connection is told to stop when the queue stops, holds or is over its cap.

use std::time::Instant;

use super::ShardQueue;
use crate::delivery::classify::Outcome;
use crate::delivery::queue_msg::{ConnEvent, Delivery, Next};
use crate::delivery::recorder::JobResult;
use crate::queue::DestinationKey;
use crate::smtp::EnhancedStatus;

impl ShardQueue {
    pub(super) fn conn(&mut self, event: ConnEvent) {
        match event {
            ConnEvent::Refused { dest, reply } => self.observe(&dest, &reply),
            ConnEvent::TlsFallback { addr, until } => {
                self.tls_fallback.insert(addr, until);
            }
            ConnEvent::OpenFailed {
                dest,
                error,
                status,
            } => self.no_connection(dest, error, status),
            ConnEvent::Opened { dest, tls } => {
                self.routes.connected_with(&dest, tls);
                self.sched.connection_opened(&dest);
                self.sched.connect_succeeded(&dest);
                self.counters.connections += 1;
            }
            ConnEvent::Next { dest, reply } => {
                let _ = reply.send(self.next_job(&dest));
            }
            ConnEvent::Finished {
                dest,
                result,
                read_back,
            } => {
                if let Some(body) = read_back {
                    self.messages.read_back(result.job.message, body);
                }
                self.finish(result, &dest.0);
            }
            ConnEvent::Closed { dest } => {
                self.live = self.live.saturating_sub(1);
                self.sched.connection_closed(&dest);
                self.dirty = true;
            }
        }
    }

    /// The next job of `dest` for a connection, with its envelope and held body.
    pub(super) fn next_job(&mut self, dest: &DestinationKey) -> Next {
        // Stopping, held, or over the cluster's lowered cap on this host's connections.
        if self.stopping || self.hold || self.sched.over_cap(dest) {
            return Next::Stop;
        }
        let now = Instant::now();
        while let Some(job) = self.sched.next_job(dest, now) {
            let Some(job) = self.unpaused(job, dest) else {
                continue;
            };
            // Suppressed recipients end here, before anything is sent.
            let Some(job) = self.unsuppressed(job, &dest.0) else {
                continue;
            };
            // A message deleted by an operator leaves jobs behind: they are dropped here.
            if self.messages.get(job.message).is_none() {
                continue;
            }
            // The message's other recipients for this destination share the transaction
            // (the suppressed among them end here too); a VERP message's do not (each
            // recipient has an envelope sender of its own).
            let verp = self.messages.get(job.message).is_some_and(|e| e.msg.verp);
            let more: Vec<_> = match verp {
                true => Vec::new(),
                false => self.sched.take_siblings(dest, &job),
            };
            let more: Vec<_> = more
                .into_iter()
                .filter_map(|j| self.unsuppressed(j, &dest.0))
                .collect();
            if let Some(e) = self.messages.get(job.message) {
                let jobs = std::iter::once(job).chain(more).collect();
                return Next::Job(Delivery {
                    msg: e.msg.clone(),
                    body: e.body.clone(),
                    jobs,
                });
            }
        }
        // Another shard waits for this destination's host-wide lease: let it go.
        if self.sched.yield_lease(dest, now) {
            return Next::Stop;
        }
        Next::Idle
    }

    /// No hop answered (or none could be authenticated with): every waiting job of the
    /// destination is deferred with `status`.
    pub(super) fn no_connection(
        &mut self,
        dest: DestinationKey,
        error: String,
        status: EnhancedStatus,
    ) {
        self.live = self.live.saturating_sub(1);
        let now = Instant::now();
        self.sched.connection_open_failed(&dest);
        self.sched.connect_failed(&dest, now);
        let outcome = Outcome::defer(status, error.clone());
        self.last_error.insert(dest.clone(), error);
        while let Some(job) = self.sched.next_job(&dest, Instant::now()) {
            self.finish(JobResult::decided(job, outcome.clone()), &dest.0);
        }
        self.dirty = true;
    }
}
