//! A report as a mail message (RFC 8460 5.3): `multipart/report; report-type="tlsrpt"` with a
//! short text part and the gzipped JSON report as `application/tlsrpt+gzip`.
//!
//! What it does: writes the whole RFC 5322 message: From, To, Date, Message-ID, the subject
//! the RFC gives (`Report Domain: ... Submitter: ... Report-ID: <...>`), the
//! `TLS-Report-Domain` and `TLS-Report-Submitter` fields, and the two parts (the report in
//! base64, named as RFC 8460 5.3 says).
//!
//! What it does not do: no queueing, no signing (the sender does both), no clock (the date is
//! a parameter).
//!
//! Invariants: CRLF line endings, 7-bit content, lines of at most 78 characters in the body.

use std::time::SystemTime;

use base64::Engine;

use crate::server::received::rfc5322_date;

/// What a report message says.
pub struct ReportMail<'a> {
    /// The From address.
    pub from: &'a str,
    /// The report address.
    pub to: &'a str,
    /// The policy domain.
    pub domain: &'a str,
    /// The submitter (our host name).
    pub submitter: &'a str,
    /// The report id.
    pub report_id: &'a str,
    /// The attachment's file name.
    pub file_name: &'a str,
    /// The gzipped report.
    pub report: &'a [u8],
    /// A unique token (Message-ID, boundary).
    pub unique: &'a str,
    /// The Date field.
    pub date: SystemTime,
}

/// The message (see the module header).
pub fn build(m: &ReportMail<'_>) -> Vec<u8> {
    let boundary = format!("tlsrpt-{}", m.unique);
    let mut out = format!(
        "From: {from}\r\nTo: {to}\r\nDate: {date}\r\nMessage-ID: <{unique}.tlsrpt@{host}>\r\n\
         Subject: Report Domain: {domain}\r\n Submitter: {host}\r\n Report-ID: <{id}>\r\n\
         TLS-Report-Domain: {domain}\r\nTLS-Report-Submitter: {host}\r\nAuto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n boundary=\"{boundary}\"\r\n\r\n\
         This is a multipart message in MIME format.\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         This is an aggregate TLS report (RFC 8460) from {host} for {domain}.\r\n\r\n\
         --{boundary}\r\nContent-Type: application/tlsrpt+gzip\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment;\r\n filename=\"{file}\"\r\n\r\n",
        from = m.from,
        to = m.to,
        date = rfc5322_date(m.date),
        unique = m.unique,
        host = m.submitter,
        domain = m.domain,
        id = m.report_id,
        file = m.file_name,
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(m.report);
    for line in encoded.as_bytes().chunks(76) {
        // Base64 is ASCII.
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push_str("\r\n");
    }
    out.push_str(&format!("\r\n--{boundary}--\r\n"));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_fields() {
        let m = build(&ReportMail {
            from: "r@us.test",
            to: "tls@them.test",
            domain: "them.test",
            submitter: "us.test",
            report_id: "x_them.test",
            file_name: "us.test!them.test!0!1!u.json.gz",
            report: &[0u8; 100],
            unique: "u1",
            date: SystemTime::UNIX_EPOCH,
        });
        let text = String::from_utf8(m).unwrap();
        assert!(text.contains("TLS-Report-Domain: them.test\r\n"));
        assert!(text.contains("TLS-Report-Submitter: us.test\r\n"));
        assert!(text.contains("report-type=\"tlsrpt\""));
        assert!(text.contains("Content-Type: application/tlsrpt+gzip\r\n"));
        assert!(text.contains("Subject: Report Domain: them.test\r\n Submitter: us.test\r\n Report-ID: <x_them.test>\r\n"));
        assert!(text.lines().all(|l| l.len() <= 78));
        assert!(!text.replace("\r\n", "").contains('\n'));
        assert!(text.ends_with("--tlsrpt-u1--\r\n"));
    }
}
