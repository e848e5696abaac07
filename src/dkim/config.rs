//! The `[dkim]` configuration section: which keys sign for which domains and
//! which header fields the signatures cover.
//!
//! This module only describes and deserializes the settings; it does not read
//! key files or sign anything (that is [`super::signer`]).
//!
//! Invariants: unknown fields are rejected; every field has a default, so an
//! empty section is valid and leaves signing disabled. `sign`, `offload` and
//! `bulk_warning_recipients` are read by the server (`server::dkim`), not by
//! the signer.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The `[dkim]` section of the configuration.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DkimSection {
    /// Whether outgoing messages are signed at all.
    pub enabled: bool,
    /// The signing keys; a domain may have several (e.g. RSA and Ed25519).
    pub keys: Vec<DkimKeyConfig>,
    /// Header fields to sign when they are present in a message.
    pub headers: Vec<String>,
    /// Header fields signed once more than they occur, so that a field added
    /// later breaks the signature.
    pub oversign: Vec<String>,
    /// The domain whose keys sign messages whose From: domain has no key.
    pub default_domain: Option<String>,
    /// Which accepted messages are signed.
    pub sign: SignScope,
    /// Sign on the shard's blocking thread instead of the shard's own thread.
    pub offload: bool,
    /// A signed message with more recipients than this and without RFC 8058 one-click
    /// unsubscribe fields is logged (at most once a minute per From domain); 0 = never.
    pub bulk_warning_recipients: usize,
}

/// Which accepted messages the MTA signs (`dkim.sign`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SignScope {
    /// Mail we originate: from authenticated clients or trusted networks.
    #[default]
    Submitted,
    /// Every accepted message, also mail relayed in from the internet.
    All,
}

impl Default for DkimSection {
    fn default() -> Self {
        Self {
            enabled: false,
            keys: Vec::new(),
            headers: default_headers(),
            oversign: default_oversign(),
            default_domain: None,
            sign: SignScope::Submitted,
            offload: false,
            bulk_warning_recipients: 100,
        }
    }
}

/// The header fields signed by default (when present).
pub fn default_headers() -> Vec<String> {
    [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Reply-To",
        "Cc",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "List-Id",
        "Feedback-ID",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// The header fields over-signed by default.
pub fn default_oversign() -> Vec<String> {
    [
        "From",
        "To",
        "Subject",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// One signing key: the `d=` domain, the `s=` selector and the private key.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DkimKeyConfig {
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`); the public key is published at
    /// `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// The signature algorithm of this key (default `rsa-sha256`).
    #[serde(default)]
    pub algorithm: Algorithm,
    /// The private key as PEM: RSA in PKCS#1 or PKCS#8, Ed25519 in PKCS#8.
    pub key_file: PathBuf,
}

/// A DKIM signature algorithm (`a=`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// RSA with SHA-256 (RFC 6376).
    #[default]
    RsaSha256,
    /// Ed25519 with SHA-256 (RFC 8463).
    Ed25519Sha256,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_section() {
        let section: DkimSection = toml::from_str(
            r#"
            enabled = true
            default_domain = "example.com"
            [[keys]]
            domain = "example.com"
            selector = "s1"
            algorithm = "ed25519-sha256"
            key_file = "/k.pem"
            "#,
        )
        .expect("valid section");
        assert!(section.enabled);
        assert_eq!(section.keys[0].algorithm, Algorithm::Ed25519Sha256);
        assert_eq!(section.headers, default_headers());
        assert_eq!(section.oversign, default_oversign());
    }

    #[test]
    fn rejects_unknown_fields() {
        assert!(toml::from_str::<DkimSection>("enable = true").is_err());
        let empty: DkimSection = toml::from_str("").expect("empty section");
        assert_eq!(empty, DkimSection::default());
        assert!(!empty.enabled);
    }
}
