//! Where a recipient domain's mail goes: a configured route, the smarthost, or the domain's MX
//! hosts (RFC 5321 5.1), and which destination queue that makes.
//!
//! What it does: turns a domain into a `Target` (the destination key, the next hops with their
//! addresses in order, the source address, the limits and, for a route or smarthost with an
//! AUTH file, the credentials), or a permanent or temporary failure.
//! Destinations of DNS-routed mail are keyed by their MX host set, so domains that share MX
//! hosts share one queue and its limits. For DNS-routed mail the receiver's DANE records and
//! MTA-STS policy (`security`) travel with the target; a domain under an enforced MTA-STS
//! policy gets a queue of its own, `mta-sts:<hosts>`. MX hosts are reached on
//! `delivery.mx_port` (25).
//!
//! What it does not do: no connections, no caching of its own (the DNS client caches).
//!
//! Invariants: a configured route (exact entries before `*.` patterns) wins over the smarthost,
//! which wins over DNS; a null MX (RFC 7505) and a non-existent domain are permanent; DNS
//! timeouts and SERVFAIL are temporary. No target ever holds a hop that is this MTA itself
//! ([`Myself`]): when nothing else is left the recipients bounce with 5.4.6 (RFC 5321 6.3).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use crate::auth::ClientCredentials;
use crate::config::{Config, RateSpec, RouteConfig, parse_next_hop};
use crate::dns::{DnsError, MailRoute, Resolver};
use crate::queue::{DestinationKey, Limits, Rate};
use crate::smtp::EnhancedStatus;
use crate::tls::TlsPolicy;

use super::classify::Outcome;
use super::myself::Myself;
use super::security::{self, Security};
use crate::mta_sts::{Mode, MtaSts};

/// A resolved destination.
#[derive(Debug)]
pub struct Target {
    /// The queue key.
    pub key: DestinationKey,
    /// Next hops in the order to try: (host name, address).
    pub hops: Vec<(String, SocketAddr)>,
    /// Local address to connect from.
    pub source: Option<IpAddr>,
    /// Limits of the destination.
    pub limits: Limits,
    /// What the destination requires of TLS.
    pub tls: TlsPolicy,
    /// Its own retry schedule (from the shaping file), if not the global one.
    pub retry: Option<crate::queue::RetryPolicy>,
    /// EHLO name of its source address, if not the MTA's.
    pub helo: Option<String>,
    /// The credentials its hops are authenticated with (AUTH); a connection to a destination
    /// with credentials is made with at least the `required` TLS policy.
    pub auth: Option<Arc<ClientCredentials>>,
    /// The recipient domain whose routing made it (the shaping file is applied by it).
    pub domain: String,
    /// What the receiver requires of TLS through DNS (DANE, MTA-STS); empty for routes and
    /// the smarthost.
    pub security: Rc<Security>,
    /// The shaping file's provider section that matched (for the statistics), if any.
    pub provider: Option<String>,
}

/// The result of routing a domain.
pub enum Routed {
    /// Deliver through this target.
    Target(Rc<Target>),
    /// Cannot be delivered now or ever.
    Failed(Outcome),
}

/// The limits and TLS policy of a destination reached through `route` (None: the smarthost or
/// MX hosts), before shaping.
pub fn policy(config: &Config, route: Option<&RouteConfig>) -> (Limits, TlsPolicy) {
    match route {
        Some(r) => (
            limits(config, r.max_connections, r.rate),
            r.tls.unwrap_or(config.delivery.tls),
        ),
        None => (limits(config, None, None), config.delivery.tls),
    }
}

fn limits(config: &Config, max_connections: Option<usize>, rate: Option<RateSpec>) -> Limits {
    let d = &config.delivery;
    Limits {
        max_connections: max_connections.unwrap_or(d.max_connections),
        max_messages_per_connection: d.max_messages_per_connection,
        max_recipients_per_transaction: d.max_recipients_per_transaction,
        rate: rate.or(d.rate).map(|r| Rate {
            messages: r.messages,
            per: r.per,
        }),
        connection_rate: None,
    }
}

/// Resolves configured next hops (`host:port` strings) to addresses.
async fn hops(resolver: &Resolver, specs: &[String]) -> Result<Vec<(String, SocketAddr)>, Outcome> {
    let mut out = Vec::new();
    let mut last_err = None;
    for spec in specs {
        let Ok((host, port)) = parse_next_hop(spec) else {
            continue;
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            out.push((host.clone(), SocketAddr::new(ip, port)));
            continue;
        }
        match resolver.host_addrs(&host).await {
            Ok(addrs) => out.extend(
                addrs
                    .into_iter()
                    .map(|a| (host.clone(), SocketAddr::new(a, port))),
            ),
            Err(e) => last_err = Some(e),
        }
    }
    if out.is_empty() {
        let why = last_err.map_or_else(|| "no usable next hop".to_owned(), |e| e.to_string());
        return Err(Outcome::defer(EnhancedStatus::new(4, 4, 3), why));
    }
    Ok(out)
}

/// The credentials read from `file` (None: the destination is not authenticated). A file the
/// configuration names but did not read (one not made by `Config::load`) defers the mail: it
/// is never sent without the AUTH it was configured with.
pub(super) fn credentials(
    config: &Config,
    file: Option<&Path>,
) -> Result<Option<Arc<ClientCredentials>>, Outcome> {
    let Some(path) = file else {
        return Ok(None);
    };
    match config.secrets.get(path) {
        Some(c) => Ok(Some(c.clone())),
        None => Err(Outcome::defer(
            EnhancedStatus::new(4, 7, 0),
            format!("the AUTH credentials of {} were not read", path.display()),
        )),
    }
}

/// The bounce of mail whose every next hop is this MTA (Postfix's wording).
fn loops_back(domain: &str) -> Outcome {
    Outcome::bounce(
        EnhancedStatus::new(5, 4, 6),
        format!("mail for {domain} loops back to myself"),
    )
}

/// Configured hops without those that are our own listeners.
fn without_listeners(
    hops: Result<Vec<(String, SocketAddr)>, Outcome>,
    myself: &Myself,
    domain: &str,
) -> Result<Vec<(String, SocketAddr)>, Outcome> {
    let hops = hops?;
    let kept: Vec<_> = hops
        .into_iter()
        .filter(|(host, addr)| {
            let ours = myself.is_listener(*addr);
            if ours {
                tracing::warn!(%domain, %host, %addr, "next hop is this MTA itself: skipped");
            }
            !ours
        })
        .collect();
    match kept.is_empty() {
        true => Err(loops_back(domain)),
        false => Ok(kept),
    }
}

/// The target of destination `key` for `domain`, through `hops` (a route's, the relay's or
/// the MX hosts'), routed afresh (no shaped retry, no source EHLO yet).
fn routed(
    key: String,
    hops: Vec<(String, SocketAddr)>,
    source: Option<IpAddr>,
    (limits, tls): (Limits, TlsPolicy),
    auth: Option<Arc<ClientCredentials>>,
    domain: &str,
    security: Rc<Security>,
) -> Routed {
    Routed::Target(Rc::new(Target {
        key: DestinationKey(key),
        hops,
        source,
        limits,
        tls,
        retry: None,
        helo: None,
        auth,
        domain: domain.to_owned(),
        security,
        provider: None,
    }))
}

/// Routes `domain` (lower-case). `myself` knows which hops would loop back to us; `sts` holds
/// the shard's MTA-STS policies (None: MTA-STS is off).
pub async fn route(
    config: &Config,
    resolver: &Resolver,
    myself: &Myself,
    sts: Option<&MtaSts>,
    domain: &str,
) -> Routed {
    if let Some(r) = config.route_for(domain) {
        let auth = match credentials(config, r.auth_file.as_deref()) {
            Ok(auth) => auth,
            Err(o) => return Routed::Failed(o),
        };
        return match without_listeners(hops(resolver, &r.hosts).await, myself, domain) {
            Ok(hops) => routed(
                format!("route:{}", r.domain.to_ascii_lowercase()),
                hops,
                r.source,
                policy(config, Some(r)),
                auth,
                domain,
                Rc::default(),
            ),
            Err(o) => Routed::Failed(o),
        };
    }
    if let Some(relay) = &config.delivery.relay_host {
        let auth = match credentials(config, config.delivery.relay_auth_file.as_deref()) {
            Ok(auth) => auth,
            Err(o) => return Routed::Failed(o),
        };
        return match without_listeners(
            hops(resolver, std::slice::from_ref(relay)).await,
            myself,
            domain,
        ) {
            Ok(hops) => routed(
                format!("relay:{relay}"),
                hops,
                None,
                policy(config, None),
                auth,
                domain,
                Rc::default(),
            ),
            Err(o) => Routed::Failed(o),
        };
    }
    match resolver.mail_route(domain).await {
        Ok(MailRoute::NullMx) => Routed::Failed(Outcome::bounce(
            EnhancedStatus::new(5, 1, 10),
            format!("{domain} does not accept mail (null MX, RFC 7505)"),
        )),
        Ok(MailRoute::Hosts(hosts)) => {
            // RFC 5321 5.1: our own entry and all of equal or higher preference go.
            let mut hosts = hosts;
            let ours = myself.own_preference(&hosts);
            if let Some(limit) = ours {
                hosts.retain(|h| h.preference < limit);
                tracing::warn!(%domain, preference = limit, kept = hosts.len(), "an MX host of the domain is this MTA (or a loopback, unspecified or link-local address): it and the hosts after it are skipped");
                if hosts.is_empty() {
                    return Routed::Failed(loops_back(domain));
                }
            }
            let security = security::resolve(config, resolver, sts, domain, &hosts).await;
            let enforced = security
                .sts
                .as_ref()
                .filter(|c| c.policy.mode == Mode::Enforce);
            // An enforced policy's unnamed MX hosts stay hops, refused at connection time
            // (`security::for_hop`): mail that says TLS-Required: No may still use them.
            if enforced.is_none()
                && let Some(c) = &security.sts
            {
                for h in hosts.iter().filter(|h| !c.policy.matches_mx(&h.name)) {
                    tracing::warn!(%domain, host = %h.name, "MTA-STS (testing): MX host not named by the policy; delivered anyway");
                }
            }
            let mut names: Vec<String> =
                hosts.iter().map(|h| h.name.to_ascii_lowercase()).collect();
            names.sort();
            names.dedup();
            let hops: Vec<(String, SocketAddr)> = hosts
                .iter()
                .flat_map(|h| {
                    h.addrs
                        .iter()
                        .map(|a| (h.name.clone(), SocketAddr::new(*a, config.delivery.mx_port)))
                })
                .collect();
            if hops.is_empty() {
                return Routed::Failed(Outcome::defer(
                    EnhancedStatus::new(4, 4, 3),
                    format!("{domain}: no address for any MX host"),
                ));
            }
            // Enforced mail has its own queue: other domains on these hosts need no certificate.
            let prefix = if enforced.is_some() { "mta-sts" } else { "mx" };
            routed(
                format!("{prefix}:{}", names.join(",")),
                hops,
                None,
                policy(config, None),
                None,
                domain,
                security,
            )
        }
        Err(e @ DnsError::NotFound(_)) => {
            Routed::Failed(Outcome::bounce(EnhancedStatus::new(5, 1, 2), e.to_string()))
        }
        Err(e) if e.is_permanent() => {
            Routed::Failed(Outcome::bounce(EnhancedStatus::new(5, 1, 2), e.to_string()))
        }
        Err(e) => Routed::Failed(Outcome::defer(EnhancedStatus::new(4, 4, 3), e.to_string())),
    }
}
