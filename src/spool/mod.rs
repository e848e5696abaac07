//! The per-shard spool: an append-only, group-committed message store.
//!
//! What it does: each shard owns one [`Spool`] over its own directory
//! (`<spool_dir>/shard-<n>/<16 hex>.seg`). Sessions append [`MessageRecord`]s and delivery
//! appends [`StateRecord`]s; a committer task writes whatever has accumulated with one
//! write and one `fdatasync` (group commit) and only then resolves the appends. At
//! start-up [`Spool::open`] recovers the queue; [`read_offline`] does the same read-only for
//! `mta queue list|count`. Segments whose recipients are all final are deleted.
//!
//! What it does not do: no scheduling, no delivery, no DSN generation, no cross-shard access.
//! Long-lived stragglers are copied forward to the newest segment (`forward.rs`) so that old
//! segments can be deleted.
//!
//! Invariants (details in `docs/SPOOL_FORMAT.md`):
//! - An append resolves `Ok` only after the `fdatasync` (and, for a new segment file, the
//!   directory sync) covering it returned, except with [`SyncMode::Never`] (benchmarks only).
//! - After a failed write or sync the segment is never written or synced again (fsyncgate):
//!   the batch fails, the next batch goes to a new segment.
//! - Single-threaded: `Rc`/`RefCell`/`Cell`; no `RefCell` borrow is held across an `.await`.
//!
//! Layout: `model.rs` (types), `format.rs` (bytes), `ledger.rs` (bookkeeping),
//! `recovery.rs` (reading), `reader.rs` (segment files piece by piece), `forward.rs`
//! (copy-forward), `config.rs` (configuration, counters), `writer.rs` (the live
//! spool and committer).

mod config;
pub mod format;
mod ledger;
mod legacy;
pub mod model;
mod reader;
mod recovery;
mod writer;

#[cfg(test)]
mod ahead_tests;
#[cfg(test)]
mod forward_tests;
#[cfg(test)]
mod hold_tests;
#[cfg(test)]
mod in_flight_tests;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use config::{SpoolConfig, SpoolCounts, SpoolStats, SyncMode, shard_dir};
pub use model::{
    HoldRecord, MAX_SHARDS, MessageRecord, ParseQueueIdError, QUEUE_ID_EPOCH_UNIX_MS, QueueId,
    QueueIdGenerator, Recipient, RecipientState, RetireRecord, StateRecord, Totals,
};
pub use recovery::{
    OfflineSpool, Recovered, RecoveredMessage, RecoveryStats, parse_segment_name, read_offline,
    segment_file_name,
};
pub use writer::Spool;

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// An I/O error (also what every append of a failed batch gets: the caller answers
    /// `452 4.3.1` and treats the message as not accepted).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The spool was closed (or its committer stopped).
    #[error("spool is closed")]
    Closed,
    /// The record's payload exceeds [`format::MAX_RECORD_LEN`].
    #[error("record too large for the spool")]
    RecordTooLarge,
    /// A segment file is not ours (bad header) or changed while being read.
    #[error("corrupt spool segment {path:?} at offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the problem.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A state record for a message the spool does not track (never appended, or every
    /// recipient already final and its segment deleted).
    #[error("unknown message {0}")]
    UnknownMessage(QueueId),
    /// A state record for a recipient index the message does not have.
    #[error("message {id} has no recipient {recipient}")]
    NoSuchRecipient {
        /// The message.
        id: QueueId,
        /// The index given.
        recipient: u32,
    },
    /// A message record whose id is already in the spool.
    #[error("duplicate queue id {0}")]
    DuplicateId(QueueId),
    /// A record the spool refuses (e.g. a message without recipients).
    #[error("invalid record: {0}")]
    InvalidRecord(&'static str),
    /// A configuration the spool cannot work with.
    #[error("invalid spool configuration: {0}")]
    InvalidConfig(String),
    /// rkyv serialization failed.
    #[error("cannot serialize record: {0}")]
    Encode(String),
}

impl From<glommio::GlommioError<()>> for SpoolError {
    fn from(e: glommio::GlommioError<()>) -> Self {
        SpoolError::Io(e.into())
    }
}
