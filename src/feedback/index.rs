//! The Message-ID index: which queued message (and label pair) carried a `Message-ID`, for
//! reports that come back without a VERP address (a feedback loop that quotes the message).
//!
//! What it does: [`SentIndex`] maps a hash of a Message-ID to the queue id and label pair of
//! the last message accepted with it, for the last `max` messages (the oldest is forgotten
//! first). Each shard adds through its own [`ShardIndex`], which gathers entries and hands
//! them over [`BATCH`] at a time (or at the shard's next chore, once a second), so that the
//! host's mutex is taken once per batch, never per message.
//!
//! What it does not do: no persistence (after a restart only VERP addresses match the mail
//! sent before it), no parsing of messages.
//!
//! Invariants: memory is bounded by `max` entries (about 40 bytes each); a Message-ID is
//! compared without its angle brackets and surrounding space, case-sensitively as RFC 5322
//! leaves it.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

/// Entries a shard gathers before it hands them to the host.
pub const BATCH: usize = 128;

/// See the module header.
pub struct SentIndex {
    inner: Mutex<Inner>,
    hasher: RandomState,
    max: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<u64, (u64, u32)>,
    order: VecDeque<u64>,
}

/// One entry: the Message-ID's hash, the queue id, the label pair.
type Entry = (u64, u64, u32);

impl SentIndex {
    /// An index of at most `max` messages.
    pub fn new(max: usize) -> SentIndex {
        SentIndex {
            inner: Mutex::new(Inner::default()),
            hasher: RandomState::new(),
            max,
        }
    }

    /// The key of `message_id`.
    pub fn key(&self, message_id: &str) -> u64 {
        let id = message_id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        self.hasher.hash_one(id)
    }

    fn add(&self, batch: &mut Vec<Entry>) {
        if self.max == 0 {
            batch.clear();
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (key, id, labels) in batch.drain(..) {
            if inner.map.insert(key, (id, labels)).is_none() {
                inner.order.push_back(key);
            }
            while inner.order.len() > self.max {
                if let Some(old) = inner.order.pop_front() {
                    inner.map.remove(&old);
                }
            }
        }
    }

    /// The queue id and label pair of the message with `message_id`, if it is remembered.
    pub fn get(&self, message_id: &str) -> Option<(u64, u32)> {
        let key = self.key(message_id);
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.map.get(&key).copied()
    }

    /// Whether the index is turned off (`feedback.message_id_index = 0`).
    pub fn is_off(&self) -> bool {
        self.max == 0
    }

    /// Messages remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.map.len())
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A shard's way into the index (see the module header).
pub struct ShardIndex {
    host: Arc<SentIndex>,
    pending: RefCell<Vec<Entry>>,
}

impl ShardIndex {
    /// A shard's way into `host`.
    pub fn new(host: Arc<SentIndex>) -> ShardIndex {
        ShardIndex {
            host,
            pending: RefCell::new(Vec::new()),
        }
    }

    /// The host's index.
    pub fn host(&self) -> &Arc<SentIndex> {
        &self.host
    }

    /// Remembers that message `queue_id` (labels `labels`) carried `message_id`.
    pub fn add(&self, message_id: &str, queue_id: u64, labels: u32) {
        if self.host.max == 0 || message_id.is_empty() {
            return;
        }
        let key = self.host.key(message_id);
        let mut pending = self.pending.borrow_mut();
        pending.push((key, queue_id, labels));
        if pending.len() >= BATCH {
            self.host.add(&mut pending);
        }
    }

    /// Hands what was gathered to the host (the shard's chore, once a second).
    pub fn flush(&self) {
        let mut pending = self.pending.borrow_mut();
        if !pending.is_empty() {
            self.host.add(&mut pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_max_messages() {
        let host = Arc::new(SentIndex::new(2));
        let shard = ShardIndex::new(host.clone());
        shard.add("<a@x>", 1, 0);
        assert_eq!(host.get("a@x"), None, "not handed over yet");
        shard.flush();
        assert_eq!(host.get(" <a@x> "), Some((1, 0)));
        shard.add("b@x", 2, 5);
        shard.add("c@x", 3, 0);
        shard.flush();
        assert_eq!(host.get("a@x"), None);
        assert_eq!(host.get("<b@x>"), Some((2, 5)));
        assert_eq!(host.get("c@x"), Some((3, 0)));
        assert_eq!(host.len(), 2);
        for i in 0..BATCH as u64 {
            shard.add(&format!("m{i}@x"), 10 + i, 0);
        }
        assert_eq!(host.len(), 2, "a full batch is handed over at once");
        let off = SentIndex::new(0);
        ShardIndex::new(Arc::new(off)).add("a@x", 1, 0);
    }
}
