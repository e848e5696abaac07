//! The inbound ESMTP session as a sans-IO state machine (RFC 5321 with PIPELINING, SIZE,
//! 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, DSN and CHUNKING; REQUIRETLS inside TLS, RFC 8689).
//!
//! What it does: takes the bytes a client sent, answers every command with its RFC reply
//! (written into an output buffer), receives message bodies by DATA or BDAT, and hands a
//! complete message out as a spool record ([`Action::Queue`]); the caller spools it and reports
//! the result with [`Session::queued`].
//!
//! What it does not do: no sockets, no clock, no spool, no delivery. Time and queue ids come
//! from a [`SessionEnv`]; timeouts are enforced by the connection, which asks [`Session::phase`].
//!
//! Invariants:
//! - Replies are produced in command order; the caller flushes them when the session returns
//!   [`Action::Read`] (input exhausted: RFC 2920 "the server may send replies when its input
//!   buffer is empty"), [`Action::Flush`] (after `354`) or [`Action::Close`].
//! - Nothing after the end of data (or BDAT LAST) is interpreted before the message's own
//!   reply is written: [`Action::Queue`] stops the session until [`Session::queued`].
//! - The bytes of every BDAT chunk are consumed by count, even when the command is refused, so
//!   chunk data is never read as commands.
//! - A message with a bare CR or LF is refused or normalised per policy; end of data is only
//!   `<CRLF>.<CRLF>` (anti-smuggling, RFC 5321 4.1.1.4).

use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::SystemTime;

use super::received::Trace;
use super::replies;
pub use super::session_config::SessionConfig;
use super::transaction::Transaction;
use crate::auth::{Credentials, Mechanism, SaslExchange, Step};
use crate::config::ListenerMode;
use crate::smtp::command::parse_command;
use crate::smtp::data::ChunkChecker;
use crate::smtp::params::Body;
use crate::smtp::{
    BareLineEnding, Command, DataDecoder, DataEvent, ForwardPath, Line, LineReader, Reply,
};
use crate::spool::{MessageRecord, QueueId};
use crate::tls::TlsInfo;

/// What the session needs from its surroundings.
pub trait SessionEnv {
    /// The current time.
    fn now(&self) -> SystemTime;
    /// A fresh queue id.
    fn next_queue_id(&mut self) -> QueueId;
    /// Octets of new mail the spool can take now; 0 refuses new transactions (`452 4.3.1`).
    fn storage_available(&self) -> u64;
    /// A recipient (`rcpt`) or a message (`data`) was refused with `reply` (for the event log).
    fn rejected(&mut self, _stage: &str, _sender: &str, _recipient: &str, _reply: &Reply) {}
    /// Why `recipient` is on the suppression list (its kind), None if it is not.
    fn suppressed(&self, _recipient: &ForwardPath) -> Option<&'static str> {
        None
    }
    /// Whether `recipient` is a report address (bounces, complaints): `Some(Ok)` accepts it
    /// from anyone, `Some(Err(reply))` refuses it, None leaves it to the relay policy.
    fn report_rcpt(&self, _recipient: &ForwardPath) -> Option<Result<(), Reply>> {
        None
    }
}

/// Replies pending for the client past which the session stops parsing pipelined commands
/// until they have been written.
pub const MAX_PENDING_REPLIES: usize = 64 * 1024;

/// The most a `BDAT` command makes the body buffer reserve before its bytes arrive.
const BDAT_FIRST_RESERVE: u64 = 64 * 1024;

/// What the caller must do next.
#[derive(Debug)]
pub enum Action {
    /// All complete input was handled: write the pending replies, then read more.
    Read,
    /// Write the pending replies now, then call [`Session::feed`] again with the rest.
    Flush,
    /// A message is complete: append it to the spool, then call [`Session::queued`].
    Queue(Box<MessageRecord>),
    /// Write the pending replies (the `220` to STARTTLS), drop any input after the STARTTLS
    /// line unread (RFC 3207 5: pipelined commands must not survive the upgrade), run the TLS
    /// handshake, then call [`Session::tls_started`]; close the connection if it fails.
    StartTls,
    /// The client finished a SASL exchange: check the credentials (throttle, users file), then
    /// call [`Session::auth_result`].
    Authenticate(Credentials),
    /// Write the pending replies and close the connection.
    Close,
}

/// What checking AUTH credentials found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The password is right: the client may relay anywhere.
    Success,
    /// Wrong user, password or authorization identity: `535 5.7.8`.
    Failure,
    /// Too many recent failures from this address: `454 4.7.0`, whatever the password.
    Throttled,
}

/// Which timeout applies while waiting for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Before the first command.
    Greeting,
    /// Between commands.
    Command,
    /// Inside DATA or a BDAT chunk.
    Data,
}

enum Mode {
    Command,
    Data(DataDecoder),
    Chunk(Chunk),
}

/// A BDAT chunk being read (RFC 3030).
struct Chunk {
    size: u64,
    remaining: u64,
    last: bool,
    /// The reply this chunk gets instead of success, decided at the command or while reading.
    refusal: Option<Reply>,
}

struct Helo {
    name: String,
    extended: bool,
}

/// One inbound SMTP session.
pub struct Session {
    cfg: Rc<SessionConfig>,
    client: SocketAddr,
    trusted: bool,
    lines: LineReader,
    mode: Mode,
    helo: Option<Helo>,
    tx: Option<Transaction>,
    errors: u32,
    seen_command: bool,
    closing: bool,
    tls: Option<TlsInfo>,
    user: Option<String>,
    sasl: Option<SaslExchange>,
    /// Recipients and messages refused (for metrics).
    refused: (u32, u32),
}

impl Session {
    /// A new session for a client; the caller then sends [`Session::greeting`].
    pub fn new(cfg: Rc<SessionConfig>, client: SocketAddr) -> Self {
        let trusted = cfg.relay.is_trusted(client.ip());
        Session {
            lines: LineReader::new(cfg.max_command_line),
            cfg,
            client,
            trusted,
            mode: Mode::Command,
            helo: None,
            tx: None,
            errors: 0,
            seen_command: false,
            closing: false,
            tls: None,
            user: None,
            sasl: None,
            refused: (0, 0),
        }
    }

    /// How many recipients (at RCPT) and messages (at the end of data) were refused.
    pub fn refusals(&self) -> (u32, u32) {
        self.refused
    }

    /// Writes the `220` greeting (the text of [`replies::greeting`], written in place: a
    /// lock-step client opens a connection per message).
    pub fn greeting(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"220 ");
        out.extend_from_slice(self.cfg.hostname.as_bytes());
        out.extend_from_slice(b" ESMTP ready\r\n");
    }

    /// Which timeout applies now.
    pub fn phase(&self) -> Phase {
        match self.mode {
            Mode::Data(_) | Mode::Chunk(_) => Phase::Data,
            Mode::Command if !self.seen_command => Phase::Greeting,
            Mode::Command => Phase::Command,
        }
    }

    /// True while a transaction is open (MAIL given and not yet finished).
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some() || !matches!(self.mode, Mode::Command)
    }

    /// True once the session has decided to close.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Handles as much of `input` as possible. Returns how many octets were consumed (the
    /// caller keeps the rest and presents it again, with more appended) and what to do next.
    pub fn feed(
        &mut self,
        input: &[u8],
        env: &mut dyn SessionEnv,
        out: &mut Vec<u8>,
    ) -> (usize, Action) {
        let mut pos = 0;
        loop {
            if self.closing {
                return (pos, Action::Close);
            }
            // A client that pipelines without reading its replies: stop parsing until what
            // is pending has been written (the write has a timeout), so replies stay bounded.
            if out.len() >= MAX_PENDING_REPLIES {
                return (pos, Action::Flush);
            }
            let rest = &input[pos..];
            match &mut self.mode {
                Mode::Command => {
                    let (n, line) = self.lines.next(rest);
                    pos += n;
                    match line {
                        None => return (pos, Action::Read),
                        Some(Line::TooLong) => {
                            self.sasl = None;
                            self.error(replies::line_too_long(self.cfg.max_command_line), out)
                        }
                        Some(Line::BareLf) => self.error(replies::bare_lf_command(), out),
                        Some(Line::Command(bytes)) if self.sasl.is_some() => {
                            if let Some(action) = self.sasl_response(bytes, out) {
                                return (pos, action);
                            }
                        }
                        Some(Line::Command(bytes)) => {
                            self.seen_command = true;
                            if let Some(action) = self.command(bytes, env, out) {
                                return (pos, action);
                            }
                        }
                    }
                }
                Mode::Data(decoder) => {
                    let tx = self.tx.as_mut().expect("DATA mode has a transaction");
                    let event = decoder.decode(rest, &mut tx.body);
                    if tx.shed {
                        tx.body.truncate(tx.header_len);
                    }
                    match event {
                        DataEvent::NeedMore => return (input.len(), Action::Read),
                        DataEvent::End { consumed } => {
                            pos += consumed;
                            if let Some(action) = self.end_of_data(env, out) {
                                return (pos, action);
                            }
                        }
                    }
                }
                Mode::Chunk(chunk) => {
                    let take = chunk.remaining.min(rest.len() as u64) as usize;
                    chunk.remaining -= take as u64;
                    pos += take;
                    if chunk.refusal.is_none() {
                        let tx = self.tx.as_mut().expect("accepted chunk has a transaction");
                        if tx.message_octets() + take as u64 > self.cfg.max_message_size {
                            chunk.refusal = Some(replies::too_large(self.cfg.max_message_size));
                        } else {
                            let checker = tx.chunks.as_mut().expect("BDAT transaction");
                            checker.push(&rest[..take], &mut tx.body);
                            if tx.shed {
                                tx.body.truncate(tx.header_len);
                            }
                        }
                    }
                    if chunk.remaining > 0 {
                        return (pos, Action::Read);
                    }
                    if let Some(action) = self.end_of_chunk(env, out) {
                        return (pos, action);
                    }
                }
            }
        }
    }

    /// Reports the spool's answer for the message last handed out by [`Action::Queue`].
    pub fn queued(&mut self, id: QueueId, result: Result<(), ()>, out: &mut Vec<u8>) {
        match result {
            Ok(()) => replies::write_queued(id, out),
            Err(()) => replies::insufficient_storage().write_to(out),
        }
    }

    fn reply(&mut self, reply: Reply, out: &mut Vec<u8>) {
        reply.write_to(out);
    }

    /// Sends an error reply and counts it; past the limit the session closes.
    fn error(&mut self, reply: Reply, out: &mut Vec<u8>) {
        reply.write_to(out);
        self.errors += 1;
        if self.errors >= self.cfg.max_errors {
            replies::too_many_errors(&self.cfg.hostname).write_to(out);
            self.closing = true;
        }
    }

    fn command(
        &mut self,
        line: &[u8],
        env: &mut dyn SessionEnv,
        out: &mut Vec<u8>,
    ) -> Option<Action> {
        let utf8 = self.tx.as_ref().is_some_and(|t| t.params.smtputf8);
        let command = match parse_command(line, utf8) {
            Ok(c) => c,
            Err(e) => {
                let is_rcpt = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"RCPT");
                self.error(e.reply(is_rcpt), out);
                return None;
            }
        };
        match command {
            Command::Ehlo(name) => self.hello(name, true, out),
            Command::Helo(name) => self.hello(name, false, out),
            Command::Mail(path, params) => self.mail(path, params, env, out),
            Command::Rcpt(path, params) => self.rcpt(path, params, env, out),
            Command::Data => return self.data(env, out),
            Command::Bdat { size, last } => self.bdat(size, last, env),
            Command::Rset => {
                self.tx = None;
                self.reply(replies::ok(), out);
            }
            Command::Noop => self.reply(replies::ok(), out),
            Command::Quit => {
                replies::bye(&self.cfg.hostname).write_to(out);
                self.closing = true;
            }
            Command::Vrfy(_) => self.reply(replies::cannot_vrfy(), out),
            Command::Expn(_) => self.error(replies::not_implemented("EXPN"), out),
            Command::Help(_) => self.reply(replies::help(), out),
            Command::StartTls => return self.starttls(out),
            Command::Auth { mechanism, initial } => {
                return self.auth(&mechanism, initial.as_deref(), out);
            }
        }
        None
    }

    /// EHLO/HELO (RFC 5321 4.1.1.1): resets any transaction.
    fn hello(&mut self, name: String, extended: bool, out: &mut Vec<u8>) {
        self.tx = None;
        let host = &self.cfg.hostname;
        // Written in place, line by line (no strings: a lock-step client says EHLO on every
        // connection); the last line's separator becomes a space at the end.
        if extended {
            let mut last = out.len();
            let _ = writeln!(out, "250-{host} Hello {name} [{}]\r", self.client.ip());
            let mut line = |out: &mut Vec<u8>, text: std::fmt::Arguments<'_>| {
                last = out.len();
                let _ = writeln!(out, "250-{text}\r");
            };
            line(out, format_args!("PIPELINING"));
            line(out, format_args!("SIZE {}", self.cfg.max_message_size));
            for keyword in [
                "8BITMIME",
                "SMTPUTF8",
                "ENHANCEDSTATUSCODES",
                "DSN",
                "CHUNKING",
            ] {
                line(out, format_args!("{keyword}"));
            }
            if self.cfg.starttls && self.tls.is_none() {
                line(out, format_args!("STARTTLS"));
            }
            // RFC 8689 4.1: only where the parameter can be accepted, inside TLS.
            if self.tls.is_some() {
                line(out, format_args!("REQUIRETLS"));
            }
            if self.auth_offered() {
                line(out, format_args!("AUTH PLAIN LOGIN"));
            }
            out[last + 3] = b' ';
        } else {
            let _ = writeln!(out, "250 {host} Hello {name}\r");
        }
        self.helo = Some(Helo { name, extended });
    }

    fn mail(
        &mut self,
        path: crate::smtp::ReversePath,
        params: crate::smtp::params::MailParams,
        env: &mut dyn SessionEnv,
        out: &mut Vec<u8>,
    ) {
        let Some(helo) = &self.helo else {
            return self.error(replies::bad_sequence("send EHLO or HELO first"), out);
        };
        if self.tx.is_some() {
            return self.error(replies::bad_sequence("nested MAIL command"), out);
        }
        if self.cfg.mode != ListenerMode::Smtp && self.user.is_none() {
            return self.error(replies::auth_required(), out);
        }
        let has_params = params != Default::default();
        if has_params && !helo.extended {
            return self.error(
                replies::param_not_offered("ESMTP parameters after HELO are"),
                out,
            );
        }
        if params.body == Some(Body::BinaryMime) {
            return self.error(replies::param_not_offered("BODY=BINARYMIME is"), out);
        }
        if params.requiretls && self.tls.is_none() {
            return self.error(replies::requiretls_without_tls(), out);
        }
        if params
            .size
            .is_some_and(|size| size > self.cfg.max_message_size)
        {
            return self.error(replies::too_large(self.cfg.max_message_size), out);
        }
        let available = env.storage_available();
        if available == 0 || params.size.is_some_and(|s| s > available) {
            return self.reply(replies::insufficient_storage(), out);
        }
        self.tx = Some(Transaction::new(path, params));
        out.extend_from_slice(replies::SENDER_OK);
    }

    fn rcpt(
        &mut self,
        path: ForwardPath,
        params: crate::smtp::params::RcptParams,
        env: &mut dyn SessionEnv,
        out: &mut Vec<u8>,
    ) {
        let Some(tx) = &mut self.tx else {
            return self.error(replies::bad_sequence("need MAIL command"), out);
        };
        if tx.body_begun() {
            return self.error(replies::bad_sequence("RCPT after BDAT"), out);
        }
        let trusted = self.trusted || self.user.is_some();
        // Why the recipient is refused, and whether the refusal counts toward `max_errors`.
        let refusal = if tx.recipients.len() >= self.cfg.max_recipients {
            Some((replies::too_many_recipients(), false))
        } else {
            match env.report_rcpt(&path) {
                // A report address: accepted from anyone, never suppressed.
                Some(Ok(())) => None,
                Some(Err(reply)) => Some((reply, true)),
                None if !self.cfg.relay.allows(trusted, &path) => {
                    Some((replies::relay_denied(&path.to_string()), true))
                }
                // Only the mail of trusted or authenticated submitters is refused here: they
                // can act on the reply; the rest is dropped at delivery (docs/SUPPRESSION.md).
                None => match self.cfg.suppress_at_rcpt && trusted {
                    true => env
                        .suppressed(&path)
                        .map(|kind| (replies::suppressed(&path.to_string(), kind), false)),
                    false => None,
                },
            }
        };
        if let Some((reply, counts)) = refusal {
            self.refused.0 += 1;
            env.rejected(
                "rcpt",
                &tx.reverse_path.to_string(),
                &path.to_string(),
                &reply,
            );
            return match counts {
                true => self.error(reply, out),
                false => self.reply(reply, out),
            };
        }
        tx.recipients.push((path, params));
        out.extend_from_slice(replies::RECIPIENT_OK);
    }
}

#[path = "session_data.rs"]
mod data_end;
#[path = "session_secure.rs"]
mod secure;

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
