//! Test messages: generation on the sending side, integrity check on the receiving side.
//!
//! What it does: builds a message of a requested size whose header carries a run id, a
//! sequence number, the send time and a CRC32C digest of the body, and parses those fields
//! back in the sink so corruption, duplicates and end-to-end latency can be measured.
//!
//! What it does not do: no MIME; the body is printable ASCII filler in 76-column lines.
//!
//! Invariants: the digest covers exactly the octets after the header/body separator, which an
//! MTA must relay unchanged (it may only prepend trace headers).

use std::time::{SystemTime, UNIX_EPOCH};

const FILLER: &[u8] = b"The quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJKLMNOPQR";

/// A body of about `size` octets in CRLF lines (a few starting with a dot, to exercise
/// dot-stuffing).
pub fn body(size: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(size + 80);
    let mut n = 0;
    while b.len() < size {
        if n % 17 == 5 {
            b.push(b'.');
        }
        let take = (size - b.len()).clamp(1, FILLER.len());
        b.extend_from_slice(&FILLER[..take]);
        b.extend_from_slice(b"\r\n");
        n += 1;
    }
    b
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Writes a whole message (header + `body`) into `out`.
pub fn write(
    out: &mut Vec<u8>,
    run: &str,
    seq: u64,
    from: &str,
    to: &str,
    body: &[u8],
    digest: u32,
) {
    out.clear();
    out.extend_from_slice(
        format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: loadgen {run} {seq}\r\n\
             Message-ID: <{run}.{seq}@loadgen.test>\r\nX-Loadgen-Id: {run}/{seq}\r\n\
             X-Loadgen-Sent: {}\r\nX-Loadgen-Digest: {digest:08x}\r\n\r\n",
            now_nanos()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
}

/// What the sink reads back from a loadgen message.
#[derive(Debug, PartialEq, Eq)]
pub struct Check {
    /// `run/seq`.
    pub id: String,
    /// Send time, ns since the epoch.
    pub sent_nanos: u128,
    /// The digest matches the body.
    pub intact: bool,
}

/// Parses the loadgen fields of a received message; `None` if it is not a loadgen message.
pub fn check(message: &[u8]) -> Option<Check> {
    let split = memchr::memmem::find(message, b"\r\n\r\n")?;
    let header = std::str::from_utf8(&message[..split]).ok()?;
    let body = &message[split + 4..];
    let field = |name: &str| {
        header
            .split("\r\n")
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let id = field("X-Loadgen-Id:")?.to_owned();
    let sent_nanos = field("X-Loadgen-Sent:")?.parse().ok()?;
    let digest = u32::from_str_radix(field("X-Loadgen-Digest:")?, 16).ok()?;
    Some(Check {
        id,
        sent_nanos,
        intact: crc32c::crc32c(body) == digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let b = body(4096);
        assert!(b.len() >= 4096 && b.len() < 4096 + 80);
        let mut m = Vec::new();
        write(
            &mut m,
            "r1",
            7,
            "a@x.test",
            "b@y.test",
            &b,
            crc32c::crc32c(&b),
        );
        let c = check(&m).unwrap();
        assert_eq!(c.id, "r1/7");
        assert!(c.intact);
        let mut with_trace = b"Received: from x\r\n\tby y; date\r\n".to_vec();
        with_trace.extend_from_slice(&m);
        assert!(check(&with_trace).unwrap().intact);
        let last = m.len() - 3;
        m[last] ^= 1;
        assert!(!check(&m).unwrap().intact);
        assert!(check(b"Subject: x\r\n\r\nbody").is_none());
    }
}
