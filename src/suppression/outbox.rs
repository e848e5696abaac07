//! How far this host's changes to the list have been published to its cluster.
//!
//! What it does: keeps the publish point, the offset in the log up to which every change made
//! on this host has reached Redis, in memory and in `<dir>/published` (`<inode> <offset>`:
//! the log file the offset belongs to, since a compaction makes a new file); wakes the
//! publisher when a change is written; keeps the figures the metrics show.
//!
//! What it does not do: no Redis (`share::publisher` publishes), no reading of the log (the
//! writer reads the changes after the publish point and hands them over).
//!
//! Invariants: the publish point only moves forward within one log file, and only once Redis
//! has answered for everything before it; the file is written after that answer (not
//! synced: a publish point lost in a crash is an older one, or the start of the log, and
//! the changes after it are published again, which the cluster takes as no change).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;

const FILE: &str = "published";

/// The figures of a shared list, read by the metrics.
#[derive(Debug, Default)]
pub struct ShareStats {
    /// Changes made here and published.
    pub published: AtomicU64,
    /// Changes made on other nodes and applied here.
    pub applied: AtomicU64,
    /// Bytes of the log after the publish point (changes waiting to be published).
    pub unpublished_bytes: AtomicU64,
    /// The publisher cannot reach Redis.
    pub publisher_down: AtomicBool,
    /// The subscriber cannot reach Redis.
    pub subscriber_down: AtomicBool,
    /// Redis calls the list sent.
    pub commands: AtomicU64,
}

impl ShareStats {
    /// Whether the publisher or the subscriber cannot reach Redis.
    pub fn degraded(&self) -> bool {
        self.publisher_down.load(Ordering::Relaxed) || self.subscriber_down.load(Ordering::Relaxed)
    }
}

/// The publish point and what the writer tells the publisher.
pub struct Outbox {
    path: PathBuf,
    /// The offset up to which this host's changes are published.
    pub published: u64,
    /// Wakes the publisher (a full channel already means "look again").
    pub wake: SyncSender<()>,
    /// The figures.
    pub stats: Arc<ShareStats>,
}

impl Outbox {
    /// The publish point saved in `dir` for the log file `inode` (of `len` bytes, records
    /// starting at `start`); the start of the log when none is saved for that file.
    pub fn load(
        dir: &Path,
        inode: u64,
        (start, len): (u64, u64),
        wake: SyncSender<()>,
        stats: Arc<ShareStats>,
    ) -> Outbox {
        let path = dir.join(FILE);
        let saved = std::fs::read_to_string(&path).ok().and_then(|text| {
            let (ino, offset) = text.trim().split_once(' ')?;
            (ino.parse::<u64>().ok()? == inode).then_some(offset.parse::<u64>().ok()?)
        });
        let published = saved.filter(|o| (start..=len).contains(o)).unwrap_or(start);
        let outbox = Outbox {
            path,
            published,
            wake,
            stats,
        };
        outbox.set_len(len);
        outbox
    }

    /// Moves the publish point to `offset` of the log file `inode` (of `len` bytes) and
    /// saves it.
    pub fn advance(&mut self, inode: u64, offset: u64, len: u64) {
        self.published = offset;
        self.set_len(len);
        let tmp = self.path.with_extension("new");
        let saved = std::fs::write(&tmp, format!("{inode} {offset}\n"))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = saved {
            // Harmless but for the cost: after a restart the changes are published again.
            tracing::warn!(error = %e, "suppression list: cannot save the publish point");
        }
    }

    /// Publishes everything again from `start` (Redis lost the list), if the point is past it.
    pub fn restart_from(&mut self, inode: u64, start: u64, len: u64) -> bool {
        if self.published <= start {
            return false;
        }
        self.advance(inode, start, len);
        true
    }

    /// The log is `len` bytes long now.
    pub fn set_len(&self, len: u64) {
        self.stats
            .unpublished_bytes
            .store(len.saturating_sub(self.published), Ordering::Relaxed);
    }

    /// A change made here was written: the publisher looks at the log again.
    pub fn written(&self, len: u64) {
        self.set_len(len);
        let _ = self.wake.try_send(());
    }
}
