//! Paths and mailboxes (RFC 5321 4.1.2, 4.5.3.1; RFC 6531 for SMTPUTF8).
//!
//! What it does: parses `<reverse-path>` and `<forward-path>` at the start of a MAIL/RCPT
//! argument (returning the rest: the ESMTP parameters), with quoted local parts, address
//! literals, the null path `<>`, `<Postmaster>` and source routes (accepted and dropped).
//!
//! What it does not do: no DNS, no policy, no IDNA conversion (U-labels are kept as sent).
//!
//! Invariants: a parsed `Mailbox` contains no control characters, spaces outside a quoted local
//! part, or octets >= 0x80 unless UTF-8 was allowed; its local part is kept exactly as sent
//! (quotes included) so that re-emitting it is byte-exact; domain names are lower-cased (ASCII).
//! Lengths: local part <= 64, domain <= 255, path <= 256 octets.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The domain part of a mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A domain name, ASCII lower-cased.
    Name(String),
    /// An address literal: `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
    Literal(IpAddr),
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Name(n) => f.write_str(n),
            Domain::Literal(IpAddr::V4(a)) => write!(f, "[{a}]"),
            Domain::Literal(IpAddr::V6(a)) => write!(f, "[IPv6:{a}]"),
        }
    }
}

/// `local-part@domain`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mailbox {
    /// As sent (a quoted local part keeps its quotes).
    pub local_part: String,
    /// The domain.
    pub domain: Domain,
}

impl Mailbox {
    /// True if any octet is non-ASCII (the transaction needs SMTPUTF8).
    pub fn is_utf8(&self) -> bool {
        !self.local_part.is_ascii() || matches!(&self.domain, Domain::Name(n) if !n.is_ascii())
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local_part, self.domain)
    }
}

/// The argument of MAIL FROM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`: no return path (bounces and other notifications).
    Null,
    /// A mailbox.
    Mailbox(Mailbox),
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// The argument of RCPT TO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain (RFC 5321 4.5.1).
    Postmaster,
    /// A mailbox.
    Mailbox(Mailbox),
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("<Postmaster>"),
            ForwardPath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// Why a path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressError {
    /// The path is not enclosed in `<` and `>`.
    #[error("path must be enclosed in <>")]
    MissingBrackets,
    /// The local part is not a dot-string or quoted string.
    #[error("invalid local part")]
    BadLocalPart,
    /// The domain is not a valid name or address literal.
    #[error("invalid domain")]
    BadDomain,
    /// A mailbox without `@domain`.
    #[error("missing domain")]
    MissingDomain,
    /// Over the RFC 5321 4.5.3.1 size limits.
    #[error("address too long")]
    TooLong,
    /// Non-ASCII octets without SMTPUTF8.
    #[error("non-ASCII address without SMTPUTF8")]
    Utf8NotAllowed,
    /// The source route is malformed.
    #[error("invalid source route")]
    BadRoute,
    /// Something follows the path that is not a space.
    #[error("unexpected text after the path")]
    Trailing,
}

fn is_atext(b: u8, utf8: bool) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || (utf8 && b >= 0x80)
}

/// Parses the path at the start of `input` (after `MAIL FROM:` or `RCPT TO:`).
fn split_path(input: &[u8], utf8: bool) -> Result<(&[u8], &[u8]), AddressError> {
    if input.first() != Some(&b'<') {
        return Err(AddressError::MissingBrackets);
    }
    // Find the closing '>' outside a quoted string.
    let mut i = 1;
    let mut quoted = false;
    while i < input.len() {
        let b = input[i];
        if !utf8 && b >= 0x80 {
            return Err(AddressError::Utf8NotAllowed);
        }
        match b {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => break,
            _ => {}
        }
        i += 1;
    }
    if i >= input.len() {
        return Err(AddressError::MissingBrackets);
    }
    if i + 1 > 256 {
        return Err(AddressError::TooLong);
    }
    let inner = &input[1..i];
    let mut rest = &input[i + 1..];
    if !rest.is_empty() && rest[0] != b' ' {
        return Err(AddressError::Trailing);
    }
    while let [b' ', tail @ ..] = rest {
        rest = tail;
    }
    Ok((inner, rest))
}

/// Drops a source route `@a,@b:` (RFC 5321 4.1.2 A-d-l, accepted and ignored per C.).
fn strip_route(inner: &[u8], utf8: bool) -> Result<&[u8], AddressError> {
    if inner.first() != Some(&b'@') {
        return Ok(inner);
    }
    let colon = memchr::memchr(b':', inner).ok_or(AddressError::BadRoute)?;
    for hop in inner[..colon].split(|&b| b == b',') {
        let name = hop.strip_prefix(b"@").ok_or(AddressError::BadRoute)?;
        parse_domain(name, utf8).map_err(|_| AddressError::BadRoute)?;
    }
    Ok(&inner[colon + 1..])
}

/// Parses a bare `local@domain`.
pub fn parse_mailbox(input: &[u8], utf8_allowed: bool) -> Result<Mailbox, AddressError> {
    if !utf8_allowed && !input.is_ascii() {
        return Err(AddressError::Utf8NotAllowed);
    }
    let at = local_part_end(input, utf8_allowed)?;
    if at >= input.len() || input[at] != b'@' {
        return Err(AddressError::MissingDomain);
    }
    let local = &input[..at];
    if local.len() > 64 {
        return Err(AddressError::TooLong);
    }
    let domain = parse_domain(&input[at + 1..], utf8_allowed)?;
    let local_part = String::from_utf8(local.to_vec()).map_err(|_| AddressError::BadLocalPart)?;
    Ok(Mailbox { local_part, domain })
}

/// Validates the local part at the start of `input`; returns where it ends.
fn local_part_end(input: &[u8], utf8: bool) -> Result<usize, AddressError> {
    if input.first() == Some(&b'"') {
        let mut i = 1;
        while i < input.len() {
            match input[i] {
                b'"' => {
                    return if i == 1 {
                        Err(AddressError::BadLocalPart)
                    } else {
                        Ok(i + 1)
                    };
                }
                b'\\' => {
                    match input.get(i + 1) {
                        Some(&c) if (32..=126).contains(&c) => {}
                        _ => return Err(AddressError::BadLocalPart),
                    }
                    i += 2;
                }
                c if (32..=126).contains(&c) || (utf8 && c >= 0x80) => i += 1,
                _ => return Err(AddressError::BadLocalPart),
            }
        }
        return Err(AddressError::BadLocalPart);
    }
    let end = input.iter().position(|&b| b == b'@').unwrap_or(input.len());
    let local = &input[..end];
    if local.is_empty()
        || local
            .split(|&b| b == b'.')
            .any(|atom| atom.is_empty() || !atom.iter().all(|&b| is_atext(b, utf8)))
    {
        return Err(AddressError::BadLocalPart);
    }
    Ok(end)
}

/// Parses a domain name or address literal.
pub fn parse_domain(input: &[u8], utf8: bool) -> Result<Domain, AddressError> {
    if input.len() > 255 {
        return Err(AddressError::TooLong);
    }
    if let Some(lit) = input.strip_prefix(b"[") {
        let lit = lit.strip_suffix(b"]").ok_or(AddressError::BadDomain)?;
        let text = std::str::from_utf8(lit).map_err(|_| AddressError::BadDomain)?;
        if let Some(v6) = text
            .strip_prefix("IPv6:")
            .or_else(|| text.strip_prefix("ipv6:"))
        {
            return v6
                .parse::<Ipv6Addr>()
                .map(|a| Domain::Literal(IpAddr::V6(a)))
                .map_err(|_| AddressError::BadDomain);
        }
        return text
            .parse::<Ipv4Addr>()
            .map(|a| Domain::Literal(IpAddr::V4(a)))
            .map_err(|_| AddressError::BadDomain);
    }
    let name = input.strip_suffix(b".").unwrap_or(input);
    if name.is_empty() {
        return Err(AddressError::BadDomain);
    }
    for label in name.split(|&b| b == b'.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label[0] != b'-'
            && label[label.len() - 1] != b'-'
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || (utf8 && b >= 0x80));
        if !ok {
            return Err(AddressError::BadDomain);
        }
    }
    let s = std::str::from_utf8(name).map_err(|_| AddressError::BadDomain)?;
    Ok(Domain::Name(s.to_ascii_lowercase()))
}

/// Parses `<reverse-path>` at the start of `input`; returns it and the rest (parameters).
pub fn parse_reverse_path(
    input: &[u8],
    utf8_allowed: bool,
) -> Result<(ReversePath, &[u8]), AddressError> {
    let (inner, rest) = split_path(input, utf8_allowed)?;
    if inner.is_empty() {
        return Ok((ReversePath::Null, rest));
    }
    let mailbox = parse_mailbox(strip_route(inner, utf8_allowed)?, utf8_allowed)?;
    Ok((ReversePath::Mailbox(mailbox), rest))
}

/// Parses `<forward-path>` at the start of `input`; returns it and the rest (parameters).
pub fn parse_forward_path(
    input: &[u8],
    utf8_allowed: bool,
) -> Result<(ForwardPath, &[u8]), AddressError> {
    let (inner, rest) = split_path(input, utf8_allowed)?;
    if inner.eq_ignore_ascii_case(b"postmaster") {
        return Ok((ForwardPath::Postmaster, rest));
    }
    if inner.is_empty() {
        return Err(AddressError::BadLocalPart);
    }
    let mailbox = parse_mailbox(strip_route(inner, utf8_allowed)?, utf8_allowed)?;
    Ok((ForwardPath::Mailbox(mailbox), rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressError::*;

    #[test]
    fn forward_paths() {
        let ok: &[(&str, &str, &str)] = &[
            ("<a@b.example>", "a@b.example", ""),
            (
                "<A.B@EXAMPLE.com> NOTIFY=NEVER",
                "A.B@example.com",
                "NOTIFY=NEVER",
            ),
            ("<\"john doe\"@x.test>", "\"john doe\"@x.test", ""),
            ("<\"a\\\"b\"@x.test>", "\"a\\\"b\"@x.test", ""),
            ("<u@[192.0.2.1]>", "u@[192.0.2.1]", ""),
            ("<u@[IPv6:2001:db8::1]>", "u@[IPv6:2001:db8::1]", ""),
            ("<@r1.test,@r2.test:u@x.test>", "u@x.test", ""),
            ("<u@x.test.>", "u@x.test", ""),
            ("<\"a>b\"@x.test>", "\"a>b\"@x.test", ""),
        ];
        for (input, want, rest) in ok {
            let (p, r) = parse_forward_path(input.as_bytes(), false).unwrap();
            assert_eq!(p.to_string(), format!("<{want}>"), "{input}");
            assert_eq!(r, rest.as_bytes());
        }
        assert_eq!(
            parse_forward_path(b"<postMaster>", false).unwrap().0,
            ForwardPath::Postmaster
        );
        let bad: &[(&str, AddressError)] = &[
            ("a@b", MissingBrackets),
            ("<a@b", MissingBrackets),
            ("<>", BadLocalPart),
            ("<a>", MissingDomain),
            ("<a..b@x>", BadLocalPart),
            ("<.a@x>", BadLocalPart),
            ("<a b@x>", BadLocalPart),
            ("<a@-x.test>", BadDomain),
            ("<a@x..test>", BadDomain),
            ("<a@[300.1.1.1]>", BadDomain),
            ("<a@[tag:foo]>", BadDomain),
            ("<a@x>junk", Trailing),
            ("<@r1:u@x", MissingBrackets),
            ("<@r 1:u@x>", BadRoute),
            ("<jö@x.test>", Utf8NotAllowed),
        ];
        for (input, want) in bad {
            assert_eq!(
                parse_forward_path(input.as_bytes(), false).unwrap_err(),
                *want,
                "{input}"
            );
        }
        let long = format!("<{}@x.test>", "a".repeat(65));
        assert_eq!(
            parse_forward_path(long.as_bytes(), false).unwrap_err(),
            TooLong
        );
    }

    #[test]
    fn reverse_paths_and_utf8() {
        assert_eq!(
            parse_reverse_path(b"<>", false).unwrap().0,
            ReversePath::Null
        );
        let (p, _) = parse_reverse_path("<jö@bü.test>".as_bytes(), true).unwrap();
        let ReversePath::Mailbox(m) = p else { panic!() };
        assert!(m.is_utf8());
        assert_eq!(m.to_string(), "jö@bü.test");
    }
}
