//! The list's writer: one thread that owns the log and is the only one to change the table.
//!
//! What it does: takes requests from a bounded channel; writes every change waiting (up to
//! [`BATCH`] requests) as one append and one `fdatasync` (group commit), then applies them to
//! the table, then answers; serves pages of the live entries; drops expired entries from the
//! table every [`PURGE_EVERY`]; compacts the log when it has grown past its bound. In a
//! cluster it also applies the changes other nodes made ([`Request::Apply`]: last writer wins
//! by the entry's time, and they are marked replicated in the log), hands this host's own
//! changes after the publish point to the publisher ([`Request::Outbox`]) and moves that
//! point when Redis has them ([`Request::Published`]); a compaction keeps every record after
//! the publish point, so no change is lost before it is published.
//!
//! What it does not do: no event log (the shard that asked writes the event), no policy about
//! who may change the list, no Redis.
//!
//! Invariants: a change is visible in the table, and answered, only after the `fdatasync`
//! that covers it has returned; a failed append changes nothing and every change of its batch
//! gets the error; a [`Request::Stop`] is answered after everything sent before it; a change
//! from another node replaces the entry here only if that entry is not newer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_channel::oneshot;

use super::address::Keyer;
use super::log::{Log, Page};
use super::outbox::Outbox;
use super::record::{self, Entry, Op};
use super::table::{Meta, Table};

/// The most requests written with one `fdatasync`.
pub const BATCH: usize = 1024;
/// The most removal times kept (past that they are forgotten, all at once).
pub const MAX_REMOVALS: usize = 1 << 16;
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
    /// Apply changes other nodes made (last writer wins by `at`); the answer is how many
    /// changed the list here.
    Apply {
        /// The changes, in the cluster's order, each with whether this node made it (its own
        /// change read back).
        entries: Vec<(Entry, bool)>,
        /// Where the answer goes.
        done: Sender<Result<usize, String>>,
    },
    /// The changes made here after the publish point (at most `limit`).
    Outbox {
        /// At most this many changes.
        limit: usize,
        /// Where the answer goes.
        done: Sender<Result<Backlog, String>>,
    },
    /// Redis has every change of a [`Backlog`]: the publish point moves to its end.
    Published {
        /// The log generation of the backlog.
        generation: u64,
        /// Its end.
        end: u64,
    },
    /// Redis does not know this host's changes (it lost its data): publish everything again
    /// from the start; answered once the publish point is saved there.
    Republish(Sender<()>),
    /// Answer when everything before has been done; then stop.
    Stop(Sender<()>),
}

/// Changes made here and not yet published, read from the log.
#[derive(Debug)]
pub struct Backlog {
    /// The changes, in log order.
    pub entries: Vec<Entry>,
    /// The log generation they were read from (a compaction since makes the answer stale).
    pub generation: u64,
    /// The offset after the last record read.
    pub end: u64,
    /// Records follow `end` (the read stopped at its bound).
    pub more: bool,
}

/// Who waits for a write.
enum Answer {
    /// An operator's or a bounce's change: whether each address was listed before.
    Listed(Option<oneshot::Sender<Outcome>>),
    /// Changes from other nodes: how many were written.
    Applied(Sender<Result<usize, String>>),
}

impl Answer {
    fn fail(self, e: &str) {
        match self {
            Answer::Listed(Some(done)) => {
                let _ = done.send(Err(e.to_owned()));
            }
            Answer::Listed(None) => {}
            Answer::Applied(done) => {
                let _ = done.send(Err(e.to_owned()));
            }
        }
    }
}

/// Changes waiting for the next append: (changes, from another node, who waits).
type Writes = Vec<(Vec<Entry>, bool, Answer)>;

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
    /// In a cluster: how far this host's changes are published.
    pub outbox: Option<Outbox>,
    /// When recently removed addresses were removed (by key), so that an older change from
    /// another node of a cluster does not list them again.
    pub removals: HashMap<u64, u64>,
}

/// What the list here holds for an address.
enum Here {
    /// This entry.
    Listed(Entry),
    /// Nothing: it was removed at this time.
    Removed(u64),
    /// Nothing, removed at a time not known (before the start, or forgotten).
    Unknown,
}

/// Whether two versions of an entry say the same.
fn same(a: &Entry, b: &Entry) -> bool {
    (a.op, a.kind, a.expires, &a.reason) == (b.op, b.kind, b.expires, &b.reason)
}

fn answer(done: Answer, was: Vec<bool>) {
    match done {
        Answer::Listed(Some(done)) => {
            let _ = done.send(Ok(was));
        }
        Answer::Listed(None) => {}
        Answer::Applied(done) => {
            let _ = done.send(Ok(was.len()));
        }
    }
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
            let mut writes: Writes = Vec::new();
            let mut stop = None;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Write { entries, done } => {
                        writes.push((entries, false, Answer::Listed(done)));
                    }
                    Request::Apply { entries, done } => {
                        // Decided against the table with everything before it applied.
                        self.write(std::mem::take(&mut writes));
                        match self.newer(entries) {
                            Ok(entries) => writes.push((entries, true, Answer::Applied(done))),
                            Err(e) => {
                                let _ = done.send(Err(e));
                            }
                        }
                    }
                    Request::Outbox { limit, done } => {
                        let _ = done.send(self.backlog(limit));
                    }
                    Request::Published { generation, end } => self.published(generation, end),
                    Request::Republish(done) => {
                        self.republish();
                        let _ = done.send(());
                    }
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
    fn write(&mut self, writes: Writes) {
        if writes.is_empty() {
            return;
        }
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        let mut local = false;
        for (entries, replicated, _) in &writes {
            local |= !replicated && !entries.is_empty();
            for e in entries {
                offsets.push(buf.len() as u64);
                record::encode_as(e, *replicated, &mut buf);
            }
        }
        let now = now_secs();
        if buf.is_empty() {
            for (_, _, done) in writes {
                answer(done, Vec::new());
            }
            return;
        }
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
                for (_, _, done) in writes {
                    done.fail(&e);
                }
                return;
            }
        };
        let mut offsets = offsets.into_iter();
        for (entries, _, done) in writes {
            let mut was = Vec::with_capacity(entries.len());
            for e in &entries {
                let offset = base + offsets.next().unwrap_or(0);
                let key = self.keyer.key(&e.tenant, &e.address);
                let listed = match e.op {
                    Op::Add => {
                        let meta = Meta::new(e.kind as u8, e.expires, offset);
                        self.removals.remove(&key);
                        !self.table.insert(key, meta)
                    }
                    Op::Remove => {
                        if self.removals.len() >= MAX_REMOVALS {
                            self.removals.clear();
                        }
                        self.removals.insert(key, e.at);
                        self.table.remove(key).is_some()
                    }
                };
                was.push(listed);
            }
            answer(done, was);
        }
        if let Some(outbox) = &self.outbox {
            match local {
                true => outbox.written(self.log.len()),
                false => outbox.set_len(self.log.len()),
            }
        }
        if self.log.len() > self.compact_size.max(2 * self.log.compacted_len) {
            self.compact(now);
        }
    }

    /// The changes of `entries` (from the cluster, in its order) that the list here does
    /// not already have in the same or a newer version, each judged against the list as the
    /// changes before it in the batch leave it.
    fn newer(&self, entries: Vec<(Entry, bool)>) -> Result<Vec<Entry>, String> {
        let now = now_secs();
        let mut batch: HashMap<u64, usize> = HashMap::new();
        let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
        for (e, own) in entries {
            let key = self.keyer.key(&e.tenant, &e.address);
            // This node's own change, still in force here: nothing to read or write (the
            // common case, decided without reading the record back).
            if own && !batch.contains_key(&key) && self.in_force(key, &e) {
                continue;
            }
            let here = match batch.get(&key) {
                Some(&i) => match out[i].op {
                    Op::Add => Here::Listed(out[i].clone()),
                    Op::Remove => Here::Removed(out[i].at),
                },
                None => self.here(key)?,
            };
            let take = match (here, e.op) {
                (Here::Listed(h), _) => h.at < e.at || (h.at == e.at && !same(&h, &e)),
                (Here::Removed(_) | Here::Unknown, Op::Remove) => false,
                (Here::Removed(at), Op::Add) if at > e.at => false,
                (Here::Removed(_) | Here::Unknown, Op::Add) => e.expires == 0 || e.expires > now,
            };
            if take {
                batch.insert(key, out.len());
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Whether the table already says what `e` says of `key` (listed with its kind and
    /// expiry, or not listed).
    fn in_force(&self, key: u64, e: &Entry) -> bool {
        match (self.table.get(key), e.op) {
            (Some(m), Op::Add) => m.kind() == e.kind as u8 && m.expires() == e.expires,
            (None, Op::Remove) => true,
            _ => false,
        }
    }

    /// What the list here holds for `key`.
    fn here(&self, key: u64) -> Result<Here, String> {
        Ok(match self.table.get(key) {
            Some(m) => match self.log.entry_at(m.offset()).map_err(|e| e.to_string())? {
                Some(here) => Here::Listed(here),
                None => Here::Unknown,
            },
            None => self
                .removals
                .get(&key)
                .map_or(Here::Unknown, |&at| Here::Removed(at)),
        })
    }

    /// This host's changes after the publish point.
    fn backlog(&mut self, limit: usize) -> Result<Backlog, String> {
        let generation = self.log.generation;
        let Some(outbox) = &mut self.outbox else {
            return Err("the suppression list is not shared".to_owned());
        };
        let (entries, end) = self
            .log
            .local_since(outbox.published, limit)
            .map_err(|e| e.to_string())?;
        if entries.is_empty() && end > outbox.published {
            // Only changes from other nodes there: nothing to publish.
            let inode = self.log.inode().map_err(|e| e.to_string())?;
            outbox.advance(inode, end, self.log.len());
        }
        Ok(Backlog {
            entries,
            generation,
            end,
            more: end < self.log.len(),
        })
    }

    fn republish(&mut self) {
        let (start, len) = (self.log.start(), self.log.len());
        if let (Some(outbox), Ok(inode)) = (&mut self.outbox, self.log.inode())
            && outbox.restart_from(inode, start, len)
        {
            tracing::info!(
                bytes = len - start,
                "suppression list: Redis does not know this node's changes; publishing them again"
            );
            let _ = outbox.wake.try_send(());
        }
    }

    fn published(&mut self, generation: u64, end: u64) {
        let len = self.log.len();
        let inode = self.log.inode();
        if let (Some(outbox), Ok(inode)) = (&mut self.outbox, inode)
            && generation == self.log.generation
            && end > outbox.published
        {
            outbox.advance(inode, end.min(len), len);
        }
    }

    fn compact(&mut self, now: u64) {
        let before = self.log.len();
        let keep_from = self.outbox.as_ref().map(|o| o.published);
        match self.log.compact(&self.table, &self.keyer, now, keep_from) {
            Ok(kept_at) => {
                if let (Some(outbox), Some(at), Ok(inode)) =
                    (&mut self.outbox, kept_at, self.log.inode())
                {
                    outbox.advance(inode, at, self.log.len());
                }
                tracing::info!(
                    before,
                    after = self.log.len(),
                    entries = self.table.len(),
                    "suppression log compacted"
                )
            }
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
