//! One inbound connection: the I/O loop around a sans-IO session.
//!
//! What it does: on PROXY listeners first reads the PROXY header and takes the client address
//! from it; applies the per-address limits (`421 4.7.0`); reads into one buffer per connection
//! (no copy: glommio reads straight into it), lets the session consume whole commands and
//! data, writes each batch of replies in one write (RFC 2920), DKIM-signs complete messages
//! when in scope, spools them and awaits their group commit before the `250`,
//! and enforces the inbound timeouts and the shutdown deadline.
//!
//! What it does not do: no protocol parsing (the session does it), no delivery, no reply to a
//! bad or missing PROXY header (the peer is a load balancer: the connection is just closed).
//!
//! Invariants: a `250` for a message is written only after `Spool::append_message` returned
//! Ok; at most one read is outstanding; the buffer grows only when a single command cannot fit
//! (never past twice the command-line limit).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::listener::Entry;
use super::proxy_header;
use super::replies;
use super::session::{Action, AuthOutcome, Phase, Session, SessionConfig, SessionEnv};
use super::{ServerContext, Timeouts};
use crate::eventlog::{Reception, Rejection};
use crate::metrics::{BackpressureReason, SessionOutcome};
use crate::smtp::{ForwardPath, Reply};
use crate::spool::QueueId;
use crate::tls::Stream;

const READ_BUFFER: usize = 64 * 1024;

/// The size of a connection's read buffer: room for two of the longest command lines.
pub fn read_buffer_size(config: &crate::config::Config) -> usize {
    READ_BUFFER.max(2 * config.smtp.max_command_line)
}

/// The session's view of the shard.
struct Env<'a> {
    ctx: &'a ServerContext,
    client: String,
}

impl SessionEnv for Env<'_> {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn next_queue_id(&mut self) -> QueueId {
        self.ctx.ids.borrow_mut().next(SystemTime::now())
    }
    fn rejected(&mut self, stage: &str, sender: &str, recipient: &str, reply: &Reply) {
        let mut text = Vec::new();
        reply.write_to(&mut text);
        let text = String::from_utf8_lossy(&text);
        let bare = |p: &'_ str| {
            p.strip_prefix('<')
                .and_then(|p| p.strip_suffix('>'))
                .unwrap_or(p)
                .to_owned()
        };
        self.ctx.log.rejection(&Rejection {
            stage,
            sender: &bare(sender),
            recipient: &bare(recipient),
            reply: text.trim_end(),
            client: &self.client,
        });
    }

    fn suppressed(&self, recipient: &ForwardPath) -> Option<&'static str> {
        let ForwardPath::Mailbox(m) = recipient else {
            return None;
        };
        let kind = self.ctx.suppression.as_ref()?.check_of("", m)?;
        Some(kind.as_str())
    }

    fn report_rcpt(&self, recipient: &ForwardPath) -> Option<Result<(), Reply>> {
        let fb = self.ctx.feedback.as_ref()?;
        let ForwardPath::Mailbox(m) = recipient else {
            return None;
        };
        let crate::smtp::Domain::Name(domain) = &m.domain else {
            return None;
        };
        match fb.host().rcpt(&m.local_part, domain, SystemTime::now()) {
            crate::feedback::Rcpt::Other => None,
            crate::feedback::Rcpt::Report => Some(Ok(())),
            crate::feedback::Rcpt::Refused(why) => Some(Err(replies::bad_report_address(
                &recipient.to_string(),
                why,
            ))),
        }
    }

    fn storage_available(&self) -> u64 {
        // Called when a transaction starts; 0 refuses it with 452 4.3.1.
        let metrics = &self.ctx.metrics;
        if self.ctx.gauge.refuses_new() {
            metrics.backpressure_refused(BackpressureReason::Memory);
            return 0;
        }
        let available = self.ctx.storage_available.get();
        if available == 0 {
            metrics.backpressure_refused(BackpressureReason::Disk);
        }
        available
    }
}

/// What one connection's message being received adds to the shard's memory gauge; taken
/// back when the connection ends.
struct Receiving {
    gauge: Rc<crate::gauge::MemoryGauge>,
    held: u64,
}

impl Receiving {
    fn set(&mut self, now: u64) {
        if now != self.held {
            self.gauge.receiving_changed(self.held, now);
            self.held = now;
        }
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.gauge.receiving_changed(self.held, 0);
    }
}

/// Decrements the shard's open-connection count when the connection ends.
struct Active(Rc<ServerContext>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
    }
}

/// Releases the client address's slot in the per-address limits when the connection ends.
struct Admitted(Rc<ServerContext>, std::net::IpAddr);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.admission.release(self.1);
    }
}

/// Serves one accepted connection to its end.
///
/// `peer` is the socket's remote address; the session's client is the PROXY header's source
/// on a PROXY listener (the peer itself when the header carries none, e.g. a health check).
pub async fn serve(
    ctx: Rc<ServerContext>,
    entry: Rc<Entry>,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    ctx.active.set(ctx.active.get() + 1);
    let _active = Active(ctx.clone());
    // What the connection starts with stays its own whatever a reload brings.
    let timeouts = ctx.timeouts.get();
    let session_config = entry.session.borrow().clone();
    let proxy_from = entry.proxy_from.borrow().clone();
    let client = if let Some(proxy_from) = proxy_from {
        if !super::relay::in_networks(&proxy_from, peer.ip()) {
            // Anyone else could claim any client address (a loopback one relays).
            ctx.metrics.session_ended(SessionOutcome::Rejected);
            tracing::info!(%peer, "PROXY listener: peer not in proxy_from; closing");
            let _ = stream.shutdown(std::net::Shutdown::Both).await;
            return;
        }
        match proxy_header::read(&mut stream, timeouts.greeting).await {
            Ok(header) => {
                let client = header.source.unwrap_or(peer);
                tracing::debug!(%peer, %client, "PROXY header");
                client
            }
            Err(e) => {
                ctx.metrics.session_ended(SessionOutcome::Error);
                tracing::info!(%peer, error = %e, "no valid PROXY header; closing");
                let _ = stream.shutdown(std::net::Shutdown::Both).await;
                return;
            }
        }
    } else {
        peer
    };
    // Trusted networks are exempt from the per-address limits (as Postfix exempts
    // $mynetworks): an injecting application may need many connections.
    let exempt = session_config.relay.is_trusted(client.ip());
    let admitted = match exempt {
        true => Ok(false),
        false => ctx.admission.admit(client.ip(), Instant::now()),
    };
    let _admitted = match admitted {
        Ok(counted) => counted.then(|| Admitted(ctx.clone(), client.ip())),
        Err(why) => {
            ctx.metrics.connections_refused.inc();
            ctx.metrics.session_ended(SessionOutcome::Rejected);
            tracing::info!(%client, ?why, "connection over the per-address limit");
            // On implicit TLS a plaintext reply would only garble the client's handshake.
            if !entry.implicit_tls {
                let _ = stream.set_nodelay(true);
                let mut out = Vec::new();
                replies::too_many_from_address(&session_config.hostname).write_to(&mut out);
                let _ = stream.write_all(&out).await;
            }
            let _ = stream.shutdown(std::net::Shutdown::Both).await;
            return;
        }
    };
    let peer = client;
    let mut stream = Some(Stream::Plain(stream));
    let started = Started {
        session: session_config,
        timeouts,
        implicit_tls: entry.implicit_tls,
    };
    let outcome = match run(&ctx, started, &mut stream, peer).await {
        Ok(()) => SessionOutcome::Completed,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => SessionOutcome::Timeout,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "connection ended");
            SessionOutcome::Error
        }
    };
    ctx.metrics.session_ended(outcome);
    if let Some(stream) = stream {
        let _ = stream.tcp().shutdown(std::net::Shutdown::Both).await;
    }
}

/// Answers `421 4.7.0` (from `hostname`) to a connection over the shard's limit and closes it.
pub async fn refuse(ctx: Rc<ServerContext>, mut stream: TcpStream, hostname: String) {
    ctx.metrics.session_ended(SessionOutcome::Rejected);
    let _ = stream.set_nodelay(true);
    let mut out = Vec::new();
    replies::too_many_connections(&hostname).write_to(&mut out);
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown(std::net::Shutdown::Both).await;
}

/// Runs a TLS handshake on `slot`; on failure the slot is left empty (the connection is lost).
async fn handshake(
    ctx: &ServerContext,
    slot: &mut Option<Stream>,
    wait: Duration,
) -> std::io::Result<()> {
    let config = ctx
        .tls
        .borrow()
        .as_ref()
        .map(|t| t.config())
        .ok_or_else(|| std::io::Error::other("no certificate loaded"))?;
    let stream = slot.take().expect("a stream to upgrade");
    stream.tcp().set_read_timeout(Some(wait))?;
    *slot = Some(stream.accept_tls(config).await?);
    Ok(())
}

/// The settings a connection started with.
struct Started {
    session: Rc<SessionConfig>,
    timeouts: Timeouts,
    implicit_tls: bool,
}

async fn run(
    ctx: &ServerContext,
    started: Started,
    slot: &mut Option<Stream>,
    peer: SocketAddr,
) -> std::io::Result<()> {
    let Started {
        session: session_config,
        timeouts: t,
        implicit_tls,
    } = started;
    let tcp = slot.as_ref().expect("stream").tcp();
    tcp.set_nodelay(true)?;
    // A client that stops reading (its window stays shut) is cut off like one that stops
    // writing: no write waits longer than the command timeout (RFC 5321 4.5.3.2.7).
    tcp.set_write_timeout(Some(t.command))?;
    let mut session = Session::new(session_config.clone(), peer);
    if implicit_tls {
        handshake(ctx, slot, t.greeting).await?;
        let info = slot.as_ref().and_then(Stream::tls).expect("TLS is on");
        session.tls_started(info);
    }
    let mut env = Env {
        ctx,
        client: peer.ip().to_string(),
    };
    let mut buf = ctx.buffers.take();
    let mut out = Vec::with_capacity(1024);
    let mut data_deadline: Option<Instant> = None;
    let mut counted = (0u32, 0u32);
    let mut receiving = Receiving {
        gauge: ctx.gauge.clone(),
        held: 0,
    };
    session.greeting(&mut out);
    write(slot, &mut out).await?;
    loop {
        loop {
            let (n, action) = session.feed(buf.data(), &mut env, &mut out);
            buf.consume(n);
            match action {
                Action::Read => break,
                Action::Flush => write(slot, &mut out).await?,
                Action::Queue(mut record) => {
                    let id = QueueId(record.id);
                    // Reports (bounces, complaints) are read and applied here, not relayed.
                    if let Some(fb) = &ctx.feedback {
                        let applied =
                            super::feedback::consume(ctx, fb, &mut record, &env.client).await;
                        if applied.is_err() || record.recipients.is_empty() {
                            ctx.log.written().await;
                            session.queued(id, applied, &mut out);
                            continue;
                        }
                    }
                    // Mail we originate: an authenticated client or a trusted network.
                    let originated =
                        record.auth.is_some() || session_config.relay.is_trusted(peer.ip());
                    // Labels are read (and stripped) before signing: DKIM signs what is sent.
                    let found = session_config.labeling.apply(&mut record, originated);
                    if found.ignored > 0 {
                        tracing::debug!(%peer, queue_id = %id, ignored = found.ignored, "campaign or tenant field ignored (invalid, or the client may not set it)");
                    }
                    // The class, once the labels are known (a campaign may choose it).
                    record.priority = crate::priority::Class::code(
                        session_config.priority.choose(&record, originated),
                    );
                    if let Some(dkim) = &ctx.dkim {
                        dkim.sign(&mut record, originated).await;
                    }
                    let started = Instant::now();
                    let result = ctx.spool.append_message(&record).await;
                    ctx.metrics
                        .reply_latency_seconds
                        .observe(started.elapsed().as_secs_f64());
                    match &result {
                        Ok(()) => {
                            ctx.metrics.messages_accepted.inc();
                            ctx.metrics
                                .recipients_accepted
                                .add(record.recipients.len() as u64);
                        }
                        Err(e) => {
                            tracing::warn!(%peer, queue_id = %id, error = %e, "spool append failed");
                        }
                    }
                    let ok = result.is_ok();
                    let message_id = crate::headers::message_id(&record.body).unwrap_or("");
                    if ok && let Some(fb) = &ctx.feedback {
                        let labels = (
                            record.campaign.as_deref().unwrap_or(""),
                            record.tenant.as_deref().unwrap_or(""),
                        );
                        let rcpts = record.recipients.iter().map(|r| r.address.as_str());
                        fb.accepted(message_id, record.id, labels, rcpts);
                    }
                    if ok {
                        let recipients: Vec<&str> = record
                            .recipients
                            .iter()
                            .map(|r| r.address.as_str())
                            .collect();
                        ctx.log.reception(&Reception {
                            queue_id: &id.to_string(),
                            sender: &record.reverse_path,
                            recipients: &recipients,
                            size: record.body.len(),
                            client: &env.client,
                            helo: &record.helo,
                            tls: record.tls.as_deref().unwrap_or(""),
                            auth: record.auth.as_deref().unwrap_or(""),
                            message_id,
                            campaign: record.campaign.as_deref().unwrap_or(""),
                            tenant: record.tenant.as_deref().unwrap_or(""),
                            priority: crate::priority::Class::from_code(record.priority)
                                .ok()
                                .flatten()
                                .map_or("", crate::priority::Class::name),
                        });
                        // The line is in the file before the 250: one write for all the
                        // sessions of this group commit.
                        ctx.log.written().await;
                    }
                    session.queued(id, result.map_err(drop), &mut out);
                    if ok && let Some(hand_on) = &ctx.accepted {
                        // The message is safe in the spool whatever becomes of it next.
                        hand_on(*record);
                    }
                }
                Action::StartTls => {
                    write(slot, &mut out).await?;
                    // Whatever the client pipelined after STARTTLS is discarded unread.
                    buf.clear();
                    handshake(ctx, slot, t.command).await?;
                    let info = slot.as_ref().and_then(Stream::tls).expect("TLS is on");
                    tracing::debug!(%peer, tls = %info, "STARTTLS");
                    session.tls_started(info);
                    break;
                }
                Action::Authenticate(creds) => {
                    write(slot, &mut out).await?;
                    let outcome = ctx.login.check(peer.ip(), &creds).await;
                    match outcome {
                        AuthOutcome::Success => {
                            tracing::info!(%peer, user = %creds.username, "authenticated")
                        }
                        _ => tracing::info!(%peer, user = %creds.username, ?outcome, "AUTH failed"),
                    }
                    session.auth_result(&creds.username, outcome, &mut out);
                }
                Action::Close => return write(slot, &mut out).await,
            }
        }
        // Mail being received counts toward the memory budget: over it, the transfer in
        // progress stops storing its bytes and is refused with 452 4.3.1 at its end.
        receiving.set(session.receiving_bytes());
        if receiving.held > 0 && ctx.gauge.over() && session.shed_body() {
            receiving.set(session.receiving_bytes());
            ctx.metrics.backpressure_refused(BackpressureReason::Memory);
            tracing::info!(%peer, "memory budget reached while receiving a message: it will be refused with 452 4.3.1");
        }
        let refused = session.refusals();
        if refused != counted {
            let m = &ctx.metrics;
            m.rejections_rcpt.add(u64::from(refused.0 - counted.0));
            m.rejections_data.add(u64::from(refused.1 - counted.1));
            counted = refused;
        }
        write(slot, &mut out).await?;
        buf.compact();
        if buf.is_full() {
            // The session always consumes a full buffer (long lines are discarded, data is
            // decoded), so this only happens with a pathological limit; grow once, bounded.
            let cap = 4 * READ_BUFFER.max(2 * session_config.max_command_line);
            if buf.capacity() >= cap {
                return Err(std::io::Error::other("input not consumed"));
            }
            let grown = buf.capacity() * 2;
            buf.grow(grown);
        }
        let now = Instant::now();
        let phase = session.phase();
        let mut wait = match phase {
            Phase::Greeting => t.greeting,
            Phase::Command => {
                data_deadline = None;
                t.command
            }
            Phase::Data => {
                let deadline = *data_deadline.get_or_insert(now + t.data_termination);
                t.data_block.min(deadline.saturating_duration_since(now))
            }
        };
        let stopping = ctx.shutdown.started();
        if stopping {
            let deadline = ctx.shutdown.deadline().expect("started");
            if !session.in_transaction() || now >= deadline {
                replies::shutting_down(&session_config.hostname).write_to(&mut out);
                return write(slot, &mut out).await;
            }
            wait = wait.min(deadline - now);
        }
        if wait.is_zero() {
            replies::timeout(&session_config.hostname).write_to(&mut out);
            return write(slot, &mut out).await;
        }
        let stream = slot.as_mut().expect("stream");
        stream
            .tcp()
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        let spare = buf.spare();
        let read = async { Some(stream.read(spare).await) };
        let result = if stopping || session.in_transaction() {
            read.await
        } else {
            futures_lite::future::or(read, async {
                ctx.shutdown.wait().await;
                None
            })
            .await
        };
        match result {
            None => continue,
            Some(Ok(0)) => return Ok(()),
            Some(Ok(n)) => buf.filled(n),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                let reply = if ctx.shutdown.started() {
                    replies::shutting_down(&session_config.hostname)
                } else {
                    replies::timeout(&session_config.hostname)
                };
                reply.write_to(&mut out);
                return write(slot, &mut out).await;
            }
            Some(Err(e)) => return Err(e),
        }
    }
}

/// Writes all of `out` (one write in the common case) and clears it.
async fn write(slot: &mut Option<Stream>, out: &mut Vec<u8>) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let stream = slot.as_mut().expect("stream");
    stream.write_all(out).await?;
    stream.flush().await?;
    out.clear();
    Ok(())
}
