//! Reading the PROXY protocol header off an accepted socket (listeners with
//! `proxy_protocol = true`).
//!
//! What it does: reads exactly the bytes of one HAProxy PROXY header (v1 or v2) from a fresh
//! connection, within a deadline, and returns the addresses it carries. The parsing itself is
//! [`crate::proxy::parse`]; this module only decides how many bytes to ask the socket for.
//!
//! What it does not do: no replies (the peer is a load balancer: on any error the caller
//! closes the connection silently), no check of who sent the header (the listener must be
//! reachable only by the balancer), no TLS.
//!
//! Invariants: never reads a byte past the header, so whatever follows (SMTP commands, a TLS
//! ClientHello on implicit TLS) is left in the socket for the session. Reads are sized so: at
//! most 15 bytes first (the shortest header, `PROXY UNKNOWN\r\n`, is 15 bytes and a v2 header at
//! least 16), then for v2 the rest of the 16-byte fixed part and then exactly its length, for v1
//! one byte at a time up to the CRLF. At most 552 bytes are read in all.

use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;

use crate::proxy::{self, Parsed, ProxyError, ProxyHeader, V1_MAX_LEN, V2_MAX_PAYLOAD};

/// The shortest possible header.
const FIRST_READ: usize = 15;
/// The fixed part of a v2 header.
const V2_FIXED: usize = 16;
/// The largest header accepted.
const MAX_HEADER: usize = V2_FIXED + V2_MAX_PAYLOAD;

/// Why no header was read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The socket failed or timed out.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection before a complete header.
    #[error("connection closed inside the PROXY header")]
    Closed,
    /// The bytes are not an acceptable header.
    #[error(transparent)]
    Invalid(#[from] ProxyError),
}

/// Reads one PROXY header from `stream`, giving up after `timeout`.
pub async fn read(stream: &mut TcpStream, timeout: Duration) -> Result<ProxyHeader, HeaderError> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; MAX_HEADER];
    let (mut len, mut want) = (0usize, FIRST_READ);
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
        }
        stream
            .set_read_timeout(Some(wait))
            .map_err(std::io::Error::from)?;
        let n = stream.read(&mut buf[len..want]).await?;
        if n == 0 {
            return Err(HeaderError::Closed);
        }
        len += n;
        match proxy::parse(&buf[..len])? {
            Parsed::Header { header, consumed } if consumed == len => return Ok(header),
            Parsed::Header { .. } => {
                return Err(ProxyError::Malformed("header shorter than any valid one").into());
            }
            Parsed::Incomplete if len < want => {}
            Parsed::Incomplete => want = next_want(&buf[..len])?,
        }
    }
}

/// How many bytes the header has at least, given the complete-so-far prefix `buf`.
fn next_want(buf: &[u8]) -> Result<usize, ProxyError> {
    let want = if buf[0] == proxy::V2_SIGNATURE[0] {
        if buf.len() < V2_FIXED {
            V2_FIXED
        } else {
            V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]))
        }
    } else {
        buf.len() + 1
    };
    let cap = if buf[0] == proxy::V2_SIGNATURE[0] {
        MAX_HEADER
    } else {
        V1_MAX_LEN
    };
    if want <= buf.len() || want > cap {
        return Err(ProxyError::TooLong);
    }
    Ok(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_is_read_byte_by_byte_after_the_first_fifteen() {
        assert_eq!(next_want(b"PROXY TCP4 1.2."), Ok(16));
        assert_eq!(next_want(&[b'P'; V1_MAX_LEN]), Err(ProxyError::TooLong));
    }

    #[test]
    fn v2_reads_the_fixed_part_then_its_length() {
        let mut fixed = proxy::V2_SIGNATURE.to_vec();
        fixed.extend_from_slice(&[0x21, 0x11]);
        fixed.extend_from_slice(&12u16.to_be_bytes());
        assert_eq!(next_want(&fixed[..15]), Ok(16));
        assert_eq!(next_want(&fixed), Ok(28));
        fixed[14..16].copy_from_slice(&600u16.to_be_bytes());
        assert_eq!(next_want(&fixed), Err(ProxyError::TooLong));
    }
}
