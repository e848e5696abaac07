//! The delivery half of the configuration: `[delivery]`, `[dns]` and `[[routes]]`.
//!
//! What it does: defines outbound limits, retry and suspension policy, client timeouts, DNS
//! settings and static routes, with their defaults and validation.
//!
//! What it does not do: no resolution of route host names (delivery does that through DNS) and
//! no per-provider shaping (a later `shaping.toml`).
//!
//! Invariants: every limit here is per shard; the effective host-wide limit is shards x the
//! value (documented in `config/mta.toml`).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::{ByteSize, HumanDuration, is_hostname};
use crate::tls::TlsPolicy;

/// A message rate: `"100/s"`, `"5000/h"`, `"20/m"`, `"100000/d"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSpec {
    /// Messages per period.
    pub messages: u32,
    /// The period.
    pub per: std::time::Duration,
}

impl std::str::FromStr for RateSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid rate {s:?} (write e.g. \"100/s\", \"5000/h\")");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let messages: u32 = n.trim().parse().map_err(|_| bad())?;
        let secs = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86400,
            _ => return Err(bad()),
        };
        if messages == 0 {
            return Err(format!("rate {s:?} must allow at least one message"));
        }
        Ok(RateSpec {
            messages,
            per: std::time::Duration::from_secs(secs),
        })
    }
}

impl std::fmt::Display for RateSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => "d",
        };
        write!(f, "{}/{}", self.messages, unit)
    }
}

impl<'de> Deserialize<'de> for RateSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for RateSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `[delivery]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySection {
    /// Keep all mail queued and deliver nothing (maintenance; acceptance-only benchmarks).
    pub hold: bool,
    /// Name given in EHLO to receivers. Default: `hostname`.
    pub helo_name: Option<String>,
    /// Smarthost for every domain without a route: `"host:port"` (port 25 if omitted).
    pub relay_host: Option<String>,
    /// File with the `username:password` the smarthost is authenticated with (AUTH, only over
    /// TLS); read at start and on reload, never shown.
    pub relay_auth_file: Option<std::path::PathBuf>,
    /// Public addresses by which this host is reached through NAT or a load balancer (as
    /// Postfix's `proxy_interfaces`): a next hop there is this MTA itself, so mail for it
    /// bounces with 5.4.6 instead of looping. The listening and interface addresses are
    /// known without it.
    pub own_addresses: Vec<std::net::IpAddr>,
    /// Recipients of one message sent in one transaction to one destination.
    pub max_recipients_per_transaction: usize,
    /// Connections per destination, per shard.
    pub max_connections: usize,
    /// Messages sent over one connection before it is closed.
    pub max_messages_per_connection: u32,
    /// An idle pooled connection is closed after this long.
    pub idle_timeout: HumanDuration,
    /// Messages per destination, per shard (token bucket); absent = unlimited.
    pub rate: Option<RateSpec>,
    /// Retries.
    pub retry: RetrySection,
    /// Suspension of failing destinations.
    pub suspend: SuspendSection,
    /// Client timeouts.
    pub timeouts: ClientTimeoutsSection,
    /// STARTTLS policy for destinations without their own: `"none"`, `"opportunistic"`
    /// (default), `"required"` or `"verify"`.
    pub tls: TlsPolicy,
    /// After a failed opportunistic handshake, a host is sent to in plaintext for this long.
    pub tls_fallback: HumanDuration,
    /// Memory the queue may use (all shards together): bodies beyond their share stay only in
    /// the spool and are read back when sent; near the budget new mail gets `452 4.3.1`.
    pub memory_budget: ByteSize,
    /// Traffic shaping file (per-provider limits, adaptive rules, bounce classes); see
    /// `config/shaping.toml` and `docs/SHAPING.md`. None = the limits above for everyone.
    pub shaping_file: Option<std::path::PathBuf>,
    /// The port MX hosts are connected to (and whose TLSA records are looked up): 25.
    pub mx_port: u16,
    /// Accept MX hosts whose addresses are loopback (127.0.0.0/8, ::1). Only for test rigs
    /// whose receivers listen on loopback: otherwise a name in someone else's zone could make
    /// the MTA connect to a local service. Our own listeners are refused regardless.
    pub mx_allow_loopback: bool,
    /// TLS that receivers require through DNS: DANE and MTA-STS.
    pub tls_policy: super::tls_policy::TlsPolicySection,
}

/// `[delivery.retry]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySection {
    /// Wait before the first retry.
    pub first: HumanDuration,
    /// Longest wait between retries.
    pub max: HumanDuration,
    /// Each wait is the previous one times this.
    pub multiplier: f64,
    /// Random spread of each wait, as a fraction (0.1 = ±10%).
    pub jitter: f64,
    /// After this long in the queue a recipient expires and bounces.
    pub lifetime: HumanDuration,
}

/// `[delivery.suspend]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuspendSection {
    /// Consecutive connection failures to a destination that suspend it.
    pub after_connect_failures: u32,
    /// First suspension after connection failures (doubles while failures continue).
    pub backoff: HumanDuration,
    /// Longest suspension after connection failures.
    pub max_backoff: HumanDuration,
    /// Suspension after a `421` from the receiver.
    pub after_421: HumanDuration,
}

/// `[delivery.timeouts]` (RFC 5321 4.5.3.2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTimeoutsSection {
    /// TCP connect.
    pub connect: HumanDuration,
    /// Greeting.
    pub greeting: HumanDuration,
    /// EHLO, MAIL, RCPT, RSET.
    pub command: HumanDuration,
    /// The `354` after DATA.
    pub data_init: HumanDuration,
    /// Writing each block of data.
    pub data_block: HumanDuration,
    /// The reply after the end of data.
    pub data_termination: HumanDuration,
}

/// `[dns]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSection {
    /// Nameservers (`"ip:port"`); empty = those of `/etc/resolv.conf`.
    pub servers: Vec<SocketAddr>,
    /// Per query attempt.
    pub timeout: HumanDuration,
    /// Attempts per query (rotating over servers).
    pub attempts: u32,
    /// TTL floor for cached answers.
    pub min_ttl: HumanDuration,
    /// TTL ceiling for cached answers.
    pub max_ttl: HumanDuration,
    /// Ceiling for cached negative answers (RFC 2308).
    pub negative_max_ttl: HumanDuration,
    /// Cached answers per shard.
    pub cache_size: usize,
}

/// One `[[routes]]` entry: mail for `domain` goes to `hosts` instead of its MX hosts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A domain, or `*.example.com` for every name below it.
    pub domain: String,
    /// Next hops, tried in order: `"host:port"` or `"host"` (port 25); host is a name or an IP.
    pub hosts: Vec<String>,
    /// Local address outbound connections of this route are made from.
    #[serde(default)]
    pub source: Option<IpAddr>,
    /// Overrides `delivery.max_connections` for this route.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Overrides `delivery.rate` for this route.
    #[serde(default)]
    pub rate: Option<RateSpec>,
    /// Overrides `delivery.tls` for this route.
    #[serde(default)]
    pub tls: Option<TlsPolicy>,
    /// The source pool of this route's mail (after the header and sender-domain selection).
    #[serde(default)]
    pub pool: Option<String>,
    /// File with the `username:password` this route's hosts are authenticated with (AUTH,
    /// only over TLS).
    #[serde(default)]
    pub auth_file: Option<std::path::PathBuf>,
}

impl Default for DeliverySection {
    fn default() -> Self {
        DeliverySection {
            hold: false,
            helo_name: None,
            relay_host: None,
            relay_auth_file: None,
            own_addresses: Vec::new(),
            max_recipients_per_transaction: 100,
            max_connections: 10,
            max_messages_per_connection: 100,
            idle_timeout: HumanDuration::secs(10),
            rate: None,
            retry: RetrySection::default(),
            suspend: SuspendSection::default(),
            timeouts: ClientTimeoutsSection::default(),
            tls: TlsPolicy::Opportunistic,
            tls_fallback: HumanDuration::secs(3600),
            memory_budget: ByteSize::mib(1024),
            shaping_file: None,
            mx_port: 25,
            mx_allow_loopback: false,
            tls_policy: Default::default(),
        }
    }
}

impl Default for RetrySection {
    fn default() -> Self {
        RetrySection {
            first: HumanDuration::secs(300),
            max: HumanDuration::secs(3600),
            multiplier: 2.0,
            jitter: 0.1,
            lifetime: HumanDuration::secs(5 * 86400),
        }
    }
}

impl Default for SuspendSection {
    fn default() -> Self {
        SuspendSection {
            after_connect_failures: 5,
            backoff: HumanDuration::secs(60),
            max_backoff: HumanDuration::secs(1800),
            after_421: HumanDuration::secs(60),
        }
    }
}

impl Default for ClientTimeoutsSection {
    fn default() -> Self {
        ClientTimeoutsSection {
            connect: HumanDuration::secs(30),
            greeting: HumanDuration::secs(300),
            command: HumanDuration::secs(300),
            data_init: HumanDuration::secs(120),
            data_block: HumanDuration::secs(180),
            data_termination: HumanDuration::secs(600),
        }
    }
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            servers: Vec::new(),
            timeout: HumanDuration::secs(2),
            attempts: 2,
            min_ttl: HumanDuration::secs(30),
            max_ttl: HumanDuration::secs(86400),
            negative_max_ttl: HumanDuration::secs(3600),
            cache_size: 10_000,
        }
    }
}

/// Parses `"host:port"` or `"host"` (port 25), `"[v6]:port"` or a bare IP.
pub fn parse_next_hop(s: &str) -> Result<(String, u16), String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip.to_string(), 25));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{s:?}: bad port {p:?}"))?,
        ),
        None => (s, 25),
    };
    if !is_hostname(host) {
        return Err(format!("{s:?} is not host:port"));
    }
    Ok((host.to_ascii_lowercase(), port))
}

impl DeliverySection {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, p: String| Err((format!("delivery.{k}"), p));
        if let Some(h) = &self.helo_name
            && !is_hostname(h)
        {
            return err("helo_name", "must be a fully qualified domain name".into());
        }
        if let Some(r) = &self.relay_host
            && let Err(p) = parse_next_hop(r)
        {
            return err("relay_host", p);
        }
        if self.relay_auth_file.is_some() && self.relay_host.is_none() {
            return err(
                "relay_auth_file",
                "is for delivery.relay_host, which is not set (a route has its own auth_file)"
                    .into(),
            );
        }
        if self.max_recipients_per_transaction == 0 {
            return err(
                "max_recipients_per_transaction",
                "must be at least 1".into(),
            );
        }
        if self.max_connections == 0 {
            return err("max_connections", "must be at least 1".into());
        }
        if self.max_messages_per_connection == 0 {
            return err("max_messages_per_connection", "must be at least 1".into());
        }
        let r = &self.retry;
        if r.first.0.is_zero() || r.max < r.first {
            return err("retry", "first must be > 0 and max >= first".into());
        }
        if !(1.0..=10.0).contains(&r.multiplier) {
            return err("retry.multiplier", "must be from 1 to 10".into());
        }
        if !(0.0..1.0).contains(&r.jitter) {
            return err("retry.jitter", "must be from 0 to less than 1".into());
        }
        if r.lifetime.0.is_zero() {
            return err("retry.lifetime", "must be > 0".into());
        }
        if self.suspend.after_connect_failures == 0 {
            return err(
                "suspend.after_connect_failures",
                "must be at least 1".into(),
            );
        }
        if self.mx_port == 0 {
            return err("mx_port", "must not be 0".into());
        }
        self.tls_policy.validate()
    }
}

impl RouteConfig {
    /// Checks one route; `i` is its index for the error key.
    pub fn validate(&self, i: usize) -> Result<(), (String, String)> {
        let key = format!("routes[{i}]");
        let name = self.domain.strip_prefix("*.").unwrap_or(&self.domain);
        if !is_hostname(name) {
            return Err((
                format!("{key}.domain"),
                format!("{:?} is not a domain or \"*.domain\"", self.domain),
            ));
        }
        if self.hosts.is_empty() {
            return Err((format!("{key}.hosts"), "at least one next hop".into()));
        }
        for h in &self.hosts {
            parse_next_hop(h).map_err(|p| (format!("{key}.hosts"), p))?;
        }
        if self.max_connections == Some(0) {
            return Err((
                format!("{key}.max_connections"),
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        let r: RateSpec = "100/s".parse().unwrap();
        assert_eq!((r.messages, r.per.as_secs()), (100, 1));
        assert_eq!("5000/h".parse::<RateSpec>().unwrap().to_string(), "5000/h");
        assert!("0/s".parse::<RateSpec>().is_err());
        assert!("10/week".parse::<RateSpec>().is_err());
    }

    #[test]
    fn next_hops() {
        assert_eq!(
            parse_next_hop("127.0.0.1:2526").unwrap(),
            ("127.0.0.1".into(), 2526)
        );
        assert_eq!(
            parse_next_hop("mx.Example.com").unwrap(),
            ("mx.example.com".into(), 25)
        );
        assert_eq!(parse_next_hop("[::1]:26").unwrap(), ("::1".into(), 26));
        assert_eq!(parse_next_hop("::1").unwrap(), ("::1".into(), 25));
        assert!(parse_next_hop("bad host:25").is_err());
        assert!(parse_next_hop("host:99999").is_err());
    }
}
