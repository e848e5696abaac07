//! Reading the header section of a message: field iteration and the
//! RFC5322.From domain.
//!
//! This module does not canonicalize, sign or validate header syntax beyond
//! what is needed to find field names and the From: address; it never
//! allocates per field except for the returned domain.
//!
//! Invariants: the header section ends at the first empty line (CRLF or bare
//! LF) or at the end of the input; a line starting with a space or tab
//! continues the previous field; a line without a colon is skipped.

/// Iterates over the header fields of `message` as `(name, value)` pairs; the
/// value is the raw (possibly folded) text after the colon.
pub(crate) fn fields(message: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = message;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() || rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
                return None;
            }
            // One field: this line plus every continuation line.
            let mut end = 0;
            loop {
                let line_end =
                    memchr::memchr(b'\n', &rest[end..]).map_or(rest.len(), |p| end + p + 1);
                end = line_end;
                match rest.get(end) {
                    Some(b' ' | b'\t') => continue,
                    _ => break,
                }
            }
            let (field, tail) = rest.split_at(end);
            rest = tail;
            if let Some(colon) = memchr::memchr(b':', field) {
                let name = trim(&field[..colon]);
                if !name.is_empty() && !name.iter().any(|b| b.is_ascii_whitespace()) {
                    return Some((name, &field[colon + 1..]));
                }
            }
        }
    })
}

/// The lowercased domain of the first address in the first From: field.
pub(crate) fn from_domain(message: &[u8]) -> Option<String> {
    let (_, value) = fields(message).find(|(n, _)| n.eq_ignore_ascii_case(b"from"))?;
    let cleaned = strip_quotes_and_comments(value);
    let address = match memchr::memchr(b'<', &cleaned) {
        Some(lt) => {
            let inner = &cleaned[lt + 1..];
            &inner[..memchr::memchr(b'>', inner).unwrap_or(inner.len())]
        }
        None => {
            // A plain address list: the first entry; a group "name: a@b;" keeps
            // the part after the colon.
            let first = &cleaned[..memchr::memchr(b',', &cleaned).unwrap_or(cleaned.len())];
            match memchr::memchr(b':', first) {
                Some(colon) => &first[colon + 1..],
                None => first,
            }
        }
    };
    let at = memchr::memrchr(b'@', address)?;
    let domain = trim(&address[at + 1..]);
    let domain = domain.strip_suffix(b";").unwrap_or(domain);
    let domain = domain.strip_suffix(b".").unwrap_or(domain);
    let valid = !domain.is_empty()
        && domain
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') || b >= 0x80);
    if !valid {
        return None;
    }
    String::from_utf8(domain.to_ascii_lowercase()).ok()
}

/// Removes quoted strings and (nested) comments, and unfolds line breaks into
/// spaces, so that `<`, `@` and `,` inside them are not mistaken for syntax.
fn strip_quotes_and_comments(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for &b in value {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted || depth > 0 => escaped = true,
            b'"' if depth == 0 => {
                quoted = !quoted;
                out.push(b' ');
            }
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => {
                depth -= 1;
                out.push(b' ');
            }
            _ if quoted || depth > 0 => {}
            b'\r' | b'\n' => out.push(b' '),
            _ => out.push(b),
        }
    }
    out
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(message: &str) -> Option<String> {
        from_domain(message.as_bytes())
    }

    #[test]
    fn plain_and_angle_addresses() {
        assert_eq!(
            domain("From: a@Example.COM\r\n\r\nbody").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            domain("Subject: x\r\nfrom: \"Doe, John\" <john@mail.example.org>\r\n\r\n").as_deref(),
            Some("mail.example.org")
        );
        assert_eq!(
            domain("From: <a@b.example>\n\n").as_deref(),
            Some("b.example")
        );
    }

    #[test]
    fn display_names_comments_and_quotes() {
        assert_eq!(
            domain("From: \"x@evil.example <y@evil.example>\" <a@good.example>\r\n\r\n").as_deref(),
            Some("good.example")
        );
        assert_eq!(
            domain("From: a@good.example (sent by b@evil.example)\r\n\r\n").as_deref(),
            Some("good.example")
        );
        assert_eq!(
            domain("From: \"a@b\"@quoted.example\r\n\r\n").as_deref(),
            Some("quoted.example")
        );
        assert_eq!(
            domain("From: a@first.example, b@second.example\r\n\r\n").as_deref(),
            Some("first.example")
        );
    }

    #[test]
    fn folded_header() {
        assert_eq!(
            domain(
                "To: x@y\r\nFrom: \"A very long\r\n display name\"\r\n\t<a@folded.example>\r\n\r\n"
            )
            .as_deref(),
            Some("folded.example")
        );
    }

    #[test]
    fn header_section_ends_at_empty_line() {
        assert_eq!(domain("Subject: x\r\n\r\nFrom: a@body.example\r\n"), None);
        assert_eq!(domain("Subject: x\n\nFrom: a@body.example\n"), None);
        assert_eq!(domain("From: nobody\r\n\r\n"), None);
        assert_eq!(domain("From: a@\r\n\r\n"), None);
        assert_eq!(domain(""), None);
    }

    /// How many header fields of `message` are named `name` (case-insensitive).
    fn count(message: &[u8], name: &str) -> usize {
        fields(message)
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .count()
    }

    #[test]
    fn counts_fields_case_insensitively() {
        let m = b"From: a@b\r\nTO: x\r\nto: y\r\n z\r\n\r\nTo: body\r\n";
        assert_eq!(count(m, "To"), 2);
        assert_eq!(count(m, "from"), 1);
        assert_eq!(count(m, "Cc"), 0);
        let names: Vec<&[u8]> = fields(m).map(|(n, _)| n).collect();
        assert_eq!(names, [&b"From"[..], b"TO", b"to"]);
    }
}
