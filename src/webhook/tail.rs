//! Reads one shard's event log line by line from a position, across rotations.
//!
//! What it does: keeps the file at the position open and reads it in chunks of [`CHUNK`]
//! octets with positional reads; hands out each complete line with the position after it;
//! at the end of a file that is no longer the live one (rotation renamed it) reads it once
//! more to its end and goes on with the next file in `files::list` order.
//!
//! What it does not do: no parsing of the lines, no filtering, no remembering positions
//! (the caller commits them).
//!
//! Invariants: memory is bounded by [`CHUNK`] plus the longest line kept, `max_line`: a
//! longer line is skipped (and counted) up to its end; a line is only handed out whole
//! (ending in `\n`, which is not part of it); a torn last line of a rotated file (a crash in
//! the middle of a write) is skipped and counted, never joined to another.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::files::{self, Position};

/// Octets read at once.
pub const CHUNK: usize = 64 * 1024;

/// One line of the log.
#[derive(Debug)]
pub struct Line {
    /// The line without its `\n`.
    pub text: Vec<u8>,
    /// The position after it.
    pub end: Position,
}

struct Open {
    file: File,
    inode: u64,
    /// Octets of the file read into `buf` or consumed before it.
    read_to: u64,
    /// Read; `buf[start..]` is not yet handed out.
    buf: Vec<u8>,
    start: usize,
    /// The start of `buf` is the rest of a line being skipped (too long).
    skipping: bool,
}

/// See the module header.
pub struct Tail {
    dir: PathBuf,
    shard: usize,
    max_line: usize,
    open: Option<Open>,
    /// Where to start when nothing is open yet (None: the start of the oldest file).
    start: Option<Position>,
    /// Lines skipped: too long, or torn.
    pub skipped: u64,
    /// The position's file was gone when the tail started: what it held after the position
    /// may be lost (counted by the caller).
    pub lost_file: bool,
}

impl Tail {
    /// A tail of `shard`'s log in `dir` from `start` (None: from the start of the oldest file,
    /// or of the first one written; a position whose file is gone: the same, with `lost_file`
    /// set).
    pub fn new(dir: &Path, shard: usize, start: Option<Position>, max_line: usize) -> Tail {
        let mut tail = Tail {
            dir: dir.to_owned(),
            shard,
            max_line,
            open: None,
            start,
            skipped: 0,
            lost_file: false,
        };
        if let Some(p) = start {
            let listed = files::list(dir, shard);
            match listed.iter().find(|f| f.inode == p.inode) {
                Some(f) if f.len >= p.offset => tail.open_at(&f.path, p.offset),
                _ => {
                    tail.lost_file = !listed.is_empty();
                    if let Some(first) = listed.first() {
                        tail.open_at(&first.path.clone(), 0);
                    }
                }
            }
        }
        tail
    }

    /// The position after the last line handed out (None: nothing is open yet).
    pub fn position(&self) -> Option<Position> {
        match &self.open {
            Some(o) => Some(Position {
                inode: o.inode,
                offset: o.read_to - (o.buf.len() - o.start) as u64,
            }),
            None => self.start,
        }
    }

    fn open_at(&mut self, path: &Path, offset: u64) {
        let Ok(file) = File::open(path) else { return };
        let Ok(meta) = file.metadata() else { return };
        self.open = Some(Open {
            file,
            inode: meta.ino(),
            read_to: offset,
            buf: Vec::with_capacity(CHUNK),
            start: 0,
            skipping: false,
        });
    }

    /// The next whole line, or None when there is none yet.
    pub fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        let mut last_look = false;
        loop {
            if self.open.is_none() {
                // Only before the first file exists (or after the file read vanished).
                if let Some(first) = files::list(&self.dir, self.shard).first() {
                    self.open_at(&first.path.clone(), 0);
                }
                if self.open.is_none() {
                    return Ok(None);
                }
            }
            let max_line = self.max_line;
            let o = self.open.as_mut().expect("open");
            if let Some(nl) = memchr::memchr(b'\n', &o.buf[o.start..]) {
                let text: Vec<u8> = o.buf[o.start..o.start + nl].to_vec();
                o.start += nl + 1;
                let end = Position {
                    inode: o.inode,
                    offset: o.read_to - (o.buf.len() - o.start) as u64,
                };
                if std::mem::take(&mut o.skipping) {
                    continue;
                }
                return Ok(Some(Line { text, end }));
            }
            // Keep only what is not handed out, then read more after it.
            o.buf.drain(..o.start);
            o.start = 0;
            if o.buf.len() > max_line {
                // Too long to keep: the rest up to its end is skipped.
                if !o.skipping {
                    self.skipped += 1;
                }
                o.skipping = true;
                o.buf.clear();
            }
            let kept = o.buf.len();
            o.buf.resize(kept + CHUNK, 0);
            let n = o.file.read_at(&mut o.buf[kept..], o.read_to);
            o.buf.truncate(kept + *n.as_ref().unwrap_or(&0));
            let n = n?;
            if n > 0 {
                o.read_to += n as u64;
                last_look = false;
                continue;
            }
            let live = std::fs::metadata(files::live_path(&self.dir, self.shard)).map(|m| m.ino());
            if live.as_ref().is_ok_and(|&ino| ino == o.inode) {
                return Ok(None);
            }
            // Renamed aside: nothing is written to it any more. Read once more to its end
            // (what was written before the rename), then go on with the next file.
            if !last_look {
                last_look = true;
                continue;
            }
            let listed = files::list(&self.dir, self.shard);
            let next = match listed.iter().position(|f| f.inode == o.inode) {
                Some(i) => listed.get(i + 1).cloned(),
                None => listed.first().cloned(),
            };
            let Some(next) = next else {
                // The next file is not there yet (between rename and create).
                return Ok(None);
            };
            if o.buf.len() > o.start && !o.skipping {
                self.skipped += 1;
            }
            self.open = None;
            self.open_at(&next.path, 0);
            if self.open.is_none() {
                return Ok(None);
            }
            last_look = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    fn drain(t: &mut Tail) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(l) = t.next_line().unwrap() {
            out.push(String::from_utf8(l.text).unwrap());
        }
        out
    }

    #[test]
    fn follows_the_live_file_across_rotations_and_resumes_at_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let live = files::live_path(dir.path(), 0);
        let mut t = Tail::new(dir.path(), 0, None, 1024);
        assert!(drain(&mut t).is_empty());
        append(&live, "a\nb\npart");
        assert_eq!(drain(&mut t), ["a", "b"]);
        append(&live, "ial\n");
        std::fs::rename(&live, dir.path().join("delivery-0.100.jsonl")).unwrap();
        assert_eq!(drain(&mut t), ["partial"]);
        append(&live, "c\n");
        assert_eq!(drain(&mut t), ["c"]);
        let at = t.position().unwrap();
        append(&live, "d\n");
        std::fs::rename(&live, dir.path().join("delivery-0.100-1.jsonl")).unwrap();
        append(&live, "e\n");
        let mut again = Tail::new(dir.path(), 0, Some(at), 1024);
        assert_eq!(drain(&mut again), ["d", "e"]);
        assert!(!again.lost_file);
    }

    #[test]
    fn skips_long_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let live = files::live_path(dir.path(), 2);
        append(&live, &format!("{}\nshort\ntorn", "x".repeat(CHUNK * 3)));
        let mut t = Tail::new(dir.path(), 2, None, 1000);
        assert_eq!(drain(&mut t), ["short"]);
        std::fs::rename(&live, dir.path().join("delivery-2.5.jsonl")).unwrap();
        append(&live, "next\n");
        assert_eq!(drain(&mut t), ["next"]);
        assert_eq!(t.skipped, 2);
    }

    #[test]
    fn a_position_in_a_vanished_file_starts_at_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        append(&files::live_path(dir.path(), 0), "x\n");
        let gone = Position {
            inode: u64::MAX,
            offset: 3,
        };
        let mut t = Tail::new(dir.path(), 0, Some(gone), 1024);
        assert!(t.lost_file);
        assert_eq!(drain(&mut t), ["x"]);
    }
}
