//! VERP addresses: an envelope sender that says, when a bounce comes back to it, which message
//! and which recipient failed, and that nobody else can make up.
//!
//! What it does: [`Verp::encode`] turns a queue id, a recipient and the time into
//! `<local>+<token>=<recipient local part>=<recipient domain>@<bounce domain>`, where the
//! token is 32 lower-case base32 characters of: the queue id (8 bytes), the day the address
//! expires (2 bytes, days since 1970), the message's label pair (4 bytes: its number in the
//! host's `LabelBook`, 0 for none) and the first 6 bytes of an HMAC-SHA256, under the
//! operator's secret, of the queue id, the day, the label pair and the lower-cased recipient.
//! [`Verp::decode`] checks an address of that shape and gives the queue id, the label pair and
//! the recipient back.
//!
//! What it does not do: no configuration (the caller picks the local part, the domain and
//! the secret), no lookup of the message, no I/O.
//!
//! Invariants: a token decodes only under the secret that made it, only before its day has
//! passed, and only with the recipient it was made for (compared without case); the recipient
//! is taken from the address, so a bounce needs no state kept since the message was sent.

use std::time::{SystemTime, UNIX_EPOCH};

use ring::hmac;

/// Base32 (RFC 4648) in lower case, without padding.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Bytes in a token: queue id, expiry day, label pair, MAC.
const TOKEN_BYTES: usize = 20;
/// Characters in an encoded token.
pub const TOKEN_CHARS: usize = 32;
const MAC_BYTES: usize = 6;

/// Why an address is not a valid VERP address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerpError {
    /// Not of the shape `<local>+<token>=<user>=<domain>@<bounce domain>`.
    #[error("not a VERP address of this host")]
    Shape,
    /// The token was not made with this secret, or for this recipient.
    #[error("the VERP token does not authenticate")]
    Forged,
    /// The token's day has passed.
    #[error("the VERP token expired")]
    Expired,
}

/// What a valid VERP address names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerpTarget {
    /// The queue id of the message the bounce is about.
    pub queue_id: u64,
    /// The message's campaign and tenant: their number in the host's label book (0: none).
    pub labels: u32,
    /// The recipient that failed, as it was encoded.
    pub recipient: String,
}

/// Makes and checks VERP addresses under one secret.
pub struct Verp {
    key: hmac::Key,
    lifetime_days: u16,
}

impl Verp {
    /// A codec whose addresses stay valid for `lifetime_days` (at least 1).
    pub fn new(secret: &[u8], lifetime_days: u16) -> Verp {
        Verp {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            lifetime_days: lifetime_days.max(1),
        }
    }

    /// The VERP form of `local@domain` for `recipient` of message `queue_id` (whose labels
    /// are pair `labels` of the label book), at `now`. A recipient without `@` is encoded with
    /// an empty domain part.
    pub fn encode(
        &self,
        (local, domain): (&str, &str),
        queue_id: u64,
        labels: u32,
        recipient: &str,
        now: SystemTime,
    ) -> String {
        let expires = today(now).saturating_add(self.lifetime_days);
        let mut raw = [0u8; TOKEN_BYTES];
        raw[..8].copy_from_slice(&queue_id.to_be_bytes());
        raw[8..10].copy_from_slice(&expires.to_be_bytes());
        raw[10..14].copy_from_slice(&labels.to_be_bytes());
        let mac = self.mac(queue_id, expires, labels, recipient);
        raw[14..].copy_from_slice(&mac);
        let (user, rdomain) = recipient.rsplit_once('@').unwrap_or((recipient, ""));
        let mut out = String::with_capacity(local.len() + domain.len() + recipient.len() + 32);
        out.push_str(local);
        out.push('+');
        base32(&raw, &mut out);
        out.push('=');
        out.push_str(user);
        out.push('=');
        out.push_str(rdomain);
        out.push('@');
        out.push_str(domain);
        out
    }

    /// Checks `address` (the envelope recipient a bounce came to) at `now`. The local part
    /// before `+` and the domain are the caller's to check.
    pub fn decode(&self, address: &str, now: SystemTime) -> Result<VerpTarget, VerpError> {
        let (local, _domain) = address.rsplit_once('@').ok_or(VerpError::Shape)?;
        let (_, tagged) = local.split_once('+').ok_or(VerpError::Shape)?;
        let (token, rest) = tagged.split_once('=').ok_or(VerpError::Shape)?;
        let (user, rdomain) = rest.rsplit_once('=').ok_or(VerpError::Shape)?;
        let raw = unbase32(token).ok_or(VerpError::Shape)?;
        let queue_id = u64::from_be_bytes(raw[..8].try_into().map_err(|_| VerpError::Shape)?);
        let expires = u16::from_be_bytes([raw[8], raw[9]]);
        let labels = u32::from_be_bytes([raw[10], raw[11], raw[12], raw[13]]);
        let recipient = match rdomain {
            "" => user.to_string(),
            d => format!("{user}@{d}"),
        };
        let mac = self.mac(queue_id, expires, labels, &recipient);
        // Compared without an early exit, so that timing says nothing of the right MAC.
        let diff = mac
            .iter()
            .zip(&raw[14..])
            .fold(0u8, |d, (a, b)| d | (a ^ b));
        if diff != 0 {
            return Err(VerpError::Forged);
        }
        if today(now) > expires {
            return Err(VerpError::Expired);
        }
        Ok(VerpTarget {
            queue_id,
            labels,
            recipient,
        })
    }

    fn mac(&self, queue_id: u64, expires: u16, labels: u32, recipient: &str) -> [u8; MAC_BYTES] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&queue_id.to_be_bytes());
        ctx.update(&expires.to_be_bytes());
        ctx.update(&labels.to_be_bytes());
        ctx.update(recipient.to_ascii_lowercase().as_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&tag.as_ref()[..MAC_BYTES]);
        out
    }
}

/// Days since 1970 at `now` (saturating at the ends of `u16`).
fn today(now: SystemTime) -> u16 {
    let days = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    u16::try_from(days).unwrap_or(u16::MAX)
}

fn base32(raw: &[u8; TOKEN_BYTES], out: &mut String) {
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in raw {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
}

fn unbase32(s: &str) -> Option<[u8; TOKEN_BYTES]> {
    if s.len() != TOKEN_CHARS {
        return None;
    }
    let mut out = [0u8; TOKEN_BYTES];
    let (mut acc, mut bits, mut n) = (0u32, 0, 0);
    for c in s.bytes() {
        let v = match c.to_ascii_lowercase() {
            c @ b'a'..=b'z' => c - b'a',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            if n < TOKEN_BYTES {
                out[n] = (acc >> bits) as u8;
            }
            n += 1;
        }
    }
    (n == TOKEN_BYTES).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(days: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(days * 86_400 + 3_600)
    }

    #[test]
    fn round_trip_and_shape() {
        let v = Verp::new(b"secret", 30);
        let a = v.encode(
            ("b", "bounces.example.com"),
            0x0123_4567_89ab_cdef,
            42,
            "Jo.Doe+x=y@Example.org",
            at(20_000),
        );
        assert!(a.starts_with("b+"), "{a}");
        assert!(
            a.ends_with("=Jo.Doe+x=y=Example.org@bounces.example.com"),
            "{a}"
        );
        let t = v.decode(&a, at(20_010)).unwrap();
        assert_eq!(t.queue_id, 0x0123_4567_89ab_cdef);
        assert_eq!(t.labels, 42);
        assert_eq!(t.recipient, "Jo.Doe+x=y@Example.org");
        // A relay that lower-cases the local part does not break it.
        assert_eq!(
            v.decode(&a.to_ascii_lowercase(), at(20_010))
                .unwrap()
                .queue_id,
            t.queue_id
        );
    }

    #[test]
    fn forged_expired_and_malformed_addresses_are_refused() {
        let v = Verp::new(b"secret", 30);
        let a = v.encode(
            ("b", "bounces.example.com"),
            7,
            3,
            "a@example.org",
            at(20_000),
        );
        assert_eq!(v.decode(&a, at(20_031)), Err(VerpError::Expired));
        let other = Verp::new(b"other secret", 30);
        assert_eq!(other.decode(&a, at(20_001)), Err(VerpError::Forged));
        let moved = a.replace("=a=example.org", "=b=example.org");
        assert_eq!(v.decode(&moved, at(20_001)), Err(VerpError::Forged));
        for bad in [
            "",
            "b@x",
            "b+zz=a=b@x",
            "b+=a@x",
            "no-at-sign",
            "b+0000000000000000000000000000000!=a=b@x",
            "b+aaaaaaaaaaaaaaaaaaaaaaaaaa=a=b@x",
        ] {
            assert_eq!(v.decode(bad, at(20_001)), Err(VerpError::Shape), "{bad}");
        }
    }

    #[test]
    fn base32_round_trips_every_byte() {
        for b in 0..=255u8 {
            let raw = [b; TOKEN_BYTES];
            let mut s = String::new();
            base32(&raw, &mut s);
            assert_eq!(s.len(), TOKEN_CHARS);
            assert_eq!(unbase32(&s), Some(raw));
        }
    }
}
