//! What a report that came back says: an RFC 3464 delivery status notification, an RFC 5965
//! complaint (ARF), a bounce in one of the common non-standard shapes, or none of these.
//!
//! What it does: [`parse`] reads one whole message (header and body, as received) with a MIME
//! parser and finds:
//! - a `message/delivery-status` part: the per-recipient blocks whose `Action` is `failed`
//!   (bounces) or `delayed`, with their status and diagnostic;
//! - a `message/feedback-report` part: the feedback type and the original envelope;
//! - the returned message or its header section (`message/rfc822`, `text/rfc822-headers`, or
//!   the part after the report): its `Message-ID` and the headers the caller asks for (for
//!   example the campaign header);
//! - with neither report part, a bounce only when the text carries a permanent or transient
//!   SMTP status (`550 5.1.1 ...`) in a message that looks like a bounce (null sender, or a
//!   `mailer-daemon`/`postmaster` sender, or a bounce-like subject).
//!
//! What it does not do: no matching to what we sent (that is the VERP token and the caller),
//! no I/O, no decision; an auto-reply or anything else without a status is [`Kind::Unknown`].
//!
//! Invariants: total: any bytes give a [`Report`]; never panics; bounded (the field blocks are
//! bounded by `fields`, the text scan by [`SCAN_LIMIT`], the recipients by
//! `fields::MAX_BLOCKS`).

use std::str::FromStr;

use mail_parser::{MessageParser, MimeHeaders, PartType};

use super::fields::{self, Block};
use crate::smtp::EnhancedStatus;

/// How much of a non-standard bounce's text is searched for a status.
pub const SCAN_LIMIT: usize = 64 * 1024;

/// What kind of report a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A delivery status notification (RFC 3464, or a non-standard bounce with a status).
    Dsn,
    /// A complaint (RFC 5965 ARF).
    Complaint,
    /// Neither, or nothing that can be used.
    Unknown,
}

/// One recipient of a DSN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DsnRecipient {
    /// `Final-Recipient` (the address only).
    pub final_recipient: String,
    /// `Original-Recipient`, when given.
    pub original_recipient: Option<String>,
    /// `failed` or `delayed` (recipients with other actions are not kept).
    pub action: String,
    /// `Status`.
    pub status: Option<EnhancedStatus>,
    /// `Diagnostic-Code` without its type, or the line the status was found on.
    pub diagnostic: String,
}

/// What a report says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Its kind.
    pub kind: Kind,
    /// The failed or delayed recipients (DSN).
    pub recipients: Vec<DsnRecipient>,
    /// `Feedback-Type` (ARF), lower case: `abuse`, `fraud`, ...
    pub feedback_type: Option<String>,
    /// `Original-Rcpt-To` (ARF), or the `To` of the returned message when it has one address.
    pub original_rcpt: Option<String>,
    /// `Original-Mail-From` (ARF).
    pub original_mail_from: Option<String>,
    /// The `Message-ID` of the returned message, without angle brackets.
    pub original_message_id: Option<String>,
    /// The headers asked for, from the returned message: `(name as asked, value)`.
    pub original_headers: Vec<(String, String)>,
}

impl Report {
    fn unknown() -> Report {
        Report {
            kind: Kind::Unknown,
            recipients: Vec::new(),
            feedback_type: None,
            original_rcpt: None,
            original_mail_from: None,
            original_message_id: None,
            original_headers: Vec::new(),
        }
    }

    /// The value of an original header that was asked for.
    pub fn original_header(&self, name: &str) -> Option<&str> {
        self.original_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `message` (as received: header section and body). `sender` is its envelope sender
/// (empty for the null sender). `want` names the headers of the returned message to keep.
pub fn parse(message: &[u8], sender: &str, want: &[&str]) -> Report {
    let mut report = Report::unknown();
    let Some(msg) = MessageParser::default().parse(message) else {
        return report;
    };
    let mut original: Option<&[u8]> = None;
    for part in &msg.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let ctype = ct.ctype().to_ascii_lowercase();
        let sub = ct.subtype().unwrap_or("").to_ascii_lowercase();
        match (ctype.as_str(), sub.as_str()) {
            ("message", "delivery-status" | "global-delivery-status") => {
                delivery_status(&mut report, &text_of(part.contents()));
            }
            ("message", "feedback-report") => {
                feedback(&mut report, &text_of(part.contents()));
            }
            ("text", "rfc822-headers" | "global-headers") if original.is_none() => {
                original = Some(part.contents());
            }
            ("message", "rfc822" | "global") if original.is_none() => {
                original = match &part.body {
                    PartType::Message(m) => Some(m.raw_message()),
                    _ => Some(part.contents()),
                };
            }
            _ => {}
        }
    }
    if let Some(raw) = original {
        returned(&mut report, raw, want);
    }
    if report.kind == Kind::Unknown && looks_like_bounce(&msg, sender) {
        non_standard(&mut report, &msg);
    }
    report
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(fields::MAX_BLOCKS * 4096)]).into_owned()
}

fn delivery_status(report: &mut Report, text: &str) {
    let mut blocks = fields::blocks(text).into_iter();
    let _per_message: Option<Block> = blocks.next();
    for b in blocks {
        let Some(action) = b.get("action").map(str::to_ascii_lowercase) else {
            continue;
        };
        if !matches!(action.as_str(), "failed" | "delayed") {
            continue;
        }
        let Some(rcpt) = b.typed("final-recipient").map(address) else {
            continue;
        };
        report.recipients.push(DsnRecipient {
            final_recipient: rcpt,
            original_recipient: b.typed("original-recipient").map(address),
            action,
            status: b
                .get("status")
                .and_then(|s| EnhancedStatus::from_str(s.split_whitespace().next()?).ok()),
            diagnostic: b.typed("diagnostic-code").unwrap_or("").to_string(),
        });
    }
    if !report.recipients.is_empty() {
        report.kind = Kind::Dsn;
    }
}

fn feedback(report: &mut Report, text: &str) {
    let Some(b) = fields::blocks(text).into_iter().next() else {
        return;
    };
    let Some(kind) = b.get("feedback-type") else {
        return;
    };
    report.kind = Kind::Complaint;
    report.feedback_type = Some(kind.trim().to_ascii_lowercase());
    report.original_rcpt = b.get("original-rcpt-to").map(address);
    report.original_mail_from = b.get("original-mail-from").map(address);
}

fn returned(report: &mut Report, raw: &[u8], want: &[&str]) {
    let head_end = memchr::memmem::find(raw, b"\r\n\r\n")
        .or_else(|| memchr::memmem::find(raw, b"\n\n"))
        .unwrap_or(raw.len());
    let head = text_of(&raw[..head_end]);
    let Some(b) = fields::blocks(&head).into_iter().next() else {
        return;
    };
    report.original_message_id = b.get("message-id").map(|v| {
        v.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()
    });
    for name in want {
        if let Some(v) = b.get(name) {
            report
                .original_headers
                .push((name.to_string(), v.to_string()));
        }
    }
    if report.original_rcpt.is_none()
        && let Some(to) = b.get("to")
        && !to.contains(',')
    {
        report.original_rcpt = Some(address(to));
    }
}

/// `Name <a@b>` or `<a@b>` or `a@b` gives `a@b`.
fn address(value: &str) -> String {
    let v = fields::untyped(value);
    let v = match (v.rfind('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v,
    };
    v.trim().to_string()
}

fn looks_like_bounce(msg: &mail_parser::Message<'_>, sender: &str) -> bool {
    let s = sender.to_ascii_lowercase();
    if s.is_empty() || s.starts_with("mailer-daemon@") || s.starts_with("postmaster@") {
        return true;
    }
    let subject = msg.subject().unwrap_or("").to_ascii_lowercase();
    [
        "undeliver",
        "delivery status",
        "delivery failure",
        "returned mail",
        "failure notice",
        "mail delivery failed",
    ]
    .iter()
    .any(|w| subject.contains(w))
}

/// A bounce without a delivery-status part: the first line of its text with an SMTP status
/// (`550 5.1.1 ...`, `5.1.1 ...`, or a 4xx/5xx reply code at the start of a line).
fn non_standard(report: &mut Report, msg: &mail_parser::Message<'_>) {
    let Some(text) = msg.body_text(0) else {
        return;
    };
    let text = &text[..floor_char(&text, SCAN_LIMIT)];
    for line in text.lines() {
        if let Some(status) = status_in(line) {
            report.kind = Kind::Dsn;
            report.recipients.push(DsnRecipient {
                final_recipient: String::new(),
                original_recipient: None,
                action: if status.class == 5 {
                    "failed"
                } else {
                    "delayed"
                }
                .into(),
                status: Some(status),
                diagnostic: line.trim().chars().take(fields::MAX_VALUE).collect(),
            });
            return;
        }
    }
}

fn floor_char(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The first 4.x.y or 5.x.y enhanced status among the words of `line`, or one derived from
/// a 4xx/5xx reply code that starts it.
fn status_in(line: &str) -> Option<EnhancedStatus> {
    let mut words = line.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']'));
    let first = line.trim_start();
    let code = first
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()) && matches!(&c[..1], "4" | "5"))
        .filter(|_| {
            first
                .as_bytes()
                .get(3)
                .is_none_or(|b| matches!(b, b' ' | b'-'))
        });
    if let Some(s) = words.find_map(|w| {
        let w = w.trim_end_matches([',', ';', ':', '.']);
        EnhancedStatus::from_str(w).ok().filter(|s| s.class != 2)
    }) {
        return Some(s);
    }
    code.map(|c| EnhancedStatus::new(c.as_bytes()[0] - b'0', 0, 0))
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
