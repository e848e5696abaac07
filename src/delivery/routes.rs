//! The queue's routing state: which destination each recipient domain goes to, from which
//! source address, under which limits.
//!
//! What it does: keeps the targets of the destinations in use and a route cache (a domain
//! routed less than a second ago is not looked up again), hands out the lookup of a domain as
//! a future that owns what it needs (so the queue task never waits for DNS), decides a
//! message's source pool at intake (a header naming it, else the sender's domain) and, at
//! routing, picks one of the pool's sources by weight (the destination then becomes "this
//! destination from this source", keyed `<key>@<source>` ([`pooled_key`]), with its own queue,
//! limits and shaping), and applies the shaping file to a routed destination (limits, TLS
//! policy and retry schedule by provider, domain and source). On a reload the destinations in
//! use take the new limits, TLS policy, retry schedule and EHLO name at once (their next hops
//! stay until their mail is routed again). It also classifies failures into bounce classes
//! with the shaping file's patterns.
//!
//! What it does not do: no DNS itself (`route`), no scheduling, no connections.
//!
//! Invariants: every destination the scheduler has a queue for has its target here until the
//! scheduler forgets it; without source pools a domain's route is reused for at most
//! [`QUEUE_CHORES`](crate::timers::QUEUE_CHORES); a message without a pool, on a route
//! without a `source`, is sent from whatever address the system chooses, under the
//! destination's plain key.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use super::myself::Myself;
use super::route::{Routed, Target, route};
use crate::config::Config;
use crate::dns::Resolver;
use crate::mta_sts::{FetchSettings, MtaSts};
use crate::queue::{DestinationKey, RetryPolicy};
use crate::shaping::{BounceClass, Shaping};
use crate::smtp::EnhancedStatus;
use crate::spool::MessageRecord;
use crate::tls::ClientTls;

/// See the module header.
pub struct Routes {
    config: Arc<Config>,
    resolver: Resolver,
    myself: Rc<Myself>,
    listeners: Vec<SocketAddr>,
    shaping: Option<Arc<Shaping>>,
    /// The global retry schedule (shaped destinations may have their own).
    retry: RetryPolicy,
    cache: HashMap<String, Rc<Target>>,
    targets: HashMap<DestinationKey, Rc<Target>>,
    /// Random state for picking a pool's source.
    pick: u64,
    /// The shard's MTA-STS policies (None: `delivery.tls_policy.mta_sts` is off).
    sts: Option<MtaSts>,
    /// The TLS of each destination's last connection, described.
    last_tls: HashMap<DestinationKey, String>,
}

impl Routes {
    /// The routing of a shard with `config`, answering from `resolver`; no next hop is one of
    /// `listeners` (or another address of this MTA).
    pub fn new(
        config: Arc<Config>,
        resolver: Resolver,
        listeners: Vec<SocketAddr>,
        shaping: Option<Arc<Shaping>>,
        retry: RetryPolicy,
        seed: u64,
    ) -> Routes {
        Routes {
            sts: mta_sts(&config, None),
            last_tls: HashMap::new(),
            myself: Rc::new(myself(&listeners, &config)),
            config,
            resolver,
            listeners,
            shaping,
            retry,
            cache: HashMap::new(),
            targets: HashMap::new(),
            pick: seed | 1,
        }
    }

    /// A reloaded configuration and shaping file: routes are looked up afresh, and every
    /// destination in use takes the new limits, TLS policy, retry schedule and EHLO name (the
    /// caller hands its limits to the scheduler).
    pub fn reload(&mut self, config: Arc<Config>, shaping: Option<Arc<Shaping>>) {
        self.myself = Rc::new(myself(&self.listeners, &config));
        self.retry = super::policy::retry_policy(&config);
        self.sts = mta_sts(
            &config,
            self.sts.take().filter(|_| {
                self.config.delivery.tls_policy == config.delivery.tls_policy
                    && self.config.tls.ca_file == config.tls.ca_file
            }),
        );
        self.config = config;
        self.shaping = shaping;
        self.cache.clear();
        let refreshed: Vec<Rc<Target>> = self.targets.values().map(|t| self.refresh(t)).collect();
        for t in refreshed {
            self.targets.insert(t.key.clone(), t);
        }
    }

    /// `target` under the configuration in force: the same key, next hops and source address,
    /// with the limits, TLS policy, retry schedule and EHLO name it would be routed with now.
    fn refresh(&self, target: &Target) -> Rc<Target> {
        let config = &self.config;
        let (base, source) = split_pooled(&target.key.0);
        let route = base.strip_prefix("route:").and_then(|pattern| {
            config
                .routes
                .iter()
                .find(|r| r.domain.eq_ignore_ascii_case(pattern))
        });
        let (limits, tls) = super::route::policy(config, route);
        let helo = match source {
            Some(name) => match config.sources.iter().find(|s| s.name == name) {
                Some(s) => s.ehlo.clone(),
                None => target.helo.clone(),
            },
            None => None,
        };
        // The credentials of the reloaded file (those in use if it names none it read).
        let file = match route {
            Some(r) => r.auth_file.as_deref(),
            None if base.starts_with("relay:") => config.delivery.relay_auth_file.as_deref(),
            None => None,
        };
        let auth = super::route::credentials(config, file).unwrap_or_else(|_| target.auth.clone());
        let plain = Rc::new(Target {
            key: target.key.clone(),
            hops: target.hops.clone(),
            source: target.source,
            limits,
            tls,
            retry: None,
            helo,
            auth,
            domain: target.domain.clone(),
            security: target.security.clone(),
            provider: None,
        });
        self.shape(plain)
    }

    /// Forgets the cached routes: the next message of every domain is routed afresh (an
    /// operator's requeue after a route or DNS change).
    pub fn forget_cached(&mut self) {
        self.cache.clear();
    }

    /// The shaping file in force.
    pub fn shaping(&self) -> Option<&Arc<Shaping>> {
        self.shaping.as_ref()
    }

    /// The target a domain was routed to less than a second ago.
    pub fn cached(&self, domain: &str) -> Option<Rc<Target>> {
        self.cache.get(domain).cloned()
    }

    /// Looks `domain` up (DNS may take a while): the future owns what it needs.
    pub fn lookup(&self, domain: String) -> impl Future<Output = Routed> + 'static {
        let (config, resolver, myself, sts) = (
            self.config.clone(),
            self.resolver.clone(),
            self.myself.clone(),
            self.sts.clone(),
        );
        async move { route(&config, &resolver, &myself, sts.as_ref(), &domain).await }
    }

    /// The routed `target` of `domain` as the message's pool and the shaping file want it,
    /// remembered for its destination (and cached for the domain when there are no pools).
    pub fn place(&mut self, target: Rc<Target>, pool: Option<&str>, domain: &str) -> Rc<Target> {
        let target = self.with_source(target, pool, domain);
        let target = self.shape(target);
        // With source pools each message picks its own source: nothing to reuse.
        if self.config.pools.is_empty() {
            self.cache.insert(domain.to_owned(), target.clone());
        }
        self.targets.insert(target.key.clone(), target.clone());
        target
    }

    /// The target a message goes through: `target` itself, or, for a message that says
    /// `TLS-Required: No` ([`Message::tls_optional`](super::message::Message)) to a destination
    /// with DANE or MTA-STS, the same hops without them, as a destination of its own
    /// (`tls-optional:<hosts>`), remembered here (afresh each time: the hops follow routing).
    pub fn for_message(&mut self, target: Rc<Target>, tls_optional: bool) -> Rc<Target> {
        let s = &target.security;
        if !tls_optional || (s.dane.is_empty() && s.sts.is_none()) {
            return target;
        }
        let rest = target
            .key
            .0
            .split_once(':')
            .map_or(&*target.key.0, |(_, r)| r);
        let key = DestinationKey(format!("tls-optional:{rest}"));
        let relaxed = Rc::new(Target {
            key: key.clone(),
            hops: target.hops.clone(),
            source: target.source,
            limits: target.limits.clone(),
            tls: target.tls,
            retry: target.retry.clone(),
            helo: target.helo.clone(),
            auth: target.auth.clone(),
            domain: target.domain.clone(),
            security: Rc::default(),
            provider: target.provider.clone(),
        });
        self.targets.insert(key, relaxed.clone());
        relaxed
    }

    /// Remembers a cached target for its destination again (the scheduler may have forgotten
    /// the destination in between).
    pub fn remember(&mut self, target: &Rc<Target>) {
        if !self.targets.contains_key(&target.key) {
            self.targets.insert(target.key.clone(), target.clone());
        }
    }

    /// The target of a destination in use.
    pub fn target(&self, key: &str) -> Option<&Rc<Target>> {
        self.targets.get(key)
    }

    /// Every destination in use.
    pub fn targets(&self) -> impl Iterator<Item = &Rc<Target>> {
        self.targets.values()
    }

    /// Forgets the route cache (every second: DNS answers and reloads show soon) and the
    /// targets of destinations no longer in `live`.
    pub fn prune(&mut self, live: &HashSet<&DestinationKey>) {
        self.cache.clear();
        self.targets.retain(|k, _| live.contains(k));
        self.last_tls.retain(|k, _| live.contains(k));
    }

    /// Remembers the TLS a connection of `dest` opened with (once per connection).
    pub fn connected_with(&mut self, dest: &DestinationKey, tls: String) {
        self.last_tls.insert(dest.clone(), tls);
    }

    /// The TLS of the last connection of `dest`, described.
    pub fn last_tls(&self, dest: &DestinationKey) -> Option<&String> {
        self.last_tls.get(dest)
    }

    /// The shard's DNS counters.
    pub fn dns_stats(&self) -> crate::dns::DnsStats {
        self.resolver.stats()
    }

    /// The bounce class of a failure, from its reply text (which starts with the code).
    pub fn classify(&self, status: EnhancedStatus, diagnostic: &str) -> BounceClass {
        let patterns = self.shaping.as_deref().map(Shaping::bounce_classifier);
        crate::shaping::classify_failure(patterns, status, diagnostic)
    }

    /// The pool a message asks for at intake: its header, else its sender's domain.
    pub fn pool_of(&self, record: &MessageRecord, body: &[u8]) -> Option<String> {
        let config = &self.config;
        let known = |name: &str| config.pools.iter().any(|p| p.name == name);
        config
            .pool_selection
            .requested(known, &record.reverse_path, body)
    }

    /// The destination as the shaping file wants it (the target unchanged without a file).
    fn shape(&self, target: Rc<Target>) -> Rc<Target> {
        let Some(shaping) = &self.shaping else {
            return target;
        };
        let mut mx: Vec<String> = target.hops.iter().map(|(n, _)| n.clone()).collect();
        mx.dedup();
        let shape = shaping.resolve(&target.domain, &mx, target.source);
        let retry = (shape.retry_first.is_some() || shape.retry_max.is_some())
            .then(|| shape.retry(&self.retry));
        Rc::new(Target {
            key: target.key.clone(),
            hops: target.hops.clone(),
            source: target.source,
            limits: shape.limits(&target.limits),
            tls: shape.tls_policy(target.tls),
            retry,
            helo: target.helo.clone(),
            auth: target.auth.clone(),
            domain: target.domain.clone(),
            security: target.security.clone(),
            provider: shape.provider.clone(),
        })
    }

    /// The routed destination from one of the pool's sources (the target unchanged when the
    /// message has no pool).
    fn with_source(
        &mut self,
        target: Rc<Target>,
        message_pool: Option<&str>,
        domain: &str,
    ) -> Rc<Target> {
        let config = &self.config;
        let pool_name = message_pool
            .map(str::to_owned)
            .or_else(|| config.route_for(domain).and_then(|r| r.pool.clone()))
            .or_else(|| config.pool_selection.default.clone());
        let Some(pool) = pool_name.and_then(|n| config.pools.iter().find(|p| p.name == n)) else {
            return target;
        };
        let total: u64 = pool.sources.iter().map(|m| u64::from(m.weight)).sum();
        let mut pick = crate::queue::xorshift64(&mut self.pick) % total.max(1);
        let member = pool
            .sources
            .iter()
            .find(|m| {
                let w = u64::from(m.weight);
                if pick < w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap_or(&pool.sources[0]);
        let Some(source) = config.sources.iter().find(|s| s.name == member.source) else {
            return target;
        };
        Rc::new(Target {
            key: pooled_key(&target.key, &source.name),
            hops: target.hops.clone(),
            source: Some(source.address),
            limits: target.limits.clone(),
            tls: target.tls,
            retry: target.retry.clone(),
            helo: source.ehlo.clone(),
            auth: target.auth.clone(),
            domain: target.domain.clone(),
            security: target.security.clone(),
            provider: target.provider.clone(),
        })
    }
}

/// What is this MTA itself under `config`.
fn myself(listeners: &[SocketAddr], config: &Config) -> Myself {
    let d = &config.delivery;
    Myself::new(listeners, &d.own_addresses).with_mx(d.mx_port, d.mx_allow_loopback)
}

/// The shard's MTA-STS policies under `config`: `kept` when the settings did not change (a
/// reload keeps what memory knows), else new ones; None when MTA-STS is off or its client
/// configuration cannot be built (a bad `tls.ca_file` already stops the start).
fn mta_sts(config: &Config, kept: Option<MtaSts>) -> Option<MtaSts> {
    let p = &config.delivery.tls_policy;
    if !p.mta_sts {
        return None;
    }
    if kept.is_some() {
        return kept;
    }
    let tls = match ClientTls::new(config.tls.ca_file.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "MTA-STS is off: no TLS client configuration");
            return None;
        }
    };
    let dir = p
        .mta_sts_cache
        .clone()
        .unwrap_or_else(|| config.spool.path.join("mta-sts"));
    Some(MtaSts::new(
        dir,
        FetchSettings {
            port: p.mta_sts_port,
            timeout: p.mta_sts_fetch_timeout.0,
            max_size: p.mta_sts_max_size.0 as usize,
            tls: tls.verified,
        },
    ))
}

/// The key of destination `base` sent to from source `source`: `<base>@<source>`.
pub fn pooled_key(base: &DestinationKey, source: &str) -> DestinationKey {
    DestinationKey(format!("{}@{source}", base.0))
}

/// True when destination `named` (as an operator names it) covers queue `key`: `key` is
/// `named` itself or one of its pool's sources, `<named>@<source>` (ASCII case ignored).
pub fn covers(named: &str, key: &str) -> bool {
    let (n, k) = (named.as_bytes(), key.as_bytes());
    k.len() >= n.len()
        && k[..n.len()].eq_ignore_ascii_case(n)
        && (k.len() == n.len() || k[n.len()] == b'@')
}

/// A destination key's plain key and, for a pool's source, the source's name. A plain key
/// never holds `@` (it is a domain, a host and port, or MX host names).
pub fn split_pooled(key: &str) -> (&str, Option<&str>) {
    match key.split_once('@') {
        Some((base, source)) => (base, Some(source)),
        None => (key, None),
    }
}

#[cfg(test)]
mod tests {
    use super::{covers, split_pooled};

    #[test]
    fn a_key_covers_its_pool_sources() {
        assert!(covers("route:a.test", "route:a.test"));
        assert!(covers("route:a.test", "route:a.test@src1"));
        assert!(covers("Route:A.test", "route:a.test@Src2"));
        assert!(covers("route:a.test@src1", "route:a.test@src1"));
        assert!(!covers("route:a.test@src1", "route:a.test@src2"));
        assert!(!covers("route:a.test", "route:a.test.example@src1"));
        assert!(!covers("route:a.test", "route:a.tes"));
        assert!(!covers("a.test", "route:a.test"));
        assert!(covers("relay:127.0.0.1:25", "relay:127.0.0.1:25@s"));
        assert!(!covers("relay:127.0.0.1:2", "relay:127.0.0.1:25@s"));
        assert_eq!(split_pooled("mx:a,b@s"), ("mx:a,b", Some("s")));
        assert_eq!(split_pooled("mx:a,b"), ("mx:a,b", None));
    }
}
