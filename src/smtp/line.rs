//! Command line framing for the server (RFC 5321 2.3.8, 4.1.1.4, 4.5.3.1.4).
//!
//! What it does: finds the next complete command line in the bytes received so far, enforcing
//! the line-length limit and refusing lines ended by a bare LF.
//!
//! What it does not do: no parsing of the command, no buffering (the caller owns the buffer).
//!
//! Invariants: a line is only ever ended by LF; a line counts as a command only when that LF is
//! preceded by CR. Bytes already scanned are not scanned again when the caller calls back with
//! more input appended (no quadratic rescans). A line over the limit is reported once, when its
//! LF arrives, and its bytes are dropped as they come (memory stays bounded).

/// One framing event.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A complete command line without its CRLF.
    Command(&'a [u8]),
    /// The line exceeded the limit (CRLF included); it has been discarded up to its LF.
    TooLong,
    /// A line ended by a bare LF (RFC 5321 4.1.1.4: servers must not accept it).
    BareLf,
}

/// Incremental line framer.
#[derive(Debug)]
pub struct LineReader {
    max_len: usize,
    discarding: bool,
    scanned: usize,
}

impl LineReader {
    /// A framer for lines of at most `max_len` octets including CRLF.
    pub fn new(max_len: usize) -> Self {
        LineReader {
            max_len,
            discarding: false,
            scanned: 0,
        }
    }

    /// Looks at `input` (the bytes not yet consumed). Returns how many octets were consumed and
    /// the next line event, if one is complete. With `(n, None)` the caller drops `n` octets,
    /// keeps the rest and calls again once more input has arrived.
    pub fn next<'a>(&mut self, input: &'a [u8]) -> (usize, Option<Line<'a>>) {
        if self.discarding {
            return match memchr::memchr(b'\n', input) {
                None => (input.len(), None),
                Some(i) => {
                    self.discarding = false;
                    (i + 1, Some(Line::TooLong))
                }
            };
        }
        let from = self.scanned.min(input.len());
        match memchr::memchr(b'\n', &input[from..]) {
            Some(j) => {
                let i = from + j;
                self.scanned = 0;
                if i + 1 > self.max_len {
                    (i + 1, Some(Line::TooLong))
                } else if i == 0 || input[i - 1] != b'\r' {
                    (i + 1, Some(Line::BareLf))
                } else {
                    (i + 1, Some(Line::Command(&input[..i - 1])))
                }
            }
            None if input.len() >= self.max_len => {
                self.discarding = true;
                self.scanned = 0;
                (input.len(), None)
            }
            None => {
                self.scanned = input.len();
                (0, None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(input: &[u8], max: usize, chunk: usize) -> Vec<String> {
        let mut r = LineReader::new(max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                let (n, line) = r.next(&buf);
                let ev = line.map(|l| match l {
                    Line::Command(c) => String::from_utf8_lossy(c).into_owned(),
                    Line::TooLong => "<long>".into(),
                    Line::BareLf => "<lf>".into(),
                });
                buf.drain(..n);
                match ev {
                    Some(e) => out.push(e),
                    None => break,
                }
            }
        }
        out
    }

    #[test]
    fn lines_at_every_split() {
        let input = b"EHLO a\r\nNOOP\nabcdefghijklmnopqrstuvwxyz\r\nQUIT\r\n123456\r\nx\r\r\n";
        let want = ["EHLO a", "<lf>", "<long>", "QUIT", "123456", "x\r"];
        for chunk in 1..input.len() + 1 {
            assert_eq!(frame(input, 8, chunk), want, "chunk {chunk}");
        }
    }

    #[test]
    fn exact_limit() {
        assert_eq!(frame(b"123456\r\n", 8, 100), ["123456"]);
        assert_eq!(frame(b"1234567\r\n", 8, 100), ["<long>"]);
        assert_eq!(frame(b"1234567\r\n", 8, 1), ["<long>"]);
    }
}
