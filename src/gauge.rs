//! The shard's memory gauge: one budget for the mail being received and the mail queued.
//!
//! What it does: the delivery queue publishes what its envelopes cost (held bodies are a cache
//! of the spool that gives way to incoming mail, so they are not counted here) and whether they
//! reached their refusal share; each inbound connection adds the bytes of the message it is
//! receiving. The server
//! asks it whether a new transaction may start and whether a transfer in progress must stop
//! storing its bytes.
//!
//! What it does not do: no decisions about which bodies to drop from the queue (the queue's
//! memory accounting does that), no I/O.
//!
//! Invariants: single-threaded (one per shard, `Cell`s); `receiving` is the sum of what the
//! live connections added and every connection takes back what it added when it ends.

use std::cell::Cell;

/// Share of the budget at which new transactions are refused.
pub const REFUSE_NEW: f64 = 0.9;

/// See the module header.
#[derive(Debug)]
pub struct MemoryGauge {
    budget: u64,
    queued: Cell<u64>,
    queue_full: Cell<bool>,
    receiving: Cell<u64>,
}

impl MemoryGauge {
    /// A gauge for a shard's share of the memory budget, in bytes.
    pub fn new(budget: u64) -> MemoryGauge {
        MemoryGauge {
            budget,
            queued: Cell::new(0),
            queue_full: Cell::new(false),
            receiving: Cell::new(0),
        }
    }

    /// The shard's budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// The queue's envelopes now cost `bytes`; `full` if they reached the share at which new
    /// mail is refused.
    pub fn set_queued(&self, bytes: u64, full: bool) {
        self.queued.set(bytes);
        self.queue_full.set(full);
    }

    /// A connection's message being received grew (or shrank) from `before` to `now` bytes.
    pub fn receiving_changed(&self, before: u64, now: u64) {
        let r = self
            .receiving
            .get()
            .saturating_sub(before)
            .saturating_add(now);
        self.receiving.set(r);
    }

    /// Bytes of messages being received.
    pub fn receiving(&self) -> u64 {
        self.receiving.get()
    }

    /// True if the queue's envelopes reached their share: new mail waits for the queue.
    pub fn queue_full(&self) -> bool {
        self.queue_full.get()
    }

    /// True if queued and incoming mail together reached the budget.
    pub fn over(&self) -> bool {
        self.queued.get().saturating_add(self.receiving.get()) >= self.budget
    }

    /// True if a new transaction must be refused (`452 4.3.1`): the queue's envelopes reached
    /// their share, or queued and incoming mail together reached [`REFUSE_NEW`] of the budget
    /// (the rest is room for the transfers already under way).
    pub fn refuses_new(&self) -> bool {
        let used = self.queued.get().saturating_add(self.receiving.get());
        self.queue_full() || used as f64 >= self.budget as f64 * REFUSE_NEW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_and_receiving_share_one_budget() {
        let g = MemoryGauge::new(1000);
        assert!(!g.refuses_new());
        g.receiving_changed(0, 600);
        g.receiving_changed(0, 300);
        assert!(!g.over());
        assert!(g.refuses_new(), "900 of 1000: no new transaction");
        g.set_queued(100, false);
        assert!(g.over() && g.refuses_new());
        g.receiving_changed(600, 0);
        assert_eq!(g.receiving(), 300);
        assert!(!g.over());
        g.set_queued(100, true);
        assert!(
            g.refuses_new() && !g.over(),
            "envelopes at their share refuse new mail"
        );
        g.receiving_changed(10_000, 0);
        assert_eq!(g.receiving(), 0, "saturating, never wraps");
    }
}
