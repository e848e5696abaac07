//! One outbound connection's task: open it, carry the destination's jobs over it, close it.
//!
//! What it does: opens a connection to the first hop that answers (with the hop's TLS policy
//! from `security`: DANE, MTA-STS or the destination's configured one, at least `required`
//! when it has AUTH credentials; an opportunistic handshake that
//! fails is retried at once in plaintext and the queue is told, so that the host gets
//! plaintext for `delivery.tls_fallback`; with credentials, it authenticates), then asks the queue
//! for the destination's next transaction (the jobs of one message that wait for this
//! destination, whatever their domains: see `batch`) until none comes for `idle_timeout`, the connection has
//! carried `max_messages_per_connection` transactions, or it fails. An idle connection asks
//! every 10 ms for 100 ms, then less and less often (up to every 160 ms; see `timers`). When
//! the server pipelines, each message's content goes out in one write with the next message's
//! envelope (RFC 2920 3.1), so a busy connection spends one round trip per message. What
//! became of each job goes back to the queue as a [`JobResult`] of its own, with the replies
//! to its own recipients. A REQUIRETLS message (RFC 8689) goes only over a connection whose
//! certificate its policy authenticated, to a server that offers REQUIRETLS; otherwise it is
//! bounced (5.7.10, 5.7.30) before anything is sent. With TLS reporting on, each attempt to
//! open a connection to a hop of a destination with a policy (DANE, MTA-STS) is counted as one
//! session, successful or failed with the RFC 8460 result type (`tls_rpt`).
//!
//! What it does not do: no protocol details (the client), no decisions about outcomes (the
//! recorder, in the queue task), no decision on how many connections a destination gets (the
//! scheduler). It holds no reference into the queue's state: it gets values (jobs, the
//! message's immutable envelope, its body) and sends values back.
//!
//! Invariants: the queue hears `Opened` or `OpenFailed` exactly once, then a result for every
//! job it handed out, then `Closed` (in that order: one channel). A transaction whose content
//! is pending is always completed before the connection is closed.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::batch;
use super::classify::{Attempt, Outcome, Reuse, open_failed_status};
use super::client::{
    Chained, ClientError, ClientTimeouts, Connection, Envelope, Started, TlsRequest,
    TransactionReplies,
};
use super::message::Message;
use super::queue_msg::{ConnEvent, Delivery, Next, QueueHandle};
use super::recorder::{JobResult, Peer, TlsUsed};
use super::route::Target;
use super::security::{self, Applied, HopTls};
use crate::queue::{DestinationKey, Job};
use crate::smtp::EnhancedStatus;
use crate::smtp::ehlo::Extensions;
use crate::spool::{QueueId, Spool};
use crate::timers::{IDLE_FIRST_LOOK, IDLE_QUICK_LOOKS, IDLE_RECHECK};
use crate::tls::{ClientTls, TlsPolicy};
use crate::tls_rpt::{Outcome as ReportOutcome, ResultType, classify};

/// What every outbound connection of a shard uses (rebuilt on reload).
pub struct Settings {
    /// EHLO name, unless the source address has its own.
    pub helo: String,
    /// Timeouts of each wait.
    pub timeouts: ClientTimeouts,
    /// TLS client configurations.
    pub tls: ClientTls,
    /// How long a host whose opportunistic handshake failed gets plaintext.
    pub tls_fallback: Duration,
    /// How long an idle connection stays open.
    pub idle: Duration,
    /// VERP envelope senders (`[feedback]`, kept across reloads); None = off.
    pub feedback: Option<Rc<crate::feedback::Shard>>,
}

/// What a connection task is given.
pub struct Plan {
    /// The destination's queue.
    pub dest: DestinationKey,
    /// Where and how to connect.
    pub target: Rc<Target>,
    /// Hops sent to in plaintext for now (their opportunistic handshake failed recently).
    pub plaintext: Vec<SocketAddr>,
    /// The shard's connection settings.
    pub settings: Rc<Settings>,
    /// The spool, to read bodies the queue does not hold.
    pub spool: Spool,
    /// Where results go.
    pub queue: QueueHandle,
}

/// A transaction ready to go out: its jobs (one message's), the message and its body.
struct Outgoing {
    /// At least one; their recipients are sent in this order.
    jobs: Vec<Job>,
    msg: Rc<Message>,
    body: Rc<Vec<u8>>,
    /// The body was read back from the spool (the queue may hold it again).
    read_back: bool,
    started: Instant,
    reuse: Reuse,
    /// The VERP envelope sender of this transaction's one recipient, if the message has one.
    verp: Option<String>,
}

impl Outgoing {
    fn envelope(&self) -> Envelope<'_> {
        let m = &self.msg;
        Envelope {
            reverse_path: self.verp.as_deref().unwrap_or(&m.record.reverse_path),
            recipients: self
                .jobs
                .iter()
                .flat_map(|j| &j.recipients)
                .map(|&i| (m.recipient(i).address.as_str(), m.rcpt(i)))
                .collect(),
            mail_params: &m.mail_params,
            body: &self.body,
            eight_bit: m.eight_bit,
            smtputf8: m.smtputf8(),
        }
    }
}

/// A transaction whose DATA was answered `354` and whose content is still to be written.
struct Open {
    out: Outgoing,
    mail: crate::smtp::Reply,
    rcpts: Vec<crate::smtp::Reply>,
}

/// One connection's task state.
struct Link {
    plan: Plan,
    peer: Peer,
    /// The server relays DSN parameters itself.
    dsn: bool,
    /// The connection is TLS with a certificate its policy authenticated (DANE, MTA-STS,
    /// `verify`): what REQUIRETLS mail needs (RFC 8689 4.2.1).
    verified_tls: bool,
    /// The policy the connection applied.
    applied: Applied,
}

/// Runs one outbound connection to `plan.dest`.
pub async fn run(plan: Plan) {
    let mut conn = None;
    let mut last_error = String::new();
    let mut status = EnhancedStatus::new(4, 4, 1);
    for (name, addr) in &plan.target.hops {
        match open(&plan, name, *addr).await {
            Ok((c, hop, counted)) => {
                conn = Some((
                    c,
                    format!("{name}[{}]", addr.ip()),
                    hop,
                    name,
                    (*addr, counted),
                ));
                break;
            }
            Err(e) => {
                if let ClientError::Refused { reply, .. } = &e {
                    plan.queue.conn(ConnEvent::Refused {
                        dest: plan.dest.clone(),
                        reply: reply.clone(),
                    });
                }
                if let ClientError::Auth { .. } = &e {
                    tracing::warn!(destination = %plan.dest.0, host = %name, %addr, error = %e, "outbound AUTH failed; the destination's mail is deferred");
                }
                status = open_failed_status(&e);
                last_error = format!("{name}[{}]: {e}", addr.ip());
            }
        }
    }
    let Some((mut conn, host, hop, name, (addr, counted))) = conn else {
        plan.queue.conn(ConnEvent::OpenFailed {
            dest: plan.dest.clone(),
            error: last_error,
            status,
        });
        return;
    };
    // What the event log says of this connection's TLS, the same for all its jobs.
    let tls = conn
        .tls()
        .map(|t| format!("{} {}", t.version, t.cipher))
        .unwrap_or_default();
    let tls_verified = verified(&conn, &hop, &plan.settings, name);
    let described = match tls_verified {
        "" => format!("plaintext, policy {}", hop.applied),
        v => format!("{tls}, policy {}, certificate verified: {v}", hop.applied),
    };
    plan.queue.conn(ConnEvent::Opened {
        dest: plan.dest.clone(),
        tls: format!("{host}: {described}"),
    });
    // Sessions under the configured policy alone (a host without DANE in a destination where
    // others have it) are not the receiver's policy: not counted.
    if !counted && !matches!(hop.applied, Applied::Configured(_)) {
        let failure = opened_failure(&hop, tls_verified, &plan.target, name);
        count_session(&plan.target, name, addr, failure);
    }
    if let Applied::MtaStsTesting(_) = hop.applied
        && tls_verified != "yes"
    {
        tracing::warn!(destination = %plan.dest.0, host = %name, tls = %tls, "MTA-STS (testing): the connection would fail the policy (no TLS or a certificate not valid for the host); delivered anyway");
    }
    let link = Link {
        peer: Peer {
            host: host.into(),
            tls: tls.into(),
            auth: Rc::new(conn.authenticated().unwrap_or_default().to_owned()),
            tls_policy: Rc::new(TlsUsed {
                policy: hop.applied.to_string(),
                verified: tls_verified,
            }),
        },
        dsn: conn.extensions().dsn,
        verified_tls: conn.tls().is_some() && hop.authenticates(),
        applied: hop.applied,
        plan,
    };
    carry(&mut conn, &link).await;
    conn.quit().await;
    link.plan.queue.conn(ConnEvent::Closed {
        dest: link.plan.dest.clone(),
    });
}

/// Counts one session with a hop of a destination that has a policy, for TLS reports.
fn count_session(target: &Target, host: &str, addr: SocketAddr, failure: Option<ResultType>) {
    let Some(policy) = &target.security.report else {
        return;
    };
    let outcome = match failure {
        None => ReportOutcome::Success,
        Some(result) => ReportOutcome::Failure {
            result,
            sending_ip: target.source,
            mx: host,
            receiving_ip: Some(addr.ip()),
        },
    };
    crate::tls_rpt::recorder::record(&target.domain, policy, outcome);
}

/// What a TLS report says of a connection that opened: DANE and MTA-STS `enforce` were met
/// (else it would not have opened); in MTA-STS `testing` mode it failed when the host is not
/// named by the policy or the certificate was not authenticated (`validation-failure`), or
/// when the server offered no STARTTLS.
fn opened_failure(hop: &HopTls, verified: &str, target: &Target, host: &str) -> Option<ResultType> {
    if !matches!(hop.applied, Applied::MtaStsTesting(_)) {
        return None;
    }
    let named = target
        .security
        .sts
        .as_ref()
        .is_none_or(|c| c.policy.matches_mx(host));
    match verified {
        _ if !named => Some(ResultType::ValidationFailure),
        "" => Some(ResultType::StarttlsNotSupported),
        "yes" => None,
        _ => Some(ResultType::ValidationFailure),
    }
}

/// "yes" when the connection's certificate was authenticated (the policy required it, or it
/// passes `verify`'s check), "no" when not, "" without TLS.
fn verified(conn: &Connection, hop: &HopTls, settings: &Settings, name: &str) -> &'static str {
    match conn.tls() {
        None => "",
        Some(_) if hop.authenticates() => "yes",
        Some(_) if settings.tls.verifies(conn.peer_certificates(), name) => "yes",
        Some(_) => "no",
    }
}

/// Connects to one hop with its TLS policy (`security::for_hop`), and authenticates when the
/// destination has credentials (then the policy is at least `required`: credentials never go
/// out in plaintext). An opportunistic handshake that fails is retried at once in plaintext (a
/// receiver with a broken TLS stack still gets its mail), and the queue remembers the host for
/// `delivery.tls_fallback`. A failure that DANE or MTA-STS caused is a [`ClientError::Policy`]
/// (4.7.5), naming the policy.
async fn open(
    plan: &Plan,
    name: &str,
    addr: SocketAddr,
) -> Result<(Connection, HopTls, bool), ClientError> {
    let target = &plan.target;
    let settings = &plan.settings;
    let auth = target.auth.as_deref();
    let configured = match auth {
        Some(_) => target.tls.at_least_required(),
        None => target.tls,
    };
    let mut hop = security::for_hop(&target.security, configured, name);
    if let Some(reason) = hop.refuse.take() {
        let result = match hop.applied {
            // The TLSA lookup failed in a signed zone.
            Applied::Dane => ResultType::DnssecInvalid,
            // An MX host the enforced MTA-STS policy does not name.
            _ => ResultType::ValidationFailure,
        };
        count_session(target, name, addr, Some(result));
        return Err(ClientError::Policy {
            status: EnhancedStatus::new(4, 7, 5),
            reason,
        });
    }
    if hop.policy == TlsPolicy::Opportunistic && plan.plaintext.contains(&addr) {
        hop.policy = TlsPolicy::None;
    }
    let policy = hop.policy;
    let request = |policy| TlsRequest {
        policy,
        configs: &settings.tls,
        server_name: name,
        config: hop.config.as_ref(),
    };
    let helo = target.helo.as_ref().unwrap_or(&settings.helo);
    let (source, timeouts) = (target.source, settings.timeouts);
    let opened = Connection::open(addr, source, helo, timeouts, request(policy), auth).await;
    // Whether the session is already counted for TLS reports.
    let mut counted = false;
    // MTA-STS testing under `required` or `verify`: the failure is the configured policy's,
    // reported all the same (an opportunistic handshake failure is counted at its fallback).
    if let (Err(ClientError::Tls { reason, handshake }), Applied::MtaStsTesting(_)) =
        (&opened, hop.applied)
        && !(*handshake && policy == TlsPolicy::Opportunistic)
    {
        count_session(
            target,
            name,
            addr,
            Some(classify(reason, *handshake, false)),
        );
    }
    let opened = match (opened, hop.applied) {
        (
            Err(ClientError::Tls { reason, handshake }),
            applied @ (Applied::Dane | Applied::DaneEncryptOnly | Applied::MtaSts),
        ) => Err({
            let dane = applied == Applied::Dane;
            count_session(target, name, addr, Some(classify(&reason, handshake, dane)));
            ClientError::Policy {
                status: EnhancedStatus::new(4, 7, 5),
                reason: format!("{applied} policy: TLS: {reason}"),
            }
        }),
        (other, _) => other,
    };
    let opened = match opened {
        Err(ClientError::Tls {
            reason,
            handshake: true,
        }) if policy == TlsPolicy::Opportunistic => {
            tracing::warn!(host = name, %addr, %reason, "TLS failed; falling back to plaintext");
            if let Applied::MtaStsTesting(_) = hop.applied {
                // The report says why TLS failed, not that the fallback was plaintext.
                count_session(target, name, addr, Some(classify(&reason, true, false)));
                counted = true;
            }
            plan.queue.conn(ConnEvent::TlsFallback {
                addr,
                until: Instant::now() + settings.tls_fallback,
            });
            let plain = request(TlsPolicy::None);
            Connection::open(addr, source, helo, timeouts, plain, None).await
        }
        other => other,
    };
    opened.map(|c| (c, hop, counted))
}

/// Carries jobs over an open connection until it idles out, is used up or fails.
async fn carry(conn: &mut Connection, link: &Link) {
    let idle = link.plan.settings.idle;
    let max_messages = link.plan.target.limits.max_messages_per_connection;
    let mut idle_since = Instant::now();
    let mut open: Option<Open> = None;
    let mut idle_looks = 0u32;
    loop {
        let more = conn.usable() && conn.transactions() < max_messages;
        // When the queue is stopping it hands out nothing more: nothing new starts.
        let (mut to_start, stopping) = match more {
            true => next_outgoing(conn, link).await,
            false => (None, false),
        };
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
            complete(o.out, replies, link);
            if let Chained::Sent(result) = chained {
                let next = to_start.take().expect("a chained transaction was given");
                if !started(next, result, link, &mut open) {
                    break;
                }
            }
            idle_since = Instant::now();
            idle_looks = 0;
        }
        if let Some(next) = to_start {
            if !conn.usable() {
                // The connection failed finishing the previous message; nothing was sent.
                report(link, next, Attempt::NotSent);
                break;
            }
            let result = conn.start(&next.envelope()).await;
            if !started(next, result, link, &mut open) {
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
        if !more || stopping || idle_since.elapsed() >= idle {
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

/// What to do once a transaction's envelope was answered: keep it open for its content, or
/// complete it. False when the connection must be given up (it failed).
fn started(
    out: Outgoing,
    result: Result<Started, ClientError>,
    link: &Link,
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
    complete(out, replies, link);
    ok
}

/// The next job of the destination, prepared, and whether the queue is stopping; jobs that end
/// before they can be sent (too large for the server, an unreadable spool) are reported on
/// the way.
async fn next_outgoing(conn: &Connection, link: &Link) -> (Option<Outgoing>, bool) {
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

/// Hands a transaction's replies (or its failure) back to the queue.
fn complete(out: Outgoing, result: Result<TransactionReplies, ClientError>, link: &Link) {
    let attempt = match result {
        Ok(replies) => Attempt::Replied(replies),
        Err(e) => Attempt::Failed(e),
    };
    report(link, out, attempt);
}

/// Reports the transaction's attempt to the queue, each job with its share of it (the body
/// read back from the spool goes with the first).
fn report(link: &Link, out: Outgoing, attempt: Attempt) {
    let duration_ms = out.started.elapsed().as_millis() as u64;
    let sizes: Vec<usize> = out.jobs.iter().map(|j| j.recipients.len()).collect();
    let mut read_back = out.read_back.then_some(out.body);
    for (job, attempt) in out.jobs.into_iter().zip(batch::split(attempt, &sizes)) {
        let result = JobResult {
            duration_ms,
            job,
            attempt,
            reuse: out.reuse,
            peer: link.peer.clone(),
            next_hop_dsn: link.dsn,
        };
        link.plan.queue.conn(ConnEvent::Finished {
            dest: link.plan.dest.clone(),
            result,
            read_back: read_back.take(),
        });
    }
}
