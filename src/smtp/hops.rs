//! Hop counting for loop detection (RFC 5321 6.3): the `Received:` fields of a message's
//! header section.
//!
//! What it does: counts the header fields named `Received` (any case, RFC 5322 2.2), each
//! starting at the beginning of a line, before the first empty line. Continuation lines (that
//! start with a space or a tab) are part of the field above them and are not counted.
//!
//! What it does not do: no parsing of the fields' contents, no decision (the caller compares
//! with `smtp.max_received_headers`), no allocation.
//!
//! Invariants: one pass over the header section only (the body is never looked at); a header
//! without an empty line is counted to its end; bare LF line ends are accepted as line ends.

/// Number of `Received:` fields in the header section of `message` (CRLF or LF lines).
pub fn received_count(message: &[u8]) -> usize {
    let mut count = 0;
    let mut rest = message;
    loop {
        // `rest` is at the start of a line.
        if rest.is_empty() || rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            return count;
        }
        if is_received(rest) {
            count += 1;
        }
        match memchr::memchr(b'\n', rest) {
            Some(i) => rest = &rest[i + 1..],
            None => return count,
        }
    }
}

/// `Received` then optional spaces or tabs (obsolete syntax, RFC 5322 4.5.8) then `:`.
fn is_received(line: &[u8]) -> bool {
    const NAME: &[u8] = b"received";
    if line.len() < NAME.len() || !line[..NAME.len()].eq_ignore_ascii_case(NAME) {
        return false;
    }
    let after = &line[NAME.len()..];
    let wsp = after
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    after.get(wsp) == Some(&b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_fields_not_continuations_nor_the_body() {
        let m = b"Received: from a\r\n\tby b\r\nRECEIVED : x\r\nreceived:y\r\n\
                  X-Received: no\r\nSubject: Received: no\r\n Received: continuation\r\n\
                  \r\nReceived: in the body\r\n";
        assert_eq!(received_count(m), 3);
    }

    #[test]
    fn edges() {
        assert_eq!(received_count(b""), 0);
        assert_eq!(received_count(b"\r\nReceived: x\r\n"), 0, "empty header");
        assert_eq!(received_count(b"Received: x"), 1, "no line end");
        assert_eq!(
            received_count(b"Received: x\nReceived: y\n\nReceived: z\n"),
            2
        );
        assert_eq!(received_count(b"Receive: x\r\nReceivedX: y\r\n"), 0);
        let many = "Received: x\r\n".repeat(101) + "\r\nbody\r\n";
        assert_eq!(received_count(many.as_bytes()), 101);
    }
}
