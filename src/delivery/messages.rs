//! The queue's message table: every message a shard has queued, with its held body and each
//! recipient's progress, within the shard's memory budget.
//!
//! What it does: takes a message in (holding its body when the budget has room, dropping the
//! oldest held bodies when envelopes need it), hands out its envelope and held body, holds a
//! body again when a connection had to read it back from the spool and it fits, and forgets a
//! message with what it cost.
//!
//! What it does not do: no I/O (a body not held is read from the spool by whoever sends it),
//! no decisions about recipients (the recorder changes their progress).
//!
//! Invariants: the memory budget is charged for every envelope in the table and every body
//! held, and released exactly once when the message is forgotten or the body dropped.

use std::collections::HashMap;
use std::rc::Rc;

use super::memory::Memory;
use super::message::{Message, Progress};

/// One queued message.
pub struct Entry {
    /// Its envelope (shared with the connections that send it).
    pub msg: Rc<Message>,
    /// Its body, when held in memory.
    pub body: Option<Rc<Vec<u8>>>,
    /// Each recipient's progress.
    pub progress: Progress,
}

/// See the module header.
pub struct Messages {
    map: HashMap<u64, Entry>,
    memory: Memory,
}

impl Messages {
    /// An empty table charged to `memory`.
    pub fn new(memory: Memory) -> Messages {
        Messages {
            map: HashMap::new(),
            memory,
        }
    }

    /// Takes a message in: `body` is the whole message when the caller has it (held if the
    /// budget has room), None when only the spool has it.
    pub fn insert(&mut self, msg: Rc<Message>, body: Option<Vec<u8>>, progress: Progress) {
        let id = msg.record.id;
        let body = match body {
            Some(b) => self
                .memory
                .admit(id, msg.meta, msg.size as u64)
                .then(|| Rc::new(b)),
            None => {
                self.memory.admit_envelope(msg.meta);
                None
            }
        };
        self.map.insert(
            id,
            Entry {
                msg,
                body,
                progress,
            },
        );
        // After the insert: the new message is one the eviction and compaction can see.
        self.evict();
    }

    /// A message.
    pub fn get(&self, id: u64) -> Option<&Entry> {
        self.map.get(&id)
    }

    /// A message, to record its recipients' progress.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Entry> {
        self.map.get_mut(&id)
    }

    /// Every message.
    pub fn values(&self) -> impl Iterator<Item = &Entry> {
        self.map.values()
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A body that was read back from the spool: held again when it fits the budget.
    pub fn read_back(&mut self, id: u64, body: Rc<Vec<u8>>) {
        let Some(e) = self.map.get_mut(&id) else {
            return;
        };
        if e.body.is_none() && self.memory.may_hold(e.msg.size as u64) {
            self.memory.hold(id, e.msg.size as u64);
            e.body = Some(body);
        }
    }

    /// Forgets a message whose recipients are all final, with what it cost in memory.
    pub fn forget(&mut self, id: u64) {
        if let Some(e) = self.map.remove(&id) {
            if e.body.is_some() {
                self.memory.drop_body(e.msg.size as u64);
            }
            self.memory.release_meta(e.msg.meta);
        }
    }

    /// Drops the oldest held bodies while bodies and envelopes exceed their share of the budget.
    fn evict(&mut self) {
        while let Some((id, size)) = self.memory.next_eviction() {
            if let Some(e) = self.map.get_mut(&id)
                && e.body.take().is_some()
            {
                self.memory.drop_body(size);
            }
        }
        if self.memory.needs_compact() {
            let map = &self.map;
            self.memory
                .compact(|id| map.get(&id).is_some_and(|e| e.body.is_some()));
        }
    }
}
