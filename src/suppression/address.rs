//! The key of a suppressed address: a keyed 64-bit hash of the tenant and the normalised
//! address.
//!
//! What it does: normalises an address (surrounding blanks and angle brackets removed, every
//! character lower-cased: mailbox providers treat local parts without regard to case) and
//! hashes it with the tenant name (empty for the global list) under SipHash-1-3 with keys
//! drawn at random when the process starts, so that nobody outside can make up an address
//! whose key collides with a listed one.
//!
//! What it does not do: no validation of the address beyond its length (a string that is not
//! an address is simply never sent to), no storage.
//!
//! Invariants: [`Keyer::key`] and [`Keyer::key_of`] allocate nothing (it feeds the hasher from a stack buffer) and
//! gives the same key for every spelling that [`normalise`] maps to the same string; keys are
//! only meaningful within one process (the list is re-keyed from its log at each start).

use std::collections::hash_map::RandomState;
use std::fmt::{self, Write};
use std::hash::{BuildHasher, Hasher};

/// The longest address kept, in octets (RFC 5321 4.5.3.1.3: a path is at most 256 octets).
pub const MAX_ADDRESS: usize = 320;
/// The longest tenant name, in octets.
pub const MAX_TENANT: usize = 64;

/// `address` without blanks and angle brackets around it.
fn bare(address: &str) -> &str {
    let a = address.trim();
    a.strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(a)
        .trim()
}

/// The normalised form of `address`, as the list stores and prints it.
pub fn normalise(address: &str) -> String {
    bare(address).to_lowercase()
}

/// Whether `address` can be listed: not empty, not too long, and not the null path.
pub fn valid(address: &str) -> bool {
    let a = bare(address);
    !a.is_empty() && a.len() <= MAX_ADDRESS && !a.chars().any(char::is_control)
}

/// Whether `tenant` can name a tenant: short, printable, no blanks.
pub fn valid_tenant(tenant: &str) -> bool {
    tenant.len() <= MAX_TENANT && tenant.chars().all(|c| c.is_ascii_graphic())
}

/// Hashes addresses to keys with the process's random SipHash keys.
#[derive(Clone, Debug, Default)]
pub struct Keyer {
    state: RandomState,
}

impl Keyer {
    /// A keyer with fresh random keys.
    pub fn new() -> Keyer {
        Keyer::default()
    }

    /// The key of `address` in the list of `tenant` (`""` = the global list).
    pub fn key(&self, tenant: &str, address: &str) -> u64 {
        let mut h = self.hasher(tenant);
        feed_lower(&mut h, bare(address));
        h.finish()
    }

    /// The key of the address `bare` writes (no blanks or angle brackets around it: a
    /// `Mailbox`), formatted straight into the hasher: no allocation.
    pub fn key_of(&self, tenant: &str, bare: &dyn fmt::Display) -> u64 {
        let mut h = self.hasher(tenant);
        let _ = write!(Feed(&mut h), "{bare}");
        h.finish()
    }

    fn hasher(&self, tenant: &str) -> impl Hasher + use<> {
        let mut h = self.state.build_hasher();
        h.write(tenant.as_bytes());
        // Never part of UTF-8: the tenant and the address cannot run into each other.
        h.write_u8(0xff);
        h
    }
}

/// Feeds `s`, lower-cased, to `h`. The hasher sees one stream of bytes however `s` is cut into
/// calls, so that pieces of an address give the key of the whole.
fn feed_lower(h: &mut impl Hasher, s: &str) {
    let mut buf = [0u8; 64];
    if s.is_ascii() {
        // The common case, a byte at a time (the same bytes as the general case below).
        for chunk in s.as_bytes().chunks(buf.len()) {
            for (d, c) in buf.iter_mut().zip(chunk) {
                *d = c.to_ascii_lowercase();
            }
            h.write(&buf[..chunk.len()]);
        }
        return;
    }
    let mut n = 0;
    for c in s.chars() {
        for l in c.to_lowercase() {
            if n + 4 > buf.len() {
                h.write(&buf[..n]);
                n = 0;
            }
            n += l.encode_utf8(&mut buf[n..]).len();
        }
    }
    h.write(&buf[..n]);
}

/// A formatter's output, lower-cased into a hasher.
struct Feed<'a, H: Hasher>(&'a mut H);

impl<H: Hasher> fmt::Write for Feed<'_, H> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        feed_lower(self.0, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_address_share_a_key() {
        let k = Keyer::new();
        let a = k.key("", "User@Example.COM");
        assert_eq!(a, k.key("", " <user@example.com> "));
        assert_eq!(a, k.key("", &normalise("<USER@example.com>")));
        assert_ne!(a, k.key("", "user2@example.com"));
        assert_ne!(a, k.key("t1", "user@example.com"));
        // Longer than the stack buffer, and not ASCII.
        let long = format!("{}@example.com", "Ä".repeat(100));
        assert_eq!(k.key("", &long), k.key("", &normalise(&long)));
        assert_eq!(normalise(&long), format!("{}@example.com", "ä".repeat(100)));
        // A character that lower-cases to ASCII: both ways of hashing give the same key.
        let kelvin = format!("\u{212a}{}@example.com", "x".repeat(100));
        assert_eq!(
            normalise(&kelvin),
            format!("k{}@example.com", "x".repeat(100))
        );
        assert_eq!(k.key("", &kelvin), k.key("", &normalise(&kelvin)));
        // Formatted in pieces, as a mailbox writes itself.
        let pieces = format_args!("{}@{}", "\u{212a}Ä", "Example.COM");
        assert_eq!(k.key_of("", &pieces), k.key("", "kä@example.com"));
    }

    #[test]
    fn validity() {
        assert!(valid("<a@b>"));
        assert!(!valid("<>"));
        assert!(!valid("  "));
        assert!(!valid("a\n@b"));
        assert!(!valid(&"a".repeat(MAX_ADDRESS + 1)));
        assert!(valid_tenant("") && valid_tenant("acme-1"));
        assert!(!valid_tenant("a b") && !valid_tenant(&"t".repeat(65)));
    }
}
