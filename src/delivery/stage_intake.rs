//! Taking messages into the delivery queue: newly accepted, or recovered from the spool.
//!
//! What it does: charges each message to the memory budget (holding its body when it fits),
//! rewrites `<Postmaster>` to the configured mailbox, bounces mail with too many `Received:`
//! fields when recovered from the spool (RFC 5321 6.3: queued before the check at reception
//! existed; new mail is counted at the end of its DATA), and turns the pending
//! recipients into jobs: restored deferrals wait for their time, the others are routed now,
//! grouped by domain.
//!
//! What it does not do: no routing itself (`route_and_submit`), no delivery, no spool writes.
//!
//! Invariants: a message whose recipients are all final is not taken; a recovered retry time
//! never makes the clock arithmetic overflow.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use super::finish::from_trusted_client;
use super::*;

impl Stage {
    /// Takes a newly accepted message.
    pub fn intake(self: &Rc<Self>, record: MessageRecord) {
        let size = record.body.len();
        let eight_bit = !record.body.is_ascii();
        self.take_message(record, None, true, size, eight_bit);
    }

    /// Takes a message recovered from the spool, whose body may be only its header section
    /// (then the rest is read back from the spool when it is sent).
    pub fn intake_recovered(self: &Rc<Self>, m: RecoveredMessage) {
        self.take_message(
            m.message,
            Some(m.states),
            m.body_complete,
            m.body_len,
            m.eight_bit,
        );
    }

    /// Queues a message: `complete` says whether `record.body` is the whole message (of
    /// `size` octets, with octets over 127 if `eight_bit`) or only its header section.
    fn take_message(
        self: &Rc<Self>,
        mut record: MessageRecord,
        states: Option<Vec<Option<RecipientState>>>,
        complete: bool,
        size: usize,
        eight_bit: bool,
    ) {
        let n = record.recipients.len();
        // `<Postmaster>` without a domain (RFC 5321 4.5.1) goes to the configured mailbox; the
        // spool keeps the address as received, so a restart rewrites it the same way.
        for r in &mut record.recipients {
            if r.address.eq_ignore_ascii_case("postmaster") {
                r.address = self.config().postmaster_address();
            }
        }
        let recovered = states.is_some();
        let states = states.unwrap_or_else(|| vec![None; n]);
        let now_ms = unix_ms(SystemTime::now());
        let age = Duration::from_millis(now_ms.saturating_sub(record.arrival_unix_ms));
        let arrival = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        let progress = Progress::new(&states);
        if progress.pending == 0 {
            return;
        }
        let id = record.id;
        let body = std::mem::take(&mut record.body);
        // RFC 5321 6.3: mail queued before the check at reception existed may loop (new mail
        // was counted at the end of its DATA). Our own `Received:` field (on every message
        // from a client) is not one of the client's.
        let hops = match recovered {
            true => crate::smtp::hops::received_count(&body)
                .saturating_sub(usize::from(record.client_addr != "local")),
            false => 0,
        };
        let config = self.config();
        let facts = Facts {
            size,
            pool: self.pool_of(&record, &body),
            arrival,
            eight_bit,
            trusted: from_trusted_client(&record, &config.relay.trusted_networks),
        };
        let q = Rc::new(Queued::new(record, facts, progress));
        let held = match complete {
            true => self.memory.admit(id, q.meta, size as u64),
            false => {
                self.memory.admit_envelope(q.meta);
                false
            }
        };
        if held {
            *q.body.borrow_mut() = Some(Rc::new(body));
        }
        self.messages.borrow_mut().insert(id, q.clone());
        // After the insert: the new message is one the eviction and compaction can see.
        self.evict();
        let max_hops = config.smtp.max_received_headers;
        if hops > max_hops {
            let pending = q.progress.borrow().pending_recipients();
            let job = Job {
                message: id,
                domain: pending
                    .first()
                    .map(|&i| domain_of(q.recipient(i), &config.hostname))
                    .unwrap_or_default(),
                recipients: pending,
                attempts: 0,
                arrival,
            };
            let outcome = Outcome::bounce(
                EnhancedStatus::new(5, 4, 6),
                format!("Too many hops: {hops} Received: header fields (limit {max_hops})"),
            );
            let stage = self.clone();
            glommio::spawn_local(async move { stage.fail_jobs([job], &outcome, "").await })
                .detach();
            return;
        }
        // Group the pending recipients by domain and by "ready now" vs "deferred until".
        let mut now_by_domain: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, (r, s)) in q.record.recipients.iter().zip(&states).enumerate() {
            match s {
                Some(s) if s.is_final() => {}
                Some(RecipientState::Deferred {
                    next_attempt_unix_ms,
                    attempts,
                    ..
                }) if *next_attempt_unix_ms > now_ms => {
                    // Checked: a spool record's time never makes the arithmetic panic.
                    let wait = Duration::from_millis(next_attempt_unix_ms - now_ms);
                    let at = crate::queue::later(Instant::now(), wait.min(MAX_SPOOLED_WAIT));
                    let job = Job {
                        message: id,
                        recipients: vec![i as u32],
                        domain: domain_of(r, &config.hostname),
                        attempts: *attempts,
                        arrival,
                    };
                    self.sched.borrow_mut().defer_until(job, at);
                }
                _ => now_by_domain
                    .entry(domain_of(r, &config.hostname))
                    .or_default()
                    .push(i as u32),
            }
        }
        for (domain, recipients) in now_by_domain {
            let attempts = {
                let p = q.progress.borrow();
                recipients
                    .iter()
                    .map(|&i| p.attempts[i as usize])
                    .max()
                    .unwrap_or(0)
            };
            self.route_and_submit(Job {
                message: id,
                recipients,
                domain,
                attempts,
                arrival,
            });
        }
        self.wake.notify();
    }
}
