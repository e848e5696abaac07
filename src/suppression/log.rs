//! The suppression log: the durable list, as an append-only file of checksummed records.
//!
//! What it does: opens `<dir>/suppression.log` and replays it into the [`Table`] (cutting a
//! torn or corrupt tail off, as the spool's recovery does), appends batches of records with one
//! `fdatasync` each, reads pages of the live entries back (for `list` and `export`) and, in a
//! cluster, the changes made on this host after an offset (for the publisher), and compacts:
//! the live entries (and every record after the publish point, if one is given) are copied
//! to a new file, which is synced and renamed over the old one.
//!
//! What it does not do: no threads or channels (the writer runs it), no policy about when to
//! compact.
//!
//! Invariants: the file starts with a 16-byte header and every record is 16-aligned, so a
//! record's offset fits a table [`Meta`]; an append has returned only after its `fdatasync`;
//! a failed append leaves the file as it was before (cut back); an entry is live when the
//! table holds its key with this record's offset and it has not expired; replay and reads hold
//! one buffer of [`READ_CHUNK`] whatever the file's size.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::address::Keyer;
use super::record::{self, Decoded, Entry, Op};
use super::table::{Meta, Table};

const MAGIC: &[u8; 16] = b"MTA-SUPPRESS-v1\n";
/// Bytes read from the file at a time.
pub const READ_CHUNK: usize = 1 << 20;
const FILE: &str = "suppression.log";

/// What a start found in the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Records read.
    pub records: u64,
    /// Bytes of a torn or corrupt tail cut off.
    pub truncated: u64,
}

/// One page of the live entries, in log order.
#[derive(Debug, Default)]
pub struct Page {
    /// The entries.
    pub entries: Vec<Entry>,
    /// Where the next page starts; None at the end.
    pub next: Option<u64>,
}

/// See the module header.
pub struct Log {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    len: u64,
    /// Counts compactions since start (offsets of one generation mean nothing in another).
    pub generation: u64,
    /// The file's size after the last compaction (or at start).
    pub compacted_len: u64,
}

/// The table key and meta of an add record at `offset`.
fn meta_of(keyer: &Keyer, e: &Entry, offset: u64) -> (u64, Meta) {
    (
        keyer.key(&e.tenant, &e.address),
        Meta::new(e.kind as u8, e.expires, offset),
    )
}

/// Whether the add record `e` at `offset` is the live entry of its key at `now`.
pub fn is_live(table: &Table, keyer: &Keyer, e: &Entry, offset: u64, now: u64) -> bool {
    e.op == Op::Add
        && table
            .get(keyer.key(&e.tenant, &e.address))
            .is_some_and(|m| m.offset() == offset && !m.expired(now))
}

/// Calls `f(offset, entry, replicated)` for each good record from `from` on while it returns
/// true; the offset where good records end (the file's end, or the first bad or torn record).
fn scan(file: &File, from: u64, mut f: impl FnMut(u64, Entry, bool) -> bool) -> io::Result<u64> {
    let mut buf = vec![0u8; READ_CHUNK];
    let (mut have, mut pos) = (0usize, from);
    let mut eof = false;
    loop {
        let mut at = 0;
        loop {
            match record::decode(&buf[at..have]) {
                Decoded::Record(e, n) => {
                    if !f(pos, e, record::replicated(&buf[at..have])) {
                        return Ok(pos + n as u64);
                    }
                    pos += n as u64;
                    at += n;
                }
                Decoded::Short if !eof => break,
                Decoded::Short | Decoded::Corrupt => return Ok(pos),
            }
        }
        buf.copy_within(at..have, 0);
        have -= at;
        let n = file.read_at(&mut buf[have..], pos + have as u64)?;
        eof = n == 0;
        have += n;
    }
}

/// Syncs a directory, so that a rename or a new file in it is durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Log {
    /// Opens (or creates) the log in `dir` and replays it into `table`, as of `now` (unix
    /// seconds: entries expired by then are left out).
    pub fn open(dir: &Path, table: &Table, keyer: &Keyer, now: u64) -> io::Result<(Log, Loaded)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let size = file.metadata()?.len();
        if size < MAGIC.len() as u64 {
            file.set_len(0)?;
            file.write_all_at(MAGIC, 0)?;
            file.sync_all()?;
            sync_dir(dir)?;
        } else {
            let mut head = [0u8; 16];
            file.read_exact_at(&mut head, 0)?;
            if &head != MAGIC {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a suppression log", path.display()),
                ));
            }
        }
        let mut loaded = Loaded::default();
        let end = scan(&file, MAGIC.len() as u64, |offset, e, _| {
            loaded.records += 1;
            let (key, meta) = meta_of(keyer, &e, offset);
            match e.op {
                Op::Add if !meta.expired(now) => {
                    table.insert(key, meta);
                }
                Op::Add | Op::Remove => {
                    table.remove(key);
                }
            }
            true
        })?;
        let size = file.metadata()?.len().max(MAGIC.len() as u64);
        if end < size {
            loaded.truncated = size - end;
            file.set_len(end)?;
            file.sync_all()?;
        }
        let log = Log {
            dir: dir.to_owned(),
            path,
            file,
            len: end,
            generation: 0,
            compacted_len: end,
        };
        Ok((log, loaded))
    }

    /// The file's size.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Where the first record starts (after the header).
    pub fn start(&self) -> u64 {
        MAGIC.len() as u64
    }

    /// Whether the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.len <= MAGIC.len() as u64
    }

    /// Appends encoded records and syncs them; the offset of the first. On failure the file
    /// is cut back to where it was.
    pub fn append(&mut self, records: &[u8]) -> io::Result<u64> {
        let at = self.len;
        let written = self
            .file
            .write_all_at(records, at)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let _ = self.file.set_len(at);
            return Err(e);
        }
        self.len += records.len() as u64;
        Ok(at)
    }

    /// Up to `limit` live entries (those `keep` accepts) from offset `from` (0 = the start).
    pub fn page(
        &self,
        (table, keyer): (&Table, &Keyer),
        from: u64,
        limit: usize,
        now: u64,
        mut keep: impl FnMut(&Entry) -> bool,
    ) -> io::Result<Page> {
        let mut page = Page::default();
        let from = from.max(MAGIC.len() as u64);
        let end = scan(&self.file, from, |offset, e, _| {
            if is_live(table, keyer, &e, offset, now) && keep(&e) {
                page.entries.push(e);
            }
            page.entries.len() < limit
        })?;
        page.next = (end < self.len).then_some(end);
        Ok(page)
    }

    /// Rewrites the log with its live entries only (as of `now`) and points the table at
    /// their new offsets. With `keep_from`, every record from that offset on (the changes not
    /// yet published to a cluster) is kept as it is, after the live entries before it; the
    /// answer is then where those kept records start in the new file.
    pub fn compact(
        &mut self,
        table: &Table,
        keyer: &Keyer,
        now: u64,
        keep_from: Option<u64>,
    ) -> io::Result<Option<u64>> {
        let tmp = self.dir.join(format!("{FILE}.new"));
        let keep_from = keep_from.map(|k| k.clamp(MAGIC.len() as u64, self.len));
        let mut kept_at = None;
        let copied = (|| {
            let mut out = io::BufWriter::with_capacity(READ_CHUNK, File::create(&tmp)?);
            out.write_all(MAGIC)?;
            let mut written = MAGIC.len() as u64;
            let mut buf = Vec::with_capacity(record::MAX_RECORD);
            let mut failed = Ok(());
            scan(&self.file, MAGIC.len() as u64, |offset, e, replicated| {
                let kept = keep_from.is_some_and(|k| offset >= k);
                if kept && kept_at.is_none() {
                    kept_at = Some(written);
                }
                if kept || is_live(table, keyer, &e, offset, now) {
                    buf.clear();
                    // Encoding is deterministic: a kept record is copied byte for byte.
                    record::encode_as(&e, replicated, &mut buf);
                    failed = out.write_all(&buf);
                    written += buf.len() as u64;
                }
                failed.is_ok()
            })?;
            failed?;
            kept_at = keep_from.map(|_| kept_at.unwrap_or(written));
            out.into_inner().map_err(|e| e.into_error())?.sync_all()
        })();
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &self.path)?;
        sync_dir(&self.dir)?;
        let file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        let end = scan(&file, MAGIC.len() as u64, |offset, e, _| {
            let (key, meta) = meta_of(keyer, &e, offset);
            match (kept_at, keep_from) {
                // A kept record is the live entry if the table points at its old offset.
                (Some(new), Some(old)) if offset >= new => {
                    let was = offset - new + old;
                    if e.op == Op::Add && table.get(key).is_some_and(|m| m.offset() == was) {
                        table.update(key, meta);
                    }
                }
                _ => table.update(key, meta),
            }
            true
        })?;
        self.file = file;
        self.len = end;
        self.compacted_len = end;
        self.generation += 1;
        Ok(kept_at)
    }

    /// The file's inode: names this file across restarts (a compaction makes a new one).
    pub fn inode(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.file.metadata()?.ino())
    }

    /// The changes made on this host (records not marked replicated) from offset `from` on:
    /// at most `limit` of them, reading at most [`READ_CHUNK`] bytes of records; and the
    /// offset after the last record read.
    pub fn local_since(&self, from: u64, limit: usize) -> io::Result<(Vec<Entry>, u64)> {
        let from = from.clamp(MAGIC.len() as u64, self.len);
        let mut out = Vec::new();
        let end = scan(&self.file, from, |offset, e, replicated| {
            if !replicated {
                out.push(e);
            }
            out.len() < limit && offset - from < READ_CHUNK as u64
        })?;
        Ok((out, end.min(self.len)))
    }

    /// The record at `offset`, if a good one starts there (one read of at most
    /// [`record::MAX_RECORD`] bytes).
    pub fn entry_at(&self, offset: u64) -> io::Result<Option<Entry>> {
        let offset = offset.max(MAGIC.len() as u64);
        let want = (self.len.saturating_sub(offset) as usize).min(record::MAX_RECORD);
        let mut buf = vec![0u8; want];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(match record::decode(&buf) {
            Decoded::Record(e, _) => Some(e),
            Decoded::Short | Decoded::Corrupt => None,
        })
    }
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
