//! The recorder: what a job's result means for its message, as values.
//!
//! What it does: turns what a connection reported about a job ([`JobResult`]), an
//! operator's deletion, or recipients dropped because they are suppressed, into everything that follows from it: the recipients' new spool
//! states, the event-log lines, the retry or expiry of deferred recipients, the DSN the sender
//! asked for (RFC 3461 NOTIFY and RET), a `421` suspension, the failure replies for the shaping
//! rules, and the counters. The caller carries these out (appends, writes, queues the DSN).
//!
//! What it does not do: no I/O, no clock (time is in [`Context`]), no routing. It decides
//! through the pure [`Scheduler`] when a deferral is retried.
//!
//! Invariants: a recipient already final is never recorded again (an operator's delete and an
//! attempt in flight cannot both count it); every recipient of an attempt gets exactly one of
//! Delivered, Bounced, Deferred (with its next attempt) or Expired; no DSN is ever asked for a
//! message with a null reverse path; a job that was not attempted changes nothing but goes back.

use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use super::classify::{Attempt, Outcome, Reuse, Verdict, verdict};
use super::dsn::{DsnAction, DsnRecipient, Return};
use super::message::{Message, Progress};
use crate::queue::{DeferOutcome, DestinationKey, Job, RetryPolicy, Scheduler};
use crate::shaping::BounceClass;
use crate::smtp::params::{Notify, Ret};
use crate::smtp::{EnhancedStatus, Reply};
use crate::spool::RecipientState;

/// The largest message whose bounce returns it whole when the sender did not say (RET), as
/// Postfix does.
const FULL_RETURN_MAX: usize = 50_000;

/// The remote end of an attempt: `name[ip]`, `TLSv1.3 TLS13_...` and the user name AUTH
/// succeeded with, each empty when no server answered (or plaintext, or no AUTH). Thin
/// pointers (`Rc<String>`): every job result carries a copy.
#[derive(Clone, Debug, Default)]
pub struct Peer {
    /// `name[ip]`.
    pub host: Rc<String>,
    /// Version and cipher, empty for plaintext.
    pub tls: Rc<String>,
    /// The user name the connection authenticated as, empty without AUTH.
    pub auth: Rc<String>,
    /// The TLS policy the connection applied and whether the certificate was authenticated.
    pub tls_policy: Rc<TlsUsed>,
}

/// The TLS policy a connection applied, for the events.
#[derive(Clone, Debug, Default)]
pub struct TlsUsed {
    /// `dane`, `mta-sts`, `opportunistic`, ... (`security::Applied`).
    pub policy: String,
    /// `yes` when the certificate was authenticated (by the policy, or it would have passed
    /// `verify`), `no` when not, empty for plaintext.
    pub verified: &'static str,
}

/// What a connection (or the queue itself) hands back about one job.
#[derive(Debug)]
pub struct JobResult {
    /// The job.
    pub job: Job,
    /// What happened.
    pub attempt: Attempt,
    /// Whether the connection had carried mail before this job.
    pub reuse: Reuse,
    /// Who answered.
    pub peer: Peer,
    /// How long the attempt took.
    pub duration_ms: u64,
    /// The next hop offered DSN, so it reports delivery itself (NOTIFY was passed on).
    pub next_hop_dsn: bool,
}

impl JobResult {
    /// A result decided without any server: every recipient gets `outcome`.
    pub fn decided(job: Job, outcome: Outcome) -> JobResult {
        JobResult {
            job,
            attempt: Attempt::Decided(outcome),
            reuse: Reuse::Fresh,
            peer: Peer::default(),
            duration_ms: 0,
            next_hop_dsn: false,
        }
    }
}

/// What the recorder needs besides the message and the result.
pub struct Context<'a> {
    /// Now, for the scheduler.
    pub now: Instant,
    /// Now, for the spool and the DSN.
    pub wall: SystemTime,
    /// The destination's own retry schedule, if shaping gives it one.
    pub retry: Option<&'a RetryPolicy>,
    /// How long a `421` suspends the destination.
    pub after_421: Duration,
    /// The destination queue the job went through (empty when routing itself failed).
    pub destination: &'a str,
    /// The bounce class of a failure (status, diagnostic).
    pub classify: &'a dyn Fn(EnhancedStatus, &str) -> BounceClass,
}

impl Context<'_> {
    fn now_ms(&self) -> u64 {
        self.wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// One event-log line about one recipient (the caller adds the message's fields).
#[derive(Debug, PartialEq)]
pub struct Line {
    /// `Delivery`, `TransientFailure`, `Bounce`, `Expiration` or `AdminAction`.
    pub kind: &'static str,
    /// The recipient's index.
    pub recipient: u32,
    /// The reply or the reason.
    pub reply: String,
    /// The bounce class of a failure, empty otherwise.
    pub class: &'static str,
    /// Enhanced status.
    pub status: EnhancedStatus,
    /// The recipient's attempt count.
    pub attempt: u32,
    /// How long the attempt took.
    pub duration_ms: u64,
    /// The priority class of the job attempted; None for recipients ended without one.
    pub priority: Option<crate::priority::Class>,
}

/// A DSN to queue to the sender (RFC 3464).
#[derive(Debug)]
pub struct DsnRequest {
    /// The recipients reported on.
    pub recipients: Vec<DsnRecipient>,
    /// How much of the original goes back.
    pub ret: Return,
}

/// Counter increments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Recipients delivered.
    pub delivered: u64,
    /// Attempts deferred.
    pub deferred: u64,
    /// Recipients bounced (or deleted).
    pub bounced: u64,
    /// Recipients expired.
    pub expired: u64,
}

/// Everything that follows from one result.
#[derive(Debug, Default)]
pub struct Records {
    /// New recipient states to append to the spool.
    pub states: Vec<(u32, RecipientState)>,
    /// Event-log lines.
    pub lines: Vec<Line>,
    /// The DSN to queue, if the sender asked for one.
    pub dsn: Option<DsnRequest>,
    /// The job goes back to its destination's queue: it was not attempted.
    pub requeue: Option<Job>,
    /// Suspend the destination until then, and why (a `421`).
    pub suspend: Option<(Instant, String)>,
    /// Each distinct failure reply, for the shaping rules.
    pub feedback: Vec<Reply>,
    /// The bounce class of each failure, for the metrics.
    pub classes: Vec<BounceClass>,
    /// Counter increments.
    pub counts: Counts,
    /// Every recipient of the message is final: it leaves the queue.
    pub finished: bool,
}

/// A recipient to report in a DSN, before it is written out.
struct Report {
    recipient: u32,
    status: EnhancedStatus,
    diagnostic: String,
    action: DsnAction,
}

/// What a result means for `q`, whose progress is `p`. Deferred recipients are handed to
/// `sched` for their retry (or expire there).
pub fn attempt(
    q: &Message,
    p: &mut Progress,
    result: JobResult,
    sched: &mut Scheduler,
    cx: &Context<'_>,
) -> Records {
    let JobResult {
        job,
        attempt,
        reuse,
        peer,
        duration_ms,
        next_hop_dsn,
    } = result;
    let outcomes = match verdict(&attempt, job.recipients.len(), reuse) {
        Verdict::NotAttempted => {
            return Records {
                requeue: Some(job),
                ..Records::default()
            };
        }
        Verdict::Attempted(o) => o,
    };
    let mut r = Records::default();
    if let Attempt::Replied(replies) = &attempt {
        if replies.all().any(|x| x.code == 421) {
            r.suspend = Some((cx.now + cx.after_421, format!("421 from {}", peer.host)));
        }
        r.feedback = replies.distinct_failures().into_iter().cloned().collect();
    }
    let now_ms = cx.now_ms();
    let mut reports = Vec::new();
    let mut retry: Vec<(u32, String)> = Vec::new();
    let mut finals = 0usize;
    for (&i, outcome) in job.recipients.iter().zip(outcomes) {
        let slot = i as usize;
        // Recipients already final (deleted by an operator while this attempt ran) stay so.
        if p.done[slot] {
            continue;
        }
        p.attempts[slot] += 1;
        let attempt = p.attempts[slot];
        let (kind, status, class) = match &outcome {
            Outcome::Delivered { .. } => (outcome.kind(), EnhancedStatus::new(2, 0, 0), None),
            Outcome::Deferred { status, diagnostic } | Outcome::Bounced { status, diagnostic } => (
                outcome.kind(),
                *status,
                Some((cx.classify)(*status, diagnostic)),
            ),
        };
        if let Some(c) = class {
            r.classes.push(c);
        }
        let text = match outcome {
            Outcome::Delivered { reply } => {
                r.counts.delivered += 1;
                finals += 1;
                r.states
                    .push((i, RecipientState::Delivered { at_unix_ms: now_ms }));
                // NOTIFY=SUCCESS: a next hop with DSN reports delivery itself (the parameters
                // were passed on); otherwise we report "relayed".
                if !next_hop_dsn && wants(DsnAction::Relayed, q.rcpt(i).notify) {
                    reports.push(Report {
                        recipient: i,
                        status,
                        diagnostic: reply.clone(),
                        action: DsnAction::Relayed,
                    });
                }
                reply
            }
            Outcome::Bounced { diagnostic, .. } => {
                r.counts.bounced += 1;
                finals += 1;
                r.states
                    .push((i, RecipientState::Bounced { at_unix_ms: now_ms }));
                if wants(DsnAction::Failed, q.rcpt(i).notify) {
                    reports.push(Report {
                        recipient: i,
                        status,
                        diagnostic: diagnostic.clone(),
                        action: DsnAction::Failed,
                    });
                }
                diagnostic
            }
            Outcome::Deferred { diagnostic, .. } => {
                r.counts.deferred += 1;
                // NOTIFY=DELAY: one "delayed" report, at the first deferral.
                if attempt == 1 && wants(DsnAction::Delayed, q.rcpt(i).notify) {
                    reports.push(Report {
                        recipient: i,
                        status,
                        diagnostic: diagnostic.clone(),
                        action: DsnAction::Delayed,
                    });
                }
                retry.push((i, diagnostic.clone()));
                diagnostic
            }
        };
        text.clone_into(&mut p.last[slot]);
        if !matches!(kind, "TransientFailure") {
            p.done[slot] = true;
        }
        r.lines.push(Line {
            kind,
            recipient: i,
            reply: text,
            class: class.map_or("", BounceClass::as_str),
            status,
            attempt,
            duration_ms,
            priority: Some(job.priority),
        });
    }
    if !retry.is_empty() {
        let again = Job {
            message: job.message,
            recipients: retry.iter().map(|(i, _)| *i).collect(),
            domain: job.domain.clone(),
            attempts: job.attempts + 1,
            arrival: q.arrival,
            priority: job.priority,
        };
        let via = (!cx.destination.is_empty()).then(|| DestinationKey(cx.destination.to_owned()));
        let decided = sched.defer_from(again, via, cx.now, cx.retry);
        match decided {
            DeferOutcome::Scheduled { at } => {
                let next = now_ms + at.saturating_duration_since(cx.now).as_millis() as u64;
                for (i, _) in &retry {
                    if let Some(t) = p.next_attempt.get_mut(*i as usize) {
                        *t = next;
                    }
                    let state = RecipientState::Deferred {
                        at_unix_ms: now_ms,
                        next_attempt_unix_ms: next,
                        attempts: p.attempts[*i as usize],
                    };
                    r.states.push((*i, state));
                }
            }
            DeferOutcome::Expired(_) => {
                for (i, last) in retry {
                    finals += 1;
                    r.counts.expired += 1;
                    p.done[i as usize] = true;
                    r.states
                        .push((i, RecipientState::Expired { at_unix_ms: now_ms }));
                    if wants(DsnAction::Failed, q.rcpt(i).notify) {
                        reports.push(Report {
                            recipient: i,
                            status: EnhancedStatus::new(4, 4, 7),
                            diagnostic: format!("delivery time expired; last error: {last}"),
                            action: DsnAction::Failed,
                        });
                    }
                    r.lines.push(Line {
                        kind: "Expiration",
                        recipient: i,
                        reply: last,
                        class: "",
                        status: EnhancedStatus::new(4, 4, 7),
                        attempt: p.attempts[i as usize],
                        duration_ms: 0,
                        priority: Some(job.priority),
                    });
                }
            }
        }
    }
    p.pending = p.pending.saturating_sub(finals);
    r.finished = p.pending == 0;
    r.dsn = dsn_request(q, reports, &peer.host, cx.wall);
    r
}

/// How a deleted message's recipients are accounted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteMode {
    /// Bounce with a DSN to the sender (`5.0.0 deleted by an administrator`).
    Bounce,
    /// Count as bounced, without a DSN.
    Silent,
}

/// The reason an operator's deletion gives.
pub const DELETED: &str = "deleted by an administrator";

/// What an operator's deletion means for `q`: every recipient not yet final is bounced (with
/// a DSN to the sender, if it asked for failures, in [`DeleteMode::Bounce`]).
pub fn deleted(q: &Message, p: &mut Progress, mode: DeleteMode, wall: SystemTime) -> Records {
    let recipients: Vec<(u32, &str)> = p
        .pending_recipients()
        .into_iter()
        .map(|i| (i, ""))
        .collect();
    let end = End {
        kind: "AdminAction",
        reason: DELETED,
        status: EnhancedStatus::new(5, 0, 0),
        dsn: mode == DeleteMode::Bounce,
    };
    ended(q, p, &recipients, &end, wall)
}

/// The reason a recipient dropped at delivery gets (event log and DSN).
pub const SUPPRESSED: &str = "recipient is on the suppression list";

/// How recipients ended without an attempt are recorded.
pub struct End<'a> {
    /// The event-log type: `AdminAction`, `Suppressed`.
    pub kind: &'static str,
    /// The reason logged (and reported).
    pub reason: &'a str,
    /// Their status.
    pub status: EnhancedStatus,
    /// The sender gets a DSN (if it asked for failure reports).
    pub dsn: bool,
}

/// What ending `recipients` of `q` without an attempt means (each with the `class` its line
/// carries): each not yet final is bounced as `end` says.
pub fn ended(
    q: &Message,
    p: &mut Progress,
    recipients: &[(u32, &'static str)],
    end: &End<'_>,
    wall: SystemTime,
) -> Records {
    let now_ms = wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut r = Records::default();
    let mut reports = Vec::new();
    for &(i, class) in recipients {
        if p.done.get(i as usize) != Some(&false) {
            continue;
        }
        p.done[i as usize] = true;
        p.pending = p.pending.saturating_sub(1);
        r.counts.bounced += 1;
        r.states
            .push((i, RecipientState::Bounced { at_unix_ms: now_ms }));
        r.lines.push(Line {
            kind: end.kind,
            recipient: i,
            reply: end.reason.to_owned(),
            class,
            status: end.status,
            attempt: p.attempts[i as usize],
            duration_ms: 0,
            priority: None,
        });
        if end.dsn && wants(DsnAction::Failed, q.rcpt(i).notify) {
            reports.push(Report {
                recipient: i,
                status: end.status,
                diagnostic: end.reason.to_owned(),
                action: DsnAction::Failed,
            });
        }
    }
    r.finished = p.pending == 0;
    r.dsn = dsn_request(q, reports, "", wall);
    r
}

/// Whether a recipient with `notify` wants a report of `action` (RFC 3461 4.1: without
/// NOTIFY, only failures are reported; NOTIFY=NEVER wants none).
pub fn wants(action: DsnAction, notify: Option<Notify>) -> bool {
    match action {
        DsnAction::Failed => notify.is_none_or(|n| n.failure),
        DsnAction::Delayed => notify.is_some_and(|n| n.delay),
        DsnAction::Relayed | DsnAction::Delivered => notify.is_some_and(|n| n.success),
    }
}

/// How much of the original a DSN returns. A client that neither authenticated nor is in
/// `relay.trusted_networks` may have forged the sender: its bounces carry the header only,
/// whatever RET asks, so that a body cannot be reflected to a third party (backscatter).
/// Otherwise RET decides; without RET, small messages go back whole, as Postfix does. A
/// REQUIRETLS message (RFC 8689) never goes back whole: its DSN is not sent under REQUIRETLS,
/// so the body it protected would travel without the TLS its sender demanded.
pub fn returned(q: &Message) -> Return {
    match q.mail_params.ret {
        _ if !q.trusted || q.mail_params.requiretls => Return::Headers,
        Some(Ret::Headers) => Return::Headers,
        Some(Ret::Full) => Return::Full,
        None if q.size <= FULL_RETURN_MAX => Return::Full,
        None => Return::Headers,
    }
}

fn dsn_request(
    q: &Message,
    reports: Vec<Report>,
    host: &str,
    wall: SystemTime,
) -> Option<DsnRequest> {
    // Never a report about a report (or any null-sender mail): no bounce loops.
    if reports.is_empty() || q.record.reverse_path.is_empty() {
        return None;
    }
    let recipients = reports
        .into_iter()
        .map(|x| DsnRecipient {
            address: q.recipient(x.recipient).address.clone(),
            original: q.rcpt(x.recipient).orcpt.clone(),
            action: x.action,
            status: x.status,
            remote_mta: (!host.is_empty()).then(|| host.to_owned()),
            diagnostic: Some(x.diagnostic),
            last_attempt: Some(wall),
        })
        .collect();
    Some(DsnRequest {
        recipients,
        ret: returned(q),
    })
}

#[cfg(test)]
#[path = "recorder_tests.rs"]
mod tests;
