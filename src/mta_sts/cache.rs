//! The shard's MTA-STS policies: looked up, fetched once at a time, kept in memory and on disk
//! (RFC 8461 5.1, 10.2).
//!
//! What it does: [`MtaSts::policy`] gives the policy to apply to a domain now: it reads the
//! `_mta-sts` TXT record; when its `id` differs from the cached policy's (or nothing valid is
//! cached) the policy is fetched, and a fetched policy is kept in memory and written to
//! `<dir>/<domain>.json` (temporary file, then rename; file I/O runs on the executor's
//! blocking threads) so that a restart still knows it. When
//! the record is missing, the DNS fails or the fetch fails, a cached policy that has not
//! outlived its `max_age` is used; without one the domain has no policy (the RFC's rule: mail
//! is then delivered as if the domain had none). Concurrent lookups of one domain on a shard
//! share one fetch, and after a failed fetch the same record id is not fetched again for
//! [`RETRY_FAILED_FETCH`] (a broken policy server does not hold every routing of the domain
//! up for the fetch timeout).
//!
//! What it does not do: no refresh ahead of expiry, no sharing between shards in memory (each
//! shard fetches on its own first use, then reads the file the others wrote), no reporting
//! (a failed fetch is only counted for TLS reports, `tls_rpt::recorder`).
//!
//! Invariants: the caller (a routing task of its own) is the only one that waits for a fetch,
//! and never longer than the fetch deadline; no `RefCell` borrow is held across an `.await`;
//! at most [`MAX_DOMAINS`] domains are held in memory (beyond, the memory is emptied and
//! refilled from disk).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_channel::oneshot;
use serde::{Deserialize, Serialize};

use super::fetch::{FetchError, FetchSettings, fetch};
use super::policy::{Policy, record_id};
use crate::dns::Resolver;

/// Most domains whose policy a shard keeps in memory.
pub const MAX_DOMAINS: usize = 100_000;
/// How long a failed fetch is not tried again for the same record id (seconds).
pub const RETRY_FAILED_FETCH: u64 = 300;

/// A policy as cached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    /// The record id it was fetched under.
    pub id: String,
    /// The policy.
    pub policy: Policy,
    /// When it was fetched (Unix seconds).
    pub fetched_unix: u64,
}

impl Cached {
    /// True while its max_age has not run out at `now` (Unix seconds).
    pub fn valid_at(&self, now: u64) -> bool {
        now < self.fetched_unix.saturating_add(self.policy.max_age)
    }
}

/// One shard's MTA-STS state; cheap to clone (an `Rc`).
#[derive(Clone)]
pub struct MtaSts(Rc<Inner>);

struct Inner {
    dir: PathBuf,
    fetch: FetchSettings,
    /// Domain -> what memory knows (None: nothing on disk either).
    memory: RefCell<HashMap<String, Option<Cached>>>,
    inflight: RefCell<HashMap<String, Vec<oneshot::Sender<Option<Cached>>>>>,
    /// Domain -> (record id, Unix seconds) of its last failed fetch.
    failed: RefCell<HashMap<String, (String, u64)>>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A domain that is safe as a file name (normalised ASCII host names only).
fn file_name(domain: &str) -> Option<String> {
    let ok = !domain.is_empty()
        && !domain.starts_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    ok.then(|| format!("{domain}.json"))
}

impl MtaSts {
    /// The policies kept in `dir` (created when first written), fetched with `fetch`.
    pub fn new(dir: PathBuf, fetch: FetchSettings) -> MtaSts {
        MtaSts(Rc::new(Inner {
            dir,
            fetch,
            memory: RefCell::new(HashMap::new()),
            inflight: RefCell::new(HashMap::new()),
            failed: RefCell::new(HashMap::new()),
        }))
    }

    /// The policy to apply to `domain` (lower-case) now, with its record id; None: no policy.
    pub async fn policy(&self, resolver: &Resolver, domain: &str) -> Option<Cached> {
        let now = now_unix();
        let cached = self.cached(domain).await.filter(|c| c.valid_at(now));
        let records = match resolver.txt(&format!("_mta-sts.{domain}")).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%domain, error = %e, "MTA-STS record lookup failed; the cached policy (if any) applies");
                return cached;
            }
        };
        let Some(id) = record_id(&records) else {
            return cached;
        };
        if cached.as_ref().is_some_and(|c| c.id == id) {
            return cached;
        }
        let failed_lately = self
            .0
            .failed
            .borrow()
            .get(domain)
            .is_some_and(|(fid, at)| *fid == id && now < at.saturating_add(RETRY_FAILED_FETCH));
        if failed_lately {
            return cached;
        }
        self.fetch_shared(resolver, domain, id).await.or(cached)
    }

    /// What memory (or, the first time, the disk) holds for `domain`, expired or not. The
    /// file is read on the executor's blocking threads: the shard never waits on the disk.
    async fn cached(&self, domain: &str) -> Option<Cached> {
        if let Some(known) = self.0.memory.borrow().get(domain) {
            return known.clone();
        }
        let path = file_name(domain).map(|f| self.0.dir.join(f));
        let loaded = match path {
            Some(p) => glommio::executor().spawn_blocking(move || read(&p)).await,
            None => None,
        };
        self.remember(domain, loaded.clone());
        loaded
    }

    fn remember(&self, domain: &str, value: Option<Cached>) {
        let mut memory = self.0.memory.borrow_mut();
        if memory.len() >= MAX_DOMAINS && !memory.contains_key(domain) {
            memory.clear();
        }
        memory.insert(domain.to_owned(), value);
    }

    /// Fetches the policy of `domain` once for all its concurrent lookups on this shard.
    async fn fetch_shared(&self, resolver: &Resolver, domain: &str, id: String) -> Option<Cached> {
        let waiter = {
            let mut inflight = self.0.inflight.borrow_mut();
            match inflight.get_mut(domain) {
                Some(waiters) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    inflight.insert(domain.to_owned(), Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = waiter {
            return rx.await.ok().flatten();
        }
        let guard = Inflight {
            inner: &self.0,
            domain: Some(domain.to_owned()),
        };
        let fetched = match fetch(resolver, domain, &self.0.fetch).await {
            Ok(policy) => {
                let c = Cached {
                    id,
                    policy,
                    fetched_unix: now_unix(),
                };
                tracing::info!(%domain, id = %c.id, mode = c.policy.mode.as_str(), max_age = c.policy.max_age, "MTA-STS policy fetched");
                self.remember(domain, Some(c.clone()));
                self.0.failed.borrow_mut().remove(domain);
                if let Some(f) = file_name(domain) {
                    let (dir, kept) = (self.0.dir.clone(), c.clone());
                    let written = glommio::executor()
                        .spawn_blocking(move || write(&dir, &f, &kept))
                        .await;
                    if let Err(e) = written {
                        tracing::warn!(%domain, dir = %self.0.dir.display(), error = %e, "cannot keep the MTA-STS policy on disk");
                    }
                }
                Some(c)
            }
            Err(e) => {
                tracing::warn!(%domain, error = %e, "MTA-STS policy fetch failed; the cached policy (if any) applies");
                count_fetch_failure(domain, &e);
                let mut failed = self.0.failed.borrow_mut();
                if failed.len() >= MAX_DOMAINS {
                    failed.clear();
                }
                failed.insert(domain.to_owned(), (id, now_unix()));
                None
            }
        };
        for tx in guard.finish() {
            let _ = tx.send(fetched.clone());
        }
        fetched
    }
}

/// Counts a failed policy fetch for TLS reports (RFC 8460 4.3.2.2), under no policy.
fn count_fetch_failure(domain: &str, e: &FetchError) {
    use crate::tls_rpt::{Outcome, PolicyDesc, PolicyKind, ResultType, recorder};
    if !recorder::enabled() {
        return;
    }
    let result = match e {
        FetchError::Policy(_) => ResultType::StsPolicyInvalid,
        FetchError::Io(m) if m.starts_with("TLS with") => ResultType::StsWebpkiInvalid,
        _ => ResultType::StsPolicyFetchError,
    };
    let policy = PolicyDesc {
        kind: PolicyKind::NoPolicyFound,
        strings: Vec::new(),
        mx: Vec::new(),
    };
    let host = format!("mta-sts.{domain}");
    let outcome = Outcome::Failure {
        result,
        sending_ip: None,
        mx: &host,
        receiving_ip: None,
    };
    recorder::record(domain, &policy, outcome);
}

/// Removes the in-flight entry of a domain when the fetching lookup ends or is dropped.
struct Inflight<'a> {
    inner: &'a Inner,
    domain: Option<String>,
}

impl Inflight<'_> {
    fn finish(mut self) -> Vec<oneshot::Sender<Option<Cached>>> {
        let domain = self.domain.take().expect("finish called once");
        self.inner
            .inflight
            .borrow_mut()
            .remove(&domain)
            .unwrap_or_default()
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        if let Some(d) = self.domain.take() {
            self.inner.inflight.borrow_mut().remove(&d);
        }
    }
}

/// A cached policy file, if readable (a damaged one is ignored: it is fetched again).
fn read(path: &Path) -> Option<Cached> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes a policy file: a temporary file of this thread, then a rename over the old one.
fn write(dir: &Path, name: &str, c: &Cached) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.{:?}.tmp", std::thread::current().id()));
    std::fs::write(&tmp, serde_json::to_vec(c).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mta_sts::policy::Mode;

    #[test]
    fn files_round_trip_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cached {
            id: "abc".into(),
            policy: Policy {
                mode: Mode::Enforce,
                mx: vec!["mx.example.com".into()],
                max_age: 100,
            },
            fetched_unix: 1000,
        };
        write(dir.path(), "example.com.json", &c).unwrap();
        let back = read(&dir.path().join("example.com.json")).unwrap();
        assert_eq!(back, c);
        assert!(back.valid_at(1099));
        assert!(!back.valid_at(1100));
        assert_eq!(
            file_name("example.com").as_deref(),
            Some("example.com.json")
        );
        assert_eq!(file_name("../x"), None);
        assert_eq!(file_name("a/b"), None);
    }
}
