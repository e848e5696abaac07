//! The suppression list: addresses that are never sent to again.
//!
//! What it does: keeps, for the whole host, a list of addresses (global, or per tenant: each
//! entry carries a tenant name, empty for the global list), each with its kind (manual, hard
//! bounce, complaint), reason, time, who added it and an optional expiry. Every shard checks a
//! recipient against it without a lock ([`Suppression::check`]: a hash and a probe of the
//! [`table::Table`]); operators add, remove, list and export entries, and hard bounces add
//! their recipient ([`Suppression::bounced`]). The list is durable: every change is a record in
//! an append-only log (`log`) written by one thread (`writer`) with group commit, and the log
//! is replayed at start.
//!
//! In cluster mode ([`Suppression::open_shared`]) the list is one across the nodes: every
//! change the writer makes here is published to the cluster's Redis and every other node's
//! change is applied here (`share`, `outbox`).
//!
//! What it does not do: no SMTP replies and no delivery decisions (the server refuses at RCPT,
//! the delivery queue drops; both ask [`Suppression::check`]).
//!
//! Invariants: memory is the table only (16 bytes a slot, 21 to 32 bytes an entry): reasons and
//! addresses stay on disk; an operator's change is answered only once it is on stable storage;
//! an entry whose expiry has passed is not listed; requests to the writer are bounded
//! ([`QUEUE`]): when it is that far behind, a change is refused, never buffered without bound.

pub mod address;
pub mod config;
pub mod log;
mod outbox;
pub mod record;
mod share;
pub mod table;
mod writer;

use std::path::Path;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_channel::oneshot;

pub use address::{Keyer, normalise};
pub use config::{Mode, SuppressionSection};
pub use log::Page;
use outbox::{Outbox, ShareStats};
pub use record::{Entry, Kind, Op};
use share::Share;
use table::Table;
use writer::{Request, Writer};

use crate::shaping::BounceClass;

/// Requests the writer may have waiting.
pub const QUEUE: usize = 4096;

/// Why the list could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SuppressionError {
    /// The log could not be opened or replayed.
    #[error("suppression list in {dir}: {source}")]
    Open {
        /// The list's directory.
        dir: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The writer failed (the log could not be written or read).
    #[error("suppression list: {0}")]
    Io(String),
    /// The writer has more requests waiting than [`QUEUE`].
    #[error("suppression list: too many changes waiting, try again")]
    Busy,
    /// The writer has stopped.
    #[error("suppression list: closed")]
    Closed,
}

/// See the module header.
pub struct Suppression {
    table: Arc<Table>,
    keyer: Keyer,
    tx: SyncSender<Request>,
    classes: Vec<BounceClass>,
    bounce_expiry: u64,
    thread: Mutex<Option<JoinHandle<()>>>,
    share: Mutex<Option<Share>>,
    stats: Option<Arc<ShareStats>>,
}

/// Now in unix seconds.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Suppression {
    /// Opens the list of `section` (its directory under `spool_dir` unless configured),
    /// replays its log and starts its writer thread.
    pub fn open(
        section: &SuppressionSection,
        spool_dir: &Path,
    ) -> Result<Arc<Suppression>, SuppressionError> {
        Suppression::open_shared(section, spool_dir, None)
    }

    /// [`Suppression::open`], shared with the other nodes of the cluster `cluster` names
    /// (None: this host's list only).
    pub fn open_shared(
        section: &SuppressionSection,
        spool_dir: &Path,
        cluster: Option<crate::cluster::Settings>,
    ) -> Result<Arc<Suppression>, SuppressionError> {
        let dir = section.dir(spool_dir);
        let table = Arc::new(Table::new());
        let keyer = Keyer::new();
        let (log, loaded) = log::Log::open(&dir, &table, &keyer, now_secs()).map_err(|source| {
            SuppressionError::Open {
                dir: dir.display().to_string(),
                source,
            }
        })?;
        tracing::info!(
            entries = table.len(),
            records = loaded.records,
            truncated_bytes = loaded.truncated,
            dir = %dir.display(),
            "suppression list loaded"
        );
        let failed = |source| SuppressionError::Open {
            dir: dir.display().to_string(),
            source,
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (wake_tx, wake) = mpsc::sync_channel(1);
        let stats = cluster.as_ref().map(|_| Arc::new(ShareStats::default()));
        let outbox = match &stats {
            Some(stats) => Some(Outbox::load(
                &dir,
                log.inode().map_err(failed)?,
                (log.start(), log.len()),
                wake_tx,
                stats.clone(),
            )),
            None => None,
        };
        let writer = Writer {
            log,
            table: table.clone(),
            keyer: keyer.clone(),
            compact_size: section.compact_size.0,
            outbox,
            removals: Default::default(),
        };
        let thread = std::thread::Builder::new()
            .name("suppression".into())
            .spawn(move || writer.run(rx))
            .map_err(failed)?;
        let share = match (cluster, &stats) {
            (Some(settings), Some(stats)) => {
                tracing::info!(node = %settings.node, "suppression list shared through the cluster's Redis");
                Some(
                    Share::start(settings, dir.clone(), tx.clone(), wake, stats.clone())
                        .map_err(failed)?,
                )
            }
            _ => None,
        };
        Ok(Arc::new(Suppression {
            table,
            keyer,
            tx,
            classes: section.classes().unwrap_or_default(),
            bounce_expiry: section.hard_bounce_expiry.0.as_secs(),
            thread: Mutex::new(Some(thread)),
            share: Mutex::new(share),
            stats,
        }))
    }

    /// Why `address` is not to be sent to for `tenant` (`""`: only the global list counts),
    /// or None when it may be.
    pub fn check(&self, tenant: &str, address: &str) -> Option<Kind> {
        self.check_key(tenant, |t| self.keyer.key(t, address))
    }

    /// [`Suppression::check`] of the address `bare` writes (a `Mailbox`: no brackets), without
    /// making a string of it.
    pub fn check_of(&self, tenant: &str, bare: &dyn std::fmt::Display) -> Option<Kind> {
        self.check_key(tenant, |t| self.keyer.key_of(t, bare))
    }

    fn check_key(&self, tenant: &str, key: impl Fn(&str) -> u64) -> Option<Kind> {
        let now = now_secs();
        let listed = |t: &str| {
            self.table
                .get(key(t))
                .filter(|m| !m.expired(now))
                .and_then(|m| Kind::from_u8(m.kind()))
        };
        match tenant.is_empty() {
            true => listed(""),
            false => listed(tenant).or_else(|| listed("")),
        }
    }

    /// Entries listed (expired ones included until they are purged).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes of memory the in-memory table holds.
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
    }

    /// Applies `entries` in order, once they are on stable storage; per entry, whether its
    /// address was listed before.
    pub async fn write(&self, entries: Vec<Entry>) -> Result<Vec<bool>, SuppressionError> {
        let (done, answer) = oneshot::channel();
        self.send(Request::Write {
            entries,
            done: Some(done),
        })?;
        match answer.await {
            Ok(Ok(was)) => Ok(was),
            Ok(Err(e)) => Err(SuppressionError::Io(e)),
            Err(_) => Err(SuppressionError::Closed),
        }
    }

    /// The entry a bounce of `class` to `address` adds to `tenant`'s list (`""`: the global
    /// one), if that class is a hard bounce: it is handed to the writer (nobody waits for it)
    /// and returned for the event log.
    pub fn bounced(
        &self,
        tenant: &str,
        address: &str,
        class: BounceClass,
        reply: &str,
    ) -> Option<Entry> {
        let entry = self.bounce_entry(tenant, address, class, reply, "delivery")?;
        let request = Request::Write {
            entries: vec![entry.clone()],
            done: None,
        };
        match self.send(request) {
            Ok(()) => Some(entry),
            Err(e) => {
                tracing::warn!(recipient = %entry.address, error = %e, "hard bounce not added to the suppression list");
                None
            }
        }
    }

    /// The entry a bounce reported later (a DSN that came back) of `class` to `address`
    /// adds to `tenant`'s list, if that class is a hard bounce; the caller writes it.
    pub fn reported_bounce(
        &self,
        tenant: &str,
        address: &str,
        class: BounceClass,
        reply: &str,
    ) -> Option<Entry> {
        self.bounce_entry(tenant, address, class, reply, "report")
    }

    /// The entry of a hard bounce of `class` (None for another class), added `by`.
    fn bounce_entry(
        &self,
        tenant: &str,
        address: &str,
        class: BounceClass,
        reply: &str,
        by: &str,
    ) -> Option<Entry> {
        if !self.classes.contains(&class) || !address::valid(address) {
            return None;
        }
        let at = now_secs();
        Some(Entry {
            op: Op::Add,
            kind: Kind::HardBounce,
            tenant: tenant.to_owned(),
            address: normalise(address),
            reason: format!("{class}: {reply}"),
            by: by.to_owned(),
            at,
            expires: match self.bounce_expiry {
                0 => 0,
                d => at + d,
            },
        })
    }

    /// The entry a complaint about mail to `address` adds to `tenant`'s list (it does not
    /// expire); the caller writes it.
    pub fn complaint(&self, tenant: &str, address: &str, reason: &str) -> Option<Entry> {
        if !address::valid(address) {
            return None;
        }
        Some(Entry {
            op: Op::Add,
            kind: Kind::Complaint,
            tenant: tenant.to_owned(),
            address: normalise(address),
            reason: reason.to_owned(),
            by: "report".to_owned(),
            at: now_secs(),
            expires: 0,
        })
    }

    /// Up to `limit` live entries whose address contains `contains`, from `cursor` (a
    /// previous page's `next`); the page and the cursor of the next one.
    pub async fn page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        contains: &str,
    ) -> Result<(Page, Option<String>), SuppressionError> {
        let cursor = match cursor {
            None => None,
            Some(c) => Some(parse_cursor(c).ok_or_else(|| {
                SuppressionError::Io(format!("{c:?} is not a cursor this list gave"))
            })?),
        };
        let (done, answer) = oneshot::channel();
        self.send(Request::Page {
            cursor,
            limit,
            contains: contains.to_owned(),
            done,
        })?;
        match answer.await {
            Ok(Ok((page, generation))) => {
                let next = page.next.map(|n| format!("{generation}-{n}"));
                Ok((page, next))
            }
            Ok(Err(e)) => Err(SuppressionError::Io(e)),
            Err(_) => Err(SuppressionError::Closed),
        }
    }

    fn send(&self, request: Request) -> Result<(), SuppressionError> {
        self.tx.try_send(request).map_err(|e| match e {
            TrySendError::Full(_) => SuppressionError::Busy,
            TrySendError::Disconnected(_) => SuppressionError::Closed,
        })
    }

    /// In cluster mode, the Prometheus text of the list's sharing (published, applied,
    /// waiting, degraded); empty otherwise.
    pub fn metrics(&self) -> String {
        self.stats
            .as_ref()
            .map(|s| share::encode_metrics(s))
            .unwrap_or_default()
    }

    /// Waits until every change handed to the writer is written, then stops it (blocking:
    /// called once the shards have stopped). In cluster mode the sharing threads stop first:
    /// what is not yet published is published after the next start.
    pub fn close(&self) {
        let share = self.share.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(share) = share {
            share.stop();
        }
        let (ack, done) = mpsc::channel();
        if self.tx.send(Request::Stop(ack)).is_ok() {
            let _ = done.recv();
        }
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// `<generation>-<offset>`.
fn parse_cursor(c: &str) -> Option<(u64, u64)> {
    let (g, o) = c.split_once('-')?;
    Some((g.parse().ok()?, o.parse().ok()?))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
