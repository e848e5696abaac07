//! One mail transaction on an open client connection, in two steps so that transactions can
//! be chained.
//!
//! What it does: [`Connection::start`] writes the envelope (MAIL, every RCPT, then DATA, or
//! BDAT with the body under CHUNKING) and reads its replies; when DATA was answered `354`,
//! [`Connection::finish_data`] writes the content and the end-of-data marker, and, when the
//! server offers PIPELINING, the next transaction's MAIL, RCPTs and DATA in the same write.
//! RFC 2920 3.1 allows exactly that: message content may be the first "command" of a group,
//! and DATA must be its last. One write and one read then carry a message, where lock-step
//! end-of-data needs two of each.
//!
//! What it does not do: no decision about what a reply means for a recipient, no retries.
//!
//! Invariants: replies are read in the order the commands were written; a transaction ended
//! by the end-of-data reply needs no RSET (RFC 5321 4.1.1.4: the reply ends it either way),
//! while one refused before its data phase is reset before the connection is used again;
//! any I/O error, timeout or malformed reply makes the connection unusable.

use super::{ClientError, Connection, Envelope, TransactionReplies};
use crate::delivery::phase::Phase;
use crate::smtp::Reply;
use crate::smtp::data::dot_stuff;
use crate::smtp::params::RcptParams;

/// How far a transaction got when its envelope was sent.
#[derive(Debug)]
pub enum Started {
    /// DATA was answered `354`: the content goes out with [`Connection::finish_data`].
    Data {
        /// Reply to MAIL.
        mail: Reply,
        /// One reply per recipient, in order.
        rcpts: Vec<Reply>,
    },
    /// The transaction is over: refused before its data phase, or sent whole with BDAT.
    Done(TransactionReplies),
}

impl Started {
    /// True when at least one recipient was accepted (the content is worth sending).
    pub fn any_accepted(mail: &Reply, rcpts: &[Reply]) -> bool {
        mail.is_positive_completion() && rcpts.iter().any(Reply::is_positive_completion)
    }
}

/// What became of the transaction chained behind a message's content.
#[derive(Debug)]
pub enum Chained {
    /// Nothing was chained: the server does not pipeline, uses BDAT, or none was given.
    NotSent,
    /// The next transaction's envelope went out in the same write; this is its outcome.
    Sent(Result<Started, ClientError>),
}

impl Connection {
    /// True when [`finish_data`](Connection::finish_data) can carry the next envelope.
    pub fn chains(&self) -> bool {
        self.ext.pipelining && !self.ext.chunking
    }

    /// Sends one whole transaction and returns every reply.
    pub async fn send(&mut self, env: &Envelope<'_>) -> Result<TransactionReplies, ClientError> {
        match self.start(env).await? {
            Started::Done(replies) => Ok(replies),
            Started::Data { mail, rcpts } => {
                let any = Started::any_accepted(&mail, &rcpts);
                let (data, _) = self.finish_data(env.body, any, None).await;
                Ok(TransactionReplies {
                    mail,
                    rcpts,
                    data: Some(data?),
                })
            }
        }
    }

    /// Writes a transaction's envelope and reads its replies (the first step of a
    /// transaction). Counts the transaction.
    pub async fn start(&mut self, env: &Envelope<'_>) -> Result<Started, ClientError> {
        self.transactions += 1;
        let result = self.start_inner(env).await;
        if result.is_err() {
            self.usable = false;
        }
        result
    }

    async fn start_inner(&mut self, env: &Envelope<'_>) -> Result<Started, ClientError> {
        if self.ext.pipelining {
            self.write_envelope(env);
            self.flush(Phase::Mail).await?;
            return self.envelope_replies(env).await;
        }
        // Without PIPELINING each command waits for its reply (RFC 5321 lock-step).
        self.write_mail(env);
        self.flush(Phase::Mail).await?;
        let mail = self.read_reply(Phase::Mail, self.timeouts.command).await?;
        if !mail.is_positive_completion() {
            let rcpts = vec![mail.clone(); env.recipients.len()];
            self.rset_after_failure().await;
            return Ok(Started::Done(TransactionReplies {
                mail,
                rcpts,
                data: None,
            }));
        }
        let mut rcpts = Vec::with_capacity(env.recipients.len());
        for (addr, params) in &env.recipients {
            self.write_rcpt(addr, params);
            self.flush(Phase::Rcpt).await?;
            rcpts.push(self.read_reply(Phase::Rcpt, self.timeouts.command).await?);
        }
        if !rcpts.iter().any(Reply::is_positive_completion) {
            self.rset_after_failure().await;
            return Ok(Started::Done(TransactionReplies {
                mail,
                rcpts,
                data: None,
            }));
        }
        if self.ext.chunking {
            self.write_bdat(env.body);
            self.flush(Phase::Bdat).await?;
            let data = self
                .read_reply(Phase::Bdat, self.timeouts.data_termination)
                .await?;
            return Ok(self.done(mail, rcpts, data).await);
        }
        self.out.extend_from_slice(b"DATA\r\n");
        self.flush(Phase::Data).await?;
        let go = self
            .read_reply(Phase::Data, self.timeouts.data_init)
            .await?;
        Ok(self.data_phase(mail, rcpts, go).await)
    }

    /// Writes the content of the transaction whose DATA was answered `354` (only the
    /// end-of-data marker when no recipient was accepted), with `next`'s envelope behind it
    /// when the server pipelines. Returns the end-of-data reply and what became of `next`.
    ///
    /// When the end-of-data reply is lost (I/O error, timeout), a chained transaction gets an
    /// I/O error at MAIL: the server accepted nothing of it.
    pub async fn finish_data(
        &mut self,
        body: &[u8],
        any_accepted: bool,
        next: Option<&Envelope<'_>>,
    ) -> (Result<Reply, ClientError>, Chained) {
        if any_accepted {
            dot_stuff(body, &mut self.out);
        } else {
            // RFC 2920 3.1: the server should have refused DATA; end an empty message.
            self.out.extend_from_slice(b".\r\n");
        }
        let next = next.filter(|_| self.chains());
        if let Some(env) = next {
            self.transactions += 1;
            self.write_envelope(env);
        }
        let data = match self.flush(Phase::MessageData).await {
            Ok(()) => {
                self.read_reply(Phase::EndOfData, self.timeouts.data_termination)
                    .await
            }
            Err(e) => Err(e),
        };
        let data = match data {
            Ok(r) => r,
            Err(e) => {
                self.usable = false;
                let chained = match next {
                    Some(_) => Chained::Sent(Err(lost())),
                    None => Chained::NotSent,
                };
                return (Err(e), chained);
            }
        };
        let Some(env) = next else {
            if !data.is_positive_completion() {
                self.rset_after_failure().await;
            }
            return (Ok(data), Chained::NotSent);
        };
        let started = self.envelope_replies(env).await;
        if started.is_err() {
            self.usable = false;
        }
        (Ok(data), Chained::Sent(started))
    }

    /// Reads the replies to a pipelined MAIL, RCPTs and DATA (or BDAT LAST).
    async fn envelope_replies(&mut self, env: &Envelope<'_>) -> Result<Started, ClientError> {
        let mail = self.read_reply(Phase::Mail, self.timeouts.command).await?;
        let mut rcpts = Vec::with_capacity(env.recipients.len());
        for _ in 0..env.recipients.len() {
            rcpts.push(self.read_reply(Phase::Rcpt, self.timeouts.command).await?);
        }
        if self.ext.chunking {
            let data = self
                .read_reply(Phase::Bdat, self.timeouts.data_termination)
                .await?;
            return Ok(self.done(mail, rcpts, data).await);
        }
        let go = self
            .read_reply(Phase::Data, self.timeouts.data_init)
            .await?;
        Ok(self.data_phase(mail, rcpts, go).await)
    }

    /// After the reply to DATA: the data phase, or the end of a refused transaction.
    async fn data_phase(&mut self, mail: Reply, rcpts: Vec<Reply>, go: Reply) -> Started {
        if go.code == 354 {
            Started::Data { mail, rcpts }
        } else {
            self.done(mail, rcpts, go).await
        }
    }

    /// A transaction over with `data` as its last reply; reset when it failed.
    async fn done(&mut self, mail: Reply, rcpts: Vec<Reply>, data: Reply) -> Started {
        if !data.is_positive_completion() {
            self.rset_after_failure().await;
        }
        Started::Done(TransactionReplies {
            mail,
            rcpts,
            data: Some(data),
        })
    }

    /// MAIL, every RCPT, then DATA (or BDAT LAST with the body), for one pipelined group.
    fn write_envelope(&mut self, env: &Envelope<'_>) {
        self.write_mail(env);
        for (addr, params) in &env.recipients {
            self.write_rcpt(addr, params);
        }
        if self.ext.chunking {
            self.write_bdat(env.body);
        } else {
            self.out.extend_from_slice(b"DATA\r\n");
        }
    }

    fn write_rcpt(&mut self, addr: &str, params: &RcptParams) {
        self.out.extend_from_slice(b"RCPT TO:<");
        self.out.extend_from_slice(addr.as_bytes());
        self.out.push(b'>');
        if self.ext.dsn {
            params.write_wire(&mut self.out);
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// BDAT with the whole body as its only chunk (RFC 3030: sent as stored, no stuffing).
    fn write_bdat(&mut self, body: &[u8]) {
        use std::io::Write;
        let _ = write!(self.out, "BDAT {} LAST\r\n", body.len());
        self.out.extend_from_slice(body);
    }

    fn write_mail(&mut self, env: &Envelope<'_>) {
        use std::io::Write;
        self.out.extend_from_slice(b"MAIL FROM:<");
        self.out.extend_from_slice(env.reverse_path.as_bytes());
        self.out.push(b'>');
        if self.ext.size.is_some() {
            let _ = write!(self.out, " SIZE={}", env.body.len());
        }
        if env.eight_bit && self.ext.eight_bit_mime {
            self.out.extend_from_slice(b" BODY=8BITMIME");
        }
        if env.smtputf8 && self.ext.smtputf8 {
            self.out.extend_from_slice(b" SMTPUTF8");
        }
        if self.ext.dsn {
            env.mail_params.write_dsn_wire(&mut self.out);
        }
        if env.mail_params.requiretls && self.ext.requiretls {
            self.out.extend_from_slice(b" REQUIRETLS");
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// After a failed transaction the server's state is reset so the connection can be reused.
    async fn rset_after_failure(&mut self) {
        if !self.usable || self.rset().await.is_err() {
            self.usable = false;
        }
    }
}

/// The error of a chained transaction whose connection failed before its replies came.
fn lost() -> ClientError {
    ClientError::Io {
        phase: Phase::Mail,
        source: std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "connection lost before the reply",
        ),
    }
}
