//! Delivery status notifications: the bounce (and delay) messages this MTA sends back to a
//! sender (RFC 3464 reports, honouring the RFC 3461 DSN parameters).
//!
//! What it does: builds a complete RFC 5322 message, `multipart/report;
//! report-type=delivery-status`, with a human-readable part, a `message/delivery-status` part
//! (per-message fields, then one block per recipient: Final-Recipient, Original-Recipient,
//! Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date) and the returned content:
//! the whole message (`message/rfc822`) or only its header (`text/rfc822-headers`).
//!
//! What it does not do: no decision about whether a DSN is due (the caller checks NOTIFY and the
//! null reverse path), no sending (the result is queued like any message, with a null reverse
//! path), no clock (the date is a parameter).
//!
//! Invariants: the output has CRLF line endings only, 7-bit headers (an SMTPUTF8 address is
//! written as-is in the report fields, as RFC 6533 allows in `utf-8` address types), and a
//! boundary that does not occur in the returned content.

use std::fmt::Write;
use std::time::SystemTime;

use crate::server::received::rfc5322_date;
use crate::smtp::EnhancedStatus;

/// How much of the original message to return (RFC 3461 4.3 RET).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Return {
    /// The whole message.
    Full,
    /// The header only.
    Headers,
}

/// The action reported for a recipient (RFC 3464 2.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnAction {
    /// Permanent failure (a bounce).
    Failed,
    /// Still trying (a delay warning).
    Delayed,
    /// Delivered (NOTIFY=SUCCESS).
    Delivered,
    /// Relayed to a server that does not offer DSN (NOTIFY=SUCCESS).
    Relayed,
}

impl DsnAction {
    fn as_str(self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
            DsnAction::Delivered => "delivered",
            DsnAction::Relayed => "relayed",
        }
    }
}

/// One recipient's block.
#[derive(Clone, Debug)]
pub struct DsnRecipient {
    /// The recipient as we tried it.
    pub address: String,
    /// ORCPT as given by the client (`rfc822;a@b`), if any.
    pub original: Option<String>,
    /// What happened.
    pub action: DsnAction,
    /// The enhanced status code.
    pub status: EnhancedStatus,
    /// The remote server, if one answered (host name or address).
    pub remote_mta: Option<String>,
    /// The remote server's reply (`550 5.1.1 no such user`), or our own explanation.
    pub diagnostic: Option<String>,
    /// When we last tried.
    pub last_attempt: Option<SystemTime>,
}

/// Everything a report is made from.
pub struct DsnInput<'a> {
    /// Our host name (Reporting-MTA and the From: address domain).
    pub reporting_mta: &'a str,
    /// Who the report goes to (the original reverse path).
    pub to: &'a str,
    /// The original ENVID, if any.
    pub envid: Option<&'a str>,
    /// The original queue id (X-Postfix-Queue-ID style trace field).
    pub queue_id: &'a str,
    /// When the original message arrived.
    pub arrival: SystemTime,
    /// Now.
    pub date: SystemTime,
    /// Per-recipient blocks.
    pub recipients: &'a [DsnRecipient],
    /// The original message (header and body, CRLF).
    pub original: &'a [u8],
    /// How much of it to return.
    pub ret: Return,
    /// A unique token for Message-ID and the MIME boundary.
    pub unique: &'a str,
}

/// Builds the report message.
pub fn build(input: &DsnInput<'_>) -> Vec<u8> {
    let failed = input
        .recipients
        .iter()
        .any(|r| r.action == DsnAction::Failed);
    let delayed = input
        .recipients
        .iter()
        .any(|r| r.action == DsnAction::Delayed);
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else if delayed {
        "Delayed Mail (still being retried)"
    } else {
        "Successful Mail Delivery Report"
    };
    let returned = match input.ret {
        Return::Full => input.original,
        Return::Headers => header_of(input.original),
    };
    let mut boundary = format!("{}/{}", input.unique, input.reporting_mta);
    while memchr::memmem::find(returned, boundary.as_bytes()).is_some() {
        boundary.push('=');
    }
    let mut m = String::with_capacity(2048);
    let date = rfc5322_date(input.date);
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{unique}.dsn@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n",
        host = input.reporting_mta,
        to = input.to,
        unique = input.unique,
    );
    human_part(&mut m, input, failed);
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {host}\r\n\
         X-Queue-ID: {qid}\r\n",
        host = input.reporting_mta,
        qid = input.queue_id,
    );
    if let Some(envid) = input.envid {
        let _ = write!(m, "Original-Envelope-Id: {envid}\r\n");
    }
    let _ = write!(m, "Arrival-Date: {}\r\n", rfc5322_date(input.arrival));
    for r in input.recipients {
        m.push_str("\r\n");
        if let Some(orcpt) = &r.original {
            let _ = write!(m, "Original-Recipient: {orcpt}\r\n");
        }
        let _ = write!(
            m,
            "Final-Recipient: rfc822; {}\r\nAction: {}\r\nStatus: {}\r\n",
            r.address,
            r.action.as_str(),
            r.status
        );
        if let Some(remote) = &r.remote_mta {
            let _ = write!(m, "Remote-MTA: dns; {remote}\r\n");
        }
        if let Some(diag) = &r.diagnostic {
            let _ = write!(m, "Diagnostic-Code: smtp; {}\r\n", one_line(diag));
        }
        if let Some(at) = r.last_attempt {
            let _ = write!(m, "Last-Attempt-Date: {}\r\n", rfc5322_date(at));
        }
    }
    let (description, content_type) = match input.ret {
        Return::Full => ("Undelivered Message", "message/rfc822"),
        Return::Headers => ("Undelivered Message Headers", "text/rfc822-headers"),
    };
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Description: {description}\r\n\
         Content-Type: {content_type}\r\n\
         \r\n"
    );
    let mut out = m.into_bytes();
    out.extend_from_slice(returned);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

fn human_part(m: &mut String, input: &DsnInput<'_>, failed: bool) {
    let _ = write!(
        m,
        "This is the mail system at host {}.\r\n\r\n",
        input.reporting_mta
    );
    if failed {
        m.push_str(
            "I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients. It's attached below.\r\n\r\n",
        );
    } else {
        m.push_str("This is a report about the delivery of your message.\r\n\r\n");
    }
    for r in input.recipients {
        let _ = write!(m, "<{}>: {}", r.address, r.action.as_str());
        if let Some(diag) = &r.diagnostic {
            let _ = write!(m, ": {}", one_line(diag));
        }
        m.push_str("\r\n");
    }
}

/// The header of a message: everything up to and including the first empty line.
pub fn header_of(message: &[u8]) -> &[u8] {
    match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(i) => &message[..i + 4],
        None => message,
    }
}

/// Replaces CR, LF and other control characters with spaces (report fields are one line).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn sample(ret: Return) -> Vec<u8> {
        let rcpts = [DsnRecipient {
            address: "u@dest.test".into(),
            original: Some("rfc822;U@dest.test".into()),
            action: DsnAction::Failed,
            status: EnhancedStatus::new(5, 1, 1),
            remote_mta: Some("mx.dest.test".into()),
            diagnostic: Some("550 5.1.1 no such user\r\nhere".into()),
            last_attempt: Some(UNIX_EPOCH + Duration::from_secs(100)),
        }];
        build(&DsnInput {
            reporting_mta: "mx.test",
            to: "sender@src.test",
            envid: Some("env-1"),
            queue_id: "0000000000000001",
            arrival: UNIX_EPOCH,
            date: UNIX_EPOCH + Duration::from_secs(200),
            recipients: &rcpts,
            original: b"Subject: hi\r\nFrom: a@src.test\r\n\r\nbody\r\n",
            ret,
            unique: "abc",
        })
    }

    #[test]
    fn report_structure() {
        let m = String::from_utf8(sample(Return::Full)).unwrap();
        assert!(m.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(m.contains("Reporting-MTA: dns; mx.test\r\n"));
        assert!(m.contains("Original-Envelope-Id: env-1\r\n"));
        assert!(m.contains(
            "Final-Recipient: rfc822; u@dest.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ));
        assert!(m.contains("Original-Recipient: rfc822;U@dest.test\r\n"));
        assert!(m.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user  here\r\n"));
        assert!(m.contains("Content-Type: message/rfc822\r\n\r\nSubject: hi\r\n"));
        assert!(m.contains("body\r\n"));
        assert!(m.ends_with("--abc/mx.test--\r\n"));
        assert!(!m.replace("\r\n", "").contains('\n'), "CRLF only");
    }

    #[test]
    fn headers_only() {
        let m = String::from_utf8(sample(Return::Headers)).unwrap();
        assert!(m.contains(
            "Content-Type: text/rfc822-headers\r\n\r\nSubject: hi\r\nFrom: a@src.test\r\n\r\n"
        ));
        assert!(!m.contains("body\r\n"));
    }
}
