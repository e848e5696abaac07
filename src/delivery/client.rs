//! The outbound SMTP client: one connection to one receiving server, reused across messages.
//!
//! What it does: connects (optionally from a given source address), reads the greeting, says
//! EHLO (HELO if EHLO is refused), and sends transactions: with PIPELINING, MAIL, every RCPT and
//! DATA (or BDAT with the body, when CHUNKING is offered) go out in one write (RFC 2920, RFC
//! 3030); without CHUNKING the body is dot-stuffed while writing (RFC 5321 4.5.2). SIZE is
//! declared when offered, 8BITMIME and SMTPUTF8 are requested when the message needs them,
//! REQUIRETLS (RFC 8689) is passed on when the message has it and the server offers it.
//! Each command waits at most its RFC 5321 4.5.3.2 timeout for its whole reply (one deadline
//! however the reply trickles in); a reply over 64 KiB or 1000 lines is a protocol error.
//!
//! STARTTLS (RFC 3207) follows the destination's [`TlsPolicy`]: opportunistic (any certificate,
//! plaintext when not offered), required (any certificate, no plaintext) or verify (a valid
//! certificate for the host name); after the handshake the client says EHLO again.
//!
//! AUTH (RFC 4954, `client_auth.rs`): a next hop with credentials is authenticated after EHLO
//! inside TLS, once per connection; the credentials are never written on a plaintext stream.
//!
//! What it does not do: no decision about what a reply means for a recipient (that is
//! `classify`), no retries, no pooling, no DNS, no memory of failed handshakes (the queue keeps
//! the plaintext fallback).
//!
//! Invariants: replies are matched to commands in order; a connection that saw a protocol
//! error, a timeout or an I/O error is not reused (`usable()` turns false).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::pki_types::ServerName;

use super::phase::Phase;
use crate::auth::ClientCredentials;
use crate::read_buffer::ReadBuffer;
use crate::smtp::ehlo::Extensions;
use crate::smtp::params::{MailParams, RcptParams};
use crate::smtp::reply::{MAX_REPLY_BYTES, ReplyError, ReplyParser};
use crate::smtp::{EnhancedStatus, Reply};
use crate::tls::{ClientTls, Stream, TlsInfo, TlsPolicy};

/// What the connection asks of TLS.
#[derive(Clone, Copy)]
pub struct TlsRequest<'a> {
    /// The destination's policy.
    pub policy: TlsPolicy,
    /// The shard's client configurations.
    pub configs: &'a ClientTls,
    /// The host name the certificate must be valid for (`verify`), also sent as SNI.
    pub server_name: &'a str,
    /// A configuration that replaces the policy's (DANE: the host's TLSA records).
    pub config: Option<&'a std::sync::Arc<rustls::ClientConfig>>,
}

/// Client-side timeouts (RFC 5321 4.5.3.2).
#[derive(Clone, Copy, Debug)]
pub struct ClientTimeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Greeting (4.5.3.2.1: 5 minutes).
    pub greeting: Duration,
    /// EHLO, MAIL, RCPT, RSET, QUIT (4.5.3.2.2-3: 5 minutes).
    pub command: Duration,
    /// DATA initiation (4.5.3.2.4: 2 minutes).
    pub data_init: Duration,
    /// Each block of data written (4.5.3.2.5: 3 minutes).
    pub data_block: Duration,
    /// The reply after the end of data (4.5.3.2.6: 10 minutes).
    pub data_termination: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            data_init: Duration::from_secs(120),
            data_block: Duration::from_secs(180),
            data_termination: Duration::from_secs(600),
        }
    }
}

/// Why a connection or a transaction failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The server did not answer in time.
    #[error("timeout waiting for the reply to {phase}")]
    Timeout {
        /// What we were waiting for.
        phase: Phase,
    },
    /// Reading or writing failed, or the server closed the connection.
    #[error("{phase}: {source}")]
    Io {
        /// What we were doing.
        phase: Phase,
        /// The error.
        source: std::io::Error,
    },
    /// The server's reply could not be parsed.
    #[error("malformed reply to {phase}: {source}")]
    Protocol {
        /// What we were waiting for.
        phase: Phase,
        /// The parse error.
        source: ReplyError,
    },
    /// TLS was required and could not be had, or a handshake failed.
    #[error("TLS: {reason}")]
    Tls {
        /// What went wrong.
        reason: String,
        /// True when a handshake was attempted and failed (a plaintext retry may work).
        handshake: bool,
    },
    /// AUTH (RFC 4954) failed, or the credentials were withheld because TLS was not up.
    #[error("{reason}")]
    Auth {
        /// The status to defer with (class 4: a failed AUTH never bounces mail).
        status: EnhancedStatus,
        /// What happened, with the user name (never the password).
        reason: String,
    },
    /// The receiver's published policy (DANE, MTA-STS) forbids sending to this host now.
    #[error("{reason}")]
    Policy {
        /// The status to defer with.
        status: EnhancedStatus,
        /// What the policy required and what failed.
        reason: String,
    },
    /// The server refused us at the greeting or at EHLO/HELO.
    #[error("{phase} refused: {reply}")]
    Refused {
        /// Greeting or EHLO.
        phase: Phase,
        /// Its reply.
        reply: Reply,
    },
}

impl ClientError {
    /// True when no reply was received at all (network-level), as opposed to a server refusal.
    pub fn is_network(&self) -> bool {
        !matches!(self, ClientError::Refused { .. })
    }
}

#[path = "client_auth.rs"]
mod auth;
#[path = "client_transaction.rs"]
mod transaction;
pub use transaction::{Chained, Started};

/// What to send in one transaction.
pub struct Envelope<'a> {
    /// Reverse path without brackets ("" = null).
    pub reverse_path: &'a str,
    /// Forward paths without brackets, with their RCPT parameters (passed on when the server
    /// offers DSN).
    pub recipients: Vec<(&'a str, &'a RcptParams)>,
    /// The MAIL parameters as received; RET and ENVID are passed on when the server offers DSN
    /// (SIZE, BODY and SMTPUTF8 are the client's own).
    pub mail_params: &'a MailParams,
    /// The message (header + body) with CRLF line endings, not dot-stuffed.
    pub body: &'a [u8],
    /// The message contains 8-bit octets (request BODY=8BITMIME when offered).
    pub eight_bit: bool,
    /// The envelope or headers need SMTPUTF8.
    pub smtputf8: bool,
}

/// The replies of one transaction.
#[derive(Debug)]
pub struct TransactionReplies {
    /// Reply to MAIL.
    pub mail: Reply,
    /// One reply per recipient, in order.
    pub rcpts: Vec<Reply>,
    /// Reply to the end of data (or BDAT LAST), if the data phase happened.
    pub data: Option<Reply>,
}

impl TransactionReplies {
    /// The reply that decides recipient `i`'s fate: MAIL's if it failed, else its RCPT reply
    /// if that failed, else the data reply.
    pub fn for_recipient(&self, i: usize) -> &Reply {
        if !self.mail.is_positive_completion() {
            return &self.mail;
        }
        let rcpt = &self.rcpts[i];
        if !rcpt.is_positive_completion() {
            return rcpt;
        }
        self.data.as_ref().unwrap_or(rcpt)
    }
}

/// One open client connection.
pub struct Connection {
    /// Always present, except for the instant of the TLS upgrade.
    stream: Option<Stream>,
    peer: SocketAddr,
    buf: ReadBuffer,
    parser: ReplyParser,
    ext: Extensions,
    timeouts: ClientTimeouts,
    out: Vec<u8>,
    transactions: u32,
    usable: bool,
    greeting: String,
    tls: Option<TlsInfo>,
    /// The chain the server presented in the TLS handshake.
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The user name AUTH succeeded with.
    auth: Option<String>,
}

impl Connection {
    /// Connects, reads the greeting, introduces itself with `helo_name`, starts TLS per
    /// policy and, with `auth`, authenticates (inside TLS only).
    pub async fn open(
        addr: SocketAddr,
        source: Option<IpAddr>,
        helo_name: &str,
        timeouts: ClientTimeouts,
        tls: TlsRequest<'_>,
        auth: Option<&ClientCredentials>,
    ) -> Result<Connection, ClientError> {
        let connect = async {
            match source {
                None => TcpStream::connect(addr)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string())),
                Some(ip) => connect_from(addr, ip).await,
            }
        };
        let stream =
            match glommio::timer::timeout(timeouts.connect, async { Ok(connect.await) }).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(ClientError::Connect {
                        addr,
                        source: std::io::Error::other(e.to_string()),
                    });
                }
                Err(_) => {
                    return Err(ClientError::Timeout {
                        phase: Phase::Connect,
                    });
                }
            };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(timeouts.data_block));
        let mut c = Connection {
            stream: Some(Stream::Plain(stream)),
            peer: addr,
            buf: ReadBuffer::new(16 * 1024),
            parser: ReplyParser::new(),
            ext: Extensions::default(),
            timeouts,
            out: Vec::with_capacity(8 * 1024),
            transactions: 0,
            usable: true,
            greeting: String::new(),
            tls: None,
            certs: Vec::new(),
            auth: None,
        };
        let greeting = c.read_reply(Phase::Greeting, timeouts.greeting).await?;
        if greeting.code != 220 {
            c.usable = false;
            return Err(ClientError::Refused {
                phase: Phase::Greeting,
                reply: greeting,
            });
        }
        c.greeting = greeting.text();
        c.hello(helo_name).await?;
        if tls.policy != TlsPolicy::None {
            let started = c.starttls(helo_name, tls).await;
            started.map_err(|e| auth::unless_tls(e, auth))?;
        }
        if let Some(credentials) = auth
            && let Err(e) = c.authenticate(credentials).await
        {
            c.quit().await;
            return Err(e);
        }
        Ok(c)
    }

    /// STARTTLS per policy, then EHLO again inside TLS.
    async fn starttls(&mut self, helo_name: &str, tls: TlsRequest<'_>) -> Result<(), ClientError> {
        let strict = tls.policy != TlsPolicy::Opportunistic;
        let refuse = |reason: String| ClientError::Tls {
            reason,
            handshake: false,
        };
        if !self.ext.starttls {
            if strict {
                self.usable = false;
                return Err(refuse("STARTTLS not offered".to_owned()));
            }
            return Ok(());
        }
        self.out.extend_from_slice(b"STARTTLS\r\n");
        self.flush(Phase::StartTls).await?;
        let reply = self
            .read_reply(Phase::StartTls, self.timeouts.command)
            .await?;
        if reply.code != 220 {
            if strict {
                self.usable = false;
                return Err(refuse(format!("STARTTLS refused: {reply}")));
            }
            return Ok(());
        }
        // Anything the server sent after its 220 is not trusted (RFC 3207 4.2).
        self.buf.clear();
        self.parser.reset();
        let config = match (tls.config, tls.policy) {
            (Some(c), _) => c.clone(),
            (None, TlsPolicy::Verify) => tls.configs.verified.clone(),
            _ => tls.configs.any.clone(),
        };
        let name = match ServerName::try_from(tls.server_name.to_owned()) {
            Ok(n) => n,
            Err(_) => ServerName::IpAddress(self.peer.ip().into()),
        };
        let plain = self.stream.take().expect("stream present");
        plain
            .tcp()
            .set_read_timeout(Some(self.timeouts.command))
            .map_err(|source| ClientError::Io {
                phase: Phase::TlsHandshake,
                source: std::io::Error::other(source.to_string()),
            })?;
        match plain.connect_tls(config, name).await {
            Ok(stream) => {
                self.tls = stream.tls();
                self.certs = stream.peer_certificates();
                self.stream = Some(stream);
            }
            Err(e) => {
                self.usable = false;
                return Err(ClientError::Tls {
                    reason: format!("handshake failed: {e}"),
                    handshake: true,
                });
            }
        }
        self.hello(helo_name).await
    }

    /// EHLO, or HELO when EHLO is refused; records the extensions.
    async fn hello(&mut self, helo_name: &str) -> Result<(), ClientError> {
        let c = self;
        let timeouts = c.timeouts;
        c.out
            .extend_from_slice(format!("EHLO {helo_name}\r\n").as_bytes());
        c.flush(Phase::Ehlo).await?;
        let ehlo = c.read_reply(Phase::Ehlo, timeouts.command).await?;
        if ehlo.is_positive_completion() {
            c.ext = Extensions::from_reply(&ehlo);
        } else {
            c.ext = Extensions::default();
            c.out
                .extend_from_slice(format!("HELO {helo_name}\r\n").as_bytes());
            c.flush(Phase::Helo).await?;
            let helo = c.read_reply(Phase::Helo, timeouts.command).await?;
            if !helo.is_positive_completion() {
                c.usable = false;
                return Err(ClientError::Refused {
                    phase: Phase::Ehlo,
                    reply: helo,
                });
            }
        }
        Ok(())
    }

    /// What TLS negotiated, if the connection is encrypted.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The certificate chain the server presented (empty without TLS).
    pub fn peer_certificates(&self) -> &[rustls::pki_types::CertificateDer<'static>] {
        &self.certs
    }

    /// The user name the connection authenticated as, if it did.
    pub fn authenticated(&self) -> Option<&str> {
        self.auth.as_deref()
    }

    /// The server's extensions.
    pub fn extensions(&self) -> &Extensions {
        &self.ext
    }

    /// The remote address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Transactions completed on this connection.
    pub fn transactions(&self) -> u32 {
        self.transactions
    }

    /// False once the connection must not be used again.
    pub fn usable(&self) -> bool {
        self.usable
    }

    /// RSET (RFC 5321 4.1.1.5).
    pub async fn rset(&mut self) -> Result<(), ClientError> {
        self.out.extend_from_slice(b"RSET\r\n");
        self.flush(Phase::Rset).await?;
        let r = self.read_reply(Phase::Rset, self.timeouts.command).await?;
        if !r.is_positive_completion() {
            self.usable = false;
        }
        Ok(())
    }

    /// NOOP, to check that a pooled connection is still alive.
    pub async fn noop(&mut self) -> Result<(), ClientError> {
        self.out.extend_from_slice(b"NOOP\r\n");
        self.flush(Phase::Noop).await?;
        let r = self.read_reply(Phase::Noop, self.timeouts.command).await?;
        if r.is_positive_completion() {
            Ok(())
        } else {
            self.usable = false;
            Err(ClientError::Refused {
                phase: Phase::Noop,
                reply: r,
            })
        }
    }

    /// QUIT and close, ignoring errors.
    pub async fn quit(mut self) {
        if self.usable {
            self.out.extend_from_slice(b"QUIT\r\n");
            if self.flush(Phase::Quit).await.is_ok() {
                let _ = self.read_reply(Phase::Quit, Duration::from_secs(5)).await;
            }
        }
        if let Some(stream) = &self.stream {
            let _ = stream.tcp().shutdown(std::net::Shutdown::Both).await;
        }
    }

    async fn flush(&mut self, phase: Phase) -> Result<(), ClientError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let stream = self.stream.as_mut().expect("stream present");
        // The socket's write timeout (set at connect) bounds each block written.
        let r = async {
            stream.write_all(&self.out).await?;
            stream.flush().await
        }
        .await;
        self.out.clear();
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                self.usable = false;
                Err(ClientError::Timeout { phase })
            }
            Err(source) => {
                self.usable = false;
                Err(ClientError::Io { phase, source })
            }
        }
    }

    /// Reads one reply, all of it within `limit` from now (one deadline for the whole reply,
    /// not per read: a receiver that trickles octets still times out). The buffer never grows
    /// past one reply's cap; an over-cap reply is a protocol error.
    async fn read_reply(&mut self, phase: Phase, limit: Duration) -> Result<Reply, ClientError> {
        let started = Instant::now();
        loop {
            match self.parser.parse(self.buf.data()) {
                Ok(Some((reply, used))) => {
                    self.buf.consume(used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(source) => {
                    self.usable = false;
                    return Err(ClientError::Protocol { phase, source });
                }
            }
            self.buf.compact();
            if self.buf.is_full() {
                // The parser refuses a reply before it fills MAX_REPLY_BYTES + 1 octets.
                if self.buf.capacity() > MAX_REPLY_BYTES {
                    self.usable = false;
                    return Err(ClientError::Protocol {
                        phase,
                        source: ReplyError::TooLong,
                    });
                }
                let grown = self
                    .buf
                    .capacity()
                    .saturating_mul(2)
                    .min(MAX_REPLY_BYTES + 1);
                self.buf.grow(grown);
            }
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                self.usable = false;
                return Err(ClientError::Timeout { phase });
            }
            let stream = self.stream.as_mut().expect("stream present");
            stream
                .tcp()
                .set_read_timeout(Some(left))
                .map_err(|e| ClientError::Io {
                    phase,
                    source: std::io::Error::other(e.to_string()),
                })?;
            match stream.read(self.buf.spare()).await {
                Ok(0) => {
                    self.usable = false;
                    return Err(ClientError::Io {
                        phase,
                        source: std::io::ErrorKind::UnexpectedEof.into(),
                    });
                }
                Ok(n) => self.buf.filled(n),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    self.usable = false;
                    return Err(ClientError::Timeout { phase });
                }
                Err(source) => {
                    self.usable = false;
                    return Err(ClientError::Io { phase, source });
                }
            }
        }
    }

    /// The greeting text (for logs).
    pub fn greeting(&self) -> &str {
        &self.greeting
    }
}

/// Connects from a given local address (per-route source address).
async fn connect_from(addr: SocketAddr, source: IpAddr) -> std::io::Result<TcpStream> {
    // glommio has no bind-before-connect; bind and connect a std socket (non-blocking connect
    // on loopback/LAN completes quickly), then hand the fd to glommio.
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(source, 0).into())?;
    sock.set_nonblocking(true)?;
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => loop {
            if let Some(e) = sock.take_error()? {
                return Err(e);
            }
            if sock.peer_addr().is_ok() {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(2)).await;
        },
        Err(e) => return Err(e),
    }
    sock.set_nonblocking(false)?;
    let std_stream: std::net::TcpStream = sock.into();
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: the fd is a connected TCP socket we own; ownership moves to the glommio stream.
    Ok(unsafe { TcpStream::from_raw_fd(std_stream.into_raw_fd()) })
}

/// An enhanced status to use when the server gave none: by reply class (RFC 3463).
pub fn default_status(reply: &Reply) -> EnhancedStatus {
    reply.status.unwrap_or(match reply.code / 100 {
        2 => EnhancedStatus::new(2, 0, 0),
        4 => EnhancedStatus::new(4, 0, 0),
        _ => EnhancedStatus::new(5, 0, 0),
    })
}
