//! Getting a connection's next transaction ready: the destination's next job from the queue,
//! its body (held by the queue or read back from the spool), the checks that end a job before
//! anything is sent (too large for the server, SMTPUTF8 it lacks, REQUIRETLS it cannot carry)
//! and the VERP envelope sender of a VERP message's one recipient.
//!
//! What it does not do: no I/O on the connection, no decision about what a reply means.
//!
//! Invariants: a job that ends here is reported to the queue (with the connection's peer)
//! before the next one is asked for.

use std::rc::Rc;
use std::time::Instant;

use super::super::classify::{Outcome, Reuse};
use super::super::client::Connection;
use super::super::message::Message;
use super::super::queue_msg::{ConnEvent, Delivery, Next};
use super::super::recorder::JobResult;
use super::{Link, Outgoing};
use crate::queue::Job;
use crate::smtp::EnhancedStatus;
use crate::smtp::ehlo::Extensions;
use crate::spool::QueueId;

/// The next job of the destination, prepared, and whether the queue is stopping; jobs that end
/// before they can be sent (too large for the server, an unreadable spool) are reported on
/// the way.
pub(super) async fn next_outgoing(conn: &Connection, link: &Link) -> (Option<Outgoing>, bool) {
    loop {
        let delivery = match link.plan.queue.next_job(&link.plan.dest).await {
            Next::Job(d) => d,
            Next::Idle => return (None, false),
            Next::Stop => return (None, true),
        };
        let reuse = match conn.transactions() {
            0 => Reuse::Fresh,
            _ => Reuse::Reused,
        };
        if let Some(out) = prepare(delivery, conn.extensions(), link, reuse).await {
            return (Some(out), false);
        }
    }
}

/// The job with its body; None when it was reported instead (an unreadable spool, too large
/// for the server, or needing SMTPUTF8 it lacks).
async fn prepare(d: Delivery, ext: &Extensions, link: &Link, reuse: Reuse) -> Option<Outgoing> {
    let host = &link.peer.host;
    let started = Instant::now();
    let Delivery { jobs, msg, body } = d;
    let id = QueueId(msg.record.id);
    let decided = |jobs: Vec<Job>, o: Outcome| {
        for job in jobs {
            let result = JobResult {
                peer: link.peer.clone(),
                ..JobResult::decided(job, o.clone())
            };
            link.plan.queue.conn(ConnEvent::Finished {
                dest: link.plan.dest.clone(),
                result,
                read_back: None,
            });
        }
    };
    let (body, read_back) = match body {
        Some(b) => (b, false),
        None => match link.plan.spool.read_message(id).await {
            Ok(record) => (Rc::new(record.body), true),
            Err(e) => {
                // Unreadable spool: nothing can be sent; retry later (and say why).
                tracing::error!(queue_id = %id, error = %e, "cannot read the message back from the spool");
                let o = Outcome::defer(EnhancedStatus::new(4, 3, 0), format!("spool read: {e}"));
                decided(jobs, o);
                return None;
            }
        },
    };
    if let Some(Some(limit)) = ext.size
        && msg.size as u64 > limit
    {
        let o = Outcome::bounce(
            EnhancedStatus::new(5, 3, 4),
            format!(
                "message size {} exceeds the limit of {host} ({limit})",
                msg.size
            ),
        );
        decided(jobs, o);
        return None;
    }
    if msg.smtputf8() && !ext.smtputf8 {
        let o = Outcome::bounce(
            EnhancedStatus::new(5, 6, 7),
            format!("{host} does not support SMTPUTF8, which this message needs"),
        );
        decided(jobs, o);
        return None;
    }
    if let Some(o) = requiretls_refusal(&msg, ext, link) {
        decided(jobs, o);
        return None;
    }
    // A VERP message goes one recipient a transaction (the queue never groups its jobs).
    let verp = match (&link.plan.settings.feedback, msg.verp) {
        (Some(fb), true) => jobs
            .first()
            .and_then(|j| j.recipients.first())
            .and_then(|&i| {
                let r = &msg.record;
                let labels = (
                    r.campaign.as_deref().unwrap_or(""),
                    r.tenant.as_deref().unwrap_or(""),
                );
                fb.verp(r.id, labels, &msg.recipient(i).address)
            }),
        _ => None,
    };
    Some(Outgoing {
        jobs,
        msg,
        body,
        read_back,
        started,
        reuse,
        verp,
    })
}

/// The bounce of REQUIRETLS mail (RFC 8689 4.2.1, 5) that this connection cannot carry: it is
/// not TLS authenticated by DANE, MTA-STS or `verify` (5.7.10), or the server does not offer
/// REQUIRETLS (5.7.30). None when the message can go.
fn requiretls_refusal(msg: &Message, ext: &Extensions, link: &Link) -> Option<Outcome> {
    if !msg.mail_params.requiretls {
        return None;
    }
    let host = &link.peer.host;
    if !link.verified_tls {
        return Some(Outcome::bounce(
            EnhancedStatus::new(5, 7, 10),
            format!(
                "REQUIRETLS: {host} is not reached over verified TLS (policy {}); the message needs DANE, MTA-STS or tls = \"verify\"",
                link.applied
            ),
        ));
    }
    if !ext.requiretls {
        return Some(Outcome::bounce(
            EnhancedStatus::new(5, 7, 30),
            format!("REQUIRETLS support required: {host} does not offer REQUIRETLS"),
        ));
    }
    None
}
