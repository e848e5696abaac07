//! Reading a message's campaign and tenant from its header section at reception.
//!
//! What it does: finds the configured header fields (`campaigns.campaign_header`,
//! `campaigns.tenant_header`) in the header section of an accepted message in one pass over its
//! lines, checks their values, sets them on the spool record when the client may set them,
//! and removes every such field from the message when `campaigns.strip` is on.
//!
//! What it does not do: no refusal (an invalid value, or one from a client that may not set
//! it, is ignored: the message is accepted without that label), no decoding of encoded words.
//!
//! Invariants: only the header section is read (it ends at the first empty line); the first
//! field of a name wins; no allocation per line (the one allocation is the value kept); with
//! `strip` no field of either name is left in the header section, folded lines included.

use super::{CampaignsSection, LabelSource};
use crate::spool::MessageRecord;

/// The longest campaign or tenant name, in octets.
pub const MAX_LABEL: usize = 64;

/// Whether `value` is a label: 1 to [`MAX_LABEL`] octets of letters, digits and `._:@+=/-`.
pub fn valid(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_LABEL
        && value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"._:@+=/-".contains(&b))
}

/// Whether `name` is a header field name (RFC 5322 3.6.8: printable ASCII but `:`), at most
/// 76 octets.
pub fn field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 76
        && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// How the server labels accepted messages (from `[campaigns]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labeling {
    campaign: String,
    tenant: String,
    strip: bool,
    any: bool,
}

/// What labelling found in one message (for the server's log).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Fields whose value was not a label, or set by a client that may not.
    pub ignored: usize,
    /// Fields removed.
    pub stripped: usize,
}

impl Labeling {
    /// The server's labelling from `[campaigns]`.
    pub fn new(cfg: &CampaignsSection) -> Labeling {
        Labeling {
            campaign: cfg.campaign_header.clone(),
            tenant: cfg.tenant_header.clone(),
            strip: cfg.strip,
            any: cfg.from == LabelSource::Any,
        }
    }

    /// True when no header is read.
    pub fn is_off(&self) -> bool {
        self.campaign.is_empty() && self.tenant.is_empty()
    }

    /// Sets `record.campaign` and `record.tenant` from the header section of its body (when
    /// `trusted` or `campaigns.from = "any"`) and, with `strip`, removes the fields.
    pub fn apply(&self, record: &mut MessageRecord, trusted: bool) -> Found {
        let mut found = Found::default();
        if self.is_off() {
            return found;
        }
        let may_set = trusted || self.any;
        // Byte ranges of the fields to remove, in order.
        let mut cut: Vec<(usize, usize)> = Vec::new();
        let body = &record.body;
        let mut pos = 0;
        // The field being read: (which, start, value start, value end, folded).
        let mut open: Option<(u8, usize, usize, usize, bool)> = None;
        let mut values: [Option<(usize, usize)>; 2] = [None, None];
        loop {
            let end = memchr::memchr(b'\n', &body[pos..]).map_or(body.len(), |i| pos + i + 1);
            let line = &body[pos..end];
            let content = line
                .strip_suffix(b"\n")
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .unwrap_or(line);
            let folded = matches!(content.first(), Some(b' ' | b'\t'));
            if !folded && let Some((which, start, vs, ve, was_folded)) = open.take() {
                self.close(
                    which,
                    (start, pos),
                    (vs, ve),
                    was_folded,
                    &mut values,
                    &mut cut,
                    &mut found,
                );
            }
            if content.is_empty() || pos >= body.len() {
                break;
            }
            match (&mut open, folded) {
                (Some(f), true) => f.4 = true,
                (_, _) => {
                    if let Some((which, rest)) = self.field(content) {
                        let vs = pos + (content.len() - rest.len());
                        open = Some((which, pos, vs, pos + content.len(), false));
                    }
                }
            }
            pos = end;
        }
        for (i, v) in values.iter().enumerate() {
            let Some((s, e)) = *v else { continue };
            let value = trim(&record.body[s..e]);
            if !may_set || !valid(value) {
                found.ignored += 1;
                continue;
            }
            // `valid` allows only ASCII.
            let text = String::from_utf8_lossy(value).into_owned();
            match i {
                0 => record.campaign = Some(text),
                _ => record.tenant = Some(text),
            }
        }
        if self.strip {
            for &(s, e) in cut.iter().rev() {
                record.body.drain(s..e);
            }
            found.stripped = cut.len();
        }
        found
    }

    #[allow(clippy::too_many_arguments)]
    fn close(
        &self,
        which: u8,
        field: (usize, usize),
        value: (usize, usize),
        folded: bool,
        values: &mut [Option<(usize, usize)>; 2],
        cut: &mut Vec<(usize, usize)>,
        found: &mut Found,
    ) {
        cut.push(field);
        let slot = &mut values[which as usize];
        match (slot.is_some(), folded) {
            // The first field wins; a folded value is not a label.
            (true, _) => {}
            (false, true) => found.ignored += 1,
            (false, false) => *slot = Some(value),
        }
    }

    /// Which configured field `line` starts (0 campaign, 1 tenant) and the rest after `:`.
    fn field<'a>(&self, line: &'a [u8]) -> Option<(u8, &'a [u8])> {
        [&self.campaign, &self.tenant]
            .iter()
            .enumerate()
            .find_map(|(i, name)| {
                let n = name.len();
                (n > 0
                    && line.len() > n
                    && line[n] == b':'
                    && line[..n].eq_ignore_ascii_case(name.as_bytes()))
                .then(|| (i as u8, &line[n + 1..]))
            })
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &str) -> MessageRecord {
        MessageRecord {
            id: 1,
            reverse_path: "a@b.test".into(),
            mail_params: Vec::new(),
            recipients: Vec::new(),
            arrival_unix_ms: 0,
            client_addr: "127.0.0.1:1".into(),
            helo: "h".into(),
            tls: None,
            auth: None,
            campaign: None,
            tenant: None,
            priority: 0,
            body: body.as_bytes().to_vec(),
        }
    }

    fn labeling(strip: bool) -> Labeling {
        Labeling::new(&CampaignsSection {
            strip,
            ..CampaignsSection::default()
        })
    }

    #[test]
    fn labels_are_read_checked_and_stripped() {
        let body = "Received: x\r\nX-Campaign:  spring-2027 \r\nSubject: s\r\nx-tenant: acme\r\n\r\nX-Campaign: body\r\n";
        let mut r = record(body);
        let found = labeling(false).apply(&mut r, true);
        assert_eq!(r.campaign.as_deref(), Some("spring-2027"));
        assert_eq!(r.tenant.as_deref(), Some("acme"));
        assert_eq!(r.body, body.as_bytes());
        assert_eq!(found, Found::default());

        let mut r = record(body);
        let found = labeling(true).apply(&mut r, true);
        assert_eq!(r.campaign.as_deref(), Some("spring-2027"));
        assert_eq!(
            r.body,
            b"Received: x\r\nSubject: s\r\n\r\nX-Campaign: body\r\n".as_slice()
        );
        assert_eq!(found.stripped, 2);
    }

    #[test]
    fn untrusted_invalid_folded_and_repeated_fields() {
        // An untrusted client's labels are ignored, and still stripped.
        let mut r = record("X-Campaign: a\r\n\r\n");
        let found = labeling(true).apply(&mut r, false);
        assert_eq!((r.campaign, found.ignored, found.stripped), (None, 1, 1));
        assert_eq!(r.body, b"\r\n");
        // Too long, bad octets, empty, folded: ignored.
        for bad in [
            format!("X-Campaign: {}\r\n\r\n", "a".repeat(MAX_LABEL + 1)),
            "X-Campaign: two words\r\n\r\n".into(),
            "X-Campaign: caf\u{e9}\r\n\r\n".into(),
            "X-Campaign:\r\n\r\n".into(),
            "X-Campaign: a\r\n b\r\nSubject: s\r\n\r\n".into(),
        ] {
            let mut r = record(&bad);
            labeling(true).apply(&mut r, true);
            assert_eq!(r.campaign, None, "{bad:?}");
            assert!(
                !String::from_utf8_lossy(&r.body).contains("X-Campaign"),
                "{bad:?}"
            );
        }
        let mut r = record(&format!("X-Campaign: {}\r\n\r\n", "a".repeat(MAX_LABEL)));
        labeling(false).apply(&mut r, true);
        assert_eq!(r.campaign.map(|c| c.len()), Some(MAX_LABEL));
        // The first field wins; every one is stripped; bare LF and no body work too.
        let mut r = record("X-Campaign: one\nX-Campaign: two\nX-Tenant: t");
        labeling(true).apply(&mut r, true);
        assert_eq!(r.campaign.as_deref(), Some("one"));
        assert_eq!(r.tenant.as_deref(), Some("t"));
        assert!(r.body.is_empty());
        // Off: nothing read.
        let mut off = CampaignsSection::default();
        off.campaign_header.clear();
        off.tenant_header.clear();
        let mut r = record("X-Campaign: a\r\n\r\n");
        Labeling::new(&off).apply(&mut r, true);
        assert_eq!(r.campaign, None);
    }
}
