//! Fixed-bucket histograms: a shard-local one to observe into and a plain copy of it.
//!
//! What it does: counts observations into buckets whose upper bounds are fixed at compile
//! time, keeps their sum and count, and copies all of it into a [`HistogramSnapshot`] that can
//! cross threads and be merged with another one over the same bounds.
//!
//! What it does not do: no quantile estimation, no resizing, no atomics (one shard owns it).
//!
//! Invariants: bounds are strictly increasing and finite; `counts` has one slot per bound plus
//! one overflow slot (`+Inf`), and holds per-bucket (not cumulative) counts; `count` is the sum
//! of `counts`; NaN observations are ignored.

use std::cell::Cell;

/// Records per `fdatasync` in a group commit.
pub const GROUP_COMMIT_BATCH_BUCKETS: &[f64] =
    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Seconds per `fdatasync`, 100 µs to 1 s.
pub const FDATASYNC_SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Seconds from the end of inbound data to the `250`, 500 µs to 5 s.
pub const REPLY_LATENCY_SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Seconds a recipient spent queued until delivered, 10 ms to one day.
pub const DELIVERY_LATENCY_SECONDS_BUCKETS: &[f64] = &[
    0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0, 86400.0,
];

/// A shard-local histogram with fixed bucket bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Box<[Cell<u64>]>,
    sum: Cell<f64>,
    count: Cell<u64>,
}

impl Histogram {
    /// A histogram over `bounds` (strictly increasing upper bounds; `+Inf` is implied).
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| Cell::new(0)).collect(),
            sum: Cell::new(0.0),
            count: Cell::new(0),
        }
    }

    /// Counts one observation in the first bucket whose bound is `>= v`; NaN is ignored.
    #[inline]
    pub fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        let i = self.bounds.partition_point(|b| *b < v);
        if let Some(slot) = self.counts.get(i) {
            slot.set(slot.get().wrapping_add(1));
        }
        self.sum.set(self.sum.get() + v);
        self.count.set(self.count.get().wrapping_add(1));
    }

    /// The bucket upper bounds (without `+Inf`).
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.get()
    }

    /// Sum of the observations so far.
    pub fn sum(&self) -> f64 {
        self.sum.get()
    }

    /// A plain copy of the current state.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self.counts.iter().map(Cell::get).collect(),
            sum: self.sum.get(),
            count: self.count.get(),
        }
    }
}

/// A plain, sendable copy of a [`Histogram`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Bucket upper bounds, without `+Inf`.
    pub bounds: &'static [f64],
    /// Per-bucket counts: one per bound, then the overflow bucket.
    pub counts: Vec<u64>,
    /// Sum of all observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl HistogramSnapshot {
    /// An empty snapshot over `bounds`.
    pub fn empty(bounds: &'static [f64]) -> Self {
        HistogramSnapshot {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    /// Adds `other` into `self`. Returns false (and changes nothing) when the bounds differ.
    pub fn merge(&mut self, other: &HistogramSnapshot) -> bool {
        if self.bounds != other.bounds || self.counts.len() != other.counts.len() {
            return false;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.wrapping_add(*b);
        }
        self.sum += other.sum;
        self.count = self.count.wrapping_add(other.count);
        true
    }

    /// `(upper bound, per-bucket count)` for the finite buckets, as the encoder takes them.
    pub fn finite_buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .copied()
            .zip(self.counts.iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observe_places_values_in_the_first_bucket_at_or_above() {
        let h = Histogram::new(GROUP_COMMIT_BATCH_BUCKETS);
        for v in [0.5, 1.0, 1.5, 2.0, 3.0, 256.0, 257.0, 1e9] {
            h.observe(v);
        }
        h.observe(f64::NAN);
        let s = h.snapshot();
        assert_eq!(s.counts.len(), GROUP_COMMIT_BATCH_BUCKETS.len() + 1);
        assert_eq!(s.counts[0], 2); // 0.5, 1.0
        assert_eq!(s.counts[1], 2); // 1.5, 2.0
        assert_eq!(s.counts[2], 1); // 3.0
        assert_eq!(s.counts[8], 1); // 256
        assert_eq!(s.counts[9], 2); // overflow
        assert_eq!(s.count, 8);
        assert_eq!(s.counts.iter().sum::<u64>(), s.count);
        assert!((s.sum - (0.5 + 1.0 + 1.5 + 2.0 + 3.0 + 256.0 + 257.0 + 1e9)).abs() < 1e-6);
    }

    #[test]
    fn merge_adds_and_refuses_other_bounds() {
        let a = Histogram::new(FDATASYNC_SECONDS_BUCKETS);
        a.observe(0.0002);
        let b = Histogram::new(FDATASYNC_SECONDS_BUCKETS);
        b.observe(0.0002);
        b.observe(2.0);
        let mut s = a.snapshot();
        assert!(s.merge(&b.snapshot()));
        assert_eq!(s.count, 3);
        assert_eq!(s.counts[1], 2);
        assert_eq!(*s.counts.last().unwrap_or(&0), 1);
        let before = s.clone();
        assert!(!s.merge(&HistogramSnapshot::empty(REPLY_LATENCY_SECONDS_BUCKETS)));
        assert_eq!(s, before);
    }

    #[test]
    fn bucket_tables_are_increasing() {
        for t in [
            GROUP_COMMIT_BATCH_BUCKETS,
            FDATASYNC_SECONDS_BUCKETS,
            REPLY_LATENCY_SECONDS_BUCKETS,
            DELIVERY_LATENCY_SECONDS_BUCKETS,
        ] {
            assert!(t.windows(2).all(|w| w[0] < w[1]));
            assert!(t.iter().all(|b| b.is_finite()));
        }
    }
}
