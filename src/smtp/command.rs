//! SMTP commands (RFC 5321 4.1.1, BDAT RFC 3030, STARTTLS RFC 3207, AUTH RFC 4954).
//!
//! What it does: turns one command line (without CRLF) into a `Command`, or into a
//! `CommandError` that maps to exactly one reply ([`CommandError::reply`]); formats commands for
//! the client.
//!
//! What it does not do: no sequencing (which command may come when is the session's business),
//! no policy.
//!
//! Invariants: verbs and the `FROM:`/`TO:` keywords are case-insensitive; NUL and other control
//! characters (except HTAB) anywhere in the line are refused before anything else is looked at;
//! non-ASCII addresses are accepted only when the transaction uses SMTPUTF8 (RFC 6531 3.4).

use super::address::{self, AddressError, ForwardPath, ReversePath};
use super::params::{self, MailParams, ParamError, RcptParams};
use super::reply::{EnhancedStatus, Reply};

/// One parsed command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// EHLO with the client's domain or address literal.
    Ehlo(String),
    /// HELO.
    Helo(String),
    /// MAIL FROM.
    Mail(ReversePath, MailParams),
    /// RCPT TO.
    Rcpt(ForwardPath, RcptParams),
    /// DATA.
    Data,
    /// BDAT with its chunk size.
    Bdat {
        /// Octets that follow the command line.
        size: u64,
        /// LAST was given.
        last: bool,
    },
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// QUIT.
    Quit,
    /// VRFY.
    Vrfy(String),
    /// EXPN.
    Expn(String),
    /// HELP with an optional topic.
    Help(Option<String>),
    /// STARTTLS.
    StartTls,
    /// AUTH.
    Auth {
        /// The SASL mechanism.
        mechanism: String,
        /// The initial response, if given.
        initial: Option<String>,
    },
}

/// Why a command line was refused; each variant is one reply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    /// Not a command we know: `500 5.5.1`.
    #[error("command unrecognized")]
    Unrecognized,
    /// NUL or other control characters: `500 5.5.2`.
    #[error("control characters in command")]
    ControlCharacter,
    /// Bad arguments: `501 5.5.4`.
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// Bad path: `501 5.1.7` (MAIL) or `501 5.1.3` (RCPT).
    #[error(transparent)]
    Address(AddressError),
    /// Bad parameter: `555 5.5.4`.
    #[error(transparent)]
    Param(ParamError),
    /// Non-ASCII address without SMTPUTF8: `553 5.6.7`.
    #[error("non-ASCII address without SMTPUTF8")]
    Utf8Required,
}

impl CommandError {
    /// The reply for this error.
    pub fn reply(&self, is_rcpt: bool) -> Reply {
        let st = EnhancedStatus::new;
        match self {
            CommandError::Unrecognized => Reply::new(500, st(5, 5, 1), "Command unrecognized"),
            CommandError::ControlCharacter => Reply::new(
                500,
                st(5, 5, 2),
                "Syntax error: control characters in command",
            ),
            CommandError::Syntax(why) => {
                Reply::new(501, st(5, 5, 4), format!("Syntax error: {why}"))
            }
            CommandError::Address(e) if is_rcpt => Reply::new(
                501,
                st(5, 1, 3),
                format!("Bad recipient address syntax: {e}"),
            ),
            CommandError::Address(e) => {
                Reply::new(501, st(5, 1, 7), format!("Bad sender address syntax: {e}"))
            }
            CommandError::Param(e) => {
                Reply::new(555, st(5, 5, 4), format!("Parameter not accepted: {e}"))
            }
            CommandError::Utf8Required => Reply::new(
                553,
                st(5, 6, 7),
                "Non-ASCII address requires SMTPUTF8 (RFC 6531)",
            ),
        }
    }
}

fn strip_keyword<'a>(arg: &'a [u8], keyword: &[u8]) -> Option<&'a [u8]> {
    if arg.len() >= keyword.len() && arg[..keyword.len()].eq_ignore_ascii_case(keyword) {
        let rest = &arg[keyword.len()..];
        // Tolerate one space after the colon, as most MTAs do.
        Some(rest.strip_prefix(b" ").unwrap_or(rest))
    } else {
        None
    }
}

fn printable(s: &[u8]) -> Option<String> {
    (!s.is_empty() && s.iter().all(|&b| (33..=126).contains(&b)))
        .then(|| String::from_utf8_lossy(s).into_owned())
}

fn no_args(arg: &[u8], c: Command) -> Result<Command, CommandError> {
    if arg.iter().all(|&b| b == b' ') {
        Ok(c)
    } else {
        Err(CommandError::Syntax("this command takes no arguments"))
    }
}

/// Parses one command line (without its CRLF). `mail_smtputf8`: the open transaction's MAIL
/// carried SMTPUTF8, so RCPT may name non-ASCII addresses.
pub fn parse_command(line: &[u8], mail_smtputf8: bool) -> Result<Command, CommandError> {
    if line.iter().any(|&b| (b < 32 && b != b'\t') || b == 127) {
        return Err(CommandError::ControlCharacter);
    }
    let (verb, arg) = match memchr::memchr(b' ', line) {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    let text = |a: &[u8]| String::from_utf8_lossy(a).trim().to_owned();
    // Upper-cased on the stack: no verb we know is longer than STARTTLS.
    let mut upper = [0u8; 8];
    let verb = match upper.get_mut(..verb.len()) {
        Some(dst) => {
            dst.copy_from_slice(verb);
            dst.make_ascii_uppercase();
            &*dst
        }
        None => return Err(CommandError::Unrecognized),
    };
    match verb {
        b"EHLO" | b"HELO" => {
            let name = arg
                .split(|&b| b == b' ')
                .find(|s| !s.is_empty())
                .unwrap_or(b"");
            let name = printable(name).ok_or(CommandError::Syntax("EHLO/HELO needs a domain"))?;
            Ok(if verb == b"EHLO" {
                Command::Ehlo(name)
            } else {
                Command::Helo(name)
            })
        }
        b"MAIL" => {
            let rest = strip_keyword(arg, b"FROM:")
                .ok_or(CommandError::Syntax("use MAIL FROM:<address>"))?;
            let (path, params) =
                address::parse_reverse_path(rest, true).map_err(CommandError::Address)?;
            let params = params::parse_mail_params(params).map_err(CommandError::Param)?;
            if !params.smtputf8 && matches!(&path, ReversePath::Mailbox(m) if m.is_utf8()) {
                return Err(CommandError::Utf8Required);
            }
            Ok(Command::Mail(path, params))
        }
        b"RCPT" => {
            let rest =
                strip_keyword(arg, b"TO:").ok_or(CommandError::Syntax("use RCPT TO:<address>"))?;
            let (path, params) =
                address::parse_forward_path(rest, true).map_err(CommandError::Address)?;
            if !mail_smtputf8 && matches!(&path, ForwardPath::Mailbox(m) if m.is_utf8()) {
                return Err(CommandError::Utf8Required);
            }
            let params = params::parse_rcpt_params(params).map_err(CommandError::Param)?;
            Ok(Command::Rcpt(path, params))
        }
        b"DATA" => no_args(arg, Command::Data),
        b"RSET" => no_args(arg, Command::Rset),
        b"QUIT" => no_args(arg, Command::Quit),
        b"STARTTLS" => no_args(arg, Command::StartTls),
        b"NOOP" => Ok(Command::Noop),
        b"HELP" => {
            let t = text(arg);
            Ok(Command::Help((!t.is_empty()).then_some(t)))
        }
        b"VRFY" | b"EXPN" => {
            let t = text(arg);
            if t.is_empty() {
                return Err(CommandError::Syntax("argument required"));
            }
            Ok(if verb == b"VRFY" {
                Command::Vrfy(t)
            } else {
                Command::Expn(t)
            })
        }
        b"BDAT" => {
            let mut parts = arg.split(|&b| b == b' ').filter(|s| !s.is_empty());
            let size = parts
                .next()
                .ok_or(CommandError::Syntax("BDAT needs a chunk size"))?;
            if size.len() > 18 || !size.iter().all(u8::is_ascii_digit) {
                return Err(CommandError::Syntax(
                    "BDAT chunk size must be a decimal number",
                ));
            }
            let size: u64 = String::from_utf8_lossy(size)
                .parse()
                .map_err(|_| CommandError::Syntax("bad chunk size"))?;
            let last = match parts.next() {
                None => false,
                Some(l) if l.eq_ignore_ascii_case(b"LAST") => true,
                Some(_) => return Err(CommandError::Syntax("use BDAT <size> [LAST]")),
            };
            if parts.next().is_some() {
                return Err(CommandError::Syntax("use BDAT <size> [LAST]"));
            }
            Ok(Command::Bdat { size, last })
        }
        b"AUTH" => {
            let mut parts = arg.split(|&b| b == b' ').filter(|s| !s.is_empty());
            let mechanism = parts
                .next()
                .and_then(printable)
                .ok_or(CommandError::Syntax("AUTH needs a mechanism"))?
                .to_ascii_uppercase();
            let initial = parts
                .next()
                .map(|s| String::from_utf8_lossy(s).into_owned());
            Ok(Command::Auth { mechanism, initial })
        }
        _ => Err(CommandError::Unrecognized),
    }
}

impl Command {
    /// Appends the command line with CRLF (client side).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let line = match self {
            Command::Ehlo(d) => format!("EHLO {d}"),
            Command::Helo(d) => format!("HELO {d}"),
            Command::Mail(p, params) => join(format!("MAIL FROM:{p}"), params.to_wire()),
            Command::Rcpt(p, params) => join(format!("RCPT TO:{p}"), params.to_wire()),
            Command::Data => "DATA".into(),
            Command::Bdat { size, last: true } => format!("BDAT {size} LAST"),
            Command::Bdat { size, last: false } => format!("BDAT {size}"),
            Command::Rset => "RSET".into(),
            Command::Noop => "NOOP".into(),
            Command::Quit => "QUIT".into(),
            Command::Vrfy(s) => format!("VRFY {s}"),
            Command::Expn(s) => format!("EXPN {s}"),
            Command::Help(None) => "HELP".into(),
            Command::Help(Some(s)) => format!("HELP {s}"),
            Command::StartTls => "STARTTLS".into(),
            Command::Auth {
                mechanism,
                initial: None,
            } => format!("AUTH {mechanism}"),
            Command::Auth {
                mechanism,
                initial: Some(i),
            } => format!("AUTH {mechanism} {i}"),
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn join(a: String, b: String) -> String {
    if b.is_empty() { a } else { format!("{a} {b}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str, utf8: bool) -> u16 {
        match parse_command(line.as_bytes(), utf8) {
            Ok(_) => 0,
            Err(e) => e.reply(line.to_ascii_uppercase().starts_with("RCPT")).code,
        }
    }

    #[test]
    fn table() {
        let cases: &[(&str, u16)] = &[
            ("EHLO client.example", 0),
            ("ehlo [192.0.2.1]", 0),
            ("EHLO", 501),
            ("HELO x", 0),
            ("MAIL FROM:<a@b.test>", 0),
            ("mail from: <a@b.test> SIZE=10", 0),
            ("MAIL FROM:<>", 0),
            ("MAIL FROM:a@b.test", 501),
            ("MAIL TO:<a@b.test>", 501),
            ("MAIL FROM:<a@b.test> FOO=1", 555),
            ("MAIL FROM:<jö@b.test>", 553),
            ("MAIL FROM:<jö@b.test> SMTPUTF8", 0),
            ("RCPT TO:<u@x.test> NOTIFY=NEVER", 0),
            ("RCPT TO:<u@@x.test>", 501),
            ("RCPT TO:<ü@x.test>", 553),
            ("RCPT TO:<Postmaster>", 0),
            ("DATA", 0),
            ("DATA x", 501),
            ("BDAT 100", 0),
            ("BDAT 0 LAST", 0),
            ("BDAT x", 501),
            ("BDAT", 501),
            ("BDAT 1 LAST x", 501),
            ("RSET", 0),
            ("NOOP anything", 0),
            ("QUIT", 0),
            ("VRFY u", 0),
            ("VRFY", 501),
            ("HELP", 0),
            ("STARTTLS", 0),
            ("AUTH PLAIN AGFAAGI=", 0),
            ("FROB", 500),
            ("", 500),
            ("NO\0OP", 500),
            ("MAIL FROM:<a@b>\x1b", 500),
        ];
        for (line, want) in cases {
            assert_eq!(code(line, false), *want, "{line:?}");
        }
        assert_eq!(code("RCPT TO:<ü@x.test>", true), 0);
        assert_eq!(
            parse_command(b"BDAT 5 last", false).unwrap(),
            Command::Bdat {
                size: 5,
                last: true
            }
        );
        assert_eq!(
            CommandError::ControlCharacter.reply(false).status,
            Some(EnhancedStatus::new(5, 5, 2))
        );
        assert_eq!(
            CommandError::Address(AddressError::BadDomain)
                .reply(true)
                .status,
            Some(EnhancedStatus::new(5, 1, 3))
        );
    }

    #[test]
    fn round_trip() {
        for line in [
            "MAIL FROM:<a@b.test> SIZE=10",
            "RCPT TO:<u@x.test>",
            "BDAT 5 LAST",
            "EHLO x.test",
        ] {
            let c = parse_command(line.as_bytes(), false).unwrap();
            let mut out = Vec::new();
            c.write_to(&mut out);
            assert_eq!(out, format!("{line}\r\n").as_bytes());
        }
    }
}
