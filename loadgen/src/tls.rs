//! TLS material for the load generator: the sink's server configuration (a self-signed
//! certificate made at start, or PEM files) and the sender's client configuration.
//!
//! What it does: generates a throw-away self-signed certificate for `localhost` and `127.0.0.1`
//! with rcgen and writes it as PEM files (the sink loads them, `bench` hands them to the MTA);
//! builds configurations through the MTA's own `mta::tls` module, so both sides negotiate what
//! the MTA negotiates (rustls with ring, TLS 1.2 and 1.3).
//!
//! What it does not do: no certificate verification on the client side (any certificate is
//! accepted: this is a benchmark tool talking to test servers on loopback), no client
//! certificates, no system trust store.
//!
//! Invariants: configurations are built once per run and shared by every connection, so
//! reconnects can resume their session as they would against a real server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mta::tls::{CertificateConfig, ServerTls};
use rustls::pki_types::ServerName;

/// Writes a fresh self-signed certificate and its key into `dir` (`cert.pem`, `key.pem`).
pub fn self_signed(dir: &Path) -> anyhow::Result<CertificateConfig> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let made = rcgen::generate_simple_self_signed(names)?;
    let cert_file = dir.join("cert.pem");
    let key_file = dir.join("key.pem");
    std::fs::write(&cert_file, made.cert.pem())?;
    std::fs::write(&key_file, made.signing_key.serialize_pem())?;
    Ok(CertificateConfig {
        cert_file,
        key_file,
    })
}

/// The sink's server configuration: from the given PEM files, or a generated certificate.
pub fn server_config(
    files: Option<(PathBuf, PathBuf)>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let cert = match files {
        Some((cert_file, key_file)) => CertificateConfig {
            cert_file,
            key_file,
        },
        None => {
            let dir = tempfile::tempdir()?;
            let cert = self_signed(dir.path())?;
            // Loaded before the directory goes away.
            return Ok(ServerTls::load(&[cert])?.config());
        }
    };
    Ok(ServerTls::load(&[cert])?.config())
}

/// The sender's client configuration: any certificate accepted.
pub fn client_config() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    Ok(mta::tls::any_certificate_config()?)
}

/// The name the client presents: the target's IP address (no SNI is sent for an address; the
/// server answers with its default certificate, which is not checked anyway).
pub fn server_name(addr: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
}
