//! Recipient domain names shared by the jobs of one shard.
//!
//! What it does: hands out one reference-counted copy of each domain name, so that the jobs
//! of many messages to one domain share its name instead of each holding an allocation of its
//! own (a newsletter queue holds a job per recipient domain and message: with a million
//! deferred recipients, the names were a tenth of the queue's memory).
//!
//! What it does not do: no normalisation (callers pass names as routing uses them), no
//! lookups by anything but the name.
//!
//! Invariants: single-threaded (`Rc`); bounded: when the table reaches its sweep mark, names
//! that no job holds any more are dropped, and the mark becomes twice what is left (at least
//! [`MIN_SWEEP`]), so the table never holds more than twice the names in use at its last sweep
//! (or [`MIN_SWEEP`]), and the sweeps cost O(1) per name handed out.

use std::collections::HashSet;
use std::rc::Rc;

/// The table is not swept below this many names.
const MIN_SWEEP: usize = 1024;

/// See the module header.
#[derive(Debug)]
pub struct DomainNames {
    names: HashSet<Rc<str>>,
    sweep_at: usize,
}

impl Default for DomainNames {
    fn default() -> Self {
        DomainNames {
            names: HashSet::new(),
            sweep_at: MIN_SWEEP,
        }
    }
}

impl DomainNames {
    /// The shared copy of `name`.
    pub fn get(&mut self, name: &str) -> Rc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        if self.names.len() >= self.sweep_at {
            self.names.retain(|n| Rc::strong_count(n) > 1);
            self.sweep_at = (self.names.len() * 2).max(MIN_SWEEP);
        }
        let n: Rc<str> = Rc::from(name);
        self.names.insert(n.clone());
        n
    }

    /// Names in the table (some may no longer be in use).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_name() {
        let mut d = DomainNames::default();
        let a = d.get("example.com");
        let b = d.get("example.com");
        assert!(Rc::ptr_eq(&a, &b));
        assert_eq!(&*a, "example.com");
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn names_no_job_holds_are_swept() {
        let mut d = DomainNames::default();
        let kept: Vec<Rc<str>> = (0..10).map(|i| d.get(&format!("kept{i}.test"))).collect();
        for i in 0..MIN_SWEEP * 4 {
            drop(d.get(&format!("gone{i}.test")));
            assert!(d.len() <= MIN_SWEEP + 1, "the table grew to {}", d.len());
        }
        for (i, k) in kept.iter().enumerate() {
            assert!(Rc::ptr_eq(k, &d.get(&format!("kept{i}.test"))));
        }
    }
}
