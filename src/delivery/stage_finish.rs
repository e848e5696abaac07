//! Carrying out what the recorder decided about a job's result.
//!
//! What it does: for a finished job (or an operator's deletion) asks the recorder what follows,
//! then does it: appends the recipients' states to the spool, writes the event-log lines,
//! counts, suspends a destination after a `421`, shows failure replies to the shaping rules,
//! gives a job that was not attempted back to its queue, queues the DSN (RFC 3464), and
//! forgets the message once every recipient is final.
//!
//! What it does not do: no decisions (the recorder makes them), no network, no routing.
//!
//! Invariants: the recorder's records are carried out in full or the message is gone (an
//! operator deleted it in between); the message leaves memory when its last recipient is final.

use std::rc::Rc;
use std::time::{Instant, SystemTime};

use super::*;

impl Stage {
    /// Gives every recipient of each job `outcome`, at `dest`, with no server reached (a route
    /// that failed, a destination no hop answered for, a shaping rule's bounce).
    pub(super) async fn fail_jobs(
        self: &Rc<Self>,
        jobs: impl IntoIterator<Item = Job>,
        outcome: &Outcome,
        dest: &str,
    ) {
        for job in jobs {
            self.finish(JobResult::decided(job, outcome.clone()), dest)
                .await;
        }
    }

    /// Records a job's result: states, log, counters, retries, DSNs, suspensions.
    pub(super) async fn finish(self: &Rc<Self>, result: JobResult, dest: &str) {
        let Some(q) = self.messages.borrow().get(&result.job.message).cloned() else {
            return;
        };
        let peer = result.peer.clone();
        let own = self
            .targets
            .borrow()
            .get(dest)
            .and_then(|t| t.retry.clone());
        let classify = |status, diagnostic: &str| self.classify(status, diagnostic);
        let cx = recorder::Context {
            now: Instant::now(),
            wall: SystemTime::now(),
            retry: own.as_ref(),
            after_421: self.config().delivery.suspend.after_421.0,
            classify: &classify,
        };
        let records = {
            let mut progress = q.progress.borrow_mut();
            let mut sched = self.sched.borrow_mut();
            recorder::attempt(&q, &mut progress, result, &mut sched, &cx)
        };
        self.carry_out(&q, records, dest, &peer).await;
    }

    /// Does what the recorder decided for message `q`, at `dest`, answered by `peer`.
    pub(super) async fn carry_out(
        self: &Rc<Self>,
        q: &Rc<Queued>,
        records: Records,
        dest: &str,
        peer: &Peer,
    ) {
        let Records {
            states,
            lines,
            dsn,
            requeue,
            suspend,
            feedback,
            classes,
            counts,
            finished,
        } = records;
        let key = || DestinationKey(dest.to_owned());
        if let Some(job) = requeue {
            self.sched.borrow_mut().submit(&key(), job, Instant::now());
            return;
        }
        if let Some((until, why)) = suspend {
            self.sched.borrow_mut().suspend(&key(), until, why);
        }
        for reply in &feedback {
            self.observe(&key(), reply).await;
        }
        let id = q.record.queue_id();
        for (recipient, state) in states {
            self.record_state(id, recipient, state);
        }
        let id_text = id.to_string();
        for line in &lines {
            self.log.record(&Event {
                kind: line.kind,
                queue_id: &id_text,
                sender: &q.record.reverse_path,
                recipient: &q.recipient(line.recipient).address,
                destination: dest,
                host: &peer.host,
                tls: &peer.tls,
                reply: &line.reply,
                class: line.class,
                status: &line.status.to_string(),
                attempt: line.attempt,
                duration_ms: line.duration_ms,
                size: q.size,
            });
        }
        for class in classes {
            self.metrics.failure_classified(class.index());
        }
        let s = &self.stats;
        s.delivered.set(s.delivered.get() + counts.delivered);
        s.deferred.set(s.deferred.get() + counts.deferred);
        s.bounced.set(s.bounced.get() + counts.bounced);
        s.expired.set(s.expired.get() + counts.expired);
        let latency = q.arrival.elapsed().as_secs_f64();
        for _ in 0..counts.delivered {
            self.metrics.delivery_latency_seconds.observe(latency);
        }
        if let Some(request) = dsn {
            self.send_dsn(q, request).await;
        }
        if finished {
            self.forget(q.record.id);
        }
    }

    pub(super) fn record_state(&self, id: QueueId, recipient: u32, state: RecipientState) {
        let rec = StateRecord {
            id: id.0,
            recipient,
            state,
        };
        if let Err(e) = self.spool.append_state_detached(&rec) {
            tracing::warn!(queue_id = %id, recipient, error = %e, "recording a delivery state failed");
        }
    }

    /// Queues a DSN (RFC 3464) to the sender of `q`, with the null reverse path.
    async fn send_dsn(self: &Rc<Self>, q: &Queued, request: recorder::DsnRequest) {
        let rec = &q.record;
        // The original is needed for the report: held, or read back from the spool. If it
        // cannot be read, the report goes out with what is known (no original content).
        let original = match self.body(q).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(queue_id = %QueueId(rec.id), error = %e, "DSN without the original message");
                Rc::new(Vec::new())
            }
        };
        let config = self.config();
        let id = self.ids.borrow_mut().next(SystemTime::now());
        let unique = id.to_string();
        let original_id = QueueId(rec.id).to_string();
        let envid = q
            .mail_params
            .envid
            .as_deref()
            .map(crate::smtp::params::xtext_encode);
        let body = dsn::build(&dsn::DsnInput {
            reporting_mta: &config.hostname,
            to: &rec.reverse_path,
            envid: envid.as_deref(),
            queue_id: &original_id,
            arrival: UNIX_EPOCH + Duration::from_millis(rec.arrival_unix_ms),
            date: SystemTime::now(),
            recipients: &request.recipients,
            original: &original,
            ret: request.ret,
            unique: &unique,
        });
        let dsn_record = MessageRecord {
            id: id.0,
            reverse_path: String::new(),
            mail_params: Vec::new(),
            recipients: vec![Recipient::new(rec.reverse_path.clone())],
            arrival_unix_ms: unix_ms(SystemTime::now()),
            client_addr: "local".into(),
            helo: config.hostname.clone(),
            tls: None,
            auth: None,
            body,
        };
        match self.spool.append_message(&dsn_record).await {
            Ok(()) => {
                bump(&self.stats.dsns);
                self.intake(dsn_record);
            }
            Err(e) => tracing::warn!(queue_id = %unique, error = %e, "queueing a DSN failed"),
        }
    }
}

/// True if the message came from an authenticated client or one in `trusted`.
pub(super) fn from_trusted_client(rec: &MessageRecord, trusted: &[ipnet::IpNet]) -> bool {
    if rec.auth.is_some() {
        return true;
    }
    let Ok(addr) = rec.client_addr.parse::<std::net::SocketAddr>() else {
        return false;
    };
    crate::server::relay::in_networks(trusted, addr.ip())
}
