//! Bounded DNS answer cache keyed by (lower-cased name, record type), RFC 1035 / RFC 2308.
//!
//! What it does: stores the final answer of a lookup (after CNAME following) with an expiry
//! computed from the caller-supplied `now`: positive answers live for their TTL clamped to
//! `[min_ttl, max_ttl]`, negative ones (NXDOMAIN, NODATA) for the SOA-derived TTL clamped to
//! `[min_ttl, negative_max_ttl]`. When full it evicts expired entries first, then the oldest
//! inserted. It counts hits and misses.
//!
//! What it does not do: no clock of its own (time is a parameter, so tests need no sleeping),
//! no TTL decrement of returned records, no caching of temporary failures, no sharing
//! between shards.
//!
//! Invariants: `entries`, `by_expiry` and `by_age` always hold the same set of keys; every
//! operation is O(log n); a capacity of 0 stores nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use hickory_proto::rr::{RData, RecordType};

/// What a lookup of (name, type) ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CachedAnswer {
    /// The records of the asked type at the end of the CNAME chain (never empty).
    Positive(Vec<RData>),
    /// The name does not exist (RCODE 3).
    NxDomain,
    /// The name exists but has no record of the asked type.
    NoData,
}

/// A cache hit: the answer and its remaining lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheLookup {
    /// The stored answer.
    pub answer: CachedAnswer,
    /// Time left before expiry.
    pub remaining: Duration,
    /// The answer came with the AD bit (DNSSEC-validated by the resolver asked).
    pub authentic: bool,
}

type Key = (String, RecordType);

struct Entry {
    answer: CachedAnswer,
    expires: Instant,
    seq: u64,
    authentic: bool,
}

/// Bounded cache of DNS answers; see the module header.
pub struct DnsCache {
    min_ttl: Duration,
    max_ttl: Duration,
    negative_max_ttl: Duration,
    capacity: usize,
    entries: HashMap<Key, Entry>,
    by_expiry: BTreeMap<(Instant, u64), Key>,
    by_age: BTreeMap<u64, Key>,
    next_seq: u64,
    hits: u64,
    misses: u64,
}

impl DnsCache {
    /// An empty cache with the given TTL bounds and maximum number of entries.
    pub fn new(
        min_ttl: Duration,
        max_ttl: Duration,
        negative_max_ttl: Duration,
        capacity: usize,
    ) -> Self {
        Self {
            min_ttl,
            max_ttl,
            negative_max_ttl,
            capacity,
            entries: HashMap::new(),
            by_expiry: BTreeMap::new(),
            by_age: BTreeMap::new(),
            next_seq: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// Looks up (name, type) at time `now`; counts a hit or a miss. Expired entries are
    /// removed and count as misses.
    pub fn get(&mut self, name: &str, rtype: RecordType, now: Instant) -> Option<CacheLookup> {
        let key = (name.to_ascii_lowercase(), rtype);
        match self.entries.get(&key) {
            Some(e) if e.expires > now => {
                self.hits += 1;
                Some(CacheLookup {
                    answer: e.answer.clone(),
                    remaining: e.expires - now,
                    authentic: e.authentic,
                })
            }
            Some(_) => {
                self.remove(&key);
                self.misses += 1;
                None
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Stores a positive answer whose smallest TTL (over the chain) is `ttl` seconds.
    pub fn insert_positive(
        &mut self,
        name: &str,
        rtype: RecordType,
        records: Vec<RData>,
        ttl: u32,
        now: Instant,
    ) {
        if records.is_empty() {
            return;
        }
        let expires = expiry(now, ttl, self.min_ttl, self.max_ttl);
        self.insert(name, rtype, CachedAnswer::Positive(records), expires, now);
    }

    /// Stores a negative answer (`NxDomain` or `NoData`) with the RFC 2308 TTL
    /// `min(SOA TTL, SOA MINIMUM)` given as `ttl` seconds.
    pub fn insert_negative(
        &mut self,
        name: &str,
        rtype: RecordType,
        answer: CachedAnswer,
        ttl: u32,
        now: Instant,
    ) {
        debug_assert!(!matches!(answer, CachedAnswer::Positive(_)));
        let expires = expiry(now, ttl, self.min_ttl, self.negative_max_ttl);
        self.insert(name, rtype, answer, expires, now);
    }

    fn insert(
        &mut self,
        name: &str,
        rtype: RecordType,
        answer: CachedAnswer,
        expires: Instant,
        now: Instant,
    ) {
        if self.capacity == 0 {
            return;
        }
        let key = (name.to_ascii_lowercase(), rtype);
        self.remove(&key);
        if self.entries.len() >= self.capacity {
            self.evict(now);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_expiry.insert((expires, seq), key.clone());
        self.by_age.insert(seq, key.clone());
        self.entries.insert(
            key,
            Entry {
                answer,
                expires,
                seq,
                authentic: false,
            },
        );
    }

    /// Makes room for one entry: drops everything expired at `now`, then the oldest.
    fn evict(&mut self, now: Instant) {
        self.purge_expired(now);
        while self.entries.len() >= self.capacity {
            let Some((_, key)) = self.by_age.pop_first() else {
                break;
            };
            self.remove(&key);
        }
    }

    /// Marks the stored answer of (name, type) as DNSSEC-validated (it came with the AD bit).
    pub fn mark_authentic(&mut self, name: &str, rtype: RecordType) {
        let key = (name.to_ascii_lowercase(), rtype);
        if let Some(e) = self.entries.get_mut(&key) {
            e.authentic = true;
        }
    }

    /// Removes all entries expired at `now`; returns how many were removed.
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        while let Some((&(exp, seq), _)) = self.by_expiry.iter().next() {
            if exp > now {
                break;
            }
            let key = self.by_expiry.remove(&(exp, seq)).expect("present");
            self.by_age.remove(&seq);
            self.entries.remove(&key);
        }
        before - self.entries.len()
    }

    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.entries.remove(key) {
            self.by_expiry.remove(&(e.expires, e.seq));
            self.by_age.remove(&e.seq);
        }
    }

    /// Removes every entry (the hit and miss counters are kept).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_expiry.clear();
        self.by_age.clear();
    }

    /// Number of entries (expired ones included until purged or looked up).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Lookups not answered from the cache.
    pub fn misses(&self) -> u64 {
        self.misses
    }
}

/// When an answer of `ttl` seconds stored at `now` expires: the TTL is raised to `min` and then
/// lowered to `max` (a `min` above `max` gives `max`, never a panic), and the sum saturates
/// rather than overflow the clock.
fn expiry(now: Instant, ttl: u32, min: Duration, max: Duration) -> Instant {
    let ttl = Duration::from_secs(ttl.into()).max(min).min(max);
    crate::queue::later(now, ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::A;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn cache(cap: usize) -> DnsCache {
        DnsCache::new(S(30), S(86_400), S(3_600), cap)
    }

    fn a(last: u8) -> Vec<RData> {
        vec![RData::A(A::new(192, 0, 2, last))]
    }

    #[test]
    fn positive_ttl_is_honoured_and_case_insensitive() {
        let mut c = cache(10);
        let t0 = Instant::now();
        c.insert_positive("Mx.Example.com", RecordType::A, a(1), 300, t0);
        let hit = c.get("mx.example.COM", RecordType::A, t0 + S(299)).unwrap();
        assert_eq!(hit.answer, CachedAnswer::Positive(a(1)));
        assert_eq!(hit.remaining, S(1));
        assert!(c.get("mx.example.com", RecordType::AAAA, t0).is_none());
        assert!(
            c.get("mx.example.com", RecordType::A, t0 + S(300))
                .is_none()
        );
        assert_eq!((c.hits(), c.misses()), (1, 2));
        assert!(c.is_empty(), "expired entry removed on lookup");
    }

    #[test]
    fn ttl_clamped_to_bounds() {
        let mut c = cache(10);
        let t0 = Instant::now();
        c.insert_positive("low", RecordType::A, a(1), 0, t0);
        c.insert_positive("high", RecordType::A, a(2), u32::MAX, t0);
        assert!(c.get("low", RecordType::A, t0 + S(29)).is_some());
        assert!(c.get("low", RecordType::A, t0 + S(30)).is_none());
        assert!(c.get("high", RecordType::A, t0 + S(86_399)).is_some());
        assert!(c.get("high", RecordType::A, t0 + S(86_400)).is_none());
    }

    #[test]
    fn negative_ttl_clamped() {
        let mut c = cache(10);
        let t0 = Instant::now();
        c.insert_negative("nx", RecordType::MX, CachedAnswer::NxDomain, 86_400, t0);
        c.insert_negative("nd", RecordType::MX, CachedAnswer::NoData, 5, t0);
        let hit = c.get("nx", RecordType::MX, t0 + S(3_599)).unwrap();
        assert_eq!(hit.answer, CachedAnswer::NxDomain);
        assert!(c.get("nx", RecordType::MX, t0 + S(3_600)).is_none());
        assert_eq!(
            c.get("nd", RecordType::MX, t0 + S(29)).unwrap().answer,
            CachedAnswer::NoData
        );
        assert!(c.get("nd", RecordType::MX, t0 + S(30)).is_none());
    }

    #[test]
    fn eviction_prefers_expired_then_oldest() {
        let mut c = cache(3);
        let t0 = Instant::now();
        c.insert_positive("old", RecordType::A, a(1), 3_000, t0);
        c.insert_positive("short", RecordType::A, a(2), 60, t0);
        c.insert_positive("mid", RecordType::A, a(3), 3_000, t0);
        // "short" has expired at t0+100: it goes first, "old" stays.
        c.insert_positive("new1", RecordType::A, a(4), 3_000, t0 + S(100));
        assert_eq!(c.len(), 3);
        assert!(c.get("old", RecordType::A, t0 + S(100)).is_some());
        assert!(c.get("short", RecordType::A, t0 + S(10)).is_none());
        // Nothing expired now: the oldest insertion ("old") is evicted.
        c.insert_positive("new2", RecordType::A, a(5), 3_000, t0 + S(100));
        assert_eq!(c.len(), 3);
        assert!(c.get("old", RecordType::A, t0 + S(100)).is_none());
        assert!(c.get("mid", RecordType::A, t0 + S(100)).is_some());
        assert!(c.get("new2", RecordType::A, t0 + S(100)).is_some());
    }

    #[test]
    fn replace_and_zero_capacity() {
        let mut c = cache(2);
        let t0 = Instant::now();
        c.insert_positive("x", RecordType::A, a(1), 300, t0);
        c.insert_positive("X", RecordType::A, a(2), 300, t0);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c.get("x", RecordType::A, t0).unwrap().answer,
            CachedAnswer::Positive(a(2))
        );
        let mut z = cache(0);
        z.insert_positive("x", RecordType::A, a(1), 300, t0);
        assert!(z.get("x", RecordType::A, t0).is_none());
        assert_eq!(c.purge_expired(t0 + S(300)), 1);
        c.insert_positive("y", RecordType::A, a(1), 300, t0);
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn extreme_ttls_and_bounds_do_not_panic() {
        let t0 = Instant::now();
        // A TTL of 2^31 - 1 s with no upper bound to speak of.
        let mut c = DnsCache::new(S(0), Duration::MAX, Duration::MAX, 8);
        c.insert_positive("far", RecordType::A, a(1), u32::MAX, t0);
        c.insert_negative(
            "nx",
            RecordType::MX,
            CachedAnswer::NxDomain,
            i32::MAX as u32,
            t0,
        );
        let hit = c
            .get("far", RecordType::A, t0 + S(86_400 * 365 * 50))
            .unwrap();
        assert!(hit.remaining > S(86_400));
        assert!(c.get("nx", RecordType::MX, t0 + S(1 << 30)).is_some());
        // A minimum above the maximum: the maximum wins.
        let mut c = DnsCache::new(Duration::MAX, S(60), S(60), 8);
        c.insert_positive("odd", RecordType::A, a(2), 5, t0);
        assert!(c.get("odd", RecordType::A, t0 + S(59)).is_some());
        assert!(c.get("odd", RecordType::A, t0 + S(60)).is_none());
        assert_eq!(
            expiry(t0, u32::MAX, Duration::MAX, Duration::MAX),
            crate::queue::later(t0, Duration::MAX)
        );
    }
}
