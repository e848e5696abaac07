//! The Message-ID index: which queued message (and label pair) carried a `Message-ID`, for
//! reports that come back without a VERP address (a feedback loop that quotes the message).
//!
//! What it does: [`SentIndex`] maps a hash of a Message-ID to the queue id, label pair and
//! (for a message with one recipient) a hash of the recipient of the last message accepted
//! with it, for the last `max` messages (the oldest is forgotten first), so that a report
//! naming another recipient than the message had is not taken for it. Each shard adds through its own [`ShardIndex`], which gathers entries and hands
//! them over [`BATCH`] at a time (or at the shard's next chore, once a second), so that the
//! host's mutex is taken once per batch, never per message.
//!
//! Opened with a directory ([`SentIndex::open`]), it keeps its entries on disk too
//! (`index_file`) and reads them back at start, so that reports about mail sent before a
//! restart still match; the Message-ID's hash is seeded with a seed kept in those files.
//!
//! What it does not do: no parsing of messages, no sync of its files (a crash loses at most
//! the last second of entries).
//!
//! Invariants: memory is bounded by `max` entries (32 bytes each in the map and the order
//! list, plus the hash table's spare room); a Message-ID is compared without its angle
//! brackets and surrounding space, case-sensitively as RFC 5322 leaves it.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::index_file::IndexFiles;

/// Entries a shard gathers before it hands them to the host.
pub const BATCH: usize = 128;

/// See the module header.
pub struct SentIndex {
    inner: Mutex<Inner>,
    seed: u64,
    max: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<u64, Sent>,
    order: VecDeque<u64>,
    files: Option<IndexFiles>,
}

impl Inner {
    fn insert(&mut self, key: u64, sent: Sent, max: usize) {
        if self.map.insert(key, sent).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > max {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

/// What the index knows of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Its queue id.
    pub queue_id: u64,
    /// Its label pair (0: none).
    pub labels: u32,
    /// [`recipient_hash`] of its one recipient; 0 when it had several.
    pub recipient: u32,
}

impl Sent {
    /// Whether `address` may be a recipient of the message.
    pub fn had(&self, address: &str) -> bool {
        self.recipient == 0 || self.recipient == recipient_hash(address)
    }
}

/// A hash of a recipient address (compared without case), never 0.
pub fn recipient_hash(address: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .bytes()
    {
        h ^= u32::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0193);
    }
    h | 1
}

/// One entry: the Message-ID's hash and what is known of the message.
type Entry = (u64, Sent);

impl SentIndex {
    /// An index of at most `max` messages, in memory only.
    pub fn new(max: usize) -> SentIndex {
        SentIndex {
            inner: Mutex::new(Inner::default()),
            seed: RandomState::new().hash_one(0u64),
            max,
        }
    }

    /// An index of at most `max` messages kept in `dir` too, with what it held before; in
    /// memory only (and a warning) when its files cannot be opened.
    pub fn open(dir: &Path, max: usize) -> SentIndex {
        let mut index = SentIndex::new(max);
        if max == 0 {
            return index;
        }
        let inner = index.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut load = |key, sent| inner.insert(key, sent, max);
        match IndexFiles::open(dir, max, index.seed, &mut load) {
            Ok(files) => {
                index.seed = files.seed();
                let inner = index.inner.get_mut().unwrap_or_else(|e| e.into_inner());
                tracing::info!(messages = inner.map.len(), dir = %dir.display(), "Message-ID index loaded");
                inner.files = Some(files);
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "Message-ID index kept in memory only: its files cannot be opened")
            }
        }
        index
    }

    /// The key of `message_id`.
    pub fn key(&self, message_id: &str) -> u64 {
        let id = message_id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        xxhash_rust::xxh3::xxh3_64_with_seed(id.as_bytes(), self.seed)
    }

    fn add(&self, batch: &mut Vec<Entry>) {
        if self.max == 0 {
            batch.clear();
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(files) = &mut inner.files
            && let Err(e) = files.append(batch)
        {
            tracing::warn!(error = %e, "Message-ID index: its files cannot be written; kept in memory only from now on");
            inner.files = None;
        }
        for (key, sent) in batch.drain(..) {
            inner.insert(key, sent, self.max);
        }
    }

    /// What is known of the message with `message_id`, if it is remembered.
    pub fn get(&self, message_id: &str) -> Option<Sent> {
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

    /// Remembers that message `sent` carried `message_id`.
    pub fn add(&self, message_id: &str, sent: Sent) {
        if self.host.max == 0 || message_id.is_empty() {
            return;
        }
        let key = self.host.key(message_id);
        let mut pending = self.pending.borrow_mut();
        pending.push((key, sent));
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

    fn sent(queue_id: u64, labels: u32) -> Sent {
        Sent {
            queue_id,
            labels,
            recipient: 0,
        }
    }

    #[test]
    fn remembers_the_last_max_messages() {
        let host = Arc::new(SentIndex::new(2));
        let shard = ShardIndex::new(host.clone());
        shard.add("<a@x>", sent(1, 0));
        assert_eq!(host.get("a@x"), None, "not handed over yet");
        shard.flush();
        assert_eq!(host.get(" <a@x> "), Some(sent(1, 0)));
        shard.add("b@x", sent(2, 5));
        shard.add("c@x", sent(3, 0));
        shard.flush();
        assert_eq!(host.get("a@x"), None);
        assert_eq!(host.get("<b@x>"), Some(sent(2, 5)));
        assert_eq!(host.get("c@x"), Some(sent(3, 0)));
        assert_eq!(host.len(), 2);
        for i in 0..BATCH as u64 {
            shard.add(&format!("m{i}@x"), sent(10 + i, 0));
        }
        assert_eq!(host.len(), 2, "a full batch is handed over at once");
        let off = SentIndex::new(0);
        ShardIndex::new(Arc::new(off)).add("a@x", sent(1, 0));
    }

    #[test]
    fn a_sole_recipient_is_checked_without_case() {
        let one = Sent {
            recipient: recipient_hash("Ann@Example.org"),
            ..sent(1, 0)
        };
        assert!(one.had("<ann@example.org>"));
        assert!(!one.had("bob@example.org"));
        assert!(sent(1, 0).had("anyone@example.org"));
    }
}
