//! HAProxy PROXY protocol, versions 1 (text) and 2 (binary), sans-IO.
//!
//! What it does: recognises the header a load balancer puts in front of a proxied TCP
//! connection and returns the original source and destination addresses together with
//! the number of bytes the header took. [`parse`] takes the bytes received so far and
//! either asks for more ([`Parsed::Incomplete`]), returns the header, or names the problem.
//!
//! What it does not do: no socket reads, no timeouts, no policy on which peers may send a
//! header (the caller decides that), no interpretation of v2 TLVs (they are skipped, bounded
//! by the length field). Unix-socket and unspecified addresses come back as `None`.
//!
//! Invariants: [`parse`] never panics and never reads past `buf`; a returned `consumed` is
//! at most `buf.len()`; [`Parsed::Incomplete`] is returned only when `buf` is a prefix of
//! some header that could still be valid, so a caller reading byte by byte never waits on
//! garbage. Size caps: a v1 header is at most 107 bytes including CRLF (the spec's limit);
//! a v2 header is at most 16 + 536 = 552 bytes (the 16-byte fixed part plus a payload of
//! at most 536 bytes: 216 bytes of unix addresses plus room for TLVs, as the spec suggests
//! for a receive buffer). Larger v2 length fields are rejected with [`ProxyError::TooLong`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12-byte signature that starts every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The v1 prefix, including the space after `PROXY`.
const V1_PREFIX: &[u8] = b"PROXY ";

/// Longest v1 header, CRLF included (spec section 2.1).
pub const V1_MAX_LEN: usize = 107;

/// Largest v2 payload accepted after the 16-byte fixed part.
pub const V2_MAX_PAYLOAD: usize = 536;

/// Length of the fixed part of a v2 header.
const V2_FIXED_LEN: usize = 16;

/// The addresses carried by a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client address, `None` when the header does not carry one (v1
    /// `UNKNOWN`, v2 `LOCAL`, `AF_UNSPEC` or unix sockets).
    pub source: Option<SocketAddr>,
    /// The address the client connected to, `None` in the same cases as `source`.
    pub destination: Option<SocketAddr>,
}

/// The outcome of [`parse`] on the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// `buf` is a prefix of a possibly valid header: read more bytes and call again.
    Incomplete,
    /// A complete header; the connection's payload starts at `buf[consumed..]`.
    Header {
        /// The decoded addresses.
        header: ProxyHeader,
        /// The number of bytes of `buf` the header occupies.
        consumed: usize,
    },
}

/// Why the bytes are not an acceptable PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The bytes start with neither the v1 prefix nor the v2 signature.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// A v1 header without CRLF within 107 bytes, or a v2 length field over the cap.
    #[error("PROXY header too long")]
    TooLong,
    /// A v2 header whose version nibble is not 2.
    #[error("unsupported PROXY protocol version {0}")]
    UnsupportedVersion(u8),
    /// A v2 command other than LOCAL or PROXY.
    #[error("unsupported PROXY v2 command {0}")]
    UnsupportedCommand(u8),
    /// A v2 address family or transport outside the supported set.
    #[error("unsupported PROXY v2 address family/protocol 0x{0:02x}")]
    UnsupportedFamily(u8),
    /// The header is structurally wrong; the text names the problem.
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
}

/// Parses a PROXY header (v1 or v2) at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let Some(&first) = buf.first() else {
        return Ok(Parsed::Incomplete);
    };
    if first == V1_PREFIX[0] {
        parse_v1(buf)
    } else if first == V2_SIGNATURE[0] {
        parse_v2(buf)
    } else {
        Err(ProxyError::NotProxy)
    }
}

/// True when `buf` and `full` agree on their common length.
fn prefix_matches(buf: &[u8], full: &[u8]) -> bool {
    let n = buf.len().min(full.len());
    buf[..n] == full[..n]
}

// ---------------------------------------------------------------------------------------
// Version 1
// ---------------------------------------------------------------------------------------

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if !prefix_matches(buf, V1_PREFIX) {
        return Err(ProxyError::NotProxy);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(cr) = memchr::memchr(b'\r', window) else {
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyError::TooLong);
        }
        if window.contains(&b'\n') {
            return Err(ProxyError::Malformed("bare LF in v1 header"));
        }
        check_v1_partial(window)?;
        return Ok(Parsed::Incomplete);
    };
    // Everything before the CR must be a valid line body; the next byte must be LF.
    match window.get(cr + 1) {
        None if buf.len() >= V1_MAX_LEN => return Err(ProxyError::TooLong),
        None => {
            // The line body is complete: validate it now so a bad line fails before the LF.
            parse_v1_line(&window[..cr])?;
            return Ok(Parsed::Incomplete);
        }
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::Malformed("CR not followed by LF in v1 header")),
    }
    let header = parse_v1_line(&window[..cr])?;
    Ok(Parsed::Header {
        header,
        consumed: cr + 2,
    })
}

/// Checks an unterminated v1 line for bytes that can never be valid, so garbage is
/// rejected early instead of waiting for 107 bytes. Accepts every prefix of a valid line.
fn check_v1_partial(line: &[u8]) -> Result<(), ProxyError> {
    let Some(rest) = line.get(V1_PREFIX.len()..) else {
        return Ok(());
    };
    if is_unknown(rest) {
        return check_unknown_tail(rest);
    }
    let ok = rest
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'.' | b':'));
    if !ok {
        return Err(ProxyError::Malformed("invalid character in v1 header"));
    }
    if rest.windows(2).any(|w| w == b"  ") || rest.first() == Some(&b' ') {
        return Err(ProxyError::Malformed("extra space in v1 header"));
    }
    let protocol = rest.split(|&b| b == b' ').next().unwrap_or_default();
    let complete_protocol = rest.len() > protocol.len();
    let known = [&b"TCP4"[..], b"TCP6", b"UNKNOWN"];
    let plausible = if complete_protocol {
        known.contains(&protocol)
    } else {
        known.iter().any(|k| k.starts_with(protocol))
    };
    if !plausible {
        return Err(ProxyError::Malformed("unknown v1 protocol"));
    }
    Ok(())
}

/// True when the text after `PROXY ` is the `UNKNOWN` protocol, alone or followed by a space.
fn is_unknown(rest: &[u8]) -> bool {
    match rest.strip_prefix(b"UNKNOWN") {
        Some(tail) => tail.is_empty() || tail[0] == b' ',
        None => false,
    }
}

/// After `UNKNOWN` the spec lets the line carry anything; only line breaks are refused.
fn check_unknown_tail(rest: &[u8]) -> Result<(), ProxyError> {
    if rest.iter().any(|&b| b == b'\n' || b == b'\r') {
        return Err(ProxyError::Malformed("line break inside v1 header"));
    }
    Ok(())
}

/// Parses a complete v1 line body (without CRLF).
fn parse_v1_line(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let body = line
        .strip_prefix(V1_PREFIX)
        .ok_or(ProxyError::Malformed("missing PROXY prefix"))?;
    if is_unknown(body) {
        // The receiver ignores whatever follows UNKNOWN.
        check_unknown_tail(body)?;
        return Ok(ProxyHeader {
            source: None,
            destination: None,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| ProxyError::Malformed("non-ASCII in v1"))?;
    let mut fields = text.split(' ');
    let v6 = match fields.next().unwrap_or_default() {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(ProxyError::Malformed("unknown v1 protocol")),
    };
    let parts: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = parts[..] else {
        return Err(ProxyError::Malformed("v1 header needs exactly four fields"));
    };
    let src = parse_v1_addr(src, v6)?;
    let dst = parse_v1_addr(dst, v6)?;
    let sport = parse_v1_port(sport)?;
    let dport = parse_v1_port(dport)?;
    Ok(ProxyHeader {
        source: Some(SocketAddr::new(src, sport)),
        destination: Some(SocketAddr::new(dst, dport)),
    })
}

fn parse_v1_addr(text: &str, v6: bool) -> Result<IpAddr, ProxyError> {
    if v6 {
        text.parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| ProxyError::Malformed("bad IPv6 address in TCP6 header"))
    } else {
        text.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| ProxyError::Malformed("bad IPv4 address in TCP4 header"))
    }
}

/// A port: 1 to 5 decimal digits, value 0..=65535, no sign, no leading zero (except "0").
fn parse_v1_port(text: &str) -> Result<u16, ProxyError> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > 5 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(ProxyError::Malformed("bad port in v1 header"));
    }
    if bytes.len() > 1 && bytes[0] == b'0' {
        return Err(ProxyError::Malformed("leading zero in v1 port"));
    }
    text.parse::<u16>()
        .map_err(|_| ProxyError::Malformed("port out of range in v1 header"))
}

// ---------------------------------------------------------------------------------------
// Version 2
// ---------------------------------------------------------------------------------------

const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;

const FAM_UNSPEC: u8 = 0x00;
const FAM_TCP4: u8 = 0x11;
const FAM_TCP6: u8 = 0x21;
const FAM_UNIX_STREAM: u8 = 0x31;

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if !prefix_matches(buf, &V2_SIGNATURE) {
        return Err(ProxyError::NotProxy);
    }
    let Some(&ver_cmd) = buf.get(12) else {
        return Ok(Parsed::Incomplete);
    };
    let version = ver_cmd >> 4;
    if version != 2 {
        return Err(ProxyError::UnsupportedVersion(version));
    }
    let command = ver_cmd & 0x0f;
    if command != CMD_LOCAL && command != CMD_PROXY {
        return Err(ProxyError::UnsupportedCommand(command));
    }
    let Some(&family) = buf.get(13) else {
        return Ok(Parsed::Incomplete);
    };
    let min_len = match family {
        FAM_UNSPEC => 0,
        FAM_TCP4 => 12,
        FAM_TCP6 => 36,
        FAM_UNIX_STREAM => 216,
        // With LOCAL the receiver must ignore the family; anything else is unsupported.
        _ if command == CMD_LOCAL => 0,
        _ => return Err(ProxyError::UnsupportedFamily(family)),
    };
    let (Some(&hi), Some(&lo)) = (buf.get(14), buf.get(15)) else {
        return Ok(Parsed::Incomplete);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > V2_MAX_PAYLOAD {
        return Err(ProxyError::TooLong);
    }
    if command == CMD_PROXY && len < min_len {
        return Err(ProxyError::Malformed(
            "v2 length too short for the address family",
        ));
    }
    let total = V2_FIXED_LEN + len;
    let Some(payload) = buf.get(V2_FIXED_LEN..total) else {
        return Ok(Parsed::Incomplete);
    };
    let header = if command == CMD_LOCAL {
        ProxyHeader {
            source: None,
            destination: None,
        }
    } else {
        // With AF_UNSPEC the receiver must ignore the whole payload, so it is not walked.
        if family != FAM_UNSPEC {
            check_tlvs(&payload[min_len..])?;
        }
        v2_addresses(family, payload)
    };
    Ok(Parsed::Header {
        header,
        consumed: total,
    })
}

/// Decodes the address block; `payload` is at least as long as the family requires.
fn v2_addresses(family: u8, payload: &[u8]) -> ProxyHeader {
    let none = ProxyHeader {
        source: None,
        destination: None,
    };
    let port = |at: usize| match payload.get(at..at + 2) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    };
    match family {
        FAM_TCP4 => {
            let (Some(s), Some(d)) = (octets::<4>(payload, 0), octets::<4>(payload, 4)) else {
                return none;
            };
            ProxyHeader {
                source: Some(SocketAddr::new(Ipv4Addr::from(s).into(), port(8))),
                destination: Some(SocketAddr::new(Ipv4Addr::from(d).into(), port(10))),
            }
        }
        FAM_TCP6 => {
            let (Some(s), Some(d)) = (octets::<16>(payload, 0), octets::<16>(payload, 16)) else {
                return none;
            };
            ProxyHeader {
                source: Some(SocketAddr::new(Ipv6Addr::from(s).into(), port(32))),
                destination: Some(SocketAddr::new(Ipv6Addr::from(d).into(), port(34))),
            }
        }
        _ => none,
    }
}

fn octets<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at + N)?.try_into().ok()
}

/// Walks the TLV area: each entry must fit inside the declared length.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let [_kind, hi, lo, rest @ ..] = tlvs else {
            return Err(ProxyError::Malformed("truncated v2 TLV header"));
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if len > rest.len() {
            return Err(ProxyError::Malformed("v2 TLV overruns the header"));
        }
        tlvs = &rest[len..];
    }
    Ok(())
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
