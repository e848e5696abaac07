//! The client's reading of an EHLO reply (RFC 5321 4.1.1.1): which extensions the server offers.
//!
//! What it does: maps the keyword lines of a `250` EHLO reply to an `Extensions` value.
//!
//! What it does not do: no negotiation policy (the client decides what to use).
//!
//! Invariants: keywords are case-insensitive; the first line (the greeting) is not a keyword;
//! unknown keywords are ignored.

use super::reply::Reply;

/// Extensions a server offered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// SIZE (RFC 1870): `Some(None)` without a limit, `Some(Some(n))` with one.
    pub size: Option<Option<u64>>,
    /// 8BITMIME (RFC 6152).
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// CHUNKING (RFC 3030).
    pub chunking: bool,
    /// BINARYMIME (RFC 3030).
    pub binarymime: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced_status_codes: bool,
    /// AUTH mechanisms (RFC 4954).
    pub auth: Vec<String>,
    /// REQUIRETLS (RFC 8689).
    pub requiretls: bool,
}

impl Extensions {
    /// Reads the keywords of an EHLO reply.
    pub fn from_reply(reply: &Reply) -> Extensions {
        let mut e = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(kw) = words.next() else { continue };
            match kw.to_ascii_uppercase().as_str() {
                "PIPELINING" => e.pipelining = true,
                "SIZE" => {
                    e.size = Some(words.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0))
                }
                "8BITMIME" => e.eight_bit_mime = true,
                "SMTPUTF8" => e.smtputf8 = true,
                "CHUNKING" => e.chunking = true,
                "BINARYMIME" => e.binarymime = true,
                "STARTTLS" => e.starttls = true,
                "DSN" => e.dsn = true,
                "ENHANCEDSTATUSCODES" => e.enhanced_status_codes = true,
                "REQUIRETLS" => e.requiretls = true,
                "AUTH" => e.auth = words.map(str::to_ascii_uppercase).collect(),
                _ => {}
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::ReplyParser;

    #[test]
    fn keywords() {
        let wire = b"250-mx Hello\r\n250-pipelining\r\n250-SIZE 1000\r\n250-AUTH PLAIN login\r\n250 CHUNKING\r\n";
        let (r, _) = ReplyParser::new().parse(wire).unwrap().unwrap();
        let e = Extensions::from_reply(&r);
        assert!(e.pipelining && e.chunking && !e.starttls);
        assert_eq!(e.size, Some(Some(1000)));
        assert_eq!(e.auth, ["PLAIN", "LOGIN"]);
    }
}
