//! SMTP replies (RFC 5321 4.2) with RFC 3463 enhanced status codes (RFC 2034): formatting for
//! the server, incremental parsing for clients.
//!
//! What it does: `Reply` values, their wire form (`250-...` continuation lines, `250 ...` last
//! line, the enhanced code after the reply code), and a `ReplyParser` that takes whatever bytes
//! arrived and returns one complete reply or asks for more.
//!
//! What it does not do: no I/O, no clock (the caller gives the whole reply one deadline), no
//! interpretation of what a reply means for delivery.
//!
//! Invariants: a formatted reply never contains a bare CR or LF (text lines are written as
//! given and must be single lines); a parsed multi-line reply has one code on every line; the
//! parser looks at each received octet at most twice however the reply is split across reads,
//! and refuses a reply over [`MAX_REPLY_BYTES`] octets or [`MAX_REPLY_LINES`] lines, so a
//! caller's buffer never needs to hold more than `MAX_REPLY_BYTES + 1` octets of one reply.

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
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
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
    /// More than [`MAX_REPLY_LINES`] lines.
    #[error("reply has too many lines")]
    TooManyLines,
    /// More than [`MAX_REPLY_BYTES`] octets without the last line.
    #[error("reply too long")]
    TooLong,
    /// The text is not UTF-8.
    #[error("reply is not UTF-8")]
    NotUtf8,
}

/// Longest reply line in octets, CR included, LF excluded.
const MAX_LINE: usize = 4096;
/// Most lines in one reply.
pub const MAX_REPLY_LINES: usize = 1000;
/// Most octets in one reply, every line end included.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Incremental reply parser.
///
/// Between calls it remembers the complete lines of the current reply it has accepted and how
/// far it has searched the unfinished line for its end, so each octet is looked at at most
/// twice (once by the line-end search, once when its line is parsed), whatever the reading
/// pattern. The caller's contract: until a call returns a reply or an error, every call is
/// given the same unconsumed octets, possibly with more appended (the buffer may move). Input
/// shorter than what was already scanned restarts the reply from scratch.
#[derive(Debug, Default)]
pub struct ReplyParser {
    /// Octets of complete lines of the current reply already accepted.
    scanned: usize,
    /// Octets after `scanned` already searched for a line end without finding one.
    searched: usize,
    /// The current reply's code (from its first line).
    code: Option<u16>,
    /// The current reply's enhanced status (from its first line).
    status: Option<EnhancedStatus>,
    /// The accepted lines of the current reply.
    lines: Vec<String>,
    /// Octets examined since the parser was made (searched plus parsed).
    examined: u64,
}

impl ReplyParser {
    /// A parser.
    pub fn new() -> Self {
        ReplyParser::default()
    }

    /// Octets examined since the parser was made: at most twice the octets it was given
    /// (counting each octet once however many calls saw it).
    pub fn examined(&self) -> u64 {
        self.examined
    }

    /// Forgets the current reply (the connection discarded its buffer).
    pub fn reset(&mut self) {
        self.scanned = 0;
        self.searched = 0;
        self.code = None;
        self.status = None;
        self.lines.clear();
    }

    /// Parses one complete reply from the front of `input`: `Ok(Some((reply, consumed)))`,
    /// `Ok(None)` if more bytes are needed, or an error. After a reply or an error the parser
    /// starts afresh with the next call.
    pub fn parse(&mut self, input: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
        let r = self.advance(input);
        if !matches!(r, Ok(None)) {
            self.reset();
        }
        r
    }

    fn advance(&mut self, input: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
        if input.len() < self.scanned.saturating_add(self.searched) {
            self.reset();
        }
        loop {
            let from = self.scanned + self.searched;
            // The line end can be at most MAX_LINE octets after the line start.
            let window = input.len().min(self.scanned + MAX_LINE + 1);
            let found = memchr::memchr(b'\n', &input[from..window]);
            let Some(i) = found else {
                self.examined = self.examined.saturating_add((window - from) as u64);
                self.searched = window - self.scanned;
                if self.searched > MAX_LINE {
                    return Err(ReplyError::LineTooLong);
                }
                if window > MAX_REPLY_BYTES {
                    return Err(ReplyError::TooLong);
                }
                return Ok(None);
            };
            let nl = from + i;
            self.examined = self.examined.saturating_add((i + 1) as u64);
            let end = nl + 1;
            if end > MAX_REPLY_BYTES {
                return Err(ReplyError::TooLong);
            }
            let line = &input[self.scanned..nl];
            self.examined = self.examined.saturating_add(line.len() as u64);
            self.scanned = end;
            self.searched = 0;
            if self.accept(line)? {
                let reply = Reply {
                    code: self.code.unwrap_or_default(),
                    status: self.status,
                    lines: std::mem::take(&mut self.lines),
                };
                return Ok(Some((reply, end)));
            }
        }
    }

    /// Adds one line (without its LF) to the current reply; true when it was the last.
    fn accept(&mut self, mut line: &[u8]) -> Result<bool, ReplyError> {
        if line.len() > MAX_LINE {
            return Err(ReplyError::LineTooLong);
        }
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let Some(digits) = line.get(..3) else {
            return Err(ReplyError::BadLine);
        };
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(ReplyError::BadLine);
        }
        let this = digits
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        if !(100..600).contains(&this) {
            return Err(ReplyError::BadLine);
        }
        if *self.code.get_or_insert(this) != this {
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
            if self.lines.is_empty() {
                self.status = Some(st);
            }
            if self.status == Some(st) {
                text = rest;
            }
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        self.lines.push(text.to_owned());
        Ok(last)
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

    /// A reply of `n` lines in wire form.
    fn long_reply(n: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        for i in 0..n {
            let sep = if i + 1 == n { ' ' } else { '-' };
            wire.extend_from_slice(format!("250{sep}2.0.0 line {i:04}\r\n").as_bytes());
        }
        wire
    }

    /// Feeds `wire` (plus a trailing reply) `step` octets at a time, as a connection does.
    fn feed(wire: &[u8], step: usize) -> (Result<Option<(Reply, usize)>, ReplyError>, u64) {
        let mut p = ReplyParser::new();
        let mut end = 0;
        loop {
            end = (end + step).min(wire.len());
            match p.parse(&wire[..end]) {
                Ok(None) if end < wire.len() => {}
                r => return (r, p.examined()),
            }
        }
    }

    #[test]
    fn byte_at_a_time_equals_all_at_once_and_is_linear() {
        let mut wire = long_reply(1000);
        let len = wire.len();
        wire.extend_from_slice(b"221 bye\r\n");
        let (all, _) = feed(&wire, wire.len());
        let (all, used) = all.unwrap().unwrap();
        assert_eq!((all.lines.len(), used), (1000, len));
        assert_eq!(all.lines[999], "line 0999");
        assert_eq!(all.status, Some(EnhancedStatus::new(2, 0, 0)));
        for step in [1, 2, 7, 100, 4095] {
            let (r, examined) = feed(&wire, step);
            assert_eq!(r, Ok(Some((all.clone(), len))), "step {step}");
            // Each octet is searched once and parsed once: linear in the reply's size.
            assert!(
                examined <= 2 * len as u64,
                "step {step}: {examined} > 2 * {len}"
            );
        }
    }

    #[test]
    fn a_long_unfinished_line_is_searched_once() {
        let mut p = ReplyParser::new();
        let mut wire = b"250 ".to_vec();
        wire.resize(4000, b'x');
        for end in 1..=wire.len() {
            assert_eq!(p.parse(&wire[..end]), Ok(None));
        }
        assert!(p.examined() <= wire.len() as u64);
        wire.extend_from_slice(b"\r\n");
        let (r, n) = p.parse(&wire).unwrap().unwrap();
        assert_eq!((r.lines[0].len(), n), (3996, 4002));
        assert!(p.examined() <= 2 * wire.len() as u64);
    }

    #[test]
    fn over_the_caps_is_an_error() {
        // Too many lines, however they arrive.
        let wire = long_reply(MAX_REPLY_LINES + 1);
        assert!(wire.len() < MAX_REPLY_BYTES);
        for step in [1, 64, wire.len()] {
            assert_eq!(
                feed(&wire, step).0,
                Err(ReplyError::TooManyLines),
                "step {step}"
            );
        }
        assert!(feed(&long_reply(MAX_REPLY_LINES), 1).0.unwrap().is_some());
        // Too many octets in fewer lines.
        let mut wire = Vec::new();
        let line = format!("250-{}\r\n", "y".repeat(1000));
        while wire.len() <= MAX_REPLY_BYTES {
            wire.extend_from_slice(line.as_bytes());
        }
        wire.extend_from_slice(b"250 end\r\n");
        for step in [1, 1000, wire.len()] {
            assert_eq!(feed(&wire, step).0, Err(ReplyError::TooLong), "step {step}");
        }
        // An endless unfinished line.
        assert_eq!(
            feed(&[b'2'; 2 * MAX_LINE], 3).0,
            Err(ReplyError::LineTooLong)
        );
        // After an error the parser starts afresh.
        let mut p = ReplyParser::new();
        assert!(p.parse(&wire).is_err());
        assert_eq!(p.parse(b"250 ok\r\n").unwrap().unwrap().1, 8);
    }

    #[test]
    fn a_moved_or_shrunk_buffer_restarts_cleanly() {
        let mut p = ReplyParser::new();
        assert_eq!(p.parse(b"250-a\r\n250-b"), Ok(None));
        // The caller dropped its buffer (e.g. STARTTLS): shorter input starts over.
        let (r, n) = p.parse(b"220 go\r\n").unwrap().unwrap();
        assert_eq!((r.code, n), (220, 8));
        p.reset();
        assert_eq!(p.parse(b"250-a\r\n"), Ok(None));
        p.reset();
        assert_eq!(p.parse(b"221 x\r\n").unwrap().unwrap().0.code, 221);
    }
}
