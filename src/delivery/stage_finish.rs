//! Recording what happened to the recipients of a delivery attempt.
//!
//! What it does: for every recipient of a finished job, appends its new state to the spool,
//! writes the delivery log line, schedules the retry of a deferral (or expires it), and queues
//! the DSNs the sender asked for (RFC 3461/3464).
//!
//! What it does not do: no network, no routing (the caller delivered, or failed to).
//!
//! Invariants: a recipient already final is never recorded again (an operator's delete and an
//! attempt in flight cannot both count it); the message leaves memory when its last recipient
//! is final.

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
            self.finish_job(
                &job,
                &all_of(&job, outcome.clone()),
                dest,
                Peer::NONE,
                0,
                false,
            )
            .await;
        }
    }

    /// Records the outcome of every recipient of a job: states, log, retries, DSNs.
    pub(super) async fn finish_job(
        self: &Rc<Self>,
        job: &Job,
        outcomes: &[(u32, Outcome)],
        dest: &str,
        peer: Peer<'_>,
        ms: u64,
        next_hop_dsn: bool,
    ) {
        let host = peer.host;
        let Some(q) = self.messages.borrow().get(&job.message).cloned() else {
            return;
        };
        // Recipients already final (deleted by an operator while this attempt ran) stay so.
        let outcomes: Vec<&(u32, Outcome)> = {
            let done = q.done.borrow();
            outcomes
                .iter()
                .filter(|(i, _)| !done[*i as usize])
                .collect()
        };
        let id = QueueId(job.message);
        let id_text = id.to_string();
        let now = SystemTime::now();
        let at_ms = unix_ms(now);
        let mut retry = Vec::new();
        let mut failed: Vec<(u32, EnhancedStatus, String, DsnAction)> = Vec::new();
        for (i, outcome) in outcomes.iter().map(|o| (&o.0, &o.1)) {
            let attempt = {
                let mut a = q.attempts.borrow_mut();
                a[*i as usize] += 1;
                a[*i as usize]
            };
            let rcpt = &q.record.recipients[*i as usize];
            let (status, text) = match outcome {
                Outcome::Delivered { reply } => (EnhancedStatus::new(2, 0, 0), reply.as_str()),
                Outcome::Deferred { status, diagnostic }
                | Outcome::Bounced { status, diagnostic } => (*status, diagnostic.as_str()),
            };
            text.clone_into(&mut q.last.borrow_mut()[*i as usize]);
            if !matches!(outcome, Outcome::Deferred { .. }) {
                q.done.borrow_mut()[*i as usize] = true;
            }
            let class = match outcome {
                Outcome::Delivered { .. } => "",
                Outcome::Deferred { status, diagnostic }
                | Outcome::Bounced { status, diagnostic } => {
                    let class = self.classify(*status, diagnostic);
                    self.metrics.failure_classified(class.index());
                    class.as_str()
                }
            };
            self.log.record(&Event {
                kind: outcome.kind(),
                queue_id: &id_text,
                sender: &q.record.reverse_path,
                recipient: &rcpt.address,
                destination: dest,
                host,
                tls: peer.tls,
                reply: text,
                class,
                status: &status.to_string(),
                attempt,
                duration_ms: ms,
                size: q.size,
            });
            match outcome {
                Outcome::Delivered { reply } => {
                    bump(&self.stats.delivered);
                    self.metrics
                        .delivery_latency_seconds
                        .observe(q.arrival.elapsed().as_secs_f64());
                    self.record_state(id, *i, RecipientState::Delivered { at_unix_ms: at_ms });
                    // NOTIFY=SUCCESS: a next hop with DSN reports delivery itself (the
                    // parameters were passed on); otherwise we report "relayed".
                    if !next_hop_dsn {
                        failed.push((
                            *i,
                            EnhancedStatus::new(2, 0, 0),
                            reply.clone(),
                            DsnAction::Relayed,
                        ));
                    }
                }
                Outcome::Bounced { status, diagnostic } => {
                    bump(&self.stats.bounced);
                    self.record_state(id, *i, RecipientState::Bounced { at_unix_ms: at_ms });
                    failed.push((*i, *status, diagnostic.clone(), DsnAction::Failed));
                }
                Outcome::Deferred { status, diagnostic } => {
                    bump(&self.stats.deferred);
                    retry.push((*i, text.to_owned()));
                    // NOTIFY=DELAY: one "delayed" report, at the first deferral.
                    if attempt == 1 {
                        failed.push((*i, *status, diagnostic.clone(), DsnAction::Delayed));
                    }
                }
            }
        }
        let mut finals = outcomes.len() - retry.len();
        if !retry.is_empty() {
            let job = Job {
                message: job.message,
                recipients: retry.iter().map(|(i, _)| *i).collect(),
                domain: job.domain.clone(),
                attempts: job.attempts + 1,
                arrival: q.arrival,
            };
            let own = self
                .targets
                .borrow()
                .get(&DestinationKey(dest.to_owned()))
                .and_then(|t| t.retry.clone());
            let decided = match own {
                Some(policy) => self
                    .sched
                    .borrow_mut()
                    .defer_with(job, Instant::now(), &policy),
                None => self.sched.borrow_mut().defer(job, Instant::now()),
            };
            match decided {
                DeferOutcome::Scheduled { at } => {
                    let next =
                        at_ms + at.saturating_duration_since(Instant::now()).as_millis() as u64;
                    for (i, _) in &retry {
                        let attempts = q.attempts.borrow()[*i as usize];
                        self.record_state(
                            id,
                            *i,
                            RecipientState::Deferred {
                                at_unix_ms: at_ms,
                                next_attempt_unix_ms: next,
                                attempts,
                            },
                        );
                    }
                }
                DeferOutcome::Expired(_) => {
                    finals += retry.len();
                    for (i, last) in &retry {
                        bump(&self.stats.expired);
                        q.done.borrow_mut()[*i as usize] = true;
                        self.record_state(id, *i, RecipientState::Expired { at_unix_ms: at_ms });
                        let rcpt = &q.record.recipients[*i as usize];
                        self.log.record(&Event {
                            kind: "Expiration",
                            queue_id: &id_text,
                            sender: &q.record.reverse_path,
                            recipient: &rcpt.address,
                            destination: dest,
                            host,
                            tls: peer.tls,
                            reply: last,
                            class: "",
                            status: "4.4.7",
                            attempt: q.attempts.borrow()[*i as usize],
                            duration_ms: 0,
                            size: q.size,
                        });
                        failed.push((
                            *i,
                            EnhancedStatus::new(4, 4, 7),
                            format!("delivery time expired; last error: {last}"),
                            DsnAction::Failed,
                        ));
                    }
                }
            }
        }
        q.pending.set(q.pending.get().saturating_sub(finals));
        if !failed.is_empty() {
            self.send_dsn(&q, &failed, host).await;
        }
        if q.pending.get() == 0 {
            self.forget(job.message);
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

    /// Queues a DSN (RFC 3464) to the sender for failed recipients that asked for one.
    pub(super) async fn send_dsn(
        self: &Rc<Self>,
        q: &Queued,
        failed: &[(u32, EnhancedStatus, String, DsnAction)],
        host: &str,
    ) {
        let rec = &q.record;
        if rec.reverse_path.is_empty() {
            return;
        }
        let wanted: Vec<DsnRecipient> = failed
            .iter()
            .filter(|(i, _, _, action)| {
                let r = &rec.recipients[*i as usize];
                let notify = param(&r.params, "NOTIFY").map(str::to_ascii_uppercase);
                match action {
                    // Without NOTIFY, only failures are reported (RFC 3461 4.1).
                    DsnAction::Failed => notify.is_none_or(|n| n.contains("FAILURE")),
                    DsnAction::Delayed => notify.is_some_and(|n| n.contains("DELAY")),
                    DsnAction::Relayed | DsnAction::Delivered => {
                        notify.is_some_and(|n| n.contains("SUCCESS"))
                    }
                }
            })
            .map(|(i, status, diag, action)| {
                let r = &rec.recipients[*i as usize];
                DsnRecipient {
                    address: r.address.clone(),
                    original: param(&r.params, "ORCPT").map(str::to_owned),
                    action: *action,
                    status: *status,
                    remote_mta: (!host.is_empty()).then(|| host.to_owned()),
                    diagnostic: Some(diag.clone()),
                    last_attempt: Some(SystemTime::now()),
                }
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        let ret = match param(&rec.mail_params, "RET")
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            // A client that neither authenticated nor is in `relay.trusted_networks` may have
            // forged the sender: its bounces carry the header only, whatever RET asks, so
            // that a body cannot be reflected to a third party (backscatter).
            _ if !from_trusted_client(rec, &self.config().relay.trusted_networks) => {
                Return::Headers
            }
            Some("HDRS") => Return::Headers,
            Some("FULL") => Return::Full,
            // Not specified: the whole message if it is small, as Postfix does.
            _ if q.size <= 50_000 => Return::Full,
            _ => Return::Headers,
        };
        // The original is needed for the report: held, or read back from the spool. If it
        // cannot be read, the report goes out with what is known (no original content).
        let original = match self.body(q).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(queue_id = %QueueId(rec.id), error = %e, "DSN without the original message");
                Rc::new(Vec::new())
            }
        };
        let id = self.ids.borrow_mut().next(SystemTime::now());
        let unique = id.to_string();
        let original_id = QueueId(rec.id).to_string();
        let body = dsn::build(&dsn::DsnInput {
            reporting_mta: &self.config().hostname,
            to: &rec.reverse_path,
            envid: param(&rec.mail_params, "ENVID"),
            queue_id: &original_id,
            arrival: UNIX_EPOCH + Duration::from_millis(rec.arrival_unix_ms),
            date: SystemTime::now(),
            recipients: &wanted,
            original: &original,
            ret,
            unique: &unique,
        });
        let dsn_record = MessageRecord {
            id: id.0,
            reverse_path: String::new(),
            mail_params: Vec::new(),
            recipients: vec![Recipient::new(rec.reverse_path.clone())],
            arrival_unix_ms: unix_ms(SystemTime::now()),
            client_addr: "local".into(),
            helo: self.config().hostname.clone(),
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
fn from_trusted_client(rec: &MessageRecord, trusted: &[ipnet::IpNet]) -> bool {
    if rec.auth.is_some() {
        return true;
    }
    let Ok(addr) = rec.client_addr.parse::<std::net::SocketAddr>() else {
        return false;
    };
    crate::server::relay::in_networks(trusted, addr.ip())
}
