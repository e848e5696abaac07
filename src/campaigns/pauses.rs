//! Paused campaigns and tenants: the host's set, kept in a file so that a pause survives a
//! restart.
//!
//! What it does: holds which campaigns and tenants are paused, why, since when and by whom;
//! writes the whole set to `<spool.path>/campaigns-paused.json` on every change (a temporary
//! file, synced, renamed over the old one, the directory synced) and reads it at start; counts
//! changes in a generation number that shards read without a lock to learn that the set
//! changed.
//!
//! What it does not do: no scheduling (each shard's queue parks and re-queues its own jobs),
//! no threshold arithmetic.
//!
//! Invariants: the generation increases with every change, after the set has changed; a
//! change is in the file before the call that made it returns `Ok` (a failed write leaves the
//! set as it was in memory too).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::counts::Dim;

/// The file's name in the spool directory.
pub const FILE: &str = "campaigns-paused.json";

/// One paused campaign or tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// `campaign` or `tenant`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Why: the threshold crossed, or the operator's reason.
    pub reason: String,
    /// Who: `threshold` or the admin client (`127.0.0.1 network`).
    pub by: String,
    /// When, Unix seconds.
    pub since_unix: u64,
}

/// Why the set could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    /// The file could not be written or read.
    #[error("paused campaigns file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// See the module header.
#[derive(Debug)]
pub struct Pauses {
    path: PathBuf,
    set: RwLock<BTreeMap<(Dim, String), Pause>>,
    generation: AtomicU64,
}

impl Pauses {
    /// The set kept in `dir` (the spool directory), as the file there says (empty without
    /// one).
    pub fn open(dir: &Path) -> Result<Pauses, PauseError> {
        let path = dir.join(FILE);
        let io = |source| PauseError::Io {
            path: path.clone(),
            source,
        };
        let list: Vec<Pause> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let set = list
            .into_iter()
            .filter_map(|p| Some(((Dim::parse(&p.kind)?, p.name.clone()), p)))
            .collect();
        Ok(Pauses {
            path,
            set: RwLock::new(set),
            generation: AtomicU64::new(1),
        })
    }

    /// Changes whenever the set changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every pause, campaigns first, by name.
    pub fn list(&self) -> Vec<Pause> {
        self.set
            .read()
            .expect("pauses lock")
            .values()
            .cloned()
            .collect()
    }

    /// Whether `name` of kind `dim` is paused.
    pub fn get(&self, dim: Dim, name: &str) -> Option<Pause> {
        self.set
            .read()
            .expect("pauses lock")
            .get(&(dim, name.to_owned()))
            .cloned()
    }

    /// The paused (kind, name) pairs.
    pub fn keys(&self) -> Vec<(Dim, String)> {
        self.set
            .read()
            .expect("pauses lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Pauses `pause` (kind `dim`); false if it already was (the first reason stays).
    pub fn pause(&self, dim: Dim, pause: Pause) -> Result<bool, PauseError> {
        let mut set = self.set.write().expect("pauses lock");
        let key = (dim, pause.name.clone());
        if set.contains_key(&key) {
            return Ok(false);
        }
        set.insert(key.clone(), pause);
        if let Err(e) = self.save(&set) {
            set.remove(&key);
            return Err(e);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    /// Lifts the pause of `name` (kind `dim`); None if it was not paused.
    pub fn resume(&self, dim: Dim, name: &str) -> Result<Option<Pause>, PauseError> {
        let mut set = self.set.write().expect("pauses lock");
        let key = (dim, name.to_owned());
        let Some(was) = set.remove(&key) else {
            return Ok(None);
        };
        if let Err(e) = self.save(&set) {
            set.insert(key, was);
            return Err(e);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(Some(was))
    }

    fn save(&self, set: &BTreeMap<(Dim, String), Pause>) -> Result<(), PauseError> {
        let io = |source| PauseError::Io {
            path: self.path.clone(),
            source,
        };
        let list: Vec<&Pause> = set.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).expect("pauses serialize");
        let tmp = self.path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause(name: &str) -> Pause {
        Pause {
            kind: "campaign".into(),
            name: name.into(),
            reason: "by hand".into(),
            by: "test".into(),
            since_unix: 1,
        }
    }

    #[test]
    fn pauses_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pauses::open(dir.path()).unwrap();
        let g = p.generation();
        assert!(p.pause(Dim::Campaign, pause("a")).unwrap());
        assert!(!p.pause(Dim::Campaign, pause("a")).unwrap());
        assert!(p.pause(Dim::Campaign, pause("b")).unwrap());
        assert!(p.generation() > g);
        assert!(p.resume(Dim::Campaign, "b").unwrap().is_some());
        assert!(p.resume(Dim::Campaign, "b").unwrap().is_none());
        let p = Pauses::open(dir.path()).unwrap();
        assert_eq!(p.keys(), vec![(Dim::Campaign, "a".to_owned())]);
        assert_eq!(p.get(Dim::Campaign, "a").unwrap().reason, "by hand");
        assert!(p.get(Dim::Tenant, "a").is_none());
    }
}
