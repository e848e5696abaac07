//! SMTP replies (RFC 5321 4.2) with RFC 3463 enhanced status codes (RFC 2034): formatting for
//! the server, incremental parsing for clients.
//!
//! What it does: `Reply` values, their wire form (`250-...` continuation lines, `250 ...` last
//! line, the enhanced code after the reply code), and a `ReplyParser` that takes whatever bytes
//! arrived and returns one complete reply or asks for more.
//!
//! What it does not do: no I/O, no interpretation of what a reply means for delivery.
//!
//! Invariants: a formatted reply never contains a bare CR or LF (text lines are written as
//! given and must be single lines); a parsed multi-line reply has one code on every line.

use std::fmt;
use std::str::FromStr;

/// An RFC 3463 enhanced status code `class.subject.detail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedStatus {
    /// 2 success, 4 persistent transient failure, 5 permanent failure.
    pub class: u8,
    /// Subject (0-999).
    pub subject: u16,
    /// Detail (0-999).
    pub detail: u16,
}

impl EnhancedStatus {
    /// `class.subject.detail`.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        EnhancedStatus {
            class,
            subject,
            detail,
        }
    }
}

impl EnhancedStatus {
    /// Appends `class.subject.detail` to `out` (no formatting machinery).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        push_number(out, u16::from(self.class));
        out.push(b'.');
        push_number(out, self.subject);
        out.push(b'.');
        push_number(out, self.detail);
    }
}

/// The decimal digits of `n`: they are `digits[start..]`.
fn decimal(n: u16) -> ([u8; 5], usize) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    (digits, i)
}

/// Appends the decimal digits of `n`.
fn push_number(out: &mut Vec<u8>, n: u16) {
    let (digits, start) = decimal(n);
    out.extend_from_slice(&digits[start..]);
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // At most "255.65535.65535": formatted on the stack, without formatting machinery.
        let mut buf = [0u8; 15];
        let mut len = 0;
        for (i, n) in [u16::from(self.class), self.subject, self.detail]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                buf[len] = b'.';
                len += 1;
            }
            let (digits, start) = decimal(n);
            let d = &digits[start..];
            buf[len..len + d.len()].copy_from_slice(d);
            len += d.len();
        }
        f.write_str(std::str::from_utf8(&buf[..len]).expect("digits and dots are ASCII"))
    }
}

impl FromStr for EnhancedStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let mut parts = s.split('.');
        let (Some(c), Some(sub), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(());
        };
        let digits = |p: &str, max: usize| {
            !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit())
        };
        if !(c.len() == 1 && matches!(c, "2" | "4" | "5") && digits(sub, 3) && digits(d, 3)) {
            return Err(());
        }
        Ok(EnhancedStatus::new(
            c.parse().map_err(|_| ())?,
            sub.parse().map_err(|_| ())?,
            d.parse().map_err(|_| ())?,
        ))
    }
}

/// One SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status code written at the start of every line, if any.
    pub status: Option<EnhancedStatus>,
    /// The text of each line (without code and enhanced code).
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, status: EnhancedStatus, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: Some(status),
            lines: vec![text.into()],
        }
    }

    /// A reply of several lines.
    pub fn multiline(code: u16, status: Option<EnhancedStatus>, lines: Vec<String>) -> Reply {
        Reply {
            code,
            status,
            lines,
        }
    }

    /// `250 2.0.0 <text>`.
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply::new(250, EnhancedStatus::new(2, 0, 0), text)
    }

    /// Appends the wire form to `out` (no intermediate strings).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map_or("", String::as_str);
            push_number(out, self.code);
            out.push(if i + 1 == n { b' ' } else { b'-' });
            if let Some(st) = self.status {
                st.write_to(out);
                if !text.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// 2xx.
    pub fn is_positive_completion(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The lines joined by spaces (for logs).
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }
}

impl Reply {
    /// `code [status] text` on one line, the lines joined by spaces (for logs and
    /// diagnostics): what `Display` prints, built without formatting machinery.
    pub fn line(&self) -> String {
        let text_len: usize = self.lines.iter().map(|l| l.len() + 1).sum();
        let mut out = Vec::with_capacity(16 + text_len);
        push_number(&mut out, self.code);
        if let Some(st) = self.status {
            out.push(b' ');
            st.write_to(&mut out);
        }
        let mut first = true;
        for l in &self.lines {
            if first {
                first = false;
                if l.is_empty() && self.lines.len() == 1 {
                    break;
                }
                out.push(b' ');
            } else {
                out.push(b' ');
            }
            out.extend_from_slice(l.as_bytes());
        }
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

/// Why a reply could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplyError {
    /// A line does not start with three digits followed by space, '-' or the line end.
    #[error("malformed reply line")]
    BadLine,
    /// The lines of a multi-line reply carry different codes.
    #[error("mixed codes in a multi-line reply")]
    MixedCodes,
    /// A line is longer than 4096 octets.
    #[error("reply line too long")]
    LineTooLong,
    /// More than 1000 lines.
    #[error("reply has too many lines")]
    TooManyLines,
    /// The text is not UTF-8.
    #[error("reply is not UTF-8")]
    NotUtf8,
}

const MAX_LINE: usize = 4096;
const MAX_LINES: usize = 1000;

/// Incremental reply parser (stateless between replies; keeps no bytes itself).
#[derive(Debug, Default)]
pub struct ReplyParser {}

impl ReplyParser {
    /// A parser.
    pub fn new() -> Self {
        ReplyParser {}
    }

    /// Parses one complete reply from the front of `input`: `Ok(Some((reply, consumed)))`,
    /// `Ok(None)` if more bytes are needed, or an error.
    pub fn parse(&mut self, input: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
        let mut pos = 0;
        let mut code = None;
        let mut lines = Vec::new();
        let mut status: Option<EnhancedStatus> = None;
        loop {
            let Some(nl) = memchr::memchr(b'\n', &input[pos..]) else {
                if input.len() - pos > MAX_LINE {
                    return Err(ReplyError::LineTooLong);
                }
                return Ok(None);
            };
            let mut line = &input[pos..pos + nl];
            if line.len() > MAX_LINE {
                return Err(ReplyError::LineTooLong);
            }
            pos += nl + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
                return Err(ReplyError::BadLine);
            }
            let this: u16 = std::str::from_utf8(&line[..3])
                .map_err(|_| ReplyError::BadLine)?
                .parse()
                .map_err(|_| ReplyError::BadLine)?;
            if !(200..600).contains(&this) && !(100..200).contains(&this) {
                return Err(ReplyError::BadLine);
            }
            if *code.get_or_insert(this) != this {
                return Err(ReplyError::MixedCodes);
            }
            let (last, text) = match line.get(3) {
                None => (true, &b""[..]),
                Some(b' ') => (true, &line[4..]),
                Some(b'-') => (false, &line[4..]),
                Some(_) => return Err(ReplyError::BadLine),
            };
            let mut text = std::str::from_utf8(text).map_err(|_| ReplyError::NotUtf8)?;
            // An enhanced code "X.Y.Z " whose class matches the reply's first digit.
            let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
            if let Ok(st) = first.parse::<EnhancedStatus>()
                && u16::from(st.class) == this / 100
            {
                if lines.is_empty() {
                    status = Some(st);
                }
                if status == Some(st) {
                    text = rest;
                }
            }
            lines.push(text.to_owned());
            if lines.len() > MAX_LINES {
                return Err(ReplyError::TooManyLines);
            }
            if last {
                let reply = Reply {
                    code: code.expect("set above"),
                    status,
                    lines,
                };
                return Ok(Some((reply, pos)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format() {
        let mut out = Vec::new();
        Reply::new(250, EnhancedStatus::new(2, 1, 0), "Ok").write_to(&mut out);
        Reply::multiline(250, None, vec!["mx Hello".into(), "PIPELINING".into()])
            .write_to(&mut out);
        assert_eq!(out, b"250 2.1.0 Ok\r\n250-mx Hello\r\n250 PIPELINING\r\n");
    }

    #[test]
    fn one_line_form_for_logs() {
        let st = Some(EnhancedStatus::new(5, 1, 1));
        let cases: [(u16, Option<EnhancedStatus>, Vec<&str>, &str); 6] = [
            (550, st, vec!["no such user"], "550 5.1.1 no such user"),
            (250, None, vec!["a", "b"], "250 a b"),
            (250, None, vec![], "250"),
            (250, None, vec![""], "250"),
            (421, st, vec![""], "421 5.1.1"),
            (250, None, vec!["", "x"], "250  x"),
        ];
        for (code, status, lines, want) in cases {
            let r = Reply::multiline(code, status, lines.into_iter().map(String::from).collect());
            assert_eq!(r.line(), want);
            assert_eq!(r.to_string(), want);
        }
        assert_eq!(EnhancedStatus::new(4, 7, 0).to_string(), "4.7.0");
        assert_eq!(
            EnhancedStatus::new(5, 65535, 100).to_string(),
            "5.65535.100"
        );
    }

    #[test]
    fn parse_round_trip_at_every_split() {
        let wire =
            b"250-mx.test Hello\r\n250-SIZE 100\r\n250 CHUNKING\r\n550 5.1.1 no such user\r\n";
        for split in 0..wire.len() {
            let mut p = ReplyParser::new();
            match p.parse(&wire[..split]).unwrap() {
                None => {}
                Some((r, n)) => {
                    assert_eq!(n, 47);
                    assert_eq!(r.lines.len(), 3);
                }
            }
        }
        let mut p = ReplyParser::new();
        let (r, n) = p.parse(wire).unwrap().unwrap();
        assert_eq!((r.code, r.lines[2].as_str()), (250, "CHUNKING"));
        let (r, _) = p.parse(&wire[n..]).unwrap().unwrap();
        assert_eq!(r.status, Some(EnhancedStatus::new(5, 1, 1)));
        assert_eq!(r.text(), "no such user");
        assert!(r.is_permanent());
    }

    #[test]
    fn parse_errors() {
        let mut p = ReplyParser::new();
        assert_eq!(p.parse(b"25 x\r\n"), Err(ReplyError::BadLine));
        assert_eq!(p.parse(b"250-a\r\n251 b\r\n"), Err(ReplyError::MixedCodes));
        assert_eq!(p.parse(b"250xok\r\n"), Err(ReplyError::BadLine));
        assert_eq!(p.parse(&vec![b'2'; 5000]), Err(ReplyError::LineTooLong));
        // Enhanced code of another class is text.
        let (r, _) = p.parse(b"451 5.0.0 odd\r\n").unwrap().unwrap();
        assert_eq!(r.status, None);
        assert_eq!(
            "2.0.0".parse::<EnhancedStatus>(),
            Ok(EnhancedStatus::new(2, 0, 0))
        );
        assert!("3.0.0".parse::<EnhancedStatus>().is_err());
    }
}
