//! The shaping file: per-destination limits at four levels, and their resolution.
//!
//! What it does: parses the TOML shaping file (`[default]`, `[provider.<name>]` with
//! `mx_suffixes`, `[domain."<name>"]`, `[source."<ip or net>"]`, `[[rule]]`, `[[bounce_class]]`,
//! and the thresholds `[campaign."<name>"]` and `[tenant."<name>"]`)
//! into a validated [`Shaping`], and merges the levels that apply to one delivery into a
//! [`Shape`]: default < provider < domain < source, later wins per field.
//!
//! What it does not do: no enforcement, no DNS (the caller passes the MX host names it already
//! has), no reloading; reading the file in [`Shaping::load`] is the only I/O.
//!
//! Invariants: a [`Shaping`] only exists validated (every rate, count and pattern checked, every
//! error names its key and the TOML parser's errors name the line); providers are tried in file
//! order; domain names and MX suffixes are kept lower-case without a trailing dot.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::bounce_class::{BounceClassifier, RawBounceClass};
use super::rule::{RawRule, Rule};
use super::rules::RuleEngine;
use super::thresholds::{self, RawThreshold, Thresholds};
use super::values::{ShapingError, parse_rate};
use crate::config::HumanDuration;
use crate::queue::{Limits, Rate, RetryPolicy};
use crate::tls::TlsPolicy;

/// A rate in the file, parsed by [`parse_rate`].
#[derive(Clone, Copy, Debug)]
struct RateValue(Rate);

impl<'de> Deserialize<'de> for RateValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_rate(&s).map(RateValue).map_err(de::Error::custom)
    }
}

/// One level of settings as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    mx_suffixes: Option<Vec<String>>,
    max_connections: Option<usize>,
    connection_rate: Option<RateValue>,
    message_rate: Option<RateValue>,
    max_messages_per_connection: Option<u32>,
    max_recipients_per_transaction: Option<usize>,
    tls: Option<TlsPolicy>,
    retry_first: Option<HumanDuration>,
    retry_max: Option<HumanDuration>,
}

/// The whole file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    default: RawSection,
    #[serde(default)]
    provider: Ordered<RawSection>,
    #[serde(default)]
    domain: Ordered<RawSection>,
    #[serde(default)]
    source: Ordered<RawSection>,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    bounce_class: Vec<RawBounceClass>,
    #[serde(default)]
    campaign: HashMap<String, RawThreshold>,
    #[serde(default)]
    tenant: HashMap<String, RawThreshold>,
}

/// A TOML table kept in document order (provider order decides which provider matches).
#[derive(Debug)]
struct Ordered<T>(Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of named sections")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, T>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// The limits that apply to one delivery, after merging the levels of the shaping file.
///
/// `None` means "not set by the shaping file: use the MTA's global value".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shape {
    /// Connections per shard to the destination.
    pub max_connections: Option<usize>,
    /// New connections per period (per shard).
    pub connection_rate: Option<Rate>,
    /// Messages per period (per shard).
    pub message_rate: Option<Rate>,
    /// Messages sent over one connection before it is closed.
    pub max_messages_per_connection: Option<u32>,
    /// Recipients per SMTP transaction.
    pub max_recipients_per_transaction: Option<usize>,
    /// TLS policy.
    pub tls: Option<TlsPolicy>,
    /// First retry after a deferral.
    pub retry_first: Option<Duration>,
    /// Longest wait between retries.
    pub retry_max: Option<Duration>,
    /// The provider section that matched, if any (for `explain` and metric labels).
    pub provider: Option<String>,
}

impl Shape {
    /// Sets every field that `over` sets (later level wins per field). `provider` is kept
    /// unless `over` names one.
    pub fn overlay(&mut self, over: &Shape) {
        fn set<T: Clone>(into: &mut Option<T>, from: &Option<T>) {
            if from.is_some() {
                into.clone_from(from);
            }
        }
        set(&mut self.max_connections, &over.max_connections);
        set(&mut self.connection_rate, &over.connection_rate);
        set(&mut self.message_rate, &over.message_rate);
        set(
            &mut self.max_messages_per_connection,
            &over.max_messages_per_connection,
        );
        set(
            &mut self.max_recipients_per_transaction,
            &over.max_recipients_per_transaction,
        );
        set(&mut self.tls, &over.tls);
        set(&mut self.retry_first, &over.retry_first);
        set(&mut self.retry_max, &over.retry_max);
        set(&mut self.provider, &over.provider);
    }

    /// The scheduler limits: this shape's values where set, `global`'s elsewhere.
    pub fn limits(&self, global: &Limits) -> Limits {
        Limits {
            max_connections: self.max_connections.unwrap_or(global.max_connections),
            max_messages_per_connection: self
                .max_messages_per_connection
                .unwrap_or(global.max_messages_per_connection),
            max_recipients_per_transaction: self
                .max_recipients_per_transaction
                .unwrap_or(global.max_recipients_per_transaction),
            rate: self.message_rate.or(global.rate),
            connection_rate: self.connection_rate.or(global.connection_rate),
        }
    }

    /// The retry policy: `retry_first`/`retry_max` where set, `global`'s elsewhere; the first
    /// wait never exceeds the longest.
    pub fn retry(&self, global: &RetryPolicy) -> RetryPolicy {
        let max = self.retry_max.unwrap_or(global.max);
        let first = self.retry_first.unwrap_or(global.first).min(max);
        RetryPolicy {
            first,
            max,
            ..global.clone()
        }
    }

    /// The TLS policy: this shape's where set, else `global`.
    pub fn tls_policy(&self, global: TlsPolicy) -> TlsPolicy {
        self.tls.unwrap_or(global)
    }
}

/// A provider section: a name, the MX suffixes that identify it, and its settings.
#[derive(Clone, Debug)]
struct Provider {
    name: String,
    mx_suffixes: Vec<String>,
    shape: Shape,
}

/// A validated shaping file.
#[derive(Clone, Debug, Default)]
pub struct Shaping {
    default: Shape,
    providers: Vec<Provider>,
    domains: HashMap<String, Shape>,
    /// Sorted longest prefix first, so the first match is the most specific.
    sources: Vec<(IpNet, Shape)>,
    rules: Vec<Rule>,
    bounce: BounceClassifier,
    thresholds: Thresholds,
}

/// Lower case, without a trailing dot.
fn normalize_name(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` is `suffix` or ends with `.suffix` (label boundary); both normalized.
pub(super) fn suffix_matches(host: &str, suffix: &str) -> bool {
    let host = host.trim().trim_end_matches('.');
    let suffix = suffix.trim().trim_end_matches('.');
    if suffix.is_empty() || host.len() < suffix.len() {
        return false;
    }
    let split = host.len() - suffix.len();
    let Some(tail) = host.get(split..) else {
        return false;
    };
    tail.eq_ignore_ascii_case(suffix) && (split == 0 || host.as_bytes()[split - 1] == b'.')
}

impl Shaping {
    /// Reads and validates a shaping file.
    pub fn load(path: &Path) -> Result<Shaping, ShapingError> {
        let text = std::fs::read_to_string(path).map_err(|err| ShapingError::Read {
            path: path.to_owned(),
            err,
        })?;
        Shaping::parse(&text).map_err(|e| match e {
            ShapingError::Parse { message, .. } => ShapingError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates shaping text.
    pub fn parse(text: &str) -> Result<Shaping, ShapingError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ShapingError::Parse {
            path: PathBuf::from("<shaping>"),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let default = section("default", raw.default)?;
        let mut providers = Vec::with_capacity(raw.provider.0.len());
        for (name, mut sec) in raw.provider.0 {
            let key = format!("provider.{name}");
            let suffixes = sec.mx_suffixes.take().unwrap_or_default();
            if suffixes.is_empty() {
                return Err(ShapingError::invalid(
                    format!("{key}.mx_suffixes"),
                    "a provider needs at least one MX suffix",
                ));
            }
            let mut mx_suffixes = Vec::with_capacity(suffixes.len());
            for s in &suffixes {
                let n = normalize_name(s);
                if n.is_empty() || n.starts_with('.') || n.contains("..") || n.contains(' ') {
                    return Err(ShapingError::invalid(
                        format!("{key}.mx_suffixes"),
                        format!("{s:?} is not a host name suffix (write e.g. \"google.com\")"),
                    ));
                }
                mx_suffixes.push(n);
            }
            let mut shape = section(&key, sec)?;
            shape.provider = Some(name.clone());
            providers.push(Provider {
                name,
                mx_suffixes,
                shape,
            });
        }
        let mut domains = HashMap::with_capacity(raw.domain.0.len());
        for (name, sec) in raw.domain.0 {
            let key = format!("domain.{name:?}");
            let n = normalize_name(&name);
            if n.is_empty() || n.contains(' ') {
                return Err(ShapingError::invalid(key, "not a domain name"));
            }
            let shape = section(&key, sec)?;
            if domains.insert(n, shape).is_some() {
                return Err(ShapingError::invalid(
                    key,
                    "the same domain appears twice (names are case-insensitive)",
                ));
            }
        }
        let mut sources = Vec::with_capacity(raw.source.0.len());
        for (name, sec) in raw.source.0 {
            let key = format!("source.{name:?}");
            let net = match name.parse::<IpNet>() {
                Ok(n) => n.trunc(),
                Err(_) => match name.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(ShapingError::invalid(
                            key,
                            "not an IP address or network (write e.g. \"192.0.2.10\" or \"192.0.2.0/24\")",
                        ));
                    }
                },
            };
            if sources.iter().any(|(n, _)| *n == net) {
                return Err(ShapingError::invalid(key, "the same source appears twice"));
            }
            sources.push((net, section(&key, sec)?));
        }
        sources.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        let rules = raw
            .rule
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.build(i))
            .collect::<Result<Vec<_>, _>>()?;
        let bounce = BounceClassifier::from_raw(raw.bounce_class)?;
        let thresholds = Thresholds {
            campaign: thresholds::build("campaign", raw.campaign)?,
            tenant: thresholds::build("tenant", raw.tenant)?,
        };
        Ok(Shaping {
            default,
            providers,
            domains,
            sources,
            rules,
            bounce,
            thresholds,
        })
    }

    /// The thresholds per campaign and tenant (`[campaign."<name>"]`, `[tenant."<name>"]`).
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The shape of a delivery to `domain` via `mx_hosts` from `source`: default < provider
    /// (the first in file order with an MX suffix matching any of `mx_hosts`) < domain (exact,
    /// case-insensitive) < source (the most specific network containing it).
    pub fn resolve(&self, domain: &str, mx_hosts: &[String], source: Option<IpAddr>) -> Shape {
        let mut shape = self.default.clone();
        if let Some(p) = self.provider_of(mx_hosts) {
            shape.overlay(&p.shape);
        }
        let d = normalize_name(domain);
        if let Some(s) = self.domains.get(&d) {
            shape.overlay(s);
        }
        if let Some(ip) = source
            && let Some((_, s)) = self.sources.iter().find(|(n, _)| n.contains(&ip))
        {
            shape.overlay(s);
        }
        shape
    }

    /// The name of the provider whose MX suffixes match any of `mx_hosts`, if any.
    pub fn provider(&self, mx_hosts: &[String]) -> Option<&str> {
        self.provider_of(mx_hosts).map(|p| p.name.as_str())
    }

    fn provider_of(&self, mx_hosts: &[String]) -> Option<&Provider> {
        self.providers.iter().find(|p| {
            p.mx_suffixes
                .iter()
                .any(|suf| mx_hosts.iter().any(|h| suffix_matches(h, suf)))
        })
    }

    /// The backoff rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// A fresh rule engine (one per shard) over this file's rules.
    pub fn rule_engine(&self) -> RuleEngine {
        RuleEngine::new(self.rules.clone())
    }

    /// The bounce classifier with this file's `[[bounce_class]]` patterns.
    pub fn bounce_classifier(&self) -> &BounceClassifier {
        &self.bounce
    }
}

/// Validates one section into a [`Shape`]. Provider sections take `mx_suffixes` out first;
/// anywhere else they are an error.
fn section(key: &str, s: RawSection) -> Result<Shape, ShapingError> {
    if s.mx_suffixes.is_some() {
        return Err(ShapingError::invalid(
            format!("{key}.mx_suffixes"),
            "only provider sections have MX suffixes",
        ));
    }
    let positive = |field: &str, v: Option<u64>| match v {
        Some(0) => Err(ShapingError::invalid(
            format!("{key}.{field}"),
            "must be at least 1",
        )),
        _ => Ok(()),
    };
    positive("max_connections", s.max_connections.map(|v| v as u64))?;
    positive(
        "max_messages_per_connection",
        s.max_messages_per_connection.map(u64::from),
    )?;
    positive(
        "max_recipients_per_transaction",
        s.max_recipients_per_transaction.map(|v| v as u64),
    )?;
    if let Some(f) = s.retry_first
        && f.0.is_zero()
    {
        return Err(ShapingError::invalid(
            format!("{key}.retry_first"),
            "must be longer than zero",
        ));
    }
    if let (Some(f), Some(m)) = (s.retry_first, s.retry_max)
        && f > m
    {
        return Err(ShapingError::invalid(
            format!("{key}.retry_max"),
            format!("{m} is shorter than retry_first ({f})"),
        ));
    }
    Ok(Shape {
        max_connections: s.max_connections,
        connection_rate: s.connection_rate.map(|r| r.0),
        message_rate: s.message_rate.map(|r| r.0),
        max_messages_per_connection: s.max_messages_per_connection,
        max_recipients_per_transaction: s.max_recipients_per_transaction,
        tls: s.tls,
        retry_first: s.retry_first.map(|d| d.0),
        retry_max: s.retry_max.map(|d| d.0),
        provider: None,
    })
}
