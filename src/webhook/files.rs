//! A shard's event-log files in the order they were written, and where a hook stands in them.
//!
//! What it does: lists `<log.dir>/delivery-<shard>.<secs>[-<n>].jsonl` (rotated, oldest
//! first by seconds then `n`) followed by the live `delivery-<shard>.jsonl`, each with its
//! inode (a file keeps its inode when rotation renames it, so a position names a file by
//! inode); says how many bytes lie after a position ([`lag`]) and whether a rotated file lies
//! wholly before a position ([`consumed`]).
//!
//! What it does not do: no reading of lines (`tail`), no deleting.
//!
//! Invariants: the order is the order in which the event log wrote the files (rotation names
//! never go back in time for one shard, and `-<n>` only follows the same second).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One event-log file of a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    /// Its path now.
    pub path: PathBuf,
    /// Its inode (unchanged by rotation).
    pub inode: u64,
    /// Its length now.
    pub len: u64,
}

/// A place in a shard's log: the byte after the last line taken from the file `inode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// The file.
    pub inode: u64,
    /// Octets of it taken.
    pub offset: u64,
}

/// The live file of `shard`.
pub fn live_path(dir: &Path, shard: usize) -> PathBuf {
    dir.join(format!("delivery-{shard}.jsonl"))
}

/// `(seconds, n)` of a rotated file name of `shard`, None for any other name.
pub fn rotated_order(name: &str, shard: usize) -> Option<(u64, u64)> {
    let rest = name
        .strip_prefix(&format!("delivery-{shard}."))?
        .strip_suffix(".jsonl")?;
    let (secs, n) = match rest.split_once('-') {
        Some((s, n)) => (s, n.parse().ok()?),
        None => (rest, 0),
    };
    Some((secs.parse().ok()?, n))
}

/// The files of `shard`, oldest first, the live one (if it exists) last.
pub fn list(dir: &Path, shard: usize) -> Vec<LogFile> {
    let mut rotated: Vec<((u64, u64), LogFile)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let Some(order) = rotated_order(&name.to_string_lossy(), shard) else {
                continue;
            };
            if let Ok(m) = entry.metadata() {
                rotated.push((
                    order,
                    LogFile {
                        path: entry.path(),
                        inode: m.ino(),
                        len: m.len(),
                    },
                ));
            }
        }
    }
    rotated.sort_by_key(|(order, _)| *order);
    let mut files: Vec<LogFile> = rotated.into_iter().map(|(_, f)| f).collect();
    let live = live_path(dir, shard);
    if let Ok(m) = std::fs::metadata(&live) {
        files.push(LogFile {
            path: live,
            inode: m.ino(),
            len: m.len(),
        });
    }
    files
}

/// Octets of `files` after `at`: the rest of its file and every later file (all of them when
/// its file is gone).
pub fn lag(files: &[LogFile], at: Option<Position>) -> u64 {
    let start = at.and_then(|p| {
        files
            .iter()
            .position(|f| f.inode == p.inode)
            .map(|i| (i, p))
    });
    match start {
        Some((i, p)) => {
            files[i].len.saturating_sub(p.offset)
                + files[i + 1..].iter().map(|f| f.len).sum::<u64>()
        }
        None => files.iter().map(|f| f.len).sum(),
    }
}

/// True when the file `inode` lies wholly before `at` in `files`: a later file holds the
/// position. A position whose file is not among `files` protects nothing.
pub fn consumed(files: &[LogFile], inode: u64, at: Position) -> bool {
    let Some(cursor) = files.iter().position(|f| f.inode == at.inode) else {
        return true;
    };
    files
        .iter()
        .position(|f| f.inode == inode)
        .is_none_or(|i| i < cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_rotated_files_then_the_live_one() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "delivery-1.jsonl",
            "delivery-1.200.jsonl",
            "delivery-1.100-1.jsonl",
            "delivery-1.100.jsonl",
            "delivery-1.100-2.jsonl",
            "delivery-10.50.jsonl",
            "delivery-1.x.jsonl",
            "other.jsonl",
        ] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let names: Vec<String> = list(dir.path(), 1)
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "delivery-1.100.jsonl",
                "delivery-1.100-1.jsonl",
                "delivery-1.100-2.jsonl",
                "delivery-1.200.jsonl",
                "delivery-1.jsonl"
            ]
        );
    }

    #[test]
    fn lag_and_consumed_follow_the_order() {
        let f = |inode, len| LogFile {
            path: PathBuf::new(),
            inode,
            len,
        };
        let files = [f(7, 100), f(3, 50), f(9, 10)];
        let at = Position {
            inode: 3,
            offset: 20,
        };
        assert_eq!(lag(&files, Some(at)), 30 + 10);
        assert_eq!(lag(&files, None), 160);
        assert!(consumed(&files, 7, at));
        assert!(!consumed(&files, 3, at));
        assert!(!consumed(&files, 9, at));
        let gone = Position {
            inode: 42,
            offset: 0,
        };
        assert!(consumed(&files, 7, gone));
    }
}
