//! What operators can see of, and do to, one shard's delivery stage.
//!
//! What it does: a summary of the queue by recipient domain with an age histogram (like
//! Postfix's `qshape`), one message with its recipients' states, deletion of a message
//! (bounced with a DSN, or silently), flushing deferred mail, suspending and resuming a
//! destination, and the explanation of why a destination is or is not sending.
//!
//! What it does not do: no HTTP, no cross-shard merging (the admin endpoint does both).
//!
//! Invariants: a deletion records a final state for every recipient not yet final, exactly
//! once (an attempt still in flight finds them final and records nothing); answers are plain
//! JSON values.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::recorder::DeleteMode;
use super::*;

/// Upper bounds of the age buckets, in minutes (the last bucket is everything older).
pub const AGE_BUCKETS_MINUTES: [u64; 9] = [5, 10, 20, 40, 80, 160, 320, 640, 1280];

fn age_bucket(age: Duration) -> usize {
    let minutes = age.as_secs() / 60;
    AGE_BUCKETS_MINUTES
        .iter()
        .position(|&b| minutes < b)
        .unwrap_or(AGE_BUCKETS_MINUTES.len())
}

impl Stage {
    /// Queued recipients by domain: `{"messages", "recipients", "bytes", "domains": {d:
    /// {"recipients", "ages": [..]}}}`.
    pub fn queue_summary(&self) -> Value {
        let mut domains: BTreeMap<String, (u64, [u64; AGE_BUCKETS_MINUTES.len() + 1])> =
            BTreeMap::new();
        let (mut messages, mut recipients, mut bytes) = (0u64, 0u64, 0u64);
        for q in self.messages.borrow().values() {
            let bucket = age_bucket(q.arrival.elapsed());
            let done = &q.progress.borrow().done;
            let mut any = false;
            for (r, done) in q.record.recipients.iter().zip(done.iter()) {
                if *done {
                    continue;
                }
                any = true;
                recipients += 1;
                let e = domains
                    .entry(domain_of(r, &self.config().hostname))
                    .or_default();
                e.0 += 1;
                e.1[bucket] += 1;
            }
            if any {
                messages += 1;
                bytes += q.size as u64;
            }
        }
        let domains: serde_json::Map<String, Value> = domains
            .into_iter()
            .map(|(d, (n, ages))| (d, json!({"recipients": n, "ages": ages.to_vec()})))
            .collect();
        json!({"messages": messages, "recipients": recipients, "bytes": bytes, "domains": domains})
    }

    /// One message, or null if this shard does not have it queued.
    pub fn message_info(&self, id: u64) -> Value {
        let Some(q) = self.messages.borrow().get(&id).cloned() else {
            return Value::Null;
        };
        let rec = &q.record;
        let p = q.progress.borrow();
        let (done, last, attempts) = (&p.done, &p.last, &p.attempts);
        let recipients: Vec<Value> = rec
            .recipients
            .iter()
            .enumerate()
            .map(|(i, r)| {
                json!({
                    "address": r.address,
                    "final": done[i],
                    "attempts": attempts[i],
                    "last_reply": last[i],
                })
            })
            .collect();
        json!({
            "id": QueueId(id).to_string(),
            "sender": rec.reverse_path,
            "size": q.size,
            "arrival_unix_ms": rec.arrival_unix_ms,
            "age_seconds": q.arrival.elapsed().as_secs(),
            "client": rec.client_addr,
            "auth": rec.auth,
            "tls": rec.tls,
            "recipients": recipients,
        })
    }

    /// Deletes a message: every recipient not yet final becomes bounced (with a DSN to the
    /// sender in [`DeleteMode::Bounce`]). Null if this shard does not have it.
    pub async fn delete_message(self: &Rc<Self>, id: u64, mode: DeleteMode) -> Value {
        let Some(q) = self.messages.borrow().get(&id).cloned() else {
            return Value::Null;
        };
        self.sched.borrow_mut().remove_message(id);
        let records = recorder::deleted(&q, &mut q.progress.borrow_mut(), mode, SystemTime::now());
        let count = records.lines.len();
        self.carry_out(&q, records, "", &Peer::default()).await;
        self.wake.notify();
        json!({"id": QueueId(id).to_string(), "recipients": count, "mode": match mode {
            DeleteMode::Bounce => "bounce",
            DeleteMode::Silent => "silent",
        }})
    }

    /// Makes deferred mail due now: all of it, or that of one domain or destination key.
    pub fn flush_queue(&self, target: Option<&str>) -> Value {
        let now = Instant::now();
        let flushed = {
            let mut sched = self.sched.borrow_mut();
            match target {
                None => sched.flush(now),
                Some(t) => {
                    let t = t.to_ascii_lowercase();
                    let key = DestinationKey(t.clone());
                    sched.resume(&key);
                    sched.flush_matching(now, |job| job.domain == t)
                }
            }
        };
        self.wake.notify();
        json!({"flushed": flushed})
    }

    /// The destination key of a domain or key given by an operator (keys pass through).
    async fn destination_key(&self, name: &str) -> Option<DestinationKey> {
        let key = DestinationKey(name.to_owned());
        if self.sched.borrow().destinations().any(|k| *k == key) || name.contains(':') {
            return Some(key);
        }
        let myself = self.myself.borrow().clone();
        match route(
            &self.config(),
            &self.resolver,
            &myself,
            &name.to_ascii_lowercase(),
        )
        .await
        {
            Routed::Target(t) => Some(t.key.clone()),
            Routed::Failed(_) => None,
        }
    }

    /// Suspends a destination (or a domain's destination) for `seconds`.
    pub async fn suspend_destination(&self, name: &str, seconds: u64) -> Value {
        let Some(key) = self.destination_key(name).await else {
            return json!({"error": format!("{name}: no route")});
        };
        let until = crate::queue::later(Instant::now(), Duration::from_secs(seconds));
        self.sched
            .borrow_mut()
            .suspend(&key, until, "suspended by an administrator".to_owned());
        json!({"destination": key.0, "suspended_seconds": seconds})
    }

    /// Resumes a suspended destination.
    pub async fn resume_destination(&self, name: &str) -> Value {
        let Some(key) = self.destination_key(name).await else {
            return json!({"error": format!("{name}: no route")});
        };
        self.sched.borrow_mut().resume(&key);
        self.wake.notify();
        json!({"destination": key.0, "resumed": true})
    }

    /// Why a destination is or is not sending.
    pub async fn explain_destination(&self, name: &str) -> Value {
        let Some(key) = self.destination_key(name).await else {
            return json!({"error": format!("{name}: no route")});
        };
        let now = Instant::now();
        let state = self.sched.borrow().explain(&key, now);
        let hops: Vec<String> = self
            .targets
            .borrow()
            .get(&key)
            .map(|t| t.hops.iter().map(|(n, a)| format!("{n}[{a}]")).collect())
            .unwrap_or_default();
        let last_error = self.last_error.borrow().get(&key).cloned();
        let rule = self.rules.borrow().in_force(&key.0, Instant::now());
        let Some(s) = state else {
            return json!({"destination": key.0, "known": false, "hops": hops,
                "why": "nothing queued for it on this shard"});
        };
        let suspended = s.suspended.as_ref().map(|(until, reason)| {
            json!({"seconds_left": until.saturating_duration_since(now).as_secs(), "reason": reason})
        });
        let queued = s.ready_new + s.ready_retry;
        let why = if let Some((_, reason)) = &s.suspended {
            format!("suspended: {reason}")
        } else if queued == 0 {
            "idle: nothing ready to send".to_owned()
        } else if s.connections + s.pending_opens >= s.limits.max_connections {
            "sending: at its connection limit".to_owned()
        } else if s.tokens.is_some_and(|t| t < 1.0) {
            "waiting: message rate limit".to_owned()
        } else if let Some(r) = &rule {
            format!("sending, slowed by a shaping rule: {r}")
        } else {
            "sending".to_owned()
        };
        json!({
            "destination": key.0,
            "known": true,
            "why": why,
            "ready_new": s.ready_new,
            "ready_retry": s.ready_retry,
            "connections": s.connections,
            "pending_opens": s.pending_opens,
            "suspended": suspended,
            "rate_tokens": s.tokens,
            "limits": {
                "max_connections": s.limits.max_connections,
                "max_messages_per_connection": s.limits.max_messages_per_connection,
                "max_recipients_per_transaction": s.limits.max_recipients_per_transaction,
                "rate": s.limits.rate.map(|r| format!("{}/{}s", r.messages, r.per.as_secs_f64())),
            },
            "last_error": last_error,
            "rule_in_force": rule,
            "hops": hops,
        })
    }

    /// The shard's DNS counters.
    pub fn dns_stats(&self) -> crate::dns::DnsStats {
        self.resolver.stats()
    }

    /// Queue gauges for metrics: (recipients queued, bytes queued, destinations suspended).
    pub fn queue_gauges(&self) -> (u64, u64, u64) {
        let (mut recipients, mut bytes) = (0u64, 0u64);
        for q in self.messages.borrow().values() {
            recipients += q.progress.borrow().pending as u64;
            bytes += q.size as u64;
        }
        let now = Instant::now();
        let sched = self.sched.borrow();
        let suspended = sched
            .destinations()
            .filter(|k| sched.explain(k, now).is_some_and(|s| s.suspended.is_some()))
            .count() as u64;
        (recipients, bytes, suspended)
    }
}
