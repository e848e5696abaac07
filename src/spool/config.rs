//! Spool configuration and the counters the spool reports.
//!
//! What it does: [`SpoolConfig`] (with defaults), [`SyncMode`], [`shard_dir`], and the plain
//! value types [`SpoolStats`] and [`SpoolCounts`].
//!
//! What it does not do: no validation beyond what `Spool::open` checks, no I/O.
//!
//! Invariants: `SpoolCounts::totals.accepted = delivered + bounced + expired + recipients`.

use std::path::{Path, PathBuf};

use super::model::Totals;

/// Whether commits call `fdatasync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// fdatasync before acknowledging (production).
    #[default]
    Always,
    /// Acknowledge after the write without syncing: benchmarks only (measures sync cost).
    Never,
}

/// Configuration of one shard's spool.
#[derive(Clone, Debug)]
pub struct SpoolConfig {
    /// The shard directory (`<spool_dir>/shard-<n>`, see [`shard_dir`]).
    pub dir: PathBuf,
    /// Shard number (< 1024: it is part of every [`QueueId`]).
    pub shard: u16,
    /// Sync mode.
    pub sync: SyncMode,
    /// Roll to a new segment after this many bytes (default 64 MiB).
    pub segment_size: u64,
    /// Fill a segment made ahead with zeros before it is used (only with [`SyncMode::Always`];
    /// see `new_segment`). Default on.
    pub preallocate: bool,
    /// Cap of one commit write (default 8 MiB); a single larger record is written alone.
    pub max_batch_bytes: usize,
    /// Recovery keeps whole message bodies up to this many bytes in all (default: no limit);
    /// the others keep their header section (see [`crate::spool::RecoveredMessage`]).
    pub recovery_body_budget: u64,
}

impl SpoolConfig {
    /// Defaults for shard directory `dir`.
    pub fn new(dir: impl Into<PathBuf>, shard: u16) -> Self {
        SpoolConfig {
            dir: dir.into(),
            shard,
            sync: SyncMode::Always,
            segment_size: 64 << 20,
            preallocate: true,
            max_batch_bytes: 8 << 20,
            recovery_body_budget: u64::MAX,
        }
    }
    /// Whether segments made ahead are filled with zeros: with `preallocate` and
    /// [`SyncMode::Always`] only (without syncs the zeros would buy nothing).
    pub fn fills_with_zeros(&self) -> bool {
        self.preallocate && self.sync == SyncMode::Always
    }
    /// Defaults for shard `shard` under the spool root `spool_dir`.
    pub fn for_shard(spool_dir: &Path, shard: u16) -> Self {
        Self::new(shard_dir(spool_dir, shard), shard)
    }
}

/// `<spool_dir>/shard-<n>`.
pub fn shard_dir(spool_dir: &Path, shard: u16) -> PathBuf {
    spool_dir.join(format!("shard-{shard}"))
}

/// Counters for metrics and tests (monotonic since `open`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// fdatasync calls on segment files (one per committed batch with [`SyncMode::Always`]).
    pub commits: u64,
    /// Records committed (appends plus the spool's own retire records).
    pub records: u64,
    /// Bytes written to segments.
    pub bytes: u64,
    /// Batches written successfully.
    pub batches: u64,
    /// Batches that failed (their appends got `Err`).
    pub failed_batches: u64,
    /// Segment files created.
    pub segments_created: u64,
    /// Segment files deleted.
    pub segments_deleted: u64,
}

/// What is queued on this shard now, and the lifetime accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolCounts {
    /// Messages with at least one non-final recipient.
    pub messages: u64,
    /// Non-final recipients (`totals.queued()`).
    pub recipients: u64,
    /// Lifetime per-recipient totals of the shard, across restarts.
    pub totals: Totals,
}
