//! Which pending batch the committer takes next, and when.
//!
//! What it does: [`next_work`] gives an idle committer the front batch of the spool's pending
//! queue as soon as there is one, a retire-only batch when segments await deletion, or None
//! when the spool closes with nothing left; [`next_follower`] gives the batch to write beside a
//! sync in flight. A batch nobody waits for (detached delivery states alone) never follows a
//! sync in flight, and alone it lingers up to [`STATE_LINGER`] for a record somebody awaits, so
//! that it rides in that record's commit instead of costing a sync of its own.
//!
//! What it does not do: no writing, syncing or ledger work (`committer.rs`); no decision
//! whether a batch may go to the segment of the one in flight (`Committer::can_follow`).
//!
//! Invariants: no `RefCell` borrow across `.await`; the follower future never takes retire
//! work, a batch of a closing spool or a batch nobody waits for, so those always wait for the
//! sync in flight; a lingering batch waits at most [`STATE_LINGER`], and not at all once a
//! record somebody awaits joins it, another batch queues behind it, segments await
//! retirement or the spool closes.

use std::task::Poll;
use std::time::Duration;

use super::in_flight::Next;
use super::{Batch, Inner, State};

/// How long a batch of delivery states alone (records nobody waits for) waits for a record
/// somebody awaits before it is committed on its own. Losing such a state in a crash costs one
/// more delivery attempt, never a message; at half load, riding along saves a fifth of the
/// syncs (`docs/BENCHMARKS.md`).
pub(in crate::spool) const STATE_LINGER: Duration = Duration::from_millis(2);

/// What an idle committer finds.
enum Work {
    /// A batch to write, or None: the spool closes with nothing left.
    Take(Option<Batch>),
    /// Only a batch nobody waits for: wait for company first.
    Linger,
}

/// Whether the only work is one batch nobody waits for (see [`STATE_LINGER`]).
fn lingers(st: &State) -> bool {
    st.batches.len() == 1
        && st.batches.front().is_some_and(|b| !b.awaited)
        && st.retire_queue.is_empty()
        && !st.closing
}

/// The next batch for an idle committer (see the module header), or None when the spool
/// closes with nothing left to write.
pub(super) async fn next_work(inner: &Inner) -> Option<Batch> {
    let mut lingered = false;
    loop {
        let work = futures_lite::future::poll_fn(|cx| {
            let mut st = inner.st.borrow_mut();
            if !lingered && lingers(&st) {
                return Poll::Ready(Work::Linger);
            }
            if let Some(b) = st.batches.pop_front() {
                return Poll::Ready(Work::Take(Some(b)));
            }
            if !st.retire_queue.is_empty() && !st.retire_blocked {
                return Poll::Ready(Work::Take(Some(Batch::default())));
            }
            if st.closing {
                return Poll::Ready(Work::Take(None));
            }
            inner.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        match work {
            Work::Take(batch) => return batch,
            Work::Linger => {
                let joined = futures_lite::future::poll_fn(|cx| {
                    if !lingers(&inner.st.borrow()) {
                        return Poll::Ready(());
                    }
                    inner.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                });
                futures_lite::future::or(glommio::timer::sleep(STATE_LINGER), joined).await;
                lingered = true;
            }
        }
    }
}

/// The next batch, for writing beside the sync in flight: only a batch of records that
/// somebody waits for (no retire work waiting, not closing; detached delivery states alone
/// wait for the sync in flight and go in the next commit) and only when `follow` (see
/// `Committer::can_follow`); otherwise never resolves, and the sync in flight decides.
pub(super) async fn next_follower(inner: &Inner, follow: bool) -> Next {
    futures_lite::future::poll_fn(|cx| {
        let mut st = inner.st.borrow_mut();
        if follow
            && st.retire_queue.is_empty()
            && !st.closing
            && st.batches.front().is_some_and(|b| b.awaited)
            && let Some(b) = st.batches.pop_front()
        {
            return Poll::Ready(Next::Batch(b));
        }
        inner.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    })
    .await
}
