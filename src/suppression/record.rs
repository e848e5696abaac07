//! The records of the suppression log: an entry added or removed, checksummed.
//!
//! What it does: encodes an [`Entry`] into a record and decodes one from bytes, saying whether
//! the bytes hold a whole good record, too few bytes, or garbage.
//!
//! What it does not do: no files (see `log`), no normalisation (the caller gives the address
//! as stored).
//!
//! Invariants: a record's length is a multiple of 16 (so that offsets fit a table `Meta`);
//! the CRC-32C covers everything after the first 8 bytes, padding included; every length in
//! a header is bounded before it is used, so garbage is [`Decoded::Corrupt`], never a panic.
//!
//! Layout (little-endian): `len u32` (the whole record), `crc u32`, `op u8` (1 add, 2 remove;
//! plus [`REPLICATED`] when the change came from another node of a cluster),
//! `kind u8`, `tenant_len u8`, `by_len u8`, `address_len u16`, `reason_len u16`, `at u64`
//! (unix seconds), `expires u64` (unix seconds, 0 = never), then tenant, address, reason and
//! by, then zeros to the next multiple of 16.

use super::address::{MAX_ADDRESS, MAX_TENANT};

/// The bit of the `op` byte that marks a change another node made (applied here from the
/// cluster, never published again).
pub const REPLICATED: u8 = 0x80;
/// Bytes before the strings.
pub const HEADER: usize = 32;
/// The longest reason kept, in octets (longer ones are cut at a character boundary).
pub const MAX_REASON: usize = 1000;
/// The longest operator name kept, in octets.
pub const MAX_BY: usize = 200;
/// The longest record.
pub const MAX_RECORD: usize = HEADER + MAX_TENANT + MAX_ADDRESS + MAX_REASON + MAX_BY + 16;

/// Why an address is listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Added by an operator (`mta suppression add` or `import`).
    Manual = 1,
    /// Added by a hard bounce.
    HardBounce = 2,
    /// Added by a complaint.
    Complaint = 3,
}

impl Kind {
    /// The kind stored as `n`.
    pub fn from_u8(n: u8) -> Option<Kind> {
        match n {
            1 => Some(Kind::Manual),
            2 => Some(Kind::HardBounce),
            3 => Some(Kind::Complaint),
            _ => None,
        }
    }
    /// The name used in answers and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Manual => "manual",
            Kind::HardBounce => "hard_bounce",
            Kind::Complaint => "complaint",
        }
    }
    /// The kind named `s`.
    pub fn from_name(s: &str) -> Option<Kind> {
        [Kind::Manual, Kind::HardBounce, Kind::Complaint]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Added or removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The address is listed from now on.
    Add = 1,
    /// The address is no longer listed.
    Remove = 2,
}

/// One change to the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Added or removed.
    pub op: Op,
    /// Why.
    pub kind: Kind,
    /// The tenant whose list it is, empty for the global list.
    pub tenant: String,
    /// The normalised address.
    pub address: String,
    /// The reason (a bounce's reply, an operator's note).
    pub reason: String,
    /// Who: the operator (as the event log names them) or `delivery`.
    pub by: String,
    /// When, in unix seconds.
    pub at: u64,
    /// When it stops counting, in unix seconds; 0 = never.
    pub expires: u64,
}

/// What a slice of bytes holds at its start.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A good record and its length.
    Record(Entry, usize),
    /// Fewer bytes than the record needs (a torn write at the end of the log).
    Short,
    /// Not a record.
    Corrupt,
}

/// `s` cut to at most `max` octets at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends the record of `e` to `out` (strings over their bounds are cut).
pub fn encode(e: &Entry, out: &mut Vec<u8>) {
    encode_as(e, false, out);
}

/// [`encode`], marked [`REPLICATED`] when `replicated`.
pub fn encode_as(e: &Entry, replicated: bool, out: &mut Vec<u8>) {
    let tenant = cut(&e.tenant, MAX_TENANT);
    let address = cut(&e.address, MAX_ADDRESS);
    let reason = cut(&e.reason, MAX_REASON);
    let by = cut(&e.by, MAX_BY);
    let body = tenant.len() + address.len() + reason.len() + by.len();
    let len = (HEADER + body).div_ceil(16) * 16;
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let op = e.op as u8 | if replicated { REPLICATED } else { 0 };
    out.extend_from_slice(&[op, e.kind as u8, tenant.len() as u8, by.len() as u8]);
    out.extend_from_slice(&(address.len() as u16).to_le_bytes());
    out.extend_from_slice(&(reason.len() as u16).to_le_bytes());
    out.extend_from_slice(&e.at.to_le_bytes());
    out.extend_from_slice(&e.expires.to_le_bytes());
    for s in [tenant, address, reason, by] {
        out.extend_from_slice(s.as_bytes());
    }
    out.resize(start + len, 0);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded {
    if buf.len() < HEADER {
        return Decoded::Short;
    }
    let u16_at = |i: usize| u16::from_le_bytes([buf[i], buf[i + 1]]) as usize;
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(HEADER..=MAX_RECORD).contains(&len) || !len.is_multiple_of(16) {
        return Decoded::Corrupt;
    }
    if buf.len() < len {
        return Decoded::Short;
    }
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if crc32c::crc32c(&buf[8..len]) != crc {
        return Decoded::Corrupt;
    }
    let op = match buf[8] & !REPLICATED {
        1 => Op::Add,
        2 => Op::Remove,
        _ => return Decoded::Corrupt,
    };
    let Some(kind) = Kind::from_u8(buf[9]) else {
        return Decoded::Corrupt;
    };
    let lens = [buf[10] as usize, u16_at(12), u16_at(14), buf[11] as usize];
    if HEADER + lens.iter().sum::<usize>() > len {
        return Decoded::Corrupt;
    }
    let mut at = HEADER;
    let mut strings = lens.iter().map(|n| {
        let s = std::str::from_utf8(&buf[at..at + n]).map(str::to_owned);
        at += n;
        s
    });
    let (Some(Ok(tenant)), Some(Ok(address)), Some(Ok(reason)), Some(Ok(by))) = (
        strings.next(),
        strings.next(),
        strings.next(),
        strings.next(),
    ) else {
        return Decoded::Corrupt;
    };
    let entry = Entry {
        op,
        kind,
        tenant,
        address,
        reason,
        by,
        at: u64_at(16),
        expires: u64_at(24),
    };
    Decoded::Record(entry, len)
}

/// Whether the good record at the start of `buf` is marked [`REPLICATED`].
pub fn replicated(buf: &[u8]) -> bool {
    buf.get(8).is_some_and(|op| op & REPLICATED != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            op: Op::Add,
            kind: Kind::HardBounce,
            tenant: "acme".into(),
            address: "user@example.com".into(),
            reason: "550 5.1.1 no such user".into(),
            by: "delivery".into(),
            at: 1_700_000_000,
            expires: 0,
        }
    }

    #[test]
    fn round_trip() {
        let mut out = vec![];
        encode(&entry(), &mut out);
        assert_eq!(out.len() % 16, 0);
        assert_eq!(decode(&out), Decoded::Record(entry(), out.len()));
        assert!(!replicated(&out));
        let mut marked = vec![];
        encode_as(&entry(), true, &mut marked);
        assert_eq!(decode(&marked), Decoded::Record(entry(), out.len()));
        assert!(replicated(&marked));
    }

    #[test]
    fn long_strings_are_cut_at_a_character() {
        let mut e = entry();
        e.reason = "é".repeat(MAX_REASON);
        let mut out = vec![];
        encode(&e, &mut out);
        let Decoded::Record(d, _) = decode(&out) else {
            panic!("not decoded")
        };
        assert!(d.reason.len() <= MAX_REASON && d.reason.chars().all(|c| c == 'é'));
    }

    #[test]
    fn every_truncation_is_short_and_every_flip_is_caught() {
        let mut out = vec![];
        encode(&entry(), &mut out);
        for n in 0..out.len() {
            assert_eq!(decode(&out[..n]), Decoded::Short, "{n}");
        }
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(decode(&bad), Decoded::Corrupt | Decoded::Short),
                "byte {i}"
            );
        }
    }
}
