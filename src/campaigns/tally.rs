//! A shard's counts since it last handed them to the host ([`Tally`]).
//!
//! What it does: counts recipients by campaign, tenant, provider, source and From domain as
//! the shard's queue takes and ends them, in a table of its own (no lock, no atomic), and hands
//! it to the host's [`Campaigns`] once a second ([`Tally::flush`]).
//!
//! What it does not do: no windows, no thresholds (the host's), no event log.
//!
//! Invariants: lives on one shard (`RefCell`, never borrowed across an `.await`); at most
//! [`MAX_NAMES`] names per kind between two flushes (more are counted as `other`).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::SystemTime;

use super::counts::{Counts, Dim};
use super::host::{Campaigns, Delta};
use super::pauses::Pause;
use super::table::OTHER;

/// The most names per kind a shard keeps between two flushes.
pub const MAX_NAMES: usize = 10_000;

/// See the module header.
#[derive(Debug)]
pub struct Tally {
    delta: RefCell<Delta>,
    host: Arc<Campaigns>,
}

impl Tally {
    /// A shard's tally for `host`.
    pub fn new(host: Arc<Campaigns>) -> Tally {
        Tally {
            delta: RefCell::new(Default::default()),
            host,
        }
    }

    /// The host's state.
    pub fn host(&self) -> &Arc<Campaigns> {
        &self.host
    }

    /// Changes the counts of `name` (kind `dim`) with `f`.
    pub fn count(&self, dim: Dim, name: &str, f: impl FnOnce(&mut Counts)) {
        let mut delta = self.delta.borrow_mut();
        let map = &mut delta[dim.index()];
        if let Some(c) = map.get_mut(name) {
            f(c);
            return;
        }
        let key = match map.len() < MAX_NAMES {
            true => name,
            false => OTHER,
        };
        f(map.entry(key.to_owned()).or_default());
    }

    /// Hands the counts to the host; returns what a threshold paused because of them.
    pub fn flush(&self, now: SystemTime) -> Vec<Pause> {
        let mut delta = std::mem::take(&mut *self.delta.borrow_mut());
        if delta.iter().all(|m| m.is_empty()) {
            return Vec::new();
        }
        let paused = self.host.merge(&mut delta, now);
        // The maps keep their capacity for the next second.
        let mut mine = self.delta.borrow_mut();
        for (i, m) in delta.into_iter().enumerate() {
            if mine[i].is_empty() {
                mine[i] = m;
            }
        }
        paused
    }
}
