//! A message in a shard's delivery queue: its envelope with typed ESMTP parameters (immutable,
//! shared by value with the connections that send it), and each recipient's progress (owned by
//! the queue).
//!
//! What it does: builds the queue's view of an accepted or recovered message once (the spool
//! keeps parameters in wire form; they are parsed here, once, into the types the session
//! parsed them into, and carried typed to the outbound transaction and the DSN), and estimates
//! what the message costs in memory.
//!
//! What it does not do: no I/O, no scheduling, no body (the queue's message table holds it),
//! no decisions about outcomes (the recorder).
//!
//! Invariants: a [`Message`] never changes once built; [`Progress`] has one slot per
//! recipient in every vector, `pending` is the number of recipients not final, and a
//! recipient once final stays final.

use std::time::Instant;

use crate::smtp::params::{MailParams, RcptParams, parse_mail_params, parse_rcpt_params};
use crate::spool::{MessageRecord, Recipient, RecipientState};

/// What a queued recipient costs in memory besides its address: its record, state, attempt
/// and reply slots and its scheduler job. Measured with `benches/recovery.sh` (2-core VM,
/// 2026-12-05): 360 MiB of RSS after a restart with 1,000,000 queued recipients of 20,000
/// 2 KiB messages, about 380 bytes per recipient with the bodies and the process included.
/// Kept above that: a recipient that was tried also holds its last reply.
const RECIPIENT_COST: usize = 448;

/// What a queued message costs in memory besides its recipients and body.
const MESSAGE_COST: usize = 1024;

/// Each recipient's progress, changed only by the recorder (and an operator's delete).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Attempts made, per recipient.
    pub attempts: Vec<u32>,
    /// Final (delivered, bounced, expired or deleted), per recipient.
    pub done: Vec<bool>,
    /// The last reply or error, per recipient, for operators.
    pub last: Vec<String>,
    /// When a deferred recipient is tried again (Unix milliseconds), per recipient, for
    /// operators; 0 when no retry is waiting (not deferred, final, or being tried now).
    pub next_attempt: Vec<u64>,
    /// Recipients not final.
    pub pending: usize,
}

impl Progress {
    /// The progress of `n` recipients with their recovered states (None = nothing recorded).
    pub fn new(states: &[Option<RecipientState>]) -> Progress {
        let done: Vec<bool> = states
            .iter()
            .map(|s| s.as_ref().is_some_and(RecipientState::is_final))
            .collect();
        Progress {
            attempts: states
                .iter()
                .map(|s| s.as_ref().map_or(0, RecipientState::attempts))
                .collect(),
            pending: done.iter().filter(|d| !**d).count(),
            done,
            last: vec![String::new(); states.len()],
            next_attempt: states
                .iter()
                .map(|s| match s {
                    Some(RecipientState::Deferred {
                        next_attempt_unix_ms,
                        ..
                    }) => *next_attempt_unix_ms,
                    _ => 0,
                })
                .collect(),
        }
    }

    /// The recipients of a job that is being tried now have no retry waiting.
    pub fn retry_due(&mut self, recipients: &[u32]) {
        for &i in recipients {
            if let Some(t) = self.next_attempt.get_mut(i as usize) {
                *t = 0;
            }
        }
    }

    /// Recipients not final, in order.
    pub fn pending_recipients(&self) -> Vec<u32> {
        (0..self.done.len() as u32)
            .filter(|&i| !self.done[i as usize])
            .collect()
    }
}

/// A queued message's envelope.
#[derive(Debug)]
pub struct Message {
    /// The envelope; its `body` is empty (the queue holds the body, or only the spool has it),
    /// and its recipients' wire parameters are moved into `rcpt_params`.
    pub record: MessageRecord,
    /// MAIL parameters (RET, ENVID, SMTPUTF8, ...).
    pub mail_params: MailParams,
    /// RCPT parameters per recipient; empty when no recipient has any.
    pub rcpt_params: Vec<RcptParams>,
    /// The body's size.
    pub size: usize,
    /// Bytes charged to the memory budget for the envelope and bookkeeping.
    pub meta: u64,
    /// The source pool the message asked for (header or sender domain), if any.
    pub pool: Option<String>,
    /// When the message was accepted.
    pub arrival: Instant,
    /// The body has octets over 127.
    pub eight_bit: bool,
    /// The client authenticated or was in `relay.trusted_networks` (its bounces may carry the
    /// whole message back).
    pub trusted: bool,
    /// `TLS-Required: No` without the REQUIRETLS parameter (RFC 8689 5): DANE and MTA-STS are
    /// not applied to it.
    pub tls_optional: bool,
    /// Sent with a VERP envelope sender, one recipient a transaction (`[feedback]`).
    pub verp: bool,
}

/// Parameters of no recipient.
static NO_PARAMS: RcptParams = RcptParams {
    notify: None,
    orcpt: None,
};

impl Message {
    /// The queue's view of `record` (whose body was taken out), with typed parameters parsed
    /// from the spool's wire form. Parameters that no longer parse (a spool written by another
    /// version) are dropped with a warning: the mail is still delivered, without them.
    pub fn new(mut record: MessageRecord, facts: Facts) -> Message {
        let mail_params = parse_mail_params(wire(&record.mail_params).as_bytes())
            .unwrap_or_else(|e| {
                tracing::warn!(queue_id = %record.queue_id(), error = %e, "MAIL parameters dropped");
                MailParams::default()
            });
        let any = record.recipients.iter().any(|r| !r.params.is_empty());
        let rcpt_params = match any {
            false => Vec::new(),
            true => record
                .recipients
                .iter_mut()
                .map(|r| {
                    let params = std::mem::take(&mut r.params);
                    parse_rcpt_params(wire(&params).as_bytes()).unwrap_or_default()
                })
                .collect(),
        };
        Message {
            tls_optional: facts.tls_required_no && !mail_params.requiretls,
            meta: meta_bytes(&record, rcpt_params.len()),
            record,
            mail_params,
            rcpt_params,
            size: facts.size,
            pool: facts.pool,
            arrival: facts.arrival,
            eight_bit: facts.eight_bit,
            trusted: facts.trusted,
            verp: facts.verp,
        }
    }

    /// The RCPT parameters of recipient `i`.
    pub fn rcpt(&self, i: u32) -> &RcptParams {
        self.rcpt_params.get(i as usize).unwrap_or(&NO_PARAMS)
    }

    /// Recipient `i`.
    pub fn recipient(&self, i: u32) -> &Recipient {
        &self.record.recipients[i as usize]
    }

    /// The message needs SMTPUTF8 of the next hop.
    pub fn smtputf8(&self) -> bool {
        self.mail_params.smtputf8
    }
}

/// What the queue knows of a message besides its record.
pub struct Facts {
    /// The body's size.
    pub size: usize,
    /// The source pool it asked for.
    pub pool: Option<String>,
    /// When it was accepted.
    pub arrival: Instant,
    /// The body has octets over 127.
    pub eight_bit: bool,
    /// The client was trusted (see [`Message::trusted`]).
    pub trusted: bool,
    /// The header says `TLS-Required: No` (see [`Message::tls_optional`]).
    pub tls_required_no: bool,
    /// Sent with a VERP envelope sender (see [`Message::verp`]).
    pub verp: bool,
}

/// Parameters in wire form again (`K=V K2`), as the session's parser reads them.
fn wire(params: &[(String, Option<String>)]) -> String {
    let mut w = String::new();
    for (k, v) in params {
        if !w.is_empty() {
            w.push(' ');
        }
        w.push_str(k);
        if let Some(v) = v {
            w.push('=');
            w.push_str(v);
        }
    }
    w
}

/// The memory a queued message's envelope and bookkeeping cost (the estimate the budget
/// charges; held bodies are charged on their own).
fn meta_bytes(r: &MessageRecord, with_params: usize) -> u64 {
    let rcpts: usize = r
        .recipients
        .iter()
        .map(|x| x.address.len() + RECIPIENT_COST)
        .sum();
    (std::mem::size_of::<Message>()
        + MESSAGE_COST
        + r.reverse_path.len()
        + r.client_addr.len()
        + r.helo.len()
        + with_params * std::mem::size_of::<RcptParams>()
        + rcpts) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::params::{Notify, Ret};

    fn record() -> MessageRecord {
        let mut r = MessageRecord {
            id: 7,
            reverse_path: "s@a.test".into(),
            mail_params: vec![
                ("RET".into(), Some("HDRS".into())),
                ("ENVID".into(), Some("x+2By".into())),
            ],
            recipients: vec![Recipient::new("a@b.test"), Recipient::new("c@d.test")],
            arrival_unix_ms: 0,
            client_addr: "127.0.0.1:1".into(),
            helo: "c".into(),
            tls: None,
            auth: None,
            campaign: None,
            tenant: None,
            body: Vec::new(),
            priority: 0,
        };
        r.recipients[1].params = vec![
            ("NOTIFY".into(), Some("SUCCESS,DELAY".into())),
            ("ORCPT".into(), Some("rfc822;c@d.test".into())),
        ];
        r
    }

    fn facts() -> Facts {
        Facts {
            size: 10,
            pool: None,
            arrival: Instant::now(),
            eight_bit: false,
            trusted: true,
            tls_required_no: false,
            verp: false,
        }
    }

    #[test]
    fn parameters_are_typed_once() {
        let q = Message::new(record(), facts());
        assert_eq!(q.mail_params.ret, Some(Ret::Headers));
        assert_eq!(q.mail_params.envid.as_deref(), Some("x+y"));
        assert_eq!(q.rcpt(0), &RcptParams::default());
        let n = q.rcpt(1).notify.unwrap();
        assert_eq!(
            n,
            Notify {
                success: true,
                failure: false,
                delay: true
            }
        );
        assert!(
            q.record.recipients[1].params.is_empty(),
            "moved, not kept twice"
        );
        let mut out = Vec::new();
        q.rcpt(1).write_wire(&mut out);
        assert_eq!(out, b" NOTIFY=SUCCESS,DELAY ORCPT=rfc822;c@d.test");
        out.clear();
        q.mail_params.write_dsn_wire(&mut out);
        assert_eq!(out, b" RET=HDRS ENVID=x+2By");
    }

    #[test]
    fn progress_of_recovered_states() {
        let p = Progress::new(&[
            Some(RecipientState::Delivered { at_unix_ms: 1 }),
            Some(RecipientState::Deferred {
                at_unix_ms: 1,
                next_attempt_unix_ms: 2,
                attempts: 3,
            }),
            None,
        ]);
        assert_eq!(p.done, vec![true, false, false]);
        assert_eq!(p.attempts, vec![0, 3, 0]);
        assert_eq!(p.pending, 2);
        assert_eq!(p.pending_recipients(), vec![1, 2]);
    }
}
