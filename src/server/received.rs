//! The `Received:` trace header this MTA prepends to every message (RFC 5321 4.4, RFC 5322
//! 3.6.7), and the RFC 5322 date it carries.
//!
//! What it does: formats `Received: from <helo> ([ip]) by <host> with <protocol> id <id>
//! [for <rcpt>]; <date>`, folded over lines with a leading tab, CRLF-terminated.
//!
//! What it does not do: no reverse DNS (the client's address is given as a literal, which RFC
//! 5321 4.4 allows), no reading of the clock: the caller passes the time.
//!
//! Invariants: the header contains only printable ASCII (or the UTF-8 the client sent in an
//! SMTPUTF8 transaction), never a bare CR or LF; the EHLO name has been validated by the
//! command parser (no control characters, no spaces).

use std::io::Write;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::tls::TlsInfo;

/// The facts a `Received:` header is made from.
pub struct Trace<'a> {
    /// The name the client gave in EHLO/HELO.
    pub helo: &'a str,
    /// The client's IP address.
    pub client_ip: IpAddr,
    /// Our host name.
    pub hostname: &'a str,
    /// The `with` protocol (RFC 3848): SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP...
    pub protocol: &'a str,
    /// TLS in use, if any: written as a comment (`(using TLSv1.3 with cipher ...)`).
    pub tls: Option<&'a TlsInfo>,
    /// The authenticated user, if any (`(authenticated sender: ...)`).
    pub user: Option<&'a str>,
    /// The queue id.
    pub id: &'a str,
    /// The recipient, when the message has exactly one.
    pub single_recipient: Option<&'a str>,
    /// When the message was received.
    pub date: SystemTime,
}

impl Trace<'_> {
    /// Appends the header, CRLF-terminated, to `out` (written in place: no intermediate
    /// strings, one header per message).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "Received: from {} (", self.helo);
        let _ = match self.client_ip {
            IpAddr::V4(a) => write!(out, "[{a}])"),
            IpAddr::V6(a) => write!(out, "[IPv6:{a}])"),
        };
        if let Some(tls) = self.tls {
            let _ = write!(
                out,
                "\r\n\t(using {} with cipher {})",
                tls.version, tls.cipher
            );
        }
        if let Some(user) = self.user {
            let _ = write!(out, "\r\n\t(authenticated sender: {user})");
        }
        let _ = write!(
            out,
            "\r\n\tby {} with {} id {}",
            self.hostname, self.protocol, self.id
        );
        if let Some(rcpt) = self.single_recipient {
            let _ = write!(out, "\r\n\tfor {rcpt}");
        }
        with_rfc5322_date(self.date, |date| {
            let _ = write!(out, ";\r\n\t{date}\r\n");
        });
    }
}

/// `Sat, 28 Nov 2026 06:41:38 +0000` (RFC 5322 3.3), in UTC.
/// The text of the last second formatted is kept per thread: most calls are in the same second.
pub fn rfc5322_date(t: SystemTime) -> String {
    with_rfc5322_date(t, str::to_owned)
}

/// Calls `f` with [`rfc5322_date`]'s text, without copying it.
fn with_rfc5322_date<R>(t: SystemTime, f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const {
            std::cell::RefCell::new((u64::MAX, String::new()))
        };
    }
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *text = format_date(secs);
            *at = secs;
        }
        f(text)
    })
}

fn format_date(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(rfc5322_date(at(0)), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(at(1_795_848_098)),
            "Sat, 28 Nov 2026 06:41:38 +0000"
        );
        assert_eq!(
            rfc5322_date(at(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
    }

    #[test]
    fn header() {
        let mut out = Vec::new();
        Trace {
            helo: "client.example",
            client_ip: "192.0.2.1".parse().unwrap(),
            hostname: "mx.example.net",
            protocol: "ESMTP",
            tls: None,
            user: None,
            id: "0123456789ABCDEF",
            single_recipient: Some("<a@example.org>"),
            date: UNIX_EPOCH,
        }
        .write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: from client.example ([192.0.2.1])\r\n\tby mx.example.net with ESMTP id \
             0123456789ABCDEF\r\n\tfor <a@example.org>;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn header_with_tls_and_user() {
        let mut out = Vec::new();
        let tls = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
        };
        Trace {
            helo: "client.example",
            client_ip: "2001:db8::1".parse().unwrap(),
            hostname: "mx.example.net",
            protocol: "ESMTPSA",
            tls: Some(&tls),
            user: Some("app"),
            id: "0123456789ABCDEF",
            single_recipient: None,
            date: UNIX_EPOCH,
        }
        .write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: from client.example ([IPv6:2001:db8::1])\r\n\t(using TLSv1.3 with cipher \
             TLS13_AES_128_GCM_SHA256)\r\n\t(authenticated sender: app)\r\n\tby mx.example.net \
             with ESMTPSA id 0123456789ABCDEF;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
    }
}
