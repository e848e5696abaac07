//! The list's writer: one thread that owns the log and is the only one to change the table.
//!
//! What it does: takes requests from a bounded channel; writes every change waiting (up to
//! [`BATCH`] requests) as one append and one `fdatasync` (group commit), then applies them to
//! the table, then answers; serves pages of the live entries; drops expired entries from the
//! table every [`PURGE_EVERY`]; compacts the log when it has grown past its bound.
//!
//! What it does not do: no event log (the shard that asked writes the event), no policy about
//! who may change the list.
//!
//! Invariants: a change is visible in the table, and answered, only after the `fdatasync`
//! that covers it has returned; a failed append changes nothing and every change of its batch
//! gets the error; a [`Request::Stop`] is answered after everything sent before it.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_channel::oneshot;

use super::address::Keyer;
use super::log::{Log, Page};
use super::record::{self, Entry, Op};
use super::table::{Meta, Table};

/// The most requests written with one `fdatasync`.
pub const BATCH: usize = 1024;
/// How often expired entries leave the table.
pub const PURGE_EVERY: Duration = Duration::from_secs(60);

/// What a change did: whether the address was listed before it.
pub type Outcome = Result<Vec<bool>, String>;

/// A request to the writer.
pub enum Request {
    /// Apply these changes; the answer says, per change, whether the address was listed.
    Write {
        /// The changes, applied in order.
        entries: Vec<Entry>,
        /// Where the answer goes (None: nobody waits).
        done: Option<oneshot::Sender<Outcome>>,
    },
    /// A page of the live entries from `from` of log generation `generation`.
    Page {
        /// The log generation the cursor belongs to (None: start from the beginning).
        cursor: Option<(u64, u64)>,
        /// At most this many entries.
        limit: usize,
        /// Only entries whose address contains this.
        contains: String,
        /// Where the answer goes: the page and its generation.
        done: oneshot::Sender<Result<(Page, u64), String>>,
    },
    /// Answer when everything before has been done; then stop.
    Stop(Sender<()>),
}

/// What the writer owns.
pub struct Writer {
    /// The log file.
    pub log: Log,
    /// The table every shard reads.
    pub table: Arc<Table>,
    /// The keys.
    pub keyer: Keyer,
    /// Compact past this size (and twice the size after the last compaction).
    pub compact_size: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Writer {
    /// Serves requests until the channel closes or a stop.
    pub fn run(mut self, rx: Receiver<Request>) {
        let mut purged = Instant::now();
        loop {
            if purged.elapsed() >= PURGE_EVERY {
                let now = now_secs();
                self.table.remove_where(|m| m.expired(now));
                purged = Instant::now();
            }
            let first = match rx.recv_timeout(PURGE_EVERY) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut writes = Vec::new();
            let mut stop = None;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Write { entries, done } => writes.push((entries, done)),
                    Request::Page {
                        cursor,
                        limit,
                        contains,
                        done,
                    } => {
                        // Changes received before the page are in it.
                        self.write(std::mem::take(&mut writes));
                        let _ = done.send(self.page(cursor, limit, &contains));
                    }
                    Request::Stop(ack) => {
                        stop = Some(ack);
                        break;
                    }
                }
                if writes.len() < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.write(writes);
            if let Some(ack) = stop {
                let _ = ack.send(());
                return;
            }
        }
    }

    /// One append and sync for every change of `writes`, then the table, then the answers.
    fn write(&mut self, writes: Vec<(Vec<Entry>, Option<oneshot::Sender<Outcome>>)>) {
        if writes.is_empty() {
            return;
        }
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for (entries, _) in &writes {
            for e in entries {
                offsets.push(buf.len() as u64);
                record::encode(e, &mut buf);
            }
        }
        let now = now_secs();
        if self.log.len() + buf.len() as u64 > Meta::MAX_OFFSET {
            self.compact(now);
        }
        let appended = match self.log.len() + buf.len() as u64 > Meta::MAX_OFFSET {
            true => Err("the suppression log is full (8 GiB of live entries)".to_owned()),
            false => self.log.append(&buf).map_err(|e| e.to_string()),
        };
        let base = match appended {
            Ok(base) => base,
            Err(e) => {
                tracing::warn!(error = %e, "suppression list: a change was not written");
                for (_, done) in writes {
                    if let Some(done) = done {
                        let _ = done.send(Err(e.clone()));
                    }
                }
                return;
            }
        };
        let mut offsets = offsets.into_iter();
        for (entries, done) in writes {
            let mut was = Vec::with_capacity(entries.len());
            for e in &entries {
                let offset = base + offsets.next().unwrap_or(0);
                let key = self.keyer.key(&e.tenant, &e.address);
                let listed = match e.op {
                    Op::Add => {
                        let meta = Meta::new(e.kind as u8, e.expires, offset);
                        !self.table.insert(key, meta)
                    }
                    Op::Remove => self.table.remove(key).is_some(),
                };
                was.push(listed);
            }
            if let Some(done) = done {
                let _ = done.send(Ok(was));
            }
        }
        if self.log.len() > self.compact_size.max(2 * self.log.compacted_len) {
            self.compact(now);
        }
    }

    fn compact(&mut self, now: u64) {
        let before = self.log.len();
        match self.log.compact(&self.table, &self.keyer, now) {
            Ok(()) => tracing::info!(
                before,
                after = self.log.len(),
                entries = self.table.len(),
                "suppression log compacted"
            ),
            Err(e) => tracing::warn!(error = %e, "suppression log compaction failed"),
        }
    }

    fn page(
        &self,
        cursor: Option<(u64, u64)>,
        limit: usize,
        contains: &str,
    ) -> Result<(Page, u64), String> {
        let from = match cursor {
            None => 0,
            Some((generation, from)) if generation == self.log.generation => from,
            Some(_) => {
                return Err("the list was compacted since the previous page: start again".into());
            }
        };
        let contains = contains.to_lowercase();
        self.log
            .page((&self.table, &self.keyer), from, limit, now_secs(), |e| {
                contains.is_empty() || e.address.contains(&contains)
            })
            .map(|p| (p, self.log.generation))
            .map_err(|e| e.to_string())
    }
}
