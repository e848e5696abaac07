//! TLS for both directions, with rustls (ring provider, TLS 1.2 and 1.3 only).
//!
//! What it does: builds the server configuration from PEM certificate chains and keys (several
//! certificates chosen by SNI), builds the client configurations used for outbound STARTTLS
//! (opportunistic without certificate checks, or verifying against the system's roots or a
//! configured CA file, or, for DANE, a host's TLSA records: `dane.rs`), and provides [`Stream`], a TCP stream that may be upgraded to TLS in
//! place, with the facts logged and written into `Received:` ([`TlsInfo`]).
//!
//! What it does not do: no SMTP (the session decides when to upgrade), no OpenSSL, no client
//! certificates.
//!
//! Invariants: every configuration built here allows only TLS 1.2 and 1.3; the server never
//! starts a handshake without a certificate; configurations are immutable once built (a reload
//! builds new ones, so sessions in progress keep theirs).

mod client;
mod dane;
mod server;
mod stream;

pub use client::{ClientTls, TlsPolicy, any_certificate_config};
pub use dane::{dane_config, usable as usable_tlsa};
pub use server::{CertificateConfig, ServerTls};
pub use stream::Stream;

use std::path::PathBuf;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {problem}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// rustls refused the material (e.g. the key does not match the certificate).
    #[error("{what}: {err}")]
    Rustls {
        /// What was being built.
        what: String,
        /// rustls's error.
        #[source]
        err: rustls::Error,
    },
}

/// What was negotiated on a TLS connection, for logs and the `Received:` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The IANA name of the cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

impl TlsInfo {
    /// The facts of an established rustls connection.
    pub fn of(conn: &rustls::CommonState) -> TlsInfo {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
            Some(v) => format!("{v:?}"),
            None => "unknown".to_owned(),
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .map_or_else(|| "unknown".to_owned(), |s| format!("{:?}", s.suite()));
        TlsInfo { version, cipher }
    }
}

impl std::fmt::Display for TlsInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "version={} cipher={}", self.version, self.cipher)
    }
}

/// The crypto provider every configuration uses.
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 and 1.2, nothing older.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
