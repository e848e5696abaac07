//! One POST of a batch to a hook's endpoint, signed, with a deadline.
//!
//! What it does: sends the body with `Content-Type: application/json`, `X-Mta-Hook`,
//! `X-Mta-Timestamp` (Unix seconds) and `X-Mta-Signature` (`sign`), through a blocking
//! `ureq` agent that keeps its connection for the next batch; `https://` URLs are verified
//! against `tls.ca_file` or, without it, the system's trusted roots. The answer is read up to
//! [`MAX_ANSWER`] octets (for the error message) and classified.
//!
//! What it does not do: no retries (the runner waits and calls again), no redirects, no
//! proxies.
//!
//! Invariants: every call ends within the hook's `timeout`; only a `2xx` is a success.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::hmac;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use super::WebhookConfig;
use super::sign;

/// The most octets of an answer read.
pub const MAX_ANSWER: u64 = 64 * 1024;

/// Why a POST did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The endpoint answered, but not `2xx`.
    #[error("HTTP {status}: {text}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        text: String,
    },
    /// No answer: connection refused, timeout, TLS failure, ...
    #[error("{0}")]
    Transport(String),
}

impl PostError {
    /// The `result` label of `mta_webhook_posts_total`.
    pub fn label(&self) -> &'static str {
        match self {
            PostError::Status { .. } => "http_error",
            PostError::Transport(_) => "transport_error",
        }
    }
}

/// Why a hook could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The secret file could not be read or is too short.
    #[error("webhook {hook}: secret_file {path}: {problem}")]
    Secret {
        /// The hook.
        hook: String,
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The trusted roots could not be read.
    #[error("webhook {hook}: tls.ca_file: {problem}")]
    Roots {
        /// The hook.
        hook: String,
        /// What is wrong.
        problem: String,
    },
}

/// A hook's endpoint and key.
pub struct Poster {
    name: String,
    url: String,
    key: hmac::Key,
    agent: ureq::Agent,
}

impl Poster {
    /// The poster of `hook`; `ca_file` replaces the system's roots for `https://`.
    pub fn new(hook: &WebhookConfig, ca_file: Option<&Path>) -> Result<Poster, SetupError> {
        let secret = secret(hook)?;
        let roots = roots(ca_file).map_err(|problem| SetupError::Roots {
            hook: hook.name.clone(),
            problem,
        })?;
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(hook.timeout.0))
            .max_redirects(0)
            .proxy(None)
            .tls_config(tls)
            .build()
            .new_agent();
        Ok(Poster {
            name: hook.name.clone(),
            url: hook.url.clone(),
            key: sign::key(&secret),
            agent,
        })
    }

    /// POSTs `body`; Ok is the `2xx` status.
    pub fn post(&self, body: &[u8]) -> Result<u16, PostError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let result = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("X-Mta-Hook", &self.name)
            .header("X-Mta-Timestamp", now.to_string())
            .header("X-Mta-Signature", sign::signature(&self.key, now, body))
            .send(body);
        let mut resp = result.map_err(|e| PostError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned())
            .unwrap_or_default();
        match status {
            200..=299 => Ok(status),
            _ => Err(PostError::Status { status, text }),
        }
    }
}

/// The key: `secret`, or the first line of `secret_file`.
fn secret(hook: &WebhookConfig) -> Result<Vec<u8>, SetupError> {
    if let Some(s) = &hook.secret {
        return Ok(s.as_bytes().to_vec());
    }
    let path = hook.secret_file.as_deref().unwrap_or(Path::new(""));
    let fail = |problem: String| SetupError::Secret {
        hook: hook.name.clone(),
        path: path.display().to_string(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let line = text.lines().next().unwrap_or("").trim();
    if line.len() < super::config::MIN_SECRET {
        return Err(fail(format!(
            "the key on its first line must be at least {} octets",
            super::config::MIN_SECRET
        )));
    }
    Ok(line.as_bytes().to_vec())
}

/// The certificates of `ca_file`, or the system's.
fn roots(ca_file: Option<&Path>) -> Result<Vec<Certificate<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let ders: Vec<CertificateDer<'static>> = match ca_file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", path.display()))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    Ok(ders
        .iter()
        .map(|d| Certificate::from_der(d.as_ref()).to_owned())
        .collect())
}

/// Reads the secret of `hook` (for `mta check-config`).
pub fn check_secret(hook: &WebhookConfig) -> Result<(), SetupError> {
    secret(hook).map(drop)
}
