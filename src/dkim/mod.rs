//! DKIM signing of outgoing messages (RFC 6376 with RSA-SHA256, RFC 8463 with
//! Ed25519-SHA256).
//!
//! - [`config`]: the `[dkim]` section (keys, signed and over-signed fields).
//! - [`signer`]: loads the keys once and produces `DKIM-Signature` fields.
//!
//! This module signs only: it does not verify signatures, publish or look up
//! DNS records, or modify the message; the caller prepends the returned
//! fields. Signing is synchronous and CPU-bound (about 0.3 ms per RSA-2048
//! signature), so it belongs where the message is already in memory.
//!
//! Invariants: canonicalization is relaxed/relaxed; the key is chosen by the
//! RFC5322.From domain (exact, then parent domains, then the default domain);
//! only fields present in the message are signed, plus one extra instance of
//! each over-signed name so that an added field breaks the signature.

pub mod config;
mod header;
pub mod signer;

pub use config::{Algorithm, DkimKeyConfig, DkimSection, SignScope};
pub use signer::Signer;

use std::path::PathBuf;

/// Why a DKIM key could not be loaded or a message could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// The key file could not be read.
    #[error("cannot read DKIM key file {path}: {source}")]
    KeyRead {
        /// The configured key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file does not hold a usable key of the configured algorithm.
    #[error("invalid DKIM key in {path}: {reason}")]
    KeyParse {
        /// The configured key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A key entry is incomplete (empty domain or selector).
    #[error("invalid DKIM key entry: {0}")]
    Config(String),
    /// Computing the signature failed.
    #[error("DKIM signing failed for d={domain} s={selector}: {reason}")]
    Sign {
        /// The signing domain.
        domain: String,
        /// The selector.
        selector: String,
        /// The underlying error.
        reason: String,
    },
}

/// The lowercased domain of the RFC5322.From address of `message`, or `None`
/// when there is no From: field or no domain in it.
///
/// Handles folded fields, display names (also quoted ones containing `@` or
/// `<`), comments and angle brackets; with several addresses the first one
/// counts. Only the header section (up to the first empty line) is read.
pub fn from_domain(message: &[u8]) -> Option<String> {
    header::from_domain(message)
}

/// Whether `message` offers RFC 8058 one-click unsubscription: a
/// `List-Unsubscribe` field and a `List-Unsubscribe-Post` field whose value is
/// `List-Unsubscribe=One-Click`. Only the header section is read.
pub fn has_one_click_unsubscribe(message: &[u8]) -> bool {
    let (mut list, mut post) = (false, false);
    for (name, value) in header::fields(message) {
        if name.eq_ignore_ascii_case(b"List-Unsubscribe") {
            list = true;
        } else if name.eq_ignore_ascii_case(b"List-Unsubscribe-Post") {
            let value: Vec<u8> = value
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            post |= value.eq_ignore_ascii_case(b"List-Unsubscribe=One-Click");
        }
    }
    list && post
}

#[cfg(test)]
mod unsubscribe_tests {
    use super::has_one_click_unsubscribe;

    #[test]
    fn needs_both_fields() {
        let both = b"From: a@b.c\r\nList-Unsubscribe: <https://b.c/u>\r\n\
                     List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nbody\r\n";
        assert!(has_one_click_unsubscribe(both));
        let no_post = b"From: a@b.c\r\nList-Unsubscribe: <https://b.c/u>\r\n\r\n";
        assert!(!has_one_click_unsubscribe(no_post));
        let wrong = b"List-Unsubscribe: <https://b.c/u>\r\nList-Unsubscribe-Post: yes\r\n\r\n";
        assert!(!has_one_click_unsubscribe(wrong));
        let in_body = b"From: a@b.c\r\n\r\nList-Unsubscribe: x\r\n\
                        List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n";
        assert!(!has_one_click_unsubscribe(in_body));
    }
}
