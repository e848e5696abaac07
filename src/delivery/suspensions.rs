//! Suspensions an operator made, remembered by the destination named, for queues made later.
//!
//! What it does: keeps, for each destination key an operator suspended (`mta dest suspend`),
//! when the suspension ends; a destination queue that appears later and that the named key
//! covers (the key itself, or one of its pool's sources, `<key>@<source>`) starts suspended
//! until then too. So a suspension made before any mail is queued holds for mail that comes
//! later, whichever source of a pool it leaves from.
//!
//! What it does not do: no suspending of queues that exist (the queue task does that, through
//! the scheduler), no clock (time is a parameter), no suspensions by the MTA itself (a `421`,
//! connection failures, shaping rules: those belong to the queue that earned them).
//!
//! Invariants: at most [`MAX_SUSPENSIONS`] entries (when full, ended ones go first, then the
//! one that ends soonest); keys are kept in ASCII lower case (`covers` ignores case too).

use std::collections::HashMap;
use std::time::Instant;

use super::routes::{covers, split_pooled};

/// Why a destination an operator suspended is not sending.
pub const REASON: &str = "suspended by an administrator";

/// The most suspensions remembered.
pub const MAX_SUSPENSIONS: usize = 10_000;

/// See the module header.
#[derive(Debug, Default)]
pub struct Suspensions {
    until: HashMap<String, Instant>,
}

impl Suspensions {
    /// Remembers that `key` is suspended until `until`.
    pub fn suspend(&mut self, key: &str, until: Instant, now: Instant) {
        let key = key.to_ascii_lowercase();
        if !self.until.contains_key(&key) && self.until.len() >= MAX_SUSPENSIONS {
            self.prune(now);
            if self.until.len() >= MAX_SUSPENSIONS
                && let Some(first) = self
                    .until
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone())
            {
                tracing::warn!(destination = %first, "too many suspended destinations: the one ending soonest is no longer applied to its new queues");
                self.until.remove(&first);
            }
        }
        self.until.insert(key, until);
    }

    /// Forgets the suspension of `key` and of every key it covers.
    pub fn resume(&mut self, key: &str) {
        self.until.retain(|k, _| !covers(key, k));
    }

    /// Until when a new queue `key` starts suspended: the latest end of the suspensions in
    /// force for `key` itself or for the key it is a pool's source of.
    pub fn for_new_queue(&self, key: &str, now: Instant) -> Option<Instant> {
        if self.until.is_empty() {
            return None;
        }
        let key = key.to_ascii_lowercase();
        let (base, _) = split_pooled(&key);
        [self.until.get(&key), self.until.get(base)]
            .into_iter()
            .flatten()
            .copied()
            .filter(|t| *t > now)
            .max()
    }

    /// Forgets the suspensions that ended.
    pub fn prune(&mut self, now: Instant) {
        self.until.retain(|_, t| *t > now);
    }

    /// Suspensions remembered.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// True when none is remembered.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_suspension_covers_the_pool_queues_made_later() {
        let now = Instant::now();
        let hour = now + Duration::from_secs(3600);
        let mut s = Suspensions::default();
        assert_eq!(s.for_new_queue("route:a.test@src1", now), None);
        s.suspend("Route:A.test", hour, now);
        assert_eq!(s.for_new_queue("route:a.test@src1", now), Some(hour));
        assert_eq!(s.for_new_queue("route:a.test@SRC2", now), Some(hour));
        assert_eq!(s.for_new_queue("route:a.test", now), Some(hour));
        assert_eq!(s.for_new_queue("route:b.test@src1", now), None);
        assert_eq!(s.for_new_queue("route:a.test.example@src1", now), None);
        // A longer suspension of one source wins for that source.
        let day = now + Duration::from_secs(86_400);
        s.suspend("route:a.test@src1", day, now);
        assert_eq!(s.for_new_queue("route:a.test@src1", now), Some(day));
        assert_eq!(s.for_new_queue("route:a.test@src2", now), Some(hour));
        // Ended suspensions apply to nothing and are pruned.
        assert_eq!(
            s.for_new_queue("route:a.test@src2", hour + Duration::from_secs(1)),
            None
        );
        s.prune(hour + Duration::from_secs(1));
        assert_eq!(s.len(), 1);
        // Resuming the key resumes its sources too.
        s.resume("route:a.test");
        assert!(s.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let now = Instant::now();
        let mut s = Suspensions::default();
        for i in 0..MAX_SUSPENSIONS + 10 {
            let until = now + Duration::from_secs(60 + i as u64);
            s.suspend(&format!("route:d{i}.test"), until, now);
        }
        assert_eq!(s.len(), MAX_SUSPENSIONS);
        // The ones ending soonest gave way.
        assert_eq!(s.for_new_queue("route:d0.test", now), None);
        assert!(
            s.for_new_queue(&format!("route:d{}.test", MAX_SUSPENSIONS + 9), now)
                .is_some()
        );
    }
}
