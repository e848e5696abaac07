//! Message data: the DATA decoder (dot-unstuffing and end-of-data detection), the BDAT chunk
//! checker, and dot-stuffing for the client (RFC 5321 4.1.1.4, 4.5.2; RFC 3030; SMTP smuggling
//! CVE-2023-51764/51765/51766).
//!
//! What it does: copies well-formed text in long spans (up to 64 KiB): it walks the LFs with
//! memchr up to the next line that starts with a dot, checking that each LF follows a CR and
//! that the span has as many CRs as LFs (so no CR is bare), and appends the span with one
//! `extend_from_slice`. Anything else (a bare CR or LF, a read that ends inside a line end,
//! the dot line itself) goes through a byte-exact state machine that scans with memchr for CR
//! and LF. A few bits of state make the result the same for every split of the input into
//! reads.
//!
//! What it does not do: no allocation or copy per line beyond appending to the caller's body
//! buffer; no MIME or header processing.
//!
//! Invariants and decisions:
//! - A line end is CRLF. A CR not followed by LF is a *bare CR*; an LF not preceded by CR is a
//!   *bare LF*. A line starts only after a real CRLF (or at the start of the data).
//! - The end of data is only `<CRLF>.<CRLF>`: a line consisting of "." that starts after a real
//!   CRLF and is ended by a real CRLF. Bare line ends never start a line, so `\n.\n`, `\r.\r`,
//!   `\n.\r\n` and `\r\n.\n` never end a message, in either policy.
//! - A "." at the start of a line is removed (dot-unstuffing), only at a real line start.
//! - Policy `Reject`: bytes are stored as received (unstuffed) and the bare line end is
//!   flagged; the session refuses the message once its end arrives. Policy `Normalize`: each
//!   bare CR and bare LF is stored as CRLF — but it still does not start a line, so a "." after
//!   it is kept as is and can never become an end marker (re-emission dot-stuffs it).
//! - The stored body ends with the CRLF that precedes the terminating "." line; an empty
//!   message (".\r\n" right after `354`) stores nothing. At most `max_size` octets are stored;
//!   the rest is counted and dropped (`too_large`).

use serde::{Deserialize, Serialize};

/// What to do with a bare CR or bare LF in message data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLineEnding {
    /// Refuse the message (after reading it to its end).
    #[default]
    Reject,
    /// Store every bare CR and bare LF as CRLF.
    Normalize,
}

/// Result of one `decode` call.
#[derive(Debug, PartialEq, Eq)]
pub enum DataEvent {
    /// All input was consumed; more is needed.
    NeedMore,
    /// End of data: `consumed` octets (including the final ".\r\n") belonged to the message.
    End {
        /// Octets of the input consumed.
        consumed: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    /// A CR was the last byte seen.
    Cr,
    /// A "." at the start of a line.
    Dot,
    /// ".\r" at the start of a line.
    DotCr,
}

/// Bounded sink shared by the decoder and the chunk checker.
#[derive(Debug)]
struct Store {
    max: u64,
    total: u64,
    stored: u64,
}

impl Store {
    #[inline]
    fn put(&mut self, bytes: &[u8], body: &mut Vec<u8>) {
        self.total += bytes.len() as u64;
        if self.stored < self.max {
            let room = (self.max - self.stored).min(bytes.len() as u64) as usize;
            body.extend_from_slice(&bytes[..room]);
            self.stored += room as u64;
        }
    }
}

/// The DATA decoder.
#[derive(Debug)]
pub struct DataDecoder {
    store: Store,
    policy: BareLineEnding,
    line_start: bool,
    pending: Pending,
    bare: bool,
    /// Input before this offset of the current `decode` call goes through the state machine
    /// (a span that failed the fast check is not checked again).
    slow_until: usize,
    /// Whether spans are copied whole (false only for comparison with the state machine).
    fast: bool,
}

/// The most bytes one fast span covers, so that a failed check costs little.
const SPAN: usize = 64 * 1024;

impl DataDecoder {
    /// A decoder storing at most `max_size` octets, with the given bare CR/LF policy.
    pub fn new(max_size: u64, policy: BareLineEnding) -> Self {
        DataDecoder {
            store: Store {
                max: max_size,
                total: 0,
                stored: 0,
            },
            policy,
            line_start: true,
            pending: Pending::None,
            bare: false,
            slow_until: 0,
            fast: true,
        }
    }

    /// A decoder that never copies spans whole: the reference the tests and the benchmark
    /// compare the fast path with.
    #[doc(hidden)]
    pub fn state_machine_only(max_size: u64, policy: BareLineEnding) -> Self {
        DataDecoder {
            fast: false,
            ..DataDecoder::new(max_size, policy)
        }
    }

    /// The length of the well-formed span at the start of `rest`, which is inside a line
    /// (not at its start) with nothing pending: it ends with the CRLF before the next line
    /// that starts with a dot, or before a CR that ends `rest`, and has only CRLF pairs. 0 when
    /// there is none.
    fn clean_span(rest: &[u8]) -> Result<usize, usize> {
        let window = &rest[..rest.len().min(SPAN)];
        let mut end = window.len();
        let mut lfs = 0;
        for p in memchr::memchr_iter(b'\n', window) {
            if p == 0 || window[p - 1] != b'\r' {
                // A bare LF: the state machine takes the input up to it.
                return Err(p + 1);
            }
            lfs += 1;
            if window.get(p + 1) == Some(&b'.') {
                end = p + 1;
                break;
            }
        }
        if end == window.len() && window.last() == Some(&b'\r') {
            end -= 1;
        }
        // Every LF follows a CR; as many CRs as LFs means no CR is bare.
        if memchr::memchr_iter(b'\r', &window[..end]).count() != lfs {
            return Err(end);
        }
        Ok(end)
    }

    /// True if the message exceeded `max_size` (the stored body is truncated).
    pub fn too_large(&self) -> bool {
        self.store.total > self.store.max
    }

    /// True if a bare CR or LF was seen.
    pub fn bare_line_ending_seen(&self) -> bool {
        self.bare
    }

    /// Decoded octets seen so far, stored or not.
    pub fn total_octets(&self) -> u64 {
        self.store.total
    }

    fn bare_end(&mut self, byte: u8, body: &mut Vec<u8>) {
        self.bare = true;
        match self.policy {
            BareLineEnding::Reject => self.store.put(&[byte], body),
            BareLineEnding::Normalize => self.store.put(b"\r\n", body),
        }
    }

    /// Decodes `input`, appending the unstuffed message to `body`.
    pub fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> DataEvent {
        let mut i = 0;
        self.slow_until = 0;
        loop {
            match self.pending {
                Pending::None => {}
                Pending::Cr => {
                    let Some(&b) = input.get(i) else {
                        return DataEvent::NeedMore;
                    };
                    self.pending = Pending::None;
                    if b == b'\n' {
                        self.store.put(b"\r\n", body);
                        i += 1;
                        self.line_start = true;
                    } else {
                        self.bare_end(b'\r', body);
                    }
                    continue;
                }
                Pending::Dot => {
                    let Some(&b) = input.get(i) else {
                        return DataEvent::NeedMore;
                    };
                    if b == b'\r' {
                        self.pending = Pending::DotCr;
                        i += 1;
                    } else {
                        // A stuffed (or lone) leading dot is removed.
                        self.pending = Pending::None;
                    }
                    continue;
                }
                Pending::DotCr => {
                    let Some(&b) = input.get(i) else {
                        return DataEvent::NeedMore;
                    };
                    if b == b'\n' {
                        return DataEvent::End { consumed: i + 1 };
                    }
                    // ".\r" + something: the dot is unstuffed, the CR is bare.
                    self.pending = Pending::None;
                    self.bare_end(b'\r', body);
                    continue;
                }
            }
            if self.line_start {
                let Some(&b) = input.get(i) else {
                    return DataEvent::NeedMore;
                };
                self.line_start = false;
                if b == b'.' {
                    self.pending = Pending::Dot;
                    i += 1;
                    continue;
                }
            }
            let rest = &input[i..];
            if self.fast && i >= self.slow_until {
                match Self::clean_span(rest) {
                    Ok(0) => {}
                    Ok(n) => {
                        self.store.put(&rest[..n], body);
                        i += n;
                        self.line_start = rest[..n].ends_with(b"\r\n");
                        continue;
                    }
                    Err(n) => self.slow_until = i + n,
                }
            }
            match memchr::memchr2(b'\r', b'\n', rest) {
                None => {
                    self.store.put(rest, body);
                    return DataEvent::NeedMore;
                }
                Some(j) => {
                    self.store.put(&rest[..j], body);
                    i += j + 1;
                    if rest[j] == b'\n' {
                        self.bare_end(b'\n', body);
                    } else {
                        self.pending = Pending::Cr;
                    }
                }
            }
        }
    }
}

/// Applies the bare CR/LF policy to raw BDAT chunk bytes (no dot handling: RFC 3030).
#[derive(Debug)]
pub struct ChunkChecker {
    policy: BareLineEnding,
    pending_cr: bool,
    bare: bool,
}

impl ChunkChecker {
    /// A checker with the given policy.
    pub fn new(policy: BareLineEnding) -> Self {
        ChunkChecker {
            policy,
            pending_cr: false,
            bare: false,
        }
    }

    fn bare_end(&mut self, byte: u8, body: &mut Vec<u8>) {
        self.bare = true;
        match self.policy {
            BareLineEnding::Reject => body.push(byte),
            BareLineEnding::Normalize => body.extend_from_slice(b"\r\n"),
        }
    }

    /// Appends `chunk` to `body`, noting (and under `Normalize` fixing) bare CR/LF.
    pub fn push(&mut self, chunk: &[u8], body: &mut Vec<u8>) {
        let mut i = 0;
        if self.pending_cr {
            let Some(&b) = chunk.first() else { return };
            self.pending_cr = false;
            if b == b'\n' {
                body.extend_from_slice(b"\r\n");
                i = 1;
            } else {
                self.bare_end(b'\r', body);
            }
        }
        while i < chunk.len() {
            let rest = &chunk[i..];
            match memchr::memchr2(b'\r', b'\n', rest) {
                None => {
                    body.extend_from_slice(rest);
                    return;
                }
                Some(j) => {
                    body.extend_from_slice(&rest[..j]);
                    if rest[j] == b'\n' {
                        self.bare_end(b'\n', body);
                        i += j + 1;
                    } else if j + 1 == rest.len() {
                        self.pending_cr = true;
                        return;
                    } else if rest[j + 1] == b'\n' {
                        body.extend_from_slice(b"\r\n");
                        i += j + 2;
                    } else {
                        self.bare_end(b'\r', body);
                        i += j + 1;
                    }
                }
            }
        }
    }

    /// Ends the message: a trailing lone CR is bare.
    pub fn finish(&mut self, body: &mut Vec<u8>) {
        if self.pending_cr {
            self.pending_cr = false;
            self.bare_end(b'\r', body);
        }
    }

    /// True if a bare CR or LF was seen.
    pub fn bare_line_ending_seen(&self) -> bool {
        self.bare
    }
}

/// Client side (RFC 5321 4.5.2): appends `body` to `out` with a "." doubled at the start of
/// every line, then the end-of-data marker (adding a CRLF first if the body does not end
/// with one).
pub fn dot_stuff(body: &[u8], out: &mut Vec<u8>) {
    out.reserve(body.len() + body.len() / 64 + 5);
    let mut start = 0;
    if body.first() == Some(&b'.') {
        out.push(b'.');
    }
    for pos in memchr::memmem::find_iter(body, b"\n.") {
        out.extend_from_slice(&body[start..pos + 1]);
        out.push(b'.');
        start = pos + 1;
    }
    out.extend_from_slice(&body[start..]);
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
