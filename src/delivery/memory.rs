//! The memory budget of one shard's queue.
//!
//! What it does: counts what queued mail costs in memory (bodies held, and an estimate of each
//! message's envelope and bookkeeping), says whether a new body may be held or must stay only
//! in the spool (read back when sent), says which held bodies to drop when envelopes need the
//! room, and publishes what the queue holds on the shard's [`MemoryGauge`] (with the "full"
//! flag that makes the server answer new mail with `452 4.3.1`).
//!
//! What it does not do: no I/O, no knowledge of messages beyond sizes and ids.
//!
//! Invariants: held bodies plus envelopes stay under [`BODY_SHARE`] of the budget (older held
//! bodies are dropped first to make room); "full" is set while envelopes alone reach
//! [`REFUSE_SHARE`] of the budget, so in a total delivery stall the queue's memory stays
//! under the budget while new mail is refused and nothing accepted is lost.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use crate::gauge::MemoryGauge;

/// Share of the budget that held bodies and envelopes may fill together.
pub const BODY_SHARE: f64 = 0.8;
/// Share of the budget at which envelopes alone make the server refuse new mail.
pub const REFUSE_SHARE: f64 = 0.9;

/// The bytes that held bodies and envelopes may fill together in a budget of `budget`.
pub fn body_share(budget: u64) -> u64 {
    (budget as f64 * BODY_SHARE) as u64
}

/// See the module header.
#[derive(Debug)]
pub struct Memory {
    budget: u64,
    bodies: Cell<u64>,
    meta: Cell<u64>,
    gauge: Rc<MemoryGauge>,
    /// Messages holding a body, oldest first: (id, size). May name messages gone since;
    /// compacted when such entries outnumber the live ones (see [`Memory::needs_compact`]).
    held: RefCell<VecDeque<(u64, u64)>>,
    /// Bodies held now.
    held_now: Cell<usize>,
}

impl Memory {
    /// A budget of `budget` bytes; what the queue holds is published on `gauge`, which the
    /// server reads.
    pub fn new(budget: u64, gauge: Rc<MemoryGauge>) -> Memory {
        Memory {
            budget,
            bodies: Cell::new(0),
            meta: Cell::new(0),
            gauge,
            held: RefCell::new(VecDeque::new()),
            held_now: Cell::new(0),
        }
    }

    /// Room for held bodies: their share of the budget less the envelopes and the mail being
    /// received (held bodies are a cache of the spool, and give way first).
    fn body_room(&self) -> u64 {
        body_share(self.budget)
            .saturating_sub(self.meta.get())
            .saturating_sub(self.gauge.receiving())
    }

    fn update(&self) {
        let refuse = self.meta.get() as f64 >= self.budget as f64 * REFUSE_SHARE;
        if refuse != self.gauge.queue_full() {
            if refuse {
                tracing::warn!(
                    budget = self.budget,
                    "queue memory budget reached: refusing new mail with 452 4.3.1"
                );
            } else {
                tracing::info!("queue memory back under budget: accepting mail again");
            }
        }
        self.gauge.set_queued(self.meta.get(), refuse);
    }

    /// Charges a new message's envelope; returns whether its body (`body` bytes) may be held.
    pub fn admit(&self, id: u64, meta: u64, body: u64) -> bool {
        self.meta.set(self.meta.get() + meta);
        self.update();
        let hold = self.bodies.get() + body <= self.body_room();
        if hold {
            self.hold(id, body);
        }
        hold
    }

    /// Charges the envelope of a message whose body stays in the spool.
    pub fn admit_envelope(&self, meta: u64) {
        self.meta.set(self.meta.get() + meta);
        self.update();
    }

    /// Records that message `id` now holds a body of `size` bytes.
    pub fn hold(&self, id: u64, size: u64) {
        self.bodies.set(self.bodies.get() + size);
        self.held_now.set(self.held_now.get() + 1);
        self.held.borrow_mut().push_back((id, size));
    }

    /// Whether a body read back may be kept (it fits without dropping another).
    pub fn may_hold(&self, size: u64) -> bool {
        self.bodies.get() + size <= self.body_room()
    }

    /// A held body was dropped (message gone, or evicted).
    pub fn drop_body(&self, size: u64) {
        self.bodies.set(self.bodies.get().saturating_sub(size));
        self.held_now.set(self.held_now.get().saturating_sub(1));
    }

    /// A message left the queue: its envelope is no longer charged.
    pub fn release_meta(&self, meta: u64) {
        self.meta.set(self.meta.get().saturating_sub(meta));
        self.update();
    }

    /// While held bodies exceed their room, the oldest holders to drop (the caller drops each
    /// one still held and calls [`Memory::drop_body`]; entries for messages gone are skipped
    /// by the caller).
    pub fn next_eviction(&self) -> Option<(u64, u64)> {
        if self.bodies.get() <= self.body_room() {
            return None;
        }
        self.held.borrow_mut().pop_front()
    }

    /// Bytes of bodies held.
    pub fn bodies(&self) -> u64 {
        self.bodies.get()
    }

    /// Bytes charged for envelopes.
    pub fn meta(&self) -> u64 {
        self.meta.get()
    }

    /// True when the list of holders has grown well past the bodies actually held (entries
    /// of messages delivered since): time for [`Memory::compact`].
    pub fn needs_compact(&self) -> bool {
        self.held.borrow().len() > 2 * self.held_now.get() + 64
    }

    /// Keeps only the entries of messages that still hold their body (one per message), so the
    /// list stays proportional to what is held however many messages pass through.
    pub fn compact(&self, still_held: impl Fn(u64) -> bool) {
        let mut seen = std::collections::HashSet::new();
        self.held
            .borrow_mut()
            .retain(|(id, _)| still_held(*id) && seen.insert(*id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_fit_under_their_share_and_envelopes_refuse_at_theirs() {
        let gauge = Rc::new(MemoryGauge::new(1000));
        let m = Memory::new(1000, gauge.clone());
        assert!(m.admit(1, 100, 500));
        assert!(!m.admit(2, 100, 300), "500 + 300 > 800 - 200");
        assert_eq!(m.bodies(), 500);
        assert!(m.next_eviction().is_none());
        // Envelopes grow: the held body must give way.
        for id in 3..9 {
            m.admit(id, 100, 0);
        }
        assert_eq!(m.meta(), 800);
        assert_eq!(m.next_eviction(), Some((1, 500)));
        m.drop_body(500);
        assert!(!gauge.queue_full());
        m.admit(9, 100, 0);
        assert!(gauge.queue_full(), "900 of envelopes refuses new mail");
        assert!(gauge.refuses_new());
        m.release_meta(200);
        assert!(!gauge.queue_full());
        assert!(!gauge.over(), "700 of envelopes and no body");
    }

    #[test]
    fn the_holder_list_stays_proportional_to_what_is_held() {
        let m = Memory::new(1 << 30, Rc::new(MemoryGauge::new(1 << 30)));
        let mut live = std::collections::HashSet::new();
        for id in 0..10_000u64 {
            assert!(m.admit(id, 10, 100));
            live.insert(id);
            if id >= 5 {
                // Delivered and forgotten: its body goes.
                live.remove(&(id - 5));
                m.drop_body(100);
                m.release_meta(10);
            }
            if m.needs_compact() {
                m.compact(|x| live.contains(&x));
            }
        }
        assert!(
            m.held.borrow().len() <= 2 * 5 + 64,
            "{}",
            m.held.borrow().len()
        );
        assert_eq!(m.bodies(), 500);
    }
}
