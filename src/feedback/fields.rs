//! Header-style field blocks, as RFC 3464 (`message/delivery-status`) and RFC 5965
//! (`message/feedback-report`) write them: `Name: value` lines, folded continuation lines,
//! blocks separated by blank lines.
//!
//! What it does: splits a part's text into blocks and each block into `(name, value)` pairs,
//! names compared without case, values unfolded and trimmed; strips the `type;` prefix of
//! typed values (`rfc822; user@example.com`).
//!
//! What it does not do: no MIME decoding (the caller hands the decoded part), no meaning of
//! any field.
//!
//! Invariants: total: any bytes give blocks (possibly empty); at most [`MAX_BLOCKS`] blocks of
//! [`MAX_FIELDS`] fields are kept, each value cut at [`MAX_VALUE`] bytes, so a hostile report
//! costs bounded memory.

/// The most blocks kept from one part (one per-message block and the recipients).
pub const MAX_BLOCKS: usize = 1001;
/// The most fields kept per block.
pub const MAX_FIELDS: usize = 64;
/// The longest value kept, in bytes.
pub const MAX_VALUE: usize = 1000;

/// One block of fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Block {
    fields: Vec<(String, String)>,
}

impl Block {
    /// The first value of the field `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the field `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name` without its `type;` prefix (`rfc822; a@b` gives `a@b`).
    pub fn typed(&self, name: &str) -> Option<&str> {
        self.get(name).map(untyped)
    }

    /// Whether the block has no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// `rfc822; a@b` gives `a@b`; a value without `;` is returned trimmed.
pub fn untyped(value: &str) -> &str {
    match value.split_once(';') {
        Some((_, rest)) => rest.trim(),
        None => value.trim(),
    }
}

/// Splits `text` into its blocks of fields. Lines that are not fields are skipped.
pub fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut block = Block::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !block.is_empty() {
                if out.len() == MAX_BLOCKS {
                    return out;
                }
                out.push(std::mem::take(&mut block));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = block.fields.last_mut() {
                push_bounded(value, " ");
                push_bounded(value, line.trim());
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            continue;
        }
        if block.fields.len() < MAX_FIELDS {
            let mut v = String::new();
            push_bounded(&mut v, value.trim());
            block.fields.push((name.to_string(), v));
        }
    }
    if !block.is_empty() && out.len() < MAX_BLOCKS {
        out.push(block);
    }
    out
}

fn push_bounded(value: &mut String, more: &str) {
    for c in more.chars() {
        if value.len() + c.len_utf8() > MAX_VALUE {
            return;
        }
        value.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_fields_and_folding() {
        let text = "Reporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822;\r\n \
                    a@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\r\n\
                    Final-Recipient: rfc822; b@example.org\r\naction: delayed\r\nnot a field\r\n";
        let b = blocks(text);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].typed("reporting-mta"), Some("mx.example.net"));
        assert_eq!(b[1].typed("Final-Recipient"), Some("a@example.org"));
        assert_eq!(b[1].get("STATUS"), Some("5.1.1"));
        assert_eq!(b[2].get("Action"), Some("delayed"));
    }

    #[test]
    fn hostile_input_is_bounded() {
        let long = format!("X: {}\n", "v".repeat(10 * MAX_VALUE));
        let b = blocks(&long);
        assert_eq!(b[0].get("x").map(str::len), Some(MAX_VALUE));
        let many = "A: 1\n\n".repeat(2 * MAX_BLOCKS);
        assert_eq!(blocks(&many).len(), MAX_BLOCKS);
        let wide = "A: 1\n".repeat(2 * MAX_FIELDS);
        assert_eq!(blocks(&wide)[0].all("a").count(), MAX_FIELDS);
        assert!(blocks(": x\n\u{0}\n \n").is_empty());
    }
}
