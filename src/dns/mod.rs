//! Per-shard DNS client for delivery: MX, A and AAAA lookups; TLSA and TXT for outbound TLS
//! policy (`secure.rs`).
//!
//! What it does: turns a recipient domain into a [`MailRoute`] (RFC 5321 5.1: MX records
//! ordered by preference, equal preferences shuffled, implicit MX, RFC 7505 null MX) and a
//! host name into its addresses. One [`Resolver`] lives on each glommio executor (shard); it
//! is `Rc`-based, cheap to clone and must not cross threads. It speaks to recursive
//! nameservers (from [`DnsConfig::servers`] or `/etc/resolv.conf`) over UDP with EDNS0
//! (RFC 6891, 1232-byte payload), falls back to TCP on truncation (RFC 1035 4.2.2, RFC 7766),
//! caches positive and negative answers (RFC 2308) and shares one query in flight between
//! concurrent lookups of the same (name, type) on the shard.
//!
//! Queries set AD (RFC 6840 5.7) so that a validating resolver says whether it validated the
//! answer; the cache keeps that bit with the answer.
//!
//! What it does not do: recursion (it is a stub resolver and sets RD), DNSSEC validation of
//! its own (the AD bit of the configured resolver is trusted), search lists or `ndots` (names are always absolute), `/etc/hosts`, 0x20
//! case randomisation, domain literals (`[192.0.2.1]` is the caller's business: see
//! [`Resolver::mail_route`]).
//!
//! Decisions where the contract is silent:
//! - Names: a trailing dot is accepted and removed; U-labels are converted to A-labels by
//!   hickory-proto (UTS 46, it is free there); names that are neither valid IDNA nor valid
//!   ASCII labels give [`DnsError::InvalidName`] (permanent).
//! - Server rotation follows glibc: each attempt walks the whole server list in order starting
//!   with the first, so the total number of tries is `attempts x servers`.
//! - Temporary failures are never cached (a later lookup retries); concurrent lookups still
//!   share the one failing query.
//! - Negative answers without an SOA in the authority section are not cached (RFC 2308 5).
//! - CNAME loops and chains longer than 8 hops are a temporary failure: deferring is the safe
//!   side of a misconfiguration that is usually fixed quickly.
//! - Any MX set consisting only of "." targets is a null MX, whatever the preference.
//! - MX targets that are IP literals or "." (in a mixed set) are ignored; if nothing usable is
//!   left the domain is [`DnsError::NotFound`].
//! - An MX target whose A and AAAA lookups fail temporarily is dropped when other targets
//!   resolve; the caller delivers to what is reachable now.
//! - An MX target that is a CNAME (RFC 2181 10.3 forbids it) is followed anyway, as most MTAs
//!   do; [`MxHost::name`] stays the MX target as published.
//! - At most [`MAX_MX_TARGETS`] (16) MX targets, most preferred first, are resolved.
//! - Addresses in the additional section of an MX answer are not trusted; each target is
//!   looked up (and cached) on its own.
//! - If one of A/AAAA fails temporarily and the other has addresses, the addresses are used.
//! - AAAA addresses are returned even if the host has no IPv6 route; the caller filters.
//!
//! Invariants: no `RefCell` borrow is held across an `.await`; every network wait is bounded
//! by [`DnsConfig::timeout`].

mod cache;
pub mod fake;
mod resolver;
mod secure;
mod transport;

pub use cache::{CacheLookup, CachedAnswer, DnsCache};
pub use resolver::{MAX_CNAME_HOPS, MAX_MX_TARGETS, Resolver};
pub use secure::TlsaLookup;

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::Duration;

/// Resolver settings for one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// Recursive nameservers to ask; empty means those of `/etc/resolv.conf` (port 53).
    pub servers: Vec<SocketAddr>,
    /// Time to wait for one answer from one server (default 2 s).
    pub timeout: Duration,
    /// Number of passes over the server list (default 2), as `options attempts:` in resolv.conf.
    pub attempts: u32,
    /// Lower bound of cached TTLs, positive and negative (default 30 s).
    pub min_ttl: Duration,
    /// Upper bound of positive TTLs (default 1 day).
    pub max_ttl: Duration,
    /// Upper bound of negative TTLs (default 1 hour).
    pub negative_max_ttl: Duration,
    /// Maximum number of cache entries (default 10,000); 0 disables caching.
    pub cache_size: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            timeout: Duration::from_secs(2),
            attempts: 2,
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(86_400),
            negative_max_ttl: Duration::from_secs(3_600),
            cache_size: 10_000,
        }
    }
}

impl DnsConfig {
    /// Checks the settings; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        for s in &self.servers {
            if s.port() == 0 {
                return Err(format!("dns.servers: {s}: port 0"));
            }
            if s.ip().is_unspecified() || s.ip().is_multicast() {
                return Err(format!("dns.servers: {s}: not a unicast address"));
            }
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return Err(format!(
                "dns.timeout: {:?}: must be > 0 and <= 60s",
                self.timeout
            ));
        }
        if self.attempts == 0 || self.attempts > 10 {
            return Err(format!("dns.attempts: {}: must be 1..=10", self.attempts));
        }
        if self.min_ttl > self.max_ttl {
            return Err("dns.min_ttl must not exceed dns.max_ttl".into());
        }
        if self.min_ttl > self.negative_max_ttl {
            return Err("dns.min_ttl must not exceed dns.negative_max_ttl".into());
        }
        if self.max_ttl > Duration::from_secs(u32::MAX as u64)
            || self.negative_max_ttl > Duration::from_secs(u32::MAX as u64)
        {
            return Err("dns TTL bounds must fit in 32 bits of seconds".into());
        }
        Ok(())
    }
}

/// Nameservers of `/etc/resolv.conf`, port 53 (IPv6 link-local scopes kept).
///
/// Only used when [`DnsConfig::servers`] is empty. `options timeout/attempts/rotate` there are
/// not applied: the MTA configuration governs those.
pub fn system_servers() -> Result<Vec<SocketAddr>, DnsError> {
    let text = std::fs::read("/etc/resolv.conf")
        .map_err(|e| DnsError::Config(format!("/etc/resolv.conf: {e}")))?;
    servers_from_resolv_conf(&text)
}

/// Nameservers of a resolv.conf text (see [`system_servers`]).
pub fn servers_from_resolv_conf(text: &[u8]) -> Result<Vec<SocketAddr>, DnsError> {
    let conf = resolv_conf::Config::parse(text)
        .map_err(|e| DnsError::Config(format!("resolv.conf: {e}")))?;
    let servers: Vec<SocketAddr> = conf
        .nameservers
        .iter()
        .map(|ns| match ns {
            resolv_conf::ScopedIp::V6(ip, Some(scope)) => {
                let scope_id = scope
                    .parse::<u32>()
                    .ok()
                    .or_else(|| if_index(scope))
                    .unwrap_or(0);
                SocketAddr::V6(SocketAddrV6::new(*ip, 53, 0, scope_id))
            }
            other => SocketAddr::new(IpAddr::from(other), 53),
        })
        .collect();
    if servers.is_empty() {
        return Err(DnsError::NoServers);
    }
    Ok(servers)
}

/// Interface index of a named interface (for `fe80::1%eth0` in resolv.conf).
fn if_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// One MX target: host name and its addresses (A and AAAA, A first), with the preference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    /// Target host name in A-label form, lower case, without trailing dot.
    pub name: String,
    /// MX preference (lower is preferred); 0 for an implicit MX.
    pub preference: u16,
    /// IPv4 addresses first, then IPv6, each in answer order.
    pub addrs: Vec<IpAddr>,
}

/// Where mail for a domain goes (RFC 5321 5.1, RFC 7505).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailRoute {
    /// MX hosts ordered by preference (ascending), equal preferences shuffled (random order
    /// given by a caller-supplied RNG seed or a simple internal xorshift), each with its
    /// addresses resolved; hosts whose addresses do not resolve are dropped; if no MX exists
    /// the domain itself is the single host (implicit MX, preference 0) if it has A/AAAA.
    Hosts(Vec<MxHost>),
    /// Null MX (RFC 7505: a single MX with preference 0 and target "."): bounce with 5.1.10.
    NullMx,
}

/// Why a lookup failed; [`DnsError::is_permanent`] tells bounce from defer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The domain does not exist (NXDOMAIN) or has neither MX nor A/AAAA: permanent (bounce 5.1.2).
    #[error("{0}: domain not found")]
    NotFound(String),
    /// SERVFAIL, REFUSED, timeouts, network errors, malformed answers: temporary (defer 4.4.3).
    #[error("{domain}: temporary DNS failure: {reason}")]
    Temporary {
        /// The name being resolved.
        domain: String,
        /// What went wrong, for logs and DSNs.
        reason: String,
    },
    /// No nameserver given and none in `/etc/resolv.conf`.
    #[error("no nameservers configured")]
    NoServers,
    /// The name is not a valid domain name (bad label, too long, empty): permanent (5.1.2).
    #[error("{0}: invalid domain name")]
    InvalidName(String),
    /// Invalid [`DnsConfig`] or unreadable `/etc/resolv.conf`.
    #[error("DNS configuration: {0}")]
    Config(String),
}

impl DnsError {
    /// True for errors that retrying cannot fix (bounce), false for defer.
    pub fn is_permanent(&self) -> bool {
        matches!(self, DnsError::NotFound(_) | DnsError::InvalidName(_))
    }

    pub(crate) fn temporary(domain: &str, reason: impl Into<String>) -> Self {
        DnsError::Temporary {
            domain: domain.to_string(),
            reason: reason.into(),
        }
    }
}

/// Counters of one shard's resolver (monotonic since creation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// Queries sent (each UDP datagram and each TCP exchange counts once).
    pub queries_sent: u64,
    /// Lookups answered from the cache.
    pub cache_hits: u64,
    /// Lookups not in the cache (or expired there).
    pub cache_misses: u64,
    /// Attempts that got no valid answer within the timeout.
    pub timeouts: u64,
    /// Truncated UDP answers retried over TCP.
    pub tcp_fallbacks: u64,
    /// Lookups that joined a query already in flight instead of sending their own.
    pub shared_inflight: u64,
}

/// Normalises a domain name: trims spaces and one trailing dot, converts U-labels to
/// A-labels, lower-cases. Returns the cache key form (`example.com`) and the absolute name.
pub(crate) fn normalize(domain: &str) -> Result<(String, hickory_proto::rr::Name), DnsError> {
    let d = domain.trim();
    let d = d.strip_suffix('.').unwrap_or(d);
    if d.is_empty() || d.starts_with('.') || d.contains("..") || d.contains(char::is_whitespace) {
        return Err(DnsError::InvalidName(domain.to_string()));
    }
    let mut name = hickory_proto::rr::Name::from_str_relaxed(d)
        .map_err(|_| DnsError::InvalidName(domain.to_string()))?
        .to_lowercase();
    name.set_fqdn(true);
    let key = name.to_ascii();
    let key = key.strip_suffix('.').unwrap_or(&key).to_string();
    if key.is_empty() {
        return Err(DnsError::InvalidName(domain.to_string()));
    }
    Ok((key, name))
}

/// An IP address literal, bare or in brackets (`[192.0.2.1]`, `[IPv6:2001:db8::1]`).
pub(crate) fn ip_literal(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s.strip_suffix('.').unwrap_or(s);
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    let inner = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
        .unwrap_or(inner);
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_names() {
        assert_eq!(normalize("Example.COM.").unwrap().0, "example.com");
        assert_eq!(normalize(" example.com ").unwrap().0, "example.com");
        assert_eq!(normalize("bücher.de").unwrap().0, "xn--bcher-kva.de");
        assert_eq!(
            normalize("_dmarc.example.com").unwrap().0,
            "_dmarc.example.com"
        );
        assert!(normalize("").is_err());
        assert!(normalize(".").is_err());
        assert!(normalize("a..b").is_err());
        assert!(normalize("exa mple.com").is_err());
        let long = format!("{}.com", "a".repeat(64));
        assert!(matches!(normalize(&long), Err(DnsError::InvalidName(_))));
        assert!(normalize(&long).unwrap_err().is_permanent());
    }

    #[test]
    fn ip_literals() {
        assert_eq!(ip_literal("192.0.2.1"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(
            ip_literal("[192.0.2.1]"),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            ip_literal("[IPv6:2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(ip_literal("mx.example.com"), None);
    }

    #[test]
    fn config_validation() {
        assert!(DnsConfig::default().validate().is_ok());
        let bad = DnsConfig {
            attempts: 0,
            ..DnsConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("attempts"));
        let bad = DnsConfig {
            timeout: Duration::ZERO,
            ..DnsConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = DnsConfig {
            min_ttl: Duration::from_secs(7200),
            ..DnsConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = DnsConfig {
            servers: vec!["127.0.0.1:0".parse().unwrap()],
            ..DnsConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn resolv_conf_parsing() {
        let text = b"# comment\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.com\noptions timeout:1\n";
        let s = servers_from_resolv_conf(text).unwrap();
        assert_eq!(
            s,
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
        assert_eq!(
            servers_from_resolv_conf(b"search example.com\n"),
            Err(DnsError::NoServers)
        );
    }

    #[test]
    fn permanence() {
        assert!(DnsError::NotFound("x".into()).is_permanent());
        assert!(!DnsError::temporary("x", "y").is_permanent());
        assert!(!DnsError::NoServers.is_permanent());
    }
}
