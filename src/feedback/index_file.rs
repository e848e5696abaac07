//! The Message-ID index on disk, so that reports about mail sent before a restart still match.
//!
//! What it does: keeps two files in the index's directory, `sent-0.idx` and `sent-1.idx`, each
//! a 16-byte header (magic, the hash seed, a generation number) and 24-byte records (the
//! Message-ID's hash, the queue id, the label pair, the recipient's hash). Records are appended
//! to the newer file, one write per batch the shards hand over (no sync: a crash loses at most
//! the last second of entries, and only their matching by Message-ID); when it holds `max`
//! records, the older file is emptied and becomes the newer one. [`IndexFiles::open`] reads
//! both back, older first, handing each record over as it is read.
//!
//! What it does not do: no in-memory map (the index's), no compaction beyond the rotation.
//!
//! Invariants: the two files hold at most `2 * max` records; both files share the seed of the
//! first one made (a Message-ID hashes the same after a restart); a torn last record is left
//! out at start; a file that is not an index file is started afresh.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::index::Sent;

const MAGIC: &[u8; 4] = b"MSX1";
const HEADER: usize = 16;
/// Octets of one record.
pub const RECORD: usize = 24;

/// See the module header.
pub struct IndexFiles {
    files: [File; 2],
    /// Which file takes new records.
    current: usize,
    /// Records in it.
    records: usize,
    generation: u32,
    max: usize,
    seed: u64,
}

impl IndexFiles {
    /// Opens (or makes) the files in `dir` for an index of `max` messages; `fresh_seed` is the
    /// seed used when no file has one yet. Each record they hold is given to `load`, oldest
    /// first, as it is read (1 MiB at a time: nothing else is kept).
    pub fn open(
        dir: &Path,
        max: usize,
        fresh_seed: u64,
        load: &mut dyn FnMut(u64, Sent),
    ) -> std::io::Result<IndexFiles> {
        std::fs::create_dir_all(dir)?;
        let open = |i: usize| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.join(format!("sent-{i}.idx")))
        };
        let mut files = [open(0)?, open(1)?];
        let heads = [header(&mut files[0]), header(&mut files[1])];
        let seed = heads
            .iter()
            .flatten()
            .map(|h| h.0)
            .next()
            .unwrap_or(fresh_seed);
        // Files of another seed (or no index file at all) are started afresh.
        let gens: Vec<Option<u32>> = heads
            .iter()
            .map(|h| h.filter(|(s, _)| *s == seed).map(|(_, g)| g))
            .collect();
        let mut order = [0usize, 1];
        order.sort_by_key(|&i| gens[i].unwrap_or(0));
        let mut sizes = [0usize; 2];
        for &i in &order {
            if gens[i].is_some() {
                sizes[i] = read_records(&mut files[i], load)?;
            }
        }
        // The newer file (or a fresh one) takes new records.
        let current = order[1];
        let generation = gens[current].unwrap_or(0).max(gens[order[0]].unwrap_or(0));
        let mut f = IndexFiles {
            files,
            current,
            records: sizes[current],
            generation,
            max: max.max(1),
            seed,
        };
        if gens[current].is_none() {
            f.start(current, generation + 1)?;
        } else {
            // Appends go after the last whole record.
            let end = (HEADER + sizes[current] * RECORD) as u64;
            f.files[current].set_len(end)?;
            f.files[current].seek(SeekFrom::Start(end))?;
        }
        Ok(f)
    }

    /// The seed Message-IDs are hashed with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Appends `entries`, moving to the other file when this one is full.
    pub fn append(&mut self, entries: &[(u64, Sent)]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(entries.len() * RECORD);
        for (key, sent) in entries {
            if self.records >= self.max {
                self.flush(&mut buf)?;
                let other = 1 - self.current;
                self.start(other, self.generation + 1)?;
                self.current = other;
            }
            buf.extend_from_slice(&key.to_le_bytes());
            buf.extend_from_slice(&sent.queue_id.to_le_bytes());
            buf.extend_from_slice(&sent.labels.to_le_bytes());
            buf.extend_from_slice(&sent.recipient.to_le_bytes());
            self.records += 1;
        }
        self.flush(&mut buf)
    }

    fn flush(&mut self, buf: &mut Vec<u8>) -> std::io::Result<()> {
        if !buf.is_empty() {
            self.files[self.current].write_all(buf)?;
            buf.clear();
        }
        Ok(())
    }

    /// Empties file `i` and writes its header with `generation`.
    fn start(&mut self, i: usize, generation: u32) -> std::io::Result<()> {
        let f = &mut self.files[i];
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        let mut head = [0u8; HEADER];
        head[..4].copy_from_slice(MAGIC);
        head[4..12].copy_from_slice(&self.seed.to_le_bytes());
        head[12..16].copy_from_slice(&generation.to_le_bytes());
        f.write_all(&head)?;
        self.generation = generation;
        self.records = 0;
        Ok(())
    }
}

/// The seed and generation of an index file, None if it is not one.
fn header(f: &mut File) -> Option<(u64, u32)> {
    let mut head = [0u8; HEADER];
    f.seek(SeekFrom::Start(0)).ok()?;
    f.read_exact(&mut head).ok()?;
    if &head[..4] != MAGIC {
        return None;
    }
    let seed = u64::from_le_bytes(head[4..12].try_into().ok()?);
    let generation = u32::from_le_bytes(head[12..16].try_into().ok()?);
    Some((seed, generation))
}

/// Reads the whole records after the header into `out`, 1 MiB at a time; returns how many.
fn read_records(f: &mut File, load: &mut dyn FnMut(u64, Sent)) -> std::io::Result<usize> {
    f.seek(SeekFrom::Start(HEADER as u64))?;
    let mut chunk = vec![0u8; (1 << 20) / RECORD * RECORD];
    let mut n = 0;
    loop {
        // Fill the chunk (or reach the end), so that records never straddle two reads.
        let mut filled = 0;
        while filled < chunk.len() {
            match f.read(&mut chunk[filled..])? {
                0 => break,
                got => filled += got,
            }
        }
        for r in chunk[..filled].chunks_exact(RECORD) {
            let u64_at = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().unwrap_or([0; 8]));
            let u32_at = |i: usize| u32::from_le_bytes(r[i..i + 4].try_into().unwrap_or([0; 4]));
            load(
                u64_at(0),
                Sent {
                    queue_id: u64_at(8),
                    labels: u32_at(16),
                    recipient: u32_at(20),
                },
            );
            n += 1;
        }
        if filled < chunk.len() {
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(q: u64) -> Sent {
        Sent {
            queue_id: q,
            labels: 1,
            recipient: 0,
        }
    }

    #[test]
    fn records_come_back_in_order_across_rotations_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut loaded = Vec::new();
        let mut f = IndexFiles::open(dir.path(), 3, 42, &mut |k, s| loaded.push((k, s))).unwrap();
        assert!(loaded.is_empty());
        assert_eq!(f.seed(), 42);
        let batch: Vec<_> = (1..=5).map(|i| (i, sent(i))).collect();
        f.append(&batch).unwrap();
        drop(f);
        // A torn record at the end of the newer file.
        let mut torn = OpenOptions::new()
            .append(true)
            .open(dir.path().join("sent-1.idx"))
            .unwrap();
        torn.write_all(&[9; 10]).unwrap();
        let mut loaded = Vec::new();
        let mut f = IndexFiles::open(dir.path(), 3, 7, &mut |k, s| loaded.push((k, s))).unwrap();
        assert_eq!(f.seed(), 42, "the seed of the files, not a new one");
        let keys: Vec<u64> = loaded.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [1, 2, 3, 4, 5]);
        assert_eq!(loaded[4].1, sent(5));
        // Two more: the older file (1, 2, 3) is emptied for the sixth... after the newer holds 3.
        f.append(&[(6, sent(6)), (7, sent(7))]).unwrap();
        drop(f);
        let mut keys = Vec::new();
        IndexFiles::open(dir.path(), 3, 7, &mut |k, _| keys.push(k)).unwrap();
        assert_eq!(keys, [4, 5, 6, 7]);
    }

    #[test]
    fn a_foreign_file_is_started_afresh() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sent-0.idx"),
            b"not an index at all, really",
        )
        .unwrap();
        let mut loaded = 0;
        let mut f = IndexFiles::open(dir.path(), 3, 5, &mut |_, _| loaded += 1).unwrap();
        assert_eq!(loaded, 0);
        f.append(&[(1, sent(1))]).unwrap();
        drop(f);
        let mut loaded = 0;
        IndexFiles::open(dir.path(), 3, 6, &mut |_, _| loaded += 1).unwrap();
        assert_eq!(loaded, 1);
    }
}
