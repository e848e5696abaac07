//! The queue task's answers to operators: what the admin endpoint asks a shard's queue.
//!
//! What it does: answers [`Request`]s from the state the queue task owns: the summary, one
//! message, a destination's state and the counters (built by `views`), and carries out the
//! actions: deleting messages (bounced, with a DSN in [`DeleteMode::Bounce`]), flushing
//! deferred mail, suspending and resuming a destination (the actions on selected messages and
//! the pause are in `queue_ops.rs`). Every change is recorded in the event log with who asked.
//! A domain an operator names is routed first, in a task of its own; the request then comes
//! back with the destination's key. A key covers the queues of its pool's sources
//! (`<key>@<source>`): a suspend, resume or explain acts on each of them, a suspension also on
//! those made while it lasts (`suspensions`), and a flush of a key takes the deferred mail that
//! last went through any of them.
//!
//! What it does not do: no encoding (the admin endpoint's), no cross-shard merging.
//!
//! Invariants: runs inside the queue task, between its other messages; a deletion records a
//! final state for every recipient not yet final, exactly once (an attempt still in flight
//! finds them final and records nothing).

use std::collections::HashSet;
use std::time::{Instant, SystemTime};

use futures_channel::oneshot;

use super::ShardQueue;
use crate::delivery::queue_msg::QueueMsg;
use crate::delivery::recorder::{self, DeleteMode, Peer};
use crate::delivery::route::Routed;
use crate::delivery::routes::covers;
use crate::delivery::suspensions::REASON;
use crate::delivery::views::{self, Actor, Answer, Counters, Covered, Request};
use crate::queue::DestinationKey;

impl ShardQueue {
    /// Answers an operator (a name to route first is looked up in a task of its own); `by`
    /// is who asks, recorded with every change in the event log.
    pub(super) fn admin(&mut self, request: Request, by: Actor, reply: oneshot::Sender<Answer>) {
        let now = Instant::now();
        let answer = match request {
            Request::Summary(group) => {
                Answer::Summary(views::summary(&self.messages, &self.config.hostname, group))
            }
            Request::List(select, limit) => self.list(&select, limit, now),
            Request::Message(id) => Answer::Message(views::message(&self.messages, id)),
            Request::Body(id) => return self.body(id, reply),
            Request::Act(op, select) => return self.act(op, select, by, reply),
            Request::Pause(on) => {
                self.pause(on);
                self.operator(if on { "pause" } else { "unpause" }, "", &by, 0, 0);
                Answer::Paused(self.hold)
            }
            Request::Delete(id, mode) => {
                let deleted = self.delete(id, mode);
                if let Some(d) = &deleted {
                    let action = views::Op::Delete(mode).name();
                    self.operator(action, &d.id.to_string(), &by, 1, d.recipients);
                }
                Answer::Deleted(deleted)
            }
            Request::Flush(target) => {
                let n = self.flush(target.as_deref(), now);
                let what = format!(
                    "{} ({n} retries made due)",
                    target.as_deref().unwrap_or("all")
                );
                self.operator("flush", &what, &by, 0, 0);
                Answer::Flushed(n)
            }
            Request::Counters => Answer::Counters(self.counters(now)),
            Request::Suspend(ref name, _)
            | Request::Resume(ref name)
            | Request::Explain(ref name)
                if !self.is_key(name) =>
            {
                return self.resolve_then(request, by, reply);
            }
            Request::Suspend(name, duration) => {
                let key = DestinationKey(name);
                let until = crate::queue::later(now, duration);
                let sources = self.sources_of(&key);
                for k in std::iter::once(&key).chain(&sources) {
                    self.sched.suspend(k, until, REASON.to_owned());
                }
                self.suspensions.suspend(&key.0, until, now);
                let what = format!("{} for {}s", key.0, duration.as_secs());
                self.operator("suspend", &what, &by, 0, 0);
                Answer::Suspended(Ok((Covered { key, sources }, duration)))
            }
            Request::Resume(name) => {
                let key = DestinationKey(name);
                let sources = self.sources_of(&key);
                for k in std::iter::once(&key).chain(&sources) {
                    self.sched.resume(k);
                }
                self.suspensions.resume(&key.0);
                self.dirty = true;
                self.operator("resume", &key.0, &by, 0, 0);
                Answer::Resumed(Ok(Covered { key, sources }))
            }
            Request::Explain(name) => {
                let key = DestinationKey(name);
                let sources = self.sources_of(&key);
                let mut view = self.explain(key, now);
                view.sources = sources.into_iter().map(|k| self.explain(k, now)).collect();
                if view.state.is_none() && !view.sources.is_empty() {
                    view.why = "its mail is queued per source of its pool (see sources)".to_owned();
                }
                view.parked = self.parking.for_destination(&view.key);
                let idle = view
                    .state
                    .as_ref()
                    .is_none_or(|s| s.ready_new + s.ready_retry == 0);
                if view.parked > 0 && idle && view.sources.is_empty() {
                    view.why = format!(
                        "paused: {} recipients wait for a paused campaign or tenant (mta campaign list)",
                        view.parked
                    );
                }
                Answer::Explained(Ok(Box::new(view)))
            }
        };
        let _ = reply.send(answer);
    }

    /// Why the queue `key` is or is not sending.
    fn explain(&self, key: DestinationKey, now: Instant) -> views::DestinationView {
        let last = self.last_error.get(&key).cloned();
        views::explain(key, &self.sched, &self.routes, &self.rules, last, now)
    }

    /// The queues of the pool's sources of `key` (`<key>@<source>`) the scheduler has, in
    /// order.
    fn sources_of(&self, key: &DestinationKey) -> Vec<DestinationKey> {
        let mut keys: Vec<DestinationKey> = self
            .sched
            .destinations()
            .filter(|k| k.0.len() > key.0.len() && covers(&key.0, &k.0))
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// True when `name` is a destination key (known here, or in key form) rather than a
    /// domain to route.
    fn is_key(&self, name: &str) -> bool {
        name.contains(':') || self.sched.destinations().any(|k| k.0 == name)
    }

    /// Routes the domain an operator named, then asks again with its destination key.
    fn resolve_then(&self, request: Request, by: Actor, reply: oneshot::Sender<Answer>) {
        let name = request
            .destination()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let lookup = self.routes.lookup(name);
        let tx = self.tx.clone();
        glommio::spawn_local(async move {
            match lookup.await {
                Routed::Target(t) => {
                    tx.send(QueueMsg::Admin(request.for_key(t.key.0.clone()), by, reply))
                }
                Routed::Failed(_) => drop(reply.send(request.no_route())),
            }
        })
        .detach();
    }

    /// Deletes a message: every recipient not yet final becomes bounced (with a DSN to the
    /// sender in [`DeleteMode::Bounce`]). None if not queued here.
    fn delete(&mut self, id: u64, mode: DeleteMode) -> Option<views::Deleted> {
        self.delete_many(&[id], mode).pop()
    }

    /// Deletes messages (see [`Self::delete`]): their waiting jobs leave the scheduler in one
    /// pass. Returns what was deleted (ids not queued here are skipped).
    pub(super) fn delete_many(&mut self, ids: &[u64], mode: DeleteMode) -> Vec<views::Deleted> {
        let ids: HashSet<u64> = ids
            .iter()
            .copied()
            .filter(|id| self.messages.get(*id).is_some())
            .collect();
        if ids.is_empty() {
            return Vec::new();
        }
        self.sched.remove_where(|j| ids.contains(&j.message));
        self.held.retain(|j| !ids.contains(&j.message));
        self.holds.retain(|id, _| !ids.contains(id));
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(e) = self.messages.get_mut(id) else {
                continue;
            };
            let msg = e.msg.clone();
            let records = recorder::deleted(&msg, &mut e.progress, mode, SystemTime::now());
            let recipients = records.lines.len();
            self.carry_out(&msg, records, "", &Peer::default());
            out.push(views::Deleted {
                id: msg.record.queue_id(),
                recipients,
                mode,
            });
        }
        out
    }

    /// Makes deferred mail due now: all of it, or that of one domain, or that which last went
    /// through a destination key or one of its pool's sources (which are resumed).
    fn flush(&mut self, target: Option<&str>, now: Instant) -> usize {
        self.dirty = true;
        match target {
            None => self.sched.flush(now),
            Some(t) => {
                let t = t.to_ascii_lowercase();
                let covered: Vec<DestinationKey> = self
                    .sched
                    .destinations()
                    .filter(|k| covers(&t, &k.0))
                    .cloned()
                    .collect();
                for k in &covered {
                    self.sched.resume(k);
                }
                self.suspensions.resume(&t);
                self.sched.flush_matching(now, |job, via| {
                    *job.domain == *t || via.is_some_and(|k| covers(&t, &k.0))
                })
            }
        }
    }

    /// The counters, with the gauges read now.
    fn counters(&self, now: Instant) -> Counters {
        let dns = self.routes.dns_stats();
        Counters {
            queue_bytes: self.messages.values().map(|e| e.msg.size as u64).sum(),
            held: self.holds.len() as u64,
            paused: self.hold,
            suspended: views::suspended(&self.sched, now),
            dns_cache_hits: dns.cache_hits,
            dns_cache_misses: dns.cache_misses,
            ..self.counters
        }
    }
}
