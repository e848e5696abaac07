//! The label book: a number for each (campaign, tenant) pair of mail sent with a VERP
//! envelope sender, so that a 4-byte field of the token names the pair, and a bounce that comes
//! back days later (after restarts too) still knows the campaign and tenant of its message.
//!
//! What it does: [`LabelBook`] numbers a pair by a fixed hash of it (FNV-1a, folded to 32 bits,
//! odd, so never 0), the same on every host and in every version, so that a bounce that reaches
//! another host of a cluster names the same pair there when that host has sent mail of it too;
//! two pairs with the same hash on one host get the next free odd numbers. It keeps them in
//! `<dir>/labels`, one line (`number<TAB>campaign<TAB>tenant`) a pair; a new pair is written and
//! synced before its number is given out. A shard asks through its own [`ShardLabels`], which
//! remembers the pairs it has seen, so that the book's mutex is taken only the first time a
//! shard meets a pair.
//!
//! What it does not do: no VERP encoding, no statistics.
//!
//! Invariants: a number, once given, names the same pair for as long as the file is kept;
//! number 0 is "no labels", and a number this host never gave names nothing; at most `max`
//! pairs (past that, new pairs get 0 and a warning); a
//! torn last line (a crash while writing it) is cut off at start; labels never hold a tab or a
//! line end (they are checked at reception).

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The file's name in the book's directory.
pub const FILE: &str = "labels";
/// Pairs a shard remembers before it starts over.
const SHARD_CACHE: usize = 4096;

/// See the module header.
pub struct LabelBook {
    inner: Mutex<Inner>,
    max: usize,
}

struct Inner {
    ids: HashMap<(String, String), u32>,
    pairs: HashMap<u32, (String, String)>,
    file: File,
    warned: bool,
}

/// Numbers tried for one pair before it is given none.
const PROBES: u32 = 8;

/// The first number tried for a pair: FNV-1a 64 of `campaign TAB tenant`, folded, odd.
fn hash(campaign: &str, tenant: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in campaign
        .bytes()
        .chain(std::iter::once(b'\t'))
        .chain(tenant.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ((h >> 32) as u32 ^ h as u32) | 1
}

impl LabelBook {
    /// Opens (or creates) the book in `dir`, reading at most `max` pairs.
    pub fn open(dir: &Path, max: usize) -> std::io::Result<LabelBook> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut ids = HashMap::new();
        let mut pairs = HashMap::new();
        let mut good = 0u64;
        let mut reader = BufReader::new(&file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.by_ref().take(1024).read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') || pairs.len() >= max {
                break;
            }
            let text = String::from_utf8_lossy(&line[..n - 1]).into_owned();
            let mut parts = text.splitn(3, '\t');
            let (Some(number), Some(c), Some(t)) = (parts.next(), parts.next(), parts.next())
            else {
                break;
            };
            let Ok(number) = number.parse::<u32>() else {
                break;
            };
            let pair = (c.to_owned(), t.to_owned());
            ids.insert(pair.clone(), number);
            pairs.insert(number, pair);
            good += n as u64;
        }
        drop(reader);
        if file.metadata()?.len() > good && pairs.len() < max {
            // A torn last line: cut off, so that the next pair starts on a line of its own.
            file.set_len(good)?;
            file.sync_all()?;
        }
        file.flush()?;
        Ok(LabelBook {
            inner: Mutex::new(Inner {
                ids,
                pairs,
                file,
                warned: false,
            }),
            max,
        })
    }

    /// The number of `(campaign, tenant)` (0 when both are empty, when the book is full, or
    /// when the pair cannot be written).
    pub fn number(&self, campaign: &str, tenant: &str) -> u32 {
        if campaign.is_empty() && tenant.is_empty() {
            return 0;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (campaign.to_owned(), tenant.to_owned());
        if let Some(&n) = inner.ids.get(&key) {
            return n;
        }
        if inner.pairs.len() >= self.max {
            if !inner.warned {
                inner.warned = true;
                tracing::warn!(
                    max = self.max,
                    "the label book is full (feedback.max_label_pairs): bounces of new campaigns will not name them"
                );
            }
            return 0;
        }
        let first = hash(campaign, tenant);
        let Some(n) = (0..PROBES)
            .map(|i| first.wrapping_add(2 * i))
            .find(|n| !inner.pairs.contains_key(n))
        else {
            tracing::warn!(
                campaign,
                tenant,
                "no free label number: this pair's bounces will not name it"
            );
            return 0;
        };
        let line = format!("{n}\t{campaign}\t{tenant}\n");
        let written = inner
            .file
            .write_all(line.as_bytes())
            .and_then(|()| inner.file.sync_data());
        if let Err(e) = written {
            tracing::warn!(error = %e, "the label book cannot be written: this campaign's bounces will not name it");
            return 0;
        }
        inner.pairs.insert(n, key.clone());
        inner.ids.insert(key, n);
        n
    }

    /// The pair numbered `n`, if there is one.
    pub fn pair(&self, n: u32) -> Option<(String, String)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.pairs.get(&n).cloned()
    }

    /// Pairs in the book.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.pairs.len())
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A pair a shard has met: its number, campaign and tenant.
type Seen = (u32, Box<str>, Box<str>);

/// A shard's view of the book (see the module header).
pub struct ShardLabels {
    book: Arc<LabelBook>,
    seen: RefCell<HashMap<u64, Seen>>,
}

impl ShardLabels {
    /// A shard's view of `book`.
    pub fn new(book: Arc<LabelBook>) -> ShardLabels {
        ShardLabels {
            book,
            seen: RefCell::new(HashMap::new()),
        }
    }

    /// The host's book.
    pub fn book(&self) -> &Arc<LabelBook> {
        &self.book
    }

    /// [`LabelBook::number`], from the shard's memory when it has met the pair before.
    pub fn number(&self, campaign: &str, tenant: &str) -> u32 {
        if campaign.is_empty() && tenant.is_empty() {
            return 0;
        }
        let mut h = DefaultHasher::new();
        (campaign, tenant).hash(&mut h);
        let key = h.finish();
        if let Some((n, c, t)) = self.seen.borrow().get(&key)
            && &**c == campaign
            && &**t == tenant
        {
            return *n;
        }
        let n = self.book.number(campaign, tenant);
        let mut seen = self.seen.borrow_mut();
        if seen.len() >= SHARD_CACHE {
            seen.clear();
        }
        seen.insert(key, (n, campaign.into(), tenant.into()));
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_survive_a_restart_and_a_torn_line_and_agree_between_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let book = LabelBook::open(dir.path(), 3).unwrap();
        assert_eq!(book.number("", ""), 0);
        let a = book.number("spring", "acme");
        let b = book.number("spring", "");
        assert!(a != 0 && b != 0 && a != b);
        assert_eq!(book.number("spring", "acme"), a);
        // Another host numbers the same pair the same way.
        let elsewhere = LabelBook::open(other.path(), 3).unwrap();
        assert_eq!(elsewhere.number("spring", ""), b);
        assert_eq!(
            elsewhere.pair(a),
            None,
            "a number it never gave names nothing"
        );
        drop(book);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap();
        f.write_all(b"77\ttorn\tpa").unwrap();
        let book = LabelBook::open(dir.path(), 3).unwrap();
        assert_eq!(book.pair(a), Some(("spring".into(), "acme".into())));
        assert_eq!(book.pair(b), Some(("spring".into(), String::new())));
        assert_eq!(book.pair(77), None);
        assert_eq!(book.pair(0), None);
        let shard = ShardLabels::new(Arc::new(book));
        let c = shard.number("summer", "");
        assert_eq!(shard.number("summer", ""), c);
        // Full: new pairs get no number.
        assert_eq!(shard.number("autumn", ""), 0);
        assert_eq!(shard.book().len(), 3);
        let book = LabelBook::open(dir.path(), 10).unwrap();
        assert_eq!(book.pair(c), Some(("summer".into(), String::new())));
    }

    #[test]
    fn the_hash_is_fixed_and_odd() {
        assert_eq!(hash("spring", "acme"), hash("spring", "acme"));
        assert_eq!(hash("a", "") % 2, 1);
        assert_ne!(hash("a", "b"), hash("a\tb", ""));
    }
}
