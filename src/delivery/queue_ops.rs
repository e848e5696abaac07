//! The queue task's actions on selected messages: list, show the stored content, hold,
//! release, delete or bounce, requeue; and the pause of all delivery.
//!
//! What it does: matches the queued messages against an operator's [`Select`] and acts on the
//! matches in one pass over the scheduler. A hold takes the message's waiting jobs out of the
//! scheduler (and catches those still in flight when they come back) and writes a durable
//! hold record; a release writes the release record and routes the jobs again now. A requeue
//! forgets the cached routes and routes the waiting jobs again now. The pause keeps every job
//! from being routed or sent until it is lifted (`delivery.hold` at start is the same switch).
//! Every action is recorded in the event log (`Operator`) with who asked.
//!
//! What it does not do: no encoding, no cross-shard merging (the admin endpoint's), no
//! decisions about recipients (a deletion goes through the recorder).
//!
//! Invariants: the answer to a hold or release is sent once its records are durable (or with
//! the error that kept them from being so); a held message is never handed to a connection;
//! a release never makes a message that another hold still covers due.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use futures_channel::oneshot;

use super::ShardQueue;
use crate::delivery::select::{self, MessageState, Select};
use crate::delivery::views::{Acted, Actor, Answer, Op};
use crate::eventlog::Operator;
use crate::spool::QueueId;

/// The most rows one list answer carries (per shard).
pub const MAX_LIST: usize = 100_000;

impl ShardQueue {
    /// The state of message `id` as operators see it.
    fn state_of(&self, id: u64, deferred: bool) -> MessageState {
        if self.holds.contains_key(&id) {
            MessageState::Held
        } else if deferred {
            MessageState::Deferred
        } else {
            MessageState::Active
        }
    }

    /// The (arrival, id) of every queued message `select` matches, given when each message's
    /// next retry is due (`next`).
    fn matching(&self, select: &Select, next: &HashMap<u64, Instant>) -> Vec<(u64, u64)> {
        self.messages
            .values()
            .filter(|e| e.progress.pending > 0)
            .filter(|e| {
                let id = e.msg.record.id;
                let state = self.state_of(id, next.contains_key(&id));
                select.matches(e, state, &self.config.hostname)
            })
            .map(|e| (e.msg.record.arrival_unix_ms, e.msg.record.id))
            .collect()
    }

    /// The messages `select` matches, oldest first, at most `limit` of them, with how many
    /// matched in all. Only the rows shown are built.
    pub(super) fn list(&self, select: &Select, limit: usize, now: Instant) -> Answer {
        let next = self.sched.next_attempts();
        let mut found = self.matching(select, &next);
        let total = found.len();
        let limit = limit.min(MAX_LIST).min(total);
        if limit < total {
            found.select_nth_unstable(limit);
            found.truncate(limit);
        }
        found.sort_unstable();
        let rows = found
            .iter()
            .filter_map(|&(_, id)| {
                let e = self.messages.get(id)?;
                let due = next.get(&id).copied();
                Some(select::row(e, self.state_of(id, due.is_some()), due, now))
            })
            .collect();
        Answer::List(rows, total)
    }

    /// The stored content of message `id`: held, or read back from the spool in a task.
    pub(super) fn body(&self, id: u64, reply: oneshot::Sender<Answer>) {
        let Some(e) = self.messages.get(id) else {
            let _ = reply.send(Answer::Body(None));
            return;
        };
        if let Some(b) = &e.body {
            let _ = reply.send(Answer::Body(Some(Ok(b.to_vec()))));
            return;
        }
        let spool = self.sinks.spool.clone();
        glommio::spawn_local(async move {
            let r = spool.read_message(QueueId(id)).await;
            let _ = reply.send(Answer::Body(Some(
                r.map(|m| m.body).map_err(|e| e.to_string()),
            )));
        })
        .detach();
    }

    /// Carries out `op` on what `select` matches; answers once holds and releases are durable.
    pub(super) fn act(
        &mut self,
        op: Op,
        select: Select,
        by: Actor,
        reply: oneshot::Sender<Answer>,
    ) {
        let next = match select.state {
            Some(MessageState::Held) => HashMap::new(),
            _ => self.sched.next_attempts(),
        };
        let ids: Vec<u64> = self
            .matching(&select, &next)
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        let pending = |q: &Self, ids: &[u64]| -> usize {
            ids.iter()
                .filter_map(|id| q.messages.get(*id))
                .map(|e| e.progress.pending)
                .sum()
        };
        // A deletion ends the recipients: they are counted before it.
        let (changed, recipients, durable) = match op {
            Op::Hold => {
                let changed = self.hold_messages(&ids);
                let n = pending(self, &changed);
                (changed, n, Some(true))
            }
            Op::Release => {
                let changed = self.release_messages(&ids);
                let n = pending(self, &changed);
                (changed, n, Some(false))
            }
            Op::Delete(mode) => {
                let n = pending(self, &ids);
                self.delete_many(&ids, mode);
                (ids, n, None)
            }
            Op::Requeue => {
                let changed = self.requeue(&ids);
                let n = pending(self, &changed);
                (changed, n, None)
            }
        };
        let mut acted = Acted {
            messages: changed.len(),
            recipients,
            error: None,
        };
        self.operator(
            op.name(),
            &select.describe(),
            &by,
            acted.messages,
            recipients,
        );
        let Some(held) = durable else {
            let _ = reply.send(Answer::Acted(acted));
            return;
        };
        let spool = self.sinks.spool.clone();
        let ids: Vec<QueueId> = changed.into_iter().map(QueueId).collect();
        glommio::spawn_local(async move {
            if let Err(e) = spool.append_holds(&ids, held).await {
                tracing::error!(error = %e, "recording a hold or release failed; it lasts until the next restart");
                acted.error = Some(e.to_string());
            }
            let _ = reply.send(Answer::Acted(acted));
        })
        .detach();
    }

    /// Holds messages not held yet; returns them.
    fn hold_messages(&mut self, ids: &[u64]) -> Vec<u64> {
        let new: HashSet<u64> = ids
            .iter()
            .copied()
            .filter(|id| !self.holds.contains_key(id))
            .collect();
        for id in &new {
            self.holds.insert(*id, Vec::new());
        }
        let mut taken = self.sched.remove_where(|j| new.contains(&j.message));
        let (paused, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|j| new.contains(&j.message));
        self.held = kept;
        taken.extend(paused);
        for job in taken {
            if let Some(h) = self.holds.get_mut(&job.message) {
                h.push(job);
            }
        }
        self.dirty = true;
        new.into_iter().collect()
    }

    /// Releases held messages: their jobs are routed again now. Returns them.
    fn release_messages(&mut self, ids: &[u64]) -> Vec<u64> {
        let mut released = Vec::new();
        for id in ids {
            if let Some(jobs) = self.holds.remove(id) {
                released.push(*id);
                for job in jobs {
                    self.route(job);
                }
            }
        }
        self.dirty = true;
        released
    }

    /// Routes the waiting jobs of messages again now, with the route cache forgotten (after a
    /// route or DNS change). Held messages stay held; with delivery paused, nothing moves.
    /// Returns the messages requeued.
    fn requeue(&mut self, ids: &[u64]) -> Vec<u64> {
        if self.hold {
            return Vec::new();
        }
        let set: HashSet<u64> = ids
            .iter()
            .copied()
            .filter(|id| !self.holds.contains_key(id))
            .collect();
        self.routes.forget_cached();
        for job in self.sched.remove_where(|j| set.contains(&j.message)) {
            self.route(job);
        }
        self.dirty = true;
        set.into_iter().collect()
    }

    /// Pauses (or resumes) all delivery: nothing is routed or sent while paused; connections
    /// end after the transaction they are in. Resuming routes what waited.
    pub(super) fn pause(&mut self, on: bool) {
        if on == self.hold {
            return;
        }
        self.hold = on;
        if on {
            let ready = self.sched.drain_ready();
            self.held.extend(ready);
        } else {
            for job in std::mem::take(&mut self.held) {
                self.route(job);
            }
        }
        self.dirty = true;
    }

    /// Records an operator's action in the event log.
    pub(super) fn operator(
        &self,
        action: &str,
        target: &str,
        by: &Actor,
        messages: usize,
        recipients: usize,
    ) {
        self.sinks.log.operator(&Operator {
            action,
            target,
            by: &by.0,
            messages,
            recipients,
        });
        tracing::info!(action, target, by = %by.0, messages, recipients, "operator action");
    }
}
