//! One outbound connection's life: open it, feed it the destination's jobs, close it.
//!
//! What it does: opens a connection to the first hop that answers, then takes the
//! destination's ready jobs one after the other until the queue stays empty for
//! `idle_timeout`, the connection has carried `max_messages_per_connection` transactions, or
//! it fails. An idle connection looks at its queue every 10 ms for 100 ms, then less and less
//! often (up to every 160 ms). When the server pipelines, each message's content goes out in one
//! write with the next message's envelope (RFC 2920 3.1), so a busy connection spends one round
//! trip per message. Each finished transaction's replies become recipient outcomes.
//!
//! What it does not do: no protocol details (the client), no bookkeeping of outcomes
//! (`finish_job`), no decision on how many connections a destination gets (the scheduler).
//!
//! Invariants: a job taken from the scheduler ends in exactly one of: finished with outcomes,
//! or handed back to the scheduler without an attempt (a reused connection that died before
//! the server accepted anything of it). A transaction whose content is pending is always
//! completed before the connection is closed.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::delivery::classify::{Attempt, Reuse};
use crate::delivery::client::{Chained, Started, TransactionReplies};
use crate::smtp::ehlo::Extensions;

/// The pause of an idle connection before it looks at its queue again, for its first
/// `IDLE_QUICK_LOOKS` looks; each further pause doubles, up to `IDLE_RECHECK`.
const IDLE_FIRST_LOOK: Duration = Duration::from_millis(10);

/// Looks at the short pause (the first 100 ms of idleness: gaps in a busy stream).
const IDLE_QUICK_LOOKS: u32 = 10;

/// The longest pause of an idle connection between two looks at its queue: the longest a
/// message waits for an idle connection of its destination.
const IDLE_RECHECK: Duration = Duration::from_millis(160);

/// A job ready to go out: its message and body.
struct Outgoing {
    job: Job,
    q: Rc<Queued>,
    body: Rc<Vec<u8>>,
    started: Instant,
    /// Whether the connection had carried a transaction before this one.
    reuse: Reuse,
}

impl Outgoing {
    fn envelope(&self) -> Envelope<'_> {
        let q = &self.q;
        Envelope {
            reverse_path: &q.record.reverse_path,
            recipients: self
                .job
                .recipients
                .iter()
                .map(|&i| (q.recipient(i).address.as_str(), q.rcpt(i)))
                .collect(),
            mail_params: &q.mail_params,
            body: &self.body,
            eight_bit: q.eight_bit,
            smtputf8: q.smtputf8(),
        }
    }

    /// What became of the job, as the recorder takes it.
    fn result(self, attempt: Attempt, link: &Link<'_>) -> JobResult {
        JobResult {
            duration_ms: self.started.elapsed().as_millis() as u64,
            job: self.job,
            attempt,
            reuse: self.reuse,
            peer: link.peer.clone(),
            next_hop_dsn: link.dsn,
        }
    }
}

/// A transaction whose DATA was answered `354` and whose content is still to be written.
struct Open {
    out: Outgoing,
    mail: Reply,
    rcpts: Vec<Reply>,
}

/// What one connection's loop needs to know about where it is connected.
struct Link<'a> {
    dest: &'a DestinationKey,
    peer: Peer,
    /// The server relays DSN parameters itself.
    dsn: bool,
}

impl Stage {
    /// One outbound connection to `dest`, reused until the queue is empty for `idle_timeout`.
    pub(super) async fn connection(self: Rc<Self>, dest: DestinationKey) {
        let Some(target) = self.targets.borrow().get(&dest).cloned() else {
            self.sched.borrow_mut().connection_open_failed(&dest);
            return;
        };
        let mut conn = None;
        let mut last_error = String::new();
        for (name, addr) in &target.hops {
            match self.open(name, *addr, &target).await {
                Ok(c) => {
                    conn = Some((c, format!("{name}[{}]", addr.ip())));
                    break;
                }
                Err(e) => {
                    if let ClientError::Refused { reply, .. } = &e {
                        self.observe(&dest, reply).await;
                    }
                    last_error = format!("{name}[{}]: {e}", addr.ip());
                }
            }
        }
        let Some((mut conn, host)) = conn else {
            self.no_connection(&dest, last_error).await;
            return;
        };
        {
            let mut sched = self.sched.borrow_mut();
            sched.connection_opened(&dest);
            sched.connect_succeeded(&dest);
        }
        bump(&self.stats.connections);
        self.stats.open.set(self.stats.open.get() + 1);
        // What the event log says of this connection's TLS, the same for all its jobs.
        let tls_text = conn
            .tls()
            .map(|t| format!("{} {}", t.version, t.cipher))
            .unwrap_or_default();
        let link = Link {
            dest: &dest,
            peer: Peer {
                host: host.into(),
                tls: tls_text.into(),
            },
            dsn: conn.extensions().dsn,
        };
        self.carry(&mut conn, &link, target.limits.max_messages_per_connection)
            .await;
        conn.quit().await;
        self.stats.open.set(self.stats.open.get() - 1);
        self.sched.borrow_mut().connection_closed(&dest);
        self.wake.notify();
    }

    /// No hop answered: every waiting job of the destination is deferred.
    async fn no_connection(self: &Rc<Self>, dest: &DestinationKey, last_error: String) {
        self.last_error
            .borrow_mut()
            .insert(dest.clone(), last_error.clone());
        let now = Instant::now();
        {
            let mut sched = self.sched.borrow_mut();
            sched.connection_open_failed(dest);
            sched.connect_failed(dest, now);
        }
        let outcome = Outcome::defer(EnhancedStatus::new(4, 4, 1), last_error);
        let waiting = std::iter::from_fn(|| self.sched.borrow_mut().next_job(dest, Instant::now()));
        self.fail_jobs(waiting, &outcome, &dest.0).await;
        self.wake.notify();
    }

    /// Carries jobs over an open connection until it idles out, is used up or fails.
    async fn carry(self: &Rc<Self>, conn: &mut Connection, link: &Link<'_>, max_messages: u32) {
        let idle = self.config().delivery.idle_timeout.0;
        let mut idle_since = Instant::now();
        let mut open: Option<Open> = None;
        let mut idle_looks = 0u32;
        loop {
            let more = conn.usable() && conn.transactions() < max_messages && !self.stopping.get();
            let next = if more {
                self.next_outgoing(conn, link).await
            } else {
                None
            };
            let mut to_start = next;
            if let Some(o) = open.take() {
                let any = Started::any_accepted(&o.mail, &o.rcpts);
                let env = to_start.as_ref().map(Outgoing::envelope);
                let (data, chained) = conn.finish_data(&o.out.body, any, env.as_ref()).await;
                drop(env);
                let replies = data.map(|d| TransactionReplies {
                    mail: o.mail,
                    rcpts: o.rcpts,
                    data: Some(d),
                });
                self.complete(o.out, replies, link).await;
                if let Chained::Sent(result) = chained {
                    let next = to_start.take().expect("a chained transaction was given");
                    if !self.started(next, result, link, &mut open).await {
                        break;
                    }
                }
                idle_since = Instant::now();
                idle_looks = 0;
            }
            if let Some(next) = to_start {
                if !conn.usable() {
                    // The connection failed finishing the previous message; nothing was sent.
                    self.sched
                        .borrow_mut()
                        .submit(link.dest, next.job, Instant::now());
                    break;
                }
                let result = conn.start(&next.envelope()).await;
                if !self.started(next, result, link, &mut open).await {
                    break;
                }
                idle_since = Instant::now();
                idle_looks = 0;
                continue;
            }
            if open.is_some() {
                continue;
            }
            // Nothing in flight: pause before looking again, even right after a transaction.
            // Looking at once measured slower: the pause lets a burst gather, and it then goes
            // out chained on busy connections instead of one message per wake-up.
            if !more || idle_since.elapsed() >= idle {
                break;
            }
            // The first looks come soon (mail often arrives in bursts), later ones less often.
            let pause = IDLE_FIRST_LOOK
                .saturating_mul(1 << idle_looks.saturating_sub(IDLE_QUICK_LOOKS).min(4))
                .min(IDLE_RECHECK)
                .min(idle.saturating_sub(idle_since.elapsed()));
            idle_looks += 1;
            glommio::timer::sleep(pause).await;
        }
    }

    /// What to do once a transaction's envelope was answered: keep it open for its content,
    /// or complete it. False when the connection must be given up (it failed).
    async fn started(
        self: &Rc<Self>,
        out: Outgoing,
        result: Result<Started, ClientError>,
        link: &Link<'_>,
        open: &mut Option<Open>,
    ) -> bool {
        let replies = match result {
            Ok(Started::Data { mail, rcpts }) => {
                *open = Some(Open { out, mail, rcpts });
                return true;
            }
            Ok(Started::Done(replies)) => Ok(replies),
            Err(e) => Err(e),
        };
        let ok = replies.is_ok();
        self.complete(out, replies, link).await;
        ok
    }

    /// The next ready job of the destination, prepared; jobs that end before they can be sent
    /// (too large for the server, an unreadable spool) are finished on the way.
    async fn next_outgoing(
        self: &Rc<Self>,
        conn: &Connection,
        link: &Link<'_>,
    ) -> Option<Outgoing> {
        loop {
            let job = self
                .sched
                .borrow_mut()
                .next_job(link.dest, Instant::now())?;
            let reuse = match conn.transactions() {
                0 => Reuse::Fresh,
                _ => Reuse::Reused,
            };
            if let Some(out) = self.prepare(job, conn.extensions(), link, reuse).await {
                return Some(out);
            }
        }
    }

    /// Reads a job's body; None when the job was finished instead (its message is gone, too
    /// large for the server, or needs SMTPUTF8 it lacks).
    async fn prepare(
        self: &Rc<Self>,
        job: Job,
        ext: &Extensions,
        link: &Link<'_>,
        reuse: Reuse,
    ) -> Option<Outgoing> {
        let (dest, host) = (link.dest, &link.peer.host);
        let q = self.messages.borrow().get(&job.message).cloned()?;
        let started = Instant::now();
        let decided = |job, o| JobResult {
            peer: link.peer.clone(),
            ..JobResult::decided(job, o)
        };
        let body = match self.body(&q).await {
            Ok(b) => b,
            Err(e) => {
                // Unreadable spool: nothing can be sent; retry later (and say why).
                tracing::error!(queue_id = %QueueId(job.message), error = %e, "cannot read the message back from the spool");
                let o = Outcome::defer(EnhancedStatus::new(4, 3, 0), format!("spool read: {e}"));
                self.finish(decided(job, o), &dest.0).await;
                return None;
            }
        };
        if let Some(Some(limit)) = ext.size
            && q.size as u64 > limit
        {
            let o = Outcome::bounce(
                EnhancedStatus::new(5, 3, 4),
                format!(
                    "message size {} exceeds the limit of {host} ({limit})",
                    q.size
                ),
            );
            self.finish(decided(job, o), &dest.0).await;
            return None;
        }
        if q.smtputf8() && !ext.smtputf8 {
            let o = Outcome::bounce(
                EnhancedStatus::new(5, 6, 7),
                format!("{host} does not support SMTPUTF8, which this message needs"),
            );
            self.finish(decided(job, o), &dest.0).await;
            return None;
        }
        Some(Outgoing {
            job,
            q,
            body,
            started,
            reuse,
        })
    }

    /// Hands a transaction's replies (or its failure) to the recorder.
    async fn complete(
        self: &Rc<Self>,
        out: Outgoing,
        result: Result<TransactionReplies, ClientError>,
        link: &Link<'_>,
    ) {
        let attempt = match result {
            Ok(replies) => Attempt::Replied(replies),
            Err(e) => Attempt::Failed(e),
        };
        self.finish(out.result(attempt, link), &link.dest.0).await;
    }
}
