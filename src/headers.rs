//! Fields of a message's header section, found where they stand (RFC 5322 2.2).
//!
//! What it does: finds a header field by name in the header section of a stored message
//! (our `Received:` first, then the client's header) and gives its value: unfolded as text
//! ([`value`]), or, for an identifier like `Message-ID`, the first `<...>` token, borrowed
//! from the message without copying ([`message_id`]).
//!
//! What it does not do: no decoding of encoded words, no parsing of structured fields beyond
//! the angle-bracketed token, no changes to the message.
//!
//! Invariants: only the header section is read (it ends at the first empty line); the first
//! field of that name wins; a value of over [`MAX_ID`] octets is not an identifier.

/// The longest Message-ID taken (RFC 5322 lines are at most 998 octets).
pub const MAX_ID: usize = 998;

/// The lines of the header section, without their line endings.
fn header_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
}

/// Whether `line` starts field `name` (`Name:`, any case).
fn starts_field<'a>(line: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let n = name.len();
    (line.len() > n && line[n] == b':' && line[..n].eq_ignore_ascii_case(name.as_bytes()))
        .then(|| &line[n + 1..])
}

/// The value of field `name`, unfolded and trimmed; None when absent or empty.
pub fn value(body: &[u8], name: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in header_lines(body) {
        let folded = line[0] == b' ' || line[0] == b'\t';
        match (&mut value, folded) {
            (Some(v), true) => {
                v.push(' ');
                v.push_str(String::from_utf8_lossy(line).trim());
            }
            (Some(_), false) => break,
            (None, _) => {
                if let Some(rest) = starts_field(line, name) {
                    value = Some(String::from_utf8_lossy(rest).trim().to_owned());
                }
            }
        }
    }
    value.filter(|v| !v.is_empty())
}

/// True when the message says `TLS-Required: No` (RFC 8689 5): its sender asks that the
/// receiver's published TLS policies (DANE, MTA-STS) not hold it back.
pub fn tls_required_no(body: &[u8]) -> bool {
    value(body, "TLS-Required").is_some_and(|v| v.eq_ignore_ascii_case("no"))
}

/// The `<...>` token of the first `Message-ID` field (on its first line or a folded one), as
/// written; None when absent, malformed or over [`MAX_ID`] octets.
pub fn message_id(body: &[u8]) -> Option<&str> {
    let mut in_field = false;
    for line in header_lines(body) {
        let folded = line[0] == b' ' || line[0] == b'\t';
        let rest = match (in_field, folded) {
            (true, true) => line,
            (true, false) => return None,
            (false, _) => match starts_field(line, "Message-ID") {
                Some(rest) => {
                    in_field = true;
                    rest
                }
                None => continue,
            },
        };
        let Some(open) = rest.iter().position(|&b| b == b'<') else {
            if rest.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return None;
        };
        let token = &rest[open..];
        let close = token.iter().position(|&b| b == b'>')?;
        let id = &token[..=close];
        return (id.len() <= MAX_ID)
            .then(|| std::str::from_utf8(id).ok())
            .flatten();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_unfold_and_stop_at_the_body() {
        let m = b"Received: x\r\nX-Pool: bulk\r\nSubject: a\r\n folded\r\n\r\nX-Pool: body\r\n";
        assert_eq!(value(m, "x-pool").as_deref(), Some("bulk"));
        assert_eq!(value(m, "Subject").as_deref(), Some("a folded"));
        assert_eq!(value(m, "X-Other"), None);
        assert_eq!(value(b"\r\nX-Pool: late\r\n", "X-Pool"), None);
        assert_eq!(value(b"X-Pool:\r\n\r\n", "X-Pool"), None);
    }

    #[test]
    fn message_ids_as_written() {
        let m = b"Received: from x\r\n by y\r\nMessage-ID: <a.1@shop.test>\r\n\r\nbody";
        assert_eq!(message_id(m), Some("<a.1@shop.test>"));
        let folded = b"message-id:\r\n  <b@x.test> (comment)\r\nSubject: s\r\n\r\n";
        assert_eq!(message_id(folded), Some("<b@x.test>"));
        assert_eq!(
            message_id(b"Subject: s\r\n\r\nMessage-ID: <late@x>\r\n"),
            None
        );
        assert_eq!(message_id(b"Message-ID: no brackets\r\n\r\n"), None);
        assert_eq!(message_id(b"Message-ID: <unclosed\r\n\r\n"), None);
        let long = format!("Message-ID: <{}@x>\r\n\r\n", "a".repeat(MAX_ID));
        assert_eq!(message_id(long.as_bytes()), None);
        assert_eq!(message_id(b""), None);
    }
}
