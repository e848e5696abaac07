//! The inbound TLS configuration: certificates from PEM files, chosen by SNI.
//!
//! What it does: loads each configured chain and key, checks that they match, and builds a
//! rustls server configuration whose resolver picks, for the name the client asks for (SNI),
//! the first certificate valid for that name (wildcards included), and the first certificate
//! when the client sends no name or an unknown one.
//!
//! What it does not do: no client certificates, no OCSP stapling, no file watching (a reload
//! calls [`ServerTls::load`] again and swaps the result).
//!
//! Invariants: a [`ServerTls`] holds at least one certificate; TLS 1.2 and 1.3 only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use super::{TlsError, VERSIONS, provider};

/// One certificate: `[[tls.certificates]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// A built inbound TLS configuration.
#[derive(Clone, Debug)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    /// Loads the certificates and builds the configuration.
    pub fn load(certificates: &[CertificateConfig]) -> Result<ServerTls, TlsError> {
        let provider = provider();
        let mut keys = Vec::with_capacity(certificates.len());
        for c in certificates {
            let chain = read_chain(&c.cert_file)?;
            let key = read_key(&c.key_file)?;
            let certified =
                CertifiedKey::from_der(chain, key, &provider).map_err(|err| TlsError::Rustls {
                    what: format!("{} with {}", c.cert_file.display(), c.key_file.display()),
                    err,
                })?;
            keys.push(Arc::new(certified));
        }
        if keys.is_empty() {
            return Err(TlsError::Pem {
                path: PathBuf::new(),
                problem: "no certificate configured".to_owned(),
            });
        }
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(VERSIONS)
            .map_err(|err| TlsError::Rustls {
                what: "server configuration".to_owned(),
                err,
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver { keys }));
        config.ignore_client_order = true;
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    /// The rustls configuration for an acceptor.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }
}

/// Picks a certificate by the name the client asked for.
#[derive(Debug)]
struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn matching(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = ServerName::try_from(name).ok()?;
        self.keys
            .iter()
            .find(|k| {
                k.end_entity_cert().is_ok_and(|der| {
                    webpki::EndEntityCert::try_from(der)
                        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
                })
            })
            .cloned()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.matching(name))
            .or_else(|| self.keys.first().cloned())
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |problem: String| TlsError::Pem {
        path: path.to_owned(),
        problem,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error("no CERTIFICATE block".to_owned()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        problem: e.to_string(),
    })
}

/// Reads the certificates of a PEM file (for a CA file of trusted roots).
pub(super) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    read_chain(path)
}
