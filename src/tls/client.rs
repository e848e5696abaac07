//! The outbound TLS configurations and the per-destination policy.
//!
//! What it does: builds two rustls client configurations: one for opportunistic STARTTLS that
//! accepts any certificate (RFC 7435: encryption without authentication beats plaintext; the
//! handshake signatures are still checked), and one that verifies the certificate against the
//! system's trust store (or a configured CA file) for the MX host name. Both keep rustls's
//! in-memory session cache, so reconnects to the same host resume their session.
//!
//! [`ClientTls::verifies`] checks after the fact whether a chain that was accepted without
//! checks would have passed `verify` (what the delivery events report as "verified").
//!
//! What it does not do: no DANE (`dane.rs`), no MTA-STS decisions (the delivery's policy
//! code chooses which configuration a connection uses), no client certificates.
//!
//! [`any_certificate_config`] builds the first alone (no trust store is read).
//!
//! Invariants: TLS 1.2 and 1.3 only; one [`ClientTls`] per shard, shared by its connections.

use std::path::Path;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};

use super::server::read_certificates;
use super::{TlsError, VERSIONS, provider};

/// What a destination requires of TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered, any certificate; a failed handshake falls back to plaintext.
    #[default]
    Opportunistic,
    /// STARTTLS must succeed (any certificate), else the delivery is deferred.
    Required,
    /// STARTTLS with a certificate valid for the MX host name, else deferred.
    Verify,
}

impl TlsPolicy {
    /// The policy, raised to `required` if it is weaker: what a destination that is sent
    /// credentials gets (they never go out in plaintext).
    pub fn at_least_required(self) -> TlsPolicy {
        match self {
            TlsPolicy::None | TlsPolicy::Opportunistic => TlsPolicy::Required,
            strict => strict,
        }
    }
}

/// The client configurations of one shard.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// Opportunistic and `required`: any certificate.
    pub any: Arc<rustls::ClientConfig>,
    /// `verify`: a certificate valid for the host name.
    pub verified: Arc<rustls::ClientConfig>,
    /// The check `verified` makes, for chains accepted by `any` (None: no trusted root).
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
}

impl ClientTls {
    /// Builds both configurations; `ca_file` replaces the system store for `verify`.
    pub fn new(ca_file: Option<&Path>) -> Result<ClientTls, TlsError> {
        let provider = provider();
        let rustls_error = |err| TlsError::Rustls {
            what: "client configuration".to_owned(),
            err,
        };
        let any = any_certificate_config()?;
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                for cert in read_certificates(path)? {
                    roots.add(cert).map_err(rustls_error)?;
                }
            }
            None => {
                // A missing or unreadable system store leaves `verify` unable to succeed,
                // which defers that mail: the safe failure.
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    tracing::warn!("no trusted roots found in the system store");
                }
            }
        }
        let roots = Arc::new(roots);
        // An empty store cannot build a verifier: then nothing verifies.
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .ok();
        let verified = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(VERSIONS)
            .map_err(rustls_error)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            any,
            verified: Arc::new(verified),
            webpki,
        })
    }

    /// True when `chain` (end entity first) is valid for `server_name` against the trusted
    /// roots, as `verify` would check it.
    pub fn verifies(&self, chain: &[CertificateDer<'_>], server_name: &str) -> bool {
        let (Some(ee), Ok(name), Some(webpki)) = (
            chain.first(),
            ServerName::try_from(server_name),
            &self.webpki,
        ) else {
            return false;
        };
        webpki
            .verify_server_cert(ee, &chain[1..], &name, &[], UnixTime::now())
            .is_ok()
    }
}

/// The configuration that accepts any server certificate (handshake signatures are still
/// checked), without touching the system trust store: opportunistic STARTTLS, and tools that
/// talk to test servers with self-signed certificates.
pub fn any_certificate_config() -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|err| TlsError::Rustls {
            what: "client configuration".to_owned(),
            err,
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any certificate but still checks the handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
