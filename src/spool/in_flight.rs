//! A batch of the spool between its write and the end of its `fdatasync`.
//!
//! What it does: holds what the committer needs to finish a written batch (its records, its
//! retire record and moves, where it went) and the `fdatasync` task running for it.
//!
//! What it does not do: no writing or ledger work (`committer.rs` does both); no choice of the
//! next batch (`pending.rs`).
//!
//! Invariants: a sync's result is read once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use super::Batch;
use super::forward::Forwarding;

/// The segments a batch's retire record names.
#[derive(Default)]
pub(super) struct Retiring {
    /// Retired by this record (their totals are added).
    pub(super) new: Vec<u64>,
    /// Every segment the record names (`new` plus lingering ones).
    pub(super) listed: Vec<u64>,
}

/// A batch written to its segment, its `fdatasync` perhaps still running.
pub(super) struct InFlight {
    pub(super) batch: Batch,
    pub(super) retiring: Retiring,
    pub(super) forwarding: Forwarding,
    pub(super) n_records: u64,
    /// (segment, offset of the batch in it, offset past it), or why the write failed.
    pub(super) placed: Result<(u64, u64, u64), io::Error>,
    pub(super) sync: SyncState,
}

pub(super) enum SyncState {
    /// No sync (`sync = "never"`, or the write failed).
    Skipped,
    Running(glommio::Task<io::Result<Duration>>),
    Done(io::Result<Duration>),
}

impl InFlight {
    /// Resolves once the batch's `fdatasync` (if any) has returned; keeps its result.
    pub(super) async fn synced(&mut self) {
        futures_lite::future::poll_fn(|cx| match &mut self.sync {
            SyncState::Running(task) => match Pin::new(task).poll(cx) {
                Poll::Ready(r) => {
                    self.sync = SyncState::Done(r);
                    Poll::Ready(())
                }
                Poll::Pending => Poll::Pending,
            },
            _ => Poll::Ready(()),
        })
        .await
    }
}

/// What the committer does next.
pub(super) enum Next {
    Batch(Batch),
    Synced,
    Close,
}
