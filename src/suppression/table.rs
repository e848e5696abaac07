//! The in-memory suppression table: 64-bit keys and a 64-bit [`Meta`] per entry in one open
//! addressing hash table of atomics, read by every shard without a lock.
//!
//! What it does: answers "is this key listed, and how" ([`Table::get`]) from any thread with a
//! few atomic loads; inserts, updates and removes entries (linear probing, tombstones), and
//! grows or cleans itself by building a new array and publishing it whole ([`arc_swap`]).
//!
//! What it does not do: no addresses, reasons or files (the log keeps those); no expiry
//! decisions (a [`Meta`] carries the expiry, the caller compares it with the clock).
//!
//! Invariants: 16 bytes per slot (key and meta side by side, one cache line holds four); the
//! load (entries and tombstones) never passes 3/4, and a rebuild leaves it at 1/2, so memory is
//! 21 to 32 bytes per entry and a probe always meets an empty slot; mutations are serialised
//! by one mutex (only the list's writer thread mutates); a reader sees an entry either before
//! or after a mutation, never a key with another entry's meta.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;

const EMPTY: u64 = 0;
const TOMBSTONE: u64 = 1;
const MIN_SLOTS: usize = 64;

/// What the table keeps about an entry: its kind, its expiry and where its record is.
///
/// Bits 0-31: expiry in unix seconds (0 = never); bits 32-60: the record's offset in the log
/// divided by 16; bits 61-63: the kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta(pub u64);

impl Meta {
    /// The largest record offset a meta can hold (8 GiB).
    pub const MAX_OFFSET: u64 = ((1 << 29) - 1) * 16;

    /// A meta; `offset` must be a multiple of 16 and at most [`Meta::MAX_OFFSET`], `expires`
    /// (unix seconds, 0 = never) is capped at `u32::MAX`.
    pub fn new(kind: u8, expires: u64, offset: u64) -> Meta {
        let expires = expires.min(u64::from(u32::MAX));
        let pos = (offset / 16).min((1 << 29) - 1);
        Meta(expires | (pos << 32) | (u64::from(kind & 7) << 61))
    }
    /// The kind (see `record::Kind`).
    pub fn kind(self) -> u8 {
        (self.0 >> 61) as u8
    }
    /// Expiry in unix seconds, 0 = never.
    pub fn expires(self) -> u64 {
        self.0 & 0xffff_ffff
    }
    /// The record's offset in the log.
    pub fn offset(self) -> u64 {
        ((self.0 >> 32) & ((1 << 29) - 1)) * 16
    }
    /// Whether the entry has expired at `now` (unix seconds).
    pub fn expired(self, now: u64) -> bool {
        self.expires() != 0 && self.expires() <= now
    }
}

struct Slots {
    /// Slot `i` is words `2i` (key) and `2i + 1` (meta).
    words: Words,
}

impl Slots {
    fn new(slots: usize) -> Slots {
        Slots {
            words: Words::zeroed(2 * slots),
        }
    }
    fn len(&self) -> usize {
        self.words.len() / 2
    }
    /// The first slot to probe: the key scaled to the table (no division).
    fn home(&self, key: u64) -> usize {
        ((u128::from(key) * self.len() as u128) >> 64) as usize
    }
    fn key(&self, i: usize) -> &AtomicU64 {
        &self.words[2 * i]
    }
    fn meta(&self, i: usize) -> &AtomicU64 {
        &self.words[2 * i + 1]
    }
    /// The slot holding `key`, or the empty slot where the probe ended and the first
    /// tombstone met on the way.
    fn find(&self, key: u64) -> Probe {
        let n = self.len();
        let mut i = self.home(key);
        let mut tomb = None;
        for _ in 0..n {
            match self.key(i).load(Ordering::Acquire) {
                k if k == key => return Probe::Found(i),
                EMPTY => return Probe::Vacant { empty: i, tomb },
                TOMBSTONE if tomb.is_none() => tomb = Some(i),
                _ => {}
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        Probe::Full { tomb }
    }
}

enum Probe {
    Found(usize),
    Vacant { empty: usize, tomb: Option<usize> },
    Full { tomb: Option<usize> },
}

/// Writers' bookkeeping.
#[derive(Default)]
struct Counts {
    live: usize,
    tombstones: usize,
}

/// See the module header.
pub struct Table {
    slots: ArcSwap<Slots>,
    write: Mutex<Counts>,
    live: AtomicUsize,
}

impl Default for Table {
    fn default() -> Self {
        Table::new()
    }
}

/// Keys 0 and 1 mark empty and deleted slots: hashes that fall on them move aside.
fn fix(key: u64) -> u64 {
    if key < 2 { key + 2 } else { key }
}

impl Table {
    /// An empty table.
    pub fn new() -> Table {
        Table {
            slots: ArcSwap::from_pointee(Slots::new(MIN_SLOTS)),
            write: Mutex::new(Counts::default()),
            live: AtomicUsize::new(0),
        }
    }

    /// The entry of `key`, if listed.
    pub fn get(&self, key: u64) -> Option<Meta> {
        let key = fix(key);
        let s = self.slots.load();
        let Probe::Found(i) = s.find(key) else {
            return None;
        };
        let meta = s.meta(i).load(Ordering::Acquire);
        // Removed (and the slot perhaps reused) between the two loads: not listed any more.
        (s.key(i).load(Ordering::Acquire) == key).then_some(Meta(meta))
    }

    /// Lists `key` with `meta` (replacing what it had); true if it was not listed.
    pub fn insert(&self, key: u64, meta: Meta) -> bool {
        let key = fix(key);
        let mut c = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let s = self.slots.load_full();
        // (slot, reuses a tombstone); None: no room (cannot happen below the load bound).
        let (slot, reused) = match s.find(key) {
            Probe::Found(i) => {
                s.meta(i).store(meta.0, Ordering::Release);
                return false;
            }
            Probe::Vacant { tomb: Some(t), .. } | Probe::Full { tomb: Some(t) } => (Some(t), true),
            Probe::Vacant { empty, tomb: None } => (Some(empty), false),
            Probe::Full { tomb: None } => (None, false),
        };
        let crowded = !reused && (c.live + c.tombstones + 1) * 4 > s.len() * 3;
        if let (Some(slot), false) = (slot, crowded) {
            s.meta(slot).store(meta.0, Ordering::Release);
            s.key(slot).store(key, Ordering::Release);
            if reused {
                c.tombstones -= 1;
            }
        } else {
            // Grow (or clean out tombstones): the new array is published whole.
            let s = Arc::new(rebuilt(&s, c.live + 1));
            put(&s, key, meta);
            self.slots.store(s);
            c.tombstones = 0;
        }
        c.live += 1;
        self.live.store(c.live, Ordering::Relaxed);
        true
    }

    /// Replaces the meta of `key` if it is listed.
    pub fn update(&self, key: u64, meta: Meta) {
        let key = fix(key);
        let _c = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let s = self.slots.load();
        if let Probe::Found(i) = s.find(key) {
            s.meta(i).store(meta.0, Ordering::Release);
        }
    }

    /// Unlists `key`; its meta if it was listed.
    pub fn remove(&self, key: u64) -> Option<Meta> {
        let key = fix(key);
        let mut c = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let s = self.slots.load();
        let Probe::Found(i) = s.find(key) else {
            return None;
        };
        let meta = Meta(s.meta(i).load(Ordering::Acquire));
        s.key(i).store(TOMBSTONE, Ordering::Release);
        c.live -= 1;
        c.tombstones += 1;
        self.live.store(c.live, Ordering::Relaxed);
        Some(meta)
    }

    /// Unlists every entry for which `drop` is true; how many.
    pub fn remove_where(&self, mut drop: impl FnMut(Meta) -> bool) -> usize {
        let mut c = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let s = self.slots.load();
        let mut n = 0;
        for i in 0..s.len() {
            let k = s.key(i).load(Ordering::Acquire);
            if k > TOMBSTONE && drop(Meta(s.meta(i).load(Ordering::Acquire))) {
                s.key(i).store(TOMBSTONE, Ordering::Release);
                n += 1;
            }
        }
        c.live -= n;
        c.tombstones += n;
        self.live.store(c.live, Ordering::Relaxed);
        n
    }

    /// Entries listed.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory the table holds (its slot array and itself).
    pub fn memory_bytes(&self) -> usize {
        self.slots.load().words.len() * 8 + std::mem::size_of::<Table>()
    }
}

/// An array of zeroed atomics in its own anonymous mapping, asked to be backed by huge pages
/// (`MADV_HUGEPAGE`): a check touches one random slot of a table of hundreds of megabytes, and
/// with 4 KiB pages that costs a TLB miss on top of the cache miss.
struct Words {
    ptr: std::ptr::NonNull<AtomicU64>,
    len: usize,
}

// SAFETY: the mapping is owned by this value and only reached through `&[AtomicU64]`, whose
// elements are `Sync`.
unsafe impl Send for Words {}
// SAFETY: as above.
unsafe impl Sync for Words {}

impl Words {
    fn zeroed(len: usize) -> Words {
        let bytes = (len * 8).max(1);
        // SAFETY: a fresh private anonymous mapping; the kernel returns it zeroed (all-zero
        // bytes are valid `AtomicU64`s) and page-aligned.
        let ptr = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                std::alloc::handle_alloc_error(
                    std::alloc::Layout::array::<AtomicU64>(len)
                        .unwrap_or(std::alloc::Layout::new::<u64>()),
                );
            }
            // Advice only: without huge pages the table still works.
            libc::madvise(p, bytes, libc::MADV_HUGEPAGE);
            p.cast::<AtomicU64>()
        };
        Words {
            ptr: std::ptr::NonNull::new(ptr).unwrap_or(std::ptr::NonNull::dangling()),
            len,
        }
    }
}

impl std::ops::Deref for Words {
    type Target = [AtomicU64];
    fn deref(&self) -> &[AtomicU64] {
        // SAFETY: `len` atomics, mapped for the life of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Words {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `zeroed`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), (self.len * 8).max(1)) };
    }
}

/// A new array for `live` entries (load 1/2) holding every entry of `old`.
fn rebuilt(old: &Slots, live: usize) -> Slots {
    let s = Slots::new((live * 2).max(MIN_SLOTS));
    for i in 0..old.len() {
        let k = old.key(i).load(Ordering::Acquire);
        if k > TOMBSTONE {
            put(&s, k, Meta(old.meta(i).load(Ordering::Acquire)));
        }
    }
    s
}

/// Puts a key not yet in `s` (not yet published) into its first empty slot.
fn put(s: &Slots, key: u64, meta: Meta) {
    if let Probe::Vacant { empty, .. } = s.find(key) {
        s.meta(empty).store(meta.0, Ordering::Relaxed);
        s.key(empty).store(key, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_and_grow() {
        let t = Table::new();
        for k in 0..10_000u64 {
            assert!(t.insert(
                k.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                Meta::new(1, k, k * 16)
            ));
        }
        assert_eq!(t.len(), 10_000);
        for k in 0..10_000u64 {
            let m = t.get(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).unwrap();
            assert_eq!((m.kind(), m.expires(), m.offset()), (1, k, k * 16));
        }
        assert!(t.get(12345).is_none());
        // Key 0 (the first one inserted) is updated in place.
        assert!(!t.insert(0, Meta::new(2, 0, 0)));
        assert_eq!(t.get(0).map(Meta::kind), Some(2));
        // Keys 0 and 1 are real keys too.
        assert!(t.insert(1, Meta::new(3, 0, 0)));
        assert_eq!(t.get(1).map(Meta::kind), Some(3));
        assert_eq!(t.remove(1).map(Meta::kind), Some(3));
        assert!(t.get(1).is_none());
        for k in 0..5_000u64 {
            assert!(t.remove(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).is_some());
        }
        assert_eq!(t.len(), 5_000);
        // Churn through tombstones: the load bound holds and nothing is lost.
        for round in 0..20u64 {
            for k in 0..1_000u64 {
                let key = (round << 32) | k;
                t.insert(key, Meta::new(1, 0, 0));
                t.remove(key);
            }
        }
        assert_eq!(t.len(), 5_000);
        for k in 5_000..10_000u64 {
            assert!(t.get(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).is_some());
        }
        assert!(t.memory_bytes() <= 32 * 10_000 + 1024);
        assert_eq!(t.remove_where(|m| m.expires() >= 9_000), 1_000);
        assert_eq!(t.len(), 4_000);
    }

    #[test]
    fn meta_fields_round_trip_and_saturate() {
        let m = Meta::new(5, 1_700_000_000, Meta::MAX_OFFSET);
        assert_eq!(
            (m.kind(), m.expires(), m.offset()),
            (5, 1_700_000_000, Meta::MAX_OFFSET)
        );
        assert_eq!(Meta::new(1, u64::MAX, 0).expires(), u64::from(u32::MAX));
        assert!(m.expired(1_700_000_000) && !m.expired(1_699_999_999));
        assert!(!Meta::new(1, 0, 0).expired(u64::MAX));
    }

    #[test]
    fn readers_on_other_threads_see_entries_while_it_grows() {
        let t = Arc::new(Table::new());
        t.insert(42, Meta::new(1, 0, 0));
        let r = {
            let t = t.clone();
            std::thread::spawn(move || {
                for _ in 0..100_000 {
                    assert!(t.get(42).is_some());
                }
            })
        };
        for k in 100..50_000u64 {
            t.insert(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), Meta::new(1, 0, 0));
        }
        r.join().unwrap();
    }
}
