//! The scheduler's deferred jobs, in the order they come due.
//!
//! What it does: holds each deferred job with its due time and the destination its last
//! attempt went through (for an operator's flush), hands out the jobs that are due, and lets
//! callers take out, or make due now, the jobs a predicate selects.
//!
//! What it does not do: no clock (times are parameters), no retry policy (the scheduler
//! computes the due time), no routing.
//!
//! Invariants: one binary min-heap on the due time holds every entry, job and all, so a
//! deferred job costs one heap slot and nothing else (no side table keyed by an id: with a
//! million deferred recipients, the hash table that used to sit beside the heap was most of
//! the queue's memory). Removing or re-timing by predicate is one pass over the heap and one
//! rebuild, O(n), like the scans they replace.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::types::{DestinationKey, Job};

/// One deferred job.
#[derive(Debug)]
struct Timed {
    at: Instant,
    job: Job,
    via: Option<DestinationKey>,
}

impl PartialEq for Timed {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Timed {}

impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timed {
    /// Reversed: the earliest due time is the heap's greatest element.
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}

/// See the module header.
#[derive(Debug, Default)]
pub struct Deferred {
    heap: BinaryHeap<Timed>,
}

impl Deferred {
    /// Defers `job` until `at`; `via` is the destination its last attempt went through.
    pub fn push(&mut self, job: Job, via: Option<DestinationKey>, at: Instant) {
        self.heap.push(Timed { at, job, via });
    }

    /// The earliest due time, if any job is deferred.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|t| t.at)
    }

    /// Takes the earliest job if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Job> {
        match self.heap.peek() {
            Some(t) if t.at <= now => self.heap.pop().map(|t| t.job),
            _ => None,
        }
    }

    /// Deferred jobs.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Each job with its due time, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Job, Instant)> {
        self.heap.iter().map(|t| (&t.job, t.at))
    }

    /// Takes out every job that `pick` selects.
    pub fn remove_where(&mut self, pick: impl Fn(&Job) -> bool) -> Vec<Job> {
        if !self.heap.iter().any(|t| pick(&t.job)) {
            return Vec::new();
        }
        let (out, keep): (Vec<Timed>, Vec<Timed>) = std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .partition(|t| pick(&t.job));
        self.heap = BinaryHeap::from(keep);
        out.into_iter().map(|t| t.job).collect()
    }

    /// Makes every job that `matches` selects (given the job and the destination its last
    /// attempt went through) due at `now`; returns how many.
    pub fn make_due(
        &mut self,
        now: Instant,
        matches: impl Fn(&Job, Option<&DestinationKey>) -> bool,
    ) -> usize {
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        let mut n = 0;
        for t in &mut entries {
            if matches(&t.job, t.via.as_ref()) {
                t.at = t.at.min(now);
                n += 1;
            }
        }
        self.heap = BinaryHeap::from(entries);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn job(message: u64) -> Job {
        Job {
            message,
            recipients: [0].as_slice().into(),
            domain: "example.com".into(),
            attempts: 1,
            arrival: Instant::now(),
            priority: crate::priority::Class::Normal,
        }
    }

    #[test]
    fn jobs_come_due_in_time_order() {
        let t0 = Instant::now();
        let mut d = Deferred::default();
        d.push(job(3), None, t0 + Duration::from_secs(3));
        d.push(job(1), None, t0 + Duration::from_secs(1));
        d.push(job(2), None, t0 + Duration::from_secs(2));
        assert_eq!(d.next_due(), Some(t0 + Duration::from_secs(1)));
        assert!(d.pop_due(t0).is_none());
        let due: Vec<u64> = std::iter::from_fn(|| d.pop_due(t0 + Duration::from_secs(2)))
            .map(|j| j.message)
            .collect();
        assert_eq!(due, vec![1, 2]);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn removing_and_making_due_by_predicate() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(3600);
        let mut d = Deferred::default();
        let via = DestinationKey("mx.example".into());
        for m in 0..6 {
            d.push(job(m), (m % 2 == 0).then(|| via.clone()), far);
        }
        let gone: Vec<u64> = d
            .remove_where(|j| j.message >= 4)
            .iter()
            .map(|j| j.message)
            .collect();
        assert_eq!(gone.len(), 2);
        assert_eq!(d.len(), 4);
        assert_eq!(d.make_due(t0, |_, v| v == Some(&via)), 2);
        let mut due: Vec<u64> = std::iter::from_fn(|| d.pop_due(t0))
            .map(|j| j.message)
            .collect();
        due.sort_unstable();
        assert_eq!(due, vec![0, 2]);
        assert_eq!(d.next_due(), Some(far));
    }
}
