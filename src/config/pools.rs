//! `[[sources]]`, `[[pools]]` and `[pool_selection]`: egress addresses and how mail picks them.
//!
//! What it does: defines the sources (a local IP address to send from and the EHLO name that
//! goes with it), the pools (sources with weights), and the selection of a pool for a message
//! (a header, the sender's domain, the route, a default); checks that every name used exists.
//!
//! What it does not do: no choosing (the delivery queue picks a source per message), no
//! binding of sockets.
//!
//! Invariants: after [`check`], source and pool names are unique, every pool has at least one
//! source with a positive weight, and every pool named anywhere exists.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// One egress address: `[[sources]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The name pools refer to.
    pub name: String,
    /// Local address outbound connections are made from.
    pub address: IpAddr,
    /// Name given in EHLO from this address (should match its reverse DNS). Default:
    /// `delivery.helo_name`, else `hostname`.
    #[serde(default)]
    pub ehlo: Option<String>,
}

/// One member of a pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolMember {
    /// A source name.
    pub source: String,
    /// Relative share of the pool's messages (default 1).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// A pool: `[[pools]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The pool's name.
    pub name: String,
    /// Its sources and their weights.
    pub sources: Vec<PoolMember>,
}

/// One sender-domain rule of `[pool_selection]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderPool {
    /// The envelope sender's domain (exact, case-insensitive).
    pub domain: String,
    /// The pool its mail uses.
    pub pool: String,
}

/// `[pool_selection]`: which pool a message uses, first match wins: the header, the sender's
/// domain, the route's `pool`, then `default`. No match: no source binding (the system's
/// choice of address), unless the route sets `source`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSelection {
    /// A header naming the pool (e.g. `X-Pool`); removed from nothing, read only.
    pub header: Option<String>,
    /// Pools by sender domain.
    pub senders: Vec<SenderPool>,
    /// The pool of mail that matches nothing else.
    pub default: Option<String>,
}

impl PoolSelection {
    /// The pool a message asks for: the header's value when it names one of `pools`, else
    /// the pool of the sender's domain (`reverse_path`); `body` starts with the header
    /// section; `known` says whether a pool exists. The default and a route's pool are not
    /// considered.
    pub fn requested(
        &self,
        known: impl Fn(&str) -> bool,
        reverse_path: &str,
        body: &[u8],
    ) -> Option<String> {
        if let Some(h) = &self.header
            && let Some(v) = crate::headers::value(body, h)
            && known(&v)
        {
            return Some(v);
        }
        let domain = reverse_path.rsplit_once('@').map(|(_, d)| d)?;
        self.senders
            .iter()
            .find(|s| s.domain.eq_ignore_ascii_case(domain))
            .map(|s| s.pool.clone())
    }
}

/// Checks names and references (`routes` pools are passed in).
pub(super) fn check<'a>(
    sources: &[SourceConfig],
    pools: &[PoolConfig],
    selection: &PoolSelection,
    route_pools: impl Iterator<Item = (usize, &'a str)>,
) -> Result<(), ConfigError> {
    let invalid = |key: String, problem: String| Err(ConfigError::Invalid { key, problem });
    for (i, s) in sources.iter().enumerate() {
        if sources[..i].iter().any(|o| o.name == s.name) {
            return invalid(
                format!("sources[{i}].name"),
                format!("{:?} is used twice", s.name),
            );
        }
    }
    for (i, p) in pools.iter().enumerate() {
        if pools[..i].iter().any(|o| o.name == p.name) {
            return invalid(
                format!("pools[{i}].name"),
                format!("{:?} is used twice", p.name),
            );
        }
        if p.sources.is_empty() || p.sources.iter().all(|m| m.weight == 0) {
            return invalid(
                format!("pools[{i}].sources"),
                "at least one source with a weight above 0".into(),
            );
        }
        for (j, m) in p.sources.iter().enumerate() {
            if !sources.iter().any(|s| s.name == m.source) {
                return invalid(
                    format!("pools[{i}].sources[{j}].source"),
                    format!("no [[sources]] entry is named {:?}", m.source),
                );
            }
        }
    }
    let known = |name: &str| pools.iter().any(|p| p.name == name);
    for (i, s) in selection.senders.iter().enumerate() {
        if !known(&s.pool) {
            return invalid(
                format!("pool_selection.senders[{i}].pool"),
                format!("no pool named {:?}", s.pool),
            );
        }
    }
    if let Some(d) = &selection.default
        && !known(d)
    {
        return invalid(
            "pool_selection.default".into(),
            format!("no pool named {d:?}"),
        );
    }
    for (i, name) in route_pools {
        if !known(name) {
            return invalid(
                format!("routes[{i}].pool"),
                format!("no pool named {name:?}"),
            );
        }
    }
    Ok(())
}
