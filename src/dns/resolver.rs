//! The per-shard resolver: cached, de-duplicated lookups and the MX logic of RFC 5321 5.1.
//!
//! What it does: [`Resolver::mail_route`] looks up MX (following CNAMEs: the chain in the
//! answer section, then re-queries of the last target, at most 8 hops), recognises null MX
//! (RFC 7505), falls back to the implicit MX, orders targets by preference with equal
//! preferences shuffled, and resolves A and AAAA of every target concurrently.
//! [`Resolver::host_addrs`] does the A/AAAA part for one host. Every (name, type) lookup goes
//! through the shard's [`DnsCache`] and, on a miss, joins a query already in flight for the
//! same key instead of sending another.
//!
//! What it does not do: talk to other shards, cache temporary failures, trust records that
//! are not on the CNAME chain of the question (additional-section glue included), handle
//! domain literals in `mail_route` (they are [`DnsError::InvalidName`]: the caller routes
//! `[192.0.2.1]` itself).
//!
//! Invariants: single-threaded (`Rc`, `RefCell`, `Cell`); no `RefCell` borrow is held across
//! an `.await`; the in-flight entry of a key is removed when its leader finishes or is
//! dropped (followers then retry on their own); at most 16 MX targets are resolved.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use futures_channel::oneshot;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::cache::{CachedAnswer, DnsCache};
use super::transport::{Counters, Transport};
use super::{
    DnsConfig, DnsError, DnsStats, MailRoute, MxHost, ip_literal, normalize, system_servers,
};

/// Maximum CNAME hops followed for one lookup.
pub const MAX_CNAME_HOPS: usize = 8;
/// Maximum number of MX targets whose addresses are resolved (most preferred first).
pub const MAX_MX_TARGETS: usize = 16;

type Key = (String, RecordType);
/// A lookup's answer and whether it came with the AD bit.
type Outcome = Result<(CachedAnswer, bool), DnsError>;

/// Per-shard DNS resolver; cheap to clone (an `Rc`), not `Send`.
#[derive(Clone)]
pub struct Resolver(Rc<Inner>);

struct Inner {
    transport: Transport,
    cache: RefCell<DnsCache>,
    inflight: RefCell<HashMap<Key, Vec<oneshot::Sender<Outcome>>>>,
    counters: Counters,
    rng: Cell<u64>,
}

/// What the A and AAAA lookups of one host gave.
enum HostOutcome {
    Addrs(Vec<IpAddr>),
    NxDomain,
    NoData,
    Temp(DnsError),
}

impl Resolver {
    /// A resolver for this shard. Validates `cfg`; takes the servers of `/etc/resolv.conf`
    /// if `cfg.servers` is empty. Equal-preference MX hosts are shuffled with a random seed.
    pub fn new(cfg: DnsConfig) -> Result<Resolver, DnsError> {
        let seed = RandomState::new().hash_one(Instant::now());
        Self::with_seed(cfg, seed)
    }

    /// Like [`Resolver::new`] with a caller-chosen seed for the MX shuffle (reproducible order).
    pub fn with_seed(cfg: DnsConfig, seed: u64) -> Result<Resolver, DnsError> {
        cfg.validate().map_err(DnsError::Config)?;
        let servers = if cfg.servers.is_empty() {
            system_servers()?
        } else {
            cfg.servers.clone()
        };
        if servers.is_empty() {
            return Err(DnsError::NoServers);
        }
        let cache = DnsCache::new(
            cfg.min_ttl,
            cfg.max_ttl,
            cfg.negative_max_ttl,
            cfg.cache_size,
        );
        Ok(Resolver(Rc::new(Inner {
            transport: Transport::new(servers, cfg.timeout, cfg.attempts),
            cache: RefCell::new(cache),
            inflight: RefCell::new(HashMap::new()),
            counters: Counters::default(),
            // xorshift must not start at 0
            rng: Cell::new(seed | 1),
        })))
    }

    /// MX lookup, then A/AAAA of each MX host; CNAMEs followed (the answer section's chain,
    /// and a re-query of the CNAME target, max 8 hops); cached. Concurrent lookups of the same
    /// (name, type) on a shard share one query in flight.
    ///
    /// Errors: [`DnsError::NotFound`] for NXDOMAIN, for a domain with neither MX nor A/AAAA,
    /// for an MX set with no usable target and when every MX target is NXDOMAIN;
    /// [`DnsError::InvalidName`] for a malformed name or an IP literal;
    /// [`DnsError::Temporary`] otherwise.
    pub async fn mail_route(&self, domain: &str) -> Result<MailRoute, DnsError> {
        if ip_literal(domain).is_some() {
            return Err(DnsError::InvalidName(domain.to_string()));
        }
        let (key, name) = normalize(domain)?;
        match self.lookup(&key, &name, RecordType::MX).await? {
            CachedAnswer::NxDomain => Err(DnsError::NotFound(key)),
            CachedAnswer::NoData => match self.resolve_host(&key, &name).await {
                HostOutcome::Addrs(addrs) => Ok(MailRoute::Hosts(vec![MxHost {
                    name: key,
                    preference: 0,
                    addrs,
                }])),
                HostOutcome::NxDomain | HostOutcome::NoData => Err(DnsError::NotFound(key)),
                HostOutcome::Temp(e) => Err(e),
            },
            CachedAnswer::Positive(records) => self.route_from_mx(key, &records).await,
        }
    }

    /// A and AAAA of a host (for configured routes given by name), A first. An IP literal
    /// (`192.0.2.1`, `[192.0.2.1]`, `[IPv6:2001:db8::1]`) is returned as is.
    pub async fn host_addrs(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Some(ip) = ip_literal(host) {
            return Ok(vec![ip]);
        }
        let (key, name) = normalize(host)?;
        match self.resolve_host(&key, &name).await {
            HostOutcome::Addrs(a) => Ok(a),
            HostOutcome::NxDomain | HostOutcome::NoData => Err(DnsError::NotFound(key)),
            HostOutcome::Temp(e) => Err(e),
        }
    }

    /// Counters since creation: queries sent, cache hits, misses, timeouts, TCP fallbacks.
    pub fn stats(&self) -> DnsStats {
        let c = &self.0.counters;
        let cache = self.0.cache.borrow();
        DnsStats {
            queries_sent: c.queries_sent.get(),
            cache_hits: cache.hits(),
            cache_misses: cache.misses(),
            timeouts: c.timeouts.get(),
            tcp_fallbacks: c.tcp_fallbacks.get(),
            shared_inflight: c.shared_inflight.get(),
        }
    }

    /// Drops every cached answer (for example after a configuration reload).
    pub fn clear_cache(&self) {
        self.0.cache.borrow_mut().clear();
    }

    /// Builds the route from an MX RRset (RFC 5321 5.1, RFC 7505).
    async fn route_from_mx(
        &self,
        domain: String,
        records: &[RData],
    ) -> Result<MailRoute, DnsError> {
        let mxs: Vec<(u16, &Name)> = records
            .iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some((mx.preference, &mx.exchange)),
                _ => None,
            })
            .collect();
        if !mxs.is_empty() && mxs.iter().all(|(_, n)| n.is_root()) {
            return Ok(MailRoute::NullMx);
        }
        let mut targets: Vec<(u16, String, Name)> = Vec::new();
        for (pref, exchange) in mxs {
            if exchange.is_root() {
                continue; // "." mixed with real MXs: ignored (RFC 7505 3 forbids the mix)
            }
            let ascii = exchange.to_ascii();
            if ip_literal(&ascii).is_some() {
                tracing::debug!(%domain, target = %ascii, "ignoring MX target that is an IP literal");
                continue;
            }
            let Ok((key, name)) = normalize(&ascii) else {
                continue;
            };
            match targets.iter_mut().find(|t| t.1 == key) {
                Some(t) => t.0 = t.0.min(pref),
                None => targets.push((pref, key, name)),
            }
        }
        if targets.is_empty() {
            return Err(DnsError::NotFound(domain));
        }
        targets.sort_by_key(|t| t.0);
        self.shuffle_equal_preferences(&mut targets);
        targets.truncate(MAX_MX_TARGETS);

        let outcomes = join_all(
            targets
                .iter()
                .map(|(_, key, name)| self.resolve_host(key, name))
                .collect(),
        )
        .await;

        let mut hosts = Vec::new();
        let mut all_nxdomain = true;
        let mut first_temp: Option<DnsError> = None;
        for ((pref, key, _), outcome) in targets.into_iter().zip(outcomes) {
            match outcome {
                HostOutcome::Addrs(addrs) => hosts.push(MxHost {
                    name: key,
                    preference: pref,
                    addrs,
                }),
                HostOutcome::NxDomain => {}
                HostOutcome::NoData => all_nxdomain = false,
                HostOutcome::Temp(e) => {
                    all_nxdomain = false;
                    first_temp.get_or_insert(e);
                }
            }
        }
        if !hosts.is_empty() {
            Ok(MailRoute::Hosts(hosts))
        } else if all_nxdomain {
            Err(DnsError::NotFound(domain))
        } else {
            let reason = match first_temp {
                Some(DnsError::Temporary { domain: d, reason }) => format!("MX host {d}: {reason}"),
                _ => "no MX host has an address".to_string(),
            };
            Err(DnsError::temporary(&domain, reason))
        }
    }

    /// Fisher-Yates within each run of equal preference (targets sorted by preference).
    fn shuffle_equal_preferences<T>(&self, targets: &mut [(u16, String, T)]) {
        let mut start = 0;
        while start < targets.len() {
            let pref = targets[start].0;
            let end = start + targets[start..].iter().take_while(|t| t.0 == pref).count();
            for i in (start + 1..end).rev() {
                let j = start + (self.next_random() % (i - start + 1) as u64) as usize;
                targets.swap(i, j);
            }
            start = end;
        }
    }

    /// xorshift64* step.
    fn next_random(&self) -> u64 {
        let mut x = self.0.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A and AAAA of one host, looked up concurrently.
    async fn resolve_host(&self, key: &str, name: &Name) -> HostOutcome {
        let (a, aaaa) = futures_lite::future::zip(
            self.lookup(key, name, RecordType::A),
            self.lookup(key, name, RecordType::AAAA),
        )
        .await;
        let mut addrs = Vec::new();
        for r in [&a, &aaaa] {
            if let Ok(CachedAnswer::Positive(records)) = r {
                addrs.extend(records.iter().filter_map(|r| match r {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                }));
            }
        }
        if !addrs.is_empty() {
            return HostOutcome::Addrs(addrs);
        }
        match (a, aaaa) {
            (Err(e), _) | (_, Err(e)) => HostOutcome::Temp(e),
            (Ok(CachedAnswer::NxDomain), _) | (_, Ok(CachedAnswer::NxDomain)) => {
                HostOutcome::NxDomain
            }
            _ => HostOutcome::NoData,
        }
    }

    /// One (name, type) lookup, without its AD bit.
    async fn lookup(
        &self,
        key: &str,
        name: &Name,
        rtype: RecordType,
    ) -> Result<CachedAnswer, DnsError> {
        self.lookup_ad(key, name, rtype).await.map(|(a, _)| a)
    }

    /// One (name, type) lookup: cache, then a query in flight, then the network; with whether
    /// the answer was DNSSEC-validated (AD bit).
    pub(crate) async fn lookup_ad(&self, key: &str, name: &Name, rtype: RecordType) -> Outcome {
        let k: Key = (key.to_string(), rtype);
        loop {
            let hit = self.0.cache.borrow_mut().get(key, rtype, Instant::now());
            if let Some(hit) = hit {
                return Ok((hit.answer, hit.authentic));
            }
            let waiter = {
                let mut inflight = self.0.inflight.borrow_mut();
                match inflight.get_mut(&k) {
                    Some(waiters) => {
                        let (tx, rx) = oneshot::channel();
                        waiters.push(tx);
                        Some(rx)
                    }
                    None => {
                        inflight.insert(k.clone(), Vec::new());
                        None
                    }
                }
            };
            if let Some(rx) = waiter {
                let c = &self.0.counters.shared_inflight;
                c.set(c.get() + 1);
                match rx.await {
                    Ok(outcome) => return outcome,
                    Err(oneshot::Canceled) => continue, // leader dropped: try ourselves
                }
            }
            let guard = InflightGuard {
                inner: &self.0,
                key: Some(k),
            };
            let outcome = self.resolve_uncached(key, name, rtype).await;
            for tx in guard.finish() {
                let _ = tx.send(outcome.clone());
            }
            return outcome;
        }
    }

    /// Queries the network, following CNAMEs, and caches the final answer.
    async fn resolve_uncached(&self, key: &str, name: &Name, rtype: RecordType) -> Outcome {
        let mut current = name.clone();
        let mut chain_ttl = u32::MAX;
        let mut hops = 0usize;
        // Every answer on the way must carry AD for the result to count as validated.
        let mut authentic = true;
        loop {
            let msg = self
                .0
                .transport
                .query(&current, rtype, &self.0.counters)
                .await
                .map_err(|reason| DnsError::temporary(key, reason))?;
            authentic &= msg.metadata.authentic_data;
            let asked = current.clone();
            let mut records = Vec::new();
            loop {
                let mut found = false;
                for r in msg
                    .answers
                    .iter()
                    .filter(|r| r.name.eq_ignore_root(&current))
                {
                    if r.record_type() == rtype {
                        chain_ttl = chain_ttl.min(r.ttl);
                        records.push(r.data.clone());
                        found = true;
                    }
                }
                if found {
                    break;
                }
                let cname = msg.answers.iter().find_map(|r| match &r.data {
                    RData::CNAME(c) if r.name.eq_ignore_root(&current) => {
                        Some((r.ttl, c.0.clone()))
                    }
                    _ => None,
                });
                let Some((ttl, target)) = cname else {
                    break;
                };
                hops += 1;
                if hops > MAX_CNAME_HOPS {
                    return Err(DnsError::temporary(
                        key,
                        format!("CNAME chain longer than {MAX_CNAME_HOPS} (loop?)"),
                    ));
                }
                chain_ttl = chain_ttl.min(ttl);
                current = target;
            }
            let now = Instant::now();
            if !records.is_empty() {
                let mut cache = self.0.cache.borrow_mut();
                cache.insert_positive(key, rtype, records.clone(), chain_ttl, now);
                if authentic {
                    cache.mark_authentic(key, rtype);
                }
                return Ok((CachedAnswer::Positive(records), authentic));
            }
            let negative = match msg.metadata.response_code {
                ResponseCode::NXDomain => CachedAnswer::NxDomain,
                // The chain ended at a name the server did not answer for: ask for it.
                _ if !current.eq_ignore_root(&asked) => continue,
                _ => CachedAnswer::NoData,
            };
            if let Some(ttl) = negative_ttl(&msg) {
                let mut cache = self.0.cache.borrow_mut();
                cache.insert_negative(key, rtype, negative.clone(), ttl.min(chain_ttl), now);
                if authentic {
                    cache.mark_authentic(key, rtype);
                }
            }
            return Ok((negative, authentic));
        }
    }
}

/// RFC 2308 5: the negative TTL is min(SOA TTL, SOA MINIMUM); no SOA, no caching.
fn negative_ttl(msg: &Message) -> Option<u32> {
    msg.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
        _ => None,
    })
}

/// Removes the in-flight entry of a key when the leading lookup ends or is dropped.
struct InflightGuard<'a> {
    inner: &'a Inner,
    key: Option<Key>,
}

impl InflightGuard<'_> {
    /// Removes the entry and hands back the followers to notify.
    fn finish(mut self) -> Vec<oneshot::Sender<Outcome>> {
        let key = self.key.take().expect("finish called once");
        self.inner
            .inflight
            .borrow_mut()
            .remove(&key)
            .unwrap_or_default()
    }
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // Dropping the senders wakes the followers with `Canceled`.
            self.inner.inflight.borrow_mut().remove(&key);
        }
    }
}

/// Polls all futures concurrently and returns their outputs in order.
async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    futures_lite::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future completed"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(seed: u64) -> Resolver {
        let cfg = DnsConfig {
            servers: vec!["127.0.0.1:9".parse().unwrap()],
            ..DnsConfig::default()
        };
        Resolver::with_seed(cfg, seed).unwrap()
    }

    #[test]
    fn shuffle_keeps_preference_order_and_permutes_equals() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..64 {
            let r = resolver(seed);
            let mut t: Vec<(u16, String, ())> =
                [(10, "a"), (10, "b"), (10, "c"), (5, "z"), (20, "y")]
                    .iter()
                    .map(|(p, n)| (*p, n.to_string(), ()))
                    .collect();
            t.sort_by_key(|t| t.0);
            r.shuffle_equal_preferences(&mut t);
            assert_eq!(t[0].1, "z");
            assert_eq!(t[4].1, "y");
            let mid: Vec<&str> = t[1..4].iter().map(|t| t.1.as_str()).collect();
            let mut sorted = mid.clone();
            sorted.sort();
            assert_eq!(sorted, ["a", "b", "c"]);
            seen.insert(mid.concat());
        }
        assert_eq!(seen.len(), 6, "all permutations of three equals occur");
    }

    #[test]
    fn new_rejects_bad_config() {
        let cfg = DnsConfig {
            servers: vec!["127.0.0.1:53".parse().unwrap()],
            attempts: 0,
            ..DnsConfig::default()
        };
        assert!(matches!(Resolver::new(cfg), Err(DnsError::Config(_))));
    }
}
