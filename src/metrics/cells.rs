//! The shard-local counter and gauge cells and the fixed label enums.
//!
//! What it does: `Counter` and `Gauge` wrap a `Cell<u64>` so that bumping one on a hot path is
//! a load and a store; `SessionOutcome` and `BackpressureReason` index fixed-size arrays and
//! name the `outcome` / `reason` label values.
//!
//! What it does not do: no atomics and no `Sync`: a cell belongs to one shard.
//!
//! Invariants: counters only grow (wrapping at `u64::MAX`); gauges never go below zero (`sub`
//! saturates); every enum's `ALL` lists each variant once, in index order.

use std::cell::Cell;

/// A monotonically increasing shard-local count.
#[derive(Debug, Default)]
pub struct Counter(Cell<u64>);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get().wrapping_add(n));
    }

    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A shard-local value that goes up and down (never below zero).
#[derive(Debug, Default)]
pub struct Gauge(Cell<u64>);

impl Gauge {
    /// Sets the value.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.set(v);
    }

    /// Adds `n` (saturating).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get().saturating_add(n));
    }

    /// Subtracts `n`, stopping at zero.
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.set(self.0.get().saturating_sub(n));
    }

    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// How an inbound SMTP session ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionOutcome {
    /// The client quit or closed after a normal exchange.
    Completed,
    /// An inbound timeout ended it.
    Timeout,
    /// An I/O or protocol error ended it.
    Error,
    /// It was refused or rejected before any mail transaction.
    Rejected,
}

impl SessionOutcome {
    /// Every outcome, in index order.
    pub const ALL: [SessionOutcome; 4] = [
        SessionOutcome::Completed,
        SessionOutcome::Timeout,
        SessionOutcome::Error,
        SessionOutcome::Rejected,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            SessionOutcome::Completed => "completed",
            SessionOutcome::Timeout => "timeout",
            SessionOutcome::Error => "error",
            SessionOutcome::Rejected => "rejected",
        }
    }

    /// The array index.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why backpressure refused work (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackpressureReason {
    /// Too much memory in use.
    Memory,
    /// Too little disk left for the spool.
    Disk,
}

impl BackpressureReason {
    /// Every reason, in index order.
    pub const ALL: [BackpressureReason; 2] = [BackpressureReason::Memory, BackpressureReason::Disk];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            BackpressureReason::Memory => "memory",
            BackpressureReason::Disk => "disk",
        }
    }

    /// The array index.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_indexes() {
        let c = Counter::default();
        c.inc();
        c.add(4);
        assert_eq!(c.get(), 5);
        let g = Gauge::default();
        g.add(3);
        g.sub(5);
        assert_eq!(g.get(), 0);
        g.set(7);
        assert_eq!(g.get(), 7);
        for (i, o) in SessionOutcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
        for (i, r) in BackpressureReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
