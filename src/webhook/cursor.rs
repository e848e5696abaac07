//! A hook's committed cursor: where, in each shard's event log, the endpoint has everything
//! before.
//!
//! What it does: loads and stores `<log.dir>/webhooks/<hook>.cursor`, a small JSON object
//! with one position (file inode and offset, and the file's name when it was written, for
//! people) per shard. A store writes a temporary file, syncs it, renames it over the old one
//! and syncs the directory, so a crash leaves the old cursor or the new one, never a mix.
//!
//! What it does not do: no decision of when to store (the runner stores after a `2xx`).
//!
//! Invariants: a cursor file is only ever replaced whole; a missing file means "no cursor".

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::Position;

/// Positions by shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Shard index to position.
    pub shards: BTreeMap<usize, Entry>,
}

/// One shard's position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The file (inode) and offset.
    #[serde(flatten)]
    pub at: Position,
    /// The file's name when the cursor was stored (informative: rotation renames it).
    pub file: String,
}

/// The cursor file of `hook` under `log_dir`.
pub fn path(log_dir: &Path, hook: &str) -> PathBuf {
    log_dir.join("webhooks").join(format!("{hook}.cursor"))
}

/// The cursor stored at `path`; Ok(None) when there is none.
pub fn load(path: &Path) -> std::io::Result<Option<Cursor>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the cursor at `path` with `cursor` (write, sync, rename, directory sync).
pub fn store(path: &Path, cursor: &Cursor) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("cursor.tmp");
    let body = serde_json::to_vec(cursor).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&body)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_loads_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "crm");
        assert_eq!(load(&p).unwrap(), None);
        let mut c = Cursor::default();
        c.shards.insert(
            1,
            Entry {
                at: Position {
                    inode: 42,
                    offset: 7,
                },
                file: "delivery-1.jsonl".into(),
            },
        );
        store(&p, &c).unwrap();
        assert_eq!(load(&p).unwrap(), Some(c.clone()));
        c.shards.get_mut(&1).unwrap().at.offset = 9;
        store(&p, &c).unwrap();
        assert_eq!(load(&p).unwrap(), Some(c));
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
    }
}
