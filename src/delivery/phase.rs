//! Where in an outbound SMTP exchange something happened: one name per command or wait.
//!
//! What it does: names the step of a connection or transaction that a client error belongs to,
//! for the log text and for the decisions in `classify` (a failure before the server accepted
//! anything of a transaction is not an attempt).
//!
//! What it does not do: no protocol, no decision of its own.
//!
//! Invariants: the text of each phase is what the event log has always shown for it.

use std::fmt;

/// A step of an outbound connection or transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The TCP connect.
    Connect,
    /// The server's greeting.
    Greeting,
    /// EHLO (and the HELO fallback is reported as EHLO when both are refused).
    Ehlo,
    /// HELO, after EHLO was refused.
    Helo,
    /// STARTTLS.
    StartTls,
    /// The TLS handshake after STARTTLS.
    TlsHandshake,
    /// AUTH (RFC 4954) and its SASL exchange.
    Auth,
    /// MAIL FROM: before the server accepted anything of the transaction.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// DATA.
    Data,
    /// BDAT with the whole message.
    Bdat,
    /// Writing the message content.
    MessageData,
    /// The reply to the end of the content.
    EndOfData,
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// QUIT.
    Quit,
}

impl Phase {
    /// The phase as the log shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Greeting => "greeting",
            Phase::Ehlo => "EHLO",
            Phase::Helo => "HELO",
            Phase::StartTls => "STARTTLS",
            Phase::TlsHandshake => "TLS handshake",
            Phase::Auth => "AUTH",
            Phase::Mail => "MAIL",
            Phase::Rcpt => "RCPT",
            Phase::Data => "DATA",
            Phase::Bdat => "BDAT",
            Phase::MessageData => "message data",
            Phase::EndOfData => "end of data",
            Phase::Rset => "RSET",
            Phase::Noop => "NOOP",
            Phase::Quit => "QUIT",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
