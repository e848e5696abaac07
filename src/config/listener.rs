//! The inbound sections of the configuration: listeners and their modes, `[tls]`, `[auth]`.
//!
//! What it does: defines `[[listeners]]` (address, mode, plaintext AUTH, PROXY protocol),
//! `[tls]` (certificates for inbound TLS, trusted roots for outbound `verify`), `[auth]`
//! (users file, failure delay and throttle) and `[admin]` (the HTTP endpoint for metrics and
//! queue operations), with their defaults and checks.
//!
//! What it does not do: no loading of certificates or users (the shard does that at start and
//! on reload), no policy decisions (the session applies them).
//!
//! Invariants: after [`check`] a `submissions` listener has a certificate and a `submission`
//! listener has a users file.

use std::net::SocketAddr;

use ipnet::IpNet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, HumanDuration};
use crate::tls::CertificateConfig;

/// What a listener is for (RFC 8314 names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerMode {
    /// Port 25 style relay: STARTTLS offered when a certificate is configured; AUTH offered
    /// inside TLS when a users file is configured.
    #[default]
    Smtp,
    /// Port 587: STARTTLS, and AUTH required before MAIL (`530 5.7.0`).
    Submission,
    /// Port 465: TLS from the first byte (implicit TLS), AUTH required before MAIL.
    Submissions,
}

/// One listening socket: `[[listeners]]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address and port, e.g. `"127.0.0.1:2525"` or `"[::]:25"`.
    pub address: SocketAddr,
    /// `"smtp"` (default), `"submission"` or `"submissions"`.
    #[serde(default)]
    pub mode: ListenerMode,
    /// Offer AUTH on plaintext connections too (only for trusted networks: passwords in clear).
    #[serde(default)]
    pub auth_plaintext: bool,
    /// Expect a HAProxy PROXY protocol header (v1 or v2) before anything else and take the
    /// client address from it.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// With `proxy_protocol`: the networks of the load balancers allowed to send the header
    /// (default: loopback only). A connection from anywhere else is closed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_from: Option<Vec<ipnet::IpNet>>,
}

impl ListenerConfig {
    /// A plain `smtp` listener on an address.
    pub fn smtp(address: SocketAddr) -> Self {
        ListenerConfig {
            address,
            mode: ListenerMode::Smtp,
            auth_plaintext: false,
            proxy_protocol: false,
            proxy_from: None,
        }
    }

    /// The networks that may send a PROXY header to this listener: `proxy_from`, or loopback.
    pub fn proxy_networks(&self) -> Vec<ipnet::IpNet> {
        self.proxy_from.clone().unwrap_or_else(|| {
            vec![
                "127.0.0.0/8".parse().expect("literal network"),
                "::1/128".parse().expect("literal network"),
            ]
        })
    }
}

/// `[tls]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// Certificates for inbound TLS, `[[tls.certificates]]`; the first is the default and the
    /// others are chosen by the name the client asks for (SNI). None = no inbound TLS.
    pub certificates: Vec<CertificateConfig>,
    /// PEM file of roots trusted by the outbound `verify` policy instead of the system store.
    pub ca_file: Option<PathBuf>,
}

/// `[auth]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// File of `user:argon2-PHC-hash` lines (made with `mta passwd`). None = no AUTH.
    pub users_file: Option<PathBuf>,
    /// A failed AUTH is answered after this delay.
    pub failure_delay: HumanDuration,
    /// After this many failures from one address within `failure_window`, AUTH is refused
    /// with `454 4.7.0` until the window passes.
    pub max_failures: u32,
    /// The window of `max_failures`.
    pub failure_window: HumanDuration,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            users_file: None,
            failure_delay: HumanDuration::secs(1),
            max_failures: 5,
            failure_window: HumanDuration::secs(300),
        }
    }
}

/// Checks the listeners against `[tls]` and `[auth]`.
pub(super) fn check(
    listeners: &[ListenerConfig],
    tls: &TlsSection,
    auth: &AuthSection,
) -> Result<(), ConfigError> {
    let invalid = |key: String, problem: &str| {
        Err(ConfigError::Invalid {
            key,
            problem: problem.to_owned(),
        })
    };
    for (i, l) in listeners.iter().enumerate() {
        let key = format!("listeners[{i}].mode");
        if l.mode == ListenerMode::Submissions && tls.certificates.is_empty() {
            return invalid(
                key,
                "\"submissions\" needs a certificate in [[tls.certificates]]",
            );
        }
        if l.mode != ListenerMode::Smtp && auth.users_file.is_none() {
            return invalid(
                key,
                "submission listeners require AUTH: set auth.users_file",
            );
        }
        if l.proxy_from.is_some() && !l.proxy_protocol {
            return invalid(key, "proxy_from needs proxy_protocol = true");
        }
        if l.mode == ListenerMode::Submission && tls.certificates.is_empty() && !l.auth_plaintext {
            return invalid(
                key,
                "\"submission\" without a certificate needs auth_plaintext = true",
            );
        }
    }
    if auth.max_failures == 0 {
        return invalid("auth.max_failures".to_owned(), "at least 1");
    }
    Ok(())
}

/// `[admin]`: the HTTP endpoint for metrics and queue operations.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// Address of the endpoint; `""` turns it off. Keep it on loopback or a management network.
    pub listen: String,
    /// Networks whose requests (all but `GET /health`) need no token.
    pub allow: Vec<IpNet>,
    /// Bearer token that permits every request from any address (`Authorization: Bearer ...`).
    pub token: Option<String>,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: "127.0.0.1:8025".to_owned(),
            allow: vec![
                "127.0.0.0/8".parse().expect("literal network"),
                "::1/128".parse().expect("literal network"),
            ],
            token: None,
        }
    }
}

impl AdminSection {
    /// The address to listen on, or None when the endpoint is off.
    pub fn address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::Invalid {
                key: "admin.listen".to_owned(),
                problem: format!("{:?} is not an ip:port address", self.listen),
            })
    }
}
