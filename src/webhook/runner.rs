//! The loop of one hook, on a thread of its own: read the shards' logs, filter, batch, POST,
//! commit.
//!
//! What it does: takes lines from every shard's [`Tail`] in turn (one line per shard per
//! turn, so a busy shard does not starve the others), keeps those whose `type` and `tenant`
//! pass the hook's filters, and closes a batch at `batch_size` events (or [`MAX_BATCH_BYTES`])
//! or once its first event has waited `batch_wait`. It POSTs the batch until the endpoint
//! answers `2xx`, waiting `retry_min`, doubled after each failure up to `retry_max`, between
//! attempts, and only then stores the cursor (the positions after the batch's last lines).
//! Lines that the filters leave out move the cursor too (stored at most once a second when
//! no batch is open).
//!
//! What it does not do: no writing of the log, no work on a shard's thread: a slow or down
//! endpoint delays this hook only.
//!
//! Invariants: the cursor never passes a line that was not acknowledged or filtered out, so a
//! crash or a stop at any point sends again what may not have arrived (at least once) and
//! loses nothing; memory is one batch plus one [`super::tail::CHUNK`] and one line per shard.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::WebhookConfig;
use super::cursor::{self, Cursor, Entry};
use super::files::{self, Position};
use super::post::Poster;
use super::status::{Status, now_ms};
use super::tail::Tail;

/// The most octets of events one POST carries (a batch closes early past it).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// The longest line sent; a longer one is skipped and counted.
pub const MAX_LINE: usize = 1 << 20;

/// How often the logs are looked at when there was nothing new.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// How often the lag is measured and a filtered-only advance is stored.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// The stop request shared by the hooks' threads.
#[derive(Default)]
pub struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    /// Asks every runner to stop (each ends its current POST first).
    pub fn request(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Sleeps for `d` or until a stop is requested; true when stopped.
    fn sleep(&self, d: Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, d, |stopped| !*stopped)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }

    fn stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The part of a line the filters read.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    tenant: Option<Cow<'a, str>>,
    #[serde(default)]
    time: u64,
}

/// The batch being filled or sent.
#[derive(Default)]
struct Batch {
    /// The events, joined by `,`.
    events: Vec<u8>,
    count: usize,
    /// When its first event was added.
    opened: Option<Instant>,
    /// The `time` of its first event (Unix ms).
    first_time: u64,
}

/// One hook's loop (see the module header).
pub struct Runner {
    pub(super) hook: WebhookConfig,
    pub(super) poster: Poster,
    pub(super) log_dir: PathBuf,
    pub(super) tails: Vec<Tail>,
    pub(super) status: Arc<Mutex<Status>>,
    pub(super) stop: Arc<Stop>,
    /// Lines that were not JSON objects with a `type`.
    pub(super) unparsable: u64,
}

impl Runner {
    /// The tails of `shards` shards from the stored cursor of `hook`; a hook without one starts
    /// after what the logs hold now, and stores that at once.
    pub fn open(
        hook: &WebhookConfig,
        log_dir: &std::path::Path,
        shards: usize,
    ) -> std::io::Result<(Vec<Tail>, Cursor)> {
        let path = cursor::path(log_dir, &hook.name);
        let stored = cursor::load(&path)?;
        let cursor = match stored {
            Some(c) => c,
            None => {
                let mut c = Cursor::default();
                for shard in 0..shards {
                    if let Some(last) = files::list(log_dir, shard).pop() {
                        let at = Position {
                            inode: last.inode,
                            offset: last.len,
                        };
                        c.shards.insert(shard, entry(&last.path, at));
                    }
                }
                cursor::store(&path, &c)?;
                c
            }
        };
        let count = cursor
            .shards
            .keys()
            .next_back()
            .map_or(shards, |&s| shards.max(s + 1));
        let tails = (0..count)
            .map(|s| Tail::new(log_dir, s, cursor.shards.get(&s).map(|e| e.at), MAX_LINE))
            .collect();
        Ok((tails, cursor))
    }

    /// Runs until a stop is requested.
    pub fn run(mut self) {
        let types: HashSet<String> = self.hook.events.iter().cloned().collect();
        let tenants: HashSet<String> = self.hook.tenants.iter().cloned().collect();
        let lost: u64 = self.tails.iter().map(|t| u64::from(t.lost_file)).sum();
        if lost > 0 {
            tracing::warn!(hook = %self.hook.name, files = lost, "webhook: the log file of a stored cursor is gone; reading from the oldest file left");
        }
        self.update(|s| s.lost_files += lost);
        let mut batch = Batch::default();
        let mut committed: Vec<Option<Position>> = self.positions();
        let mut housekeeping = Instant::now();
        let mut turn = 0usize;
        while !self.stop.stopped() {
            let read = self.fill(&mut batch, &types, &tenants, &mut turn);
            let full = batch.count >= self.hook.batch_size || batch.events.len() >= MAX_BATCH_BYTES;
            let due = batch
                .opened
                .is_some_and(|t| t.elapsed() >= self.hook.batch_wait.0);
            if batch.count > 0 && (full || due) {
                let at = self.positions();
                if !self.send(&batch) {
                    return;
                }
                self.commit(&at, batch.count);
                committed = at;
                batch = Batch::default();
                continue;
            }
            if housekeeping.elapsed() >= HOUSEKEEPING {
                housekeeping = Instant::now();
                let at = self.positions();
                if batch.count == 0 && at != committed {
                    // Only filtered-out lines were read since the last commit.
                    self.commit(&at, 0);
                    committed = at;
                }
                self.measure(&batch);
            }
            if read == 0 {
                let wait = match batch.opened {
                    Some(t) => self
                        .hook
                        .batch_wait
                        .0
                        .saturating_sub(t.elapsed())
                        .min(IDLE_POLL),
                    None => IDLE_POLL,
                };
                if self.stop.sleep(wait) {
                    return;
                }
            }
        }
    }

    /// Reads lines into `batch` until it is full or no shard has more; returns lines read.
    fn fill(
        &mut self,
        batch: &mut Batch,
        types: &HashSet<String>,
        tenants: &HashSet<String>,
        turn: &mut usize,
    ) -> usize {
        let mut read = 0;
        let mut skipped = 0u64;
        let shards = self.tails.len();
        let mut idle = 0;
        while idle < shards
            && batch.count < self.hook.batch_size
            && batch.events.len() < MAX_BATCH_BYTES
        {
            *turn = (*turn + 1) % shards.max(1);
            let tail = &mut self.tails[*turn];
            let line = match tail.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => {
                    idle += 1;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(hook = %self.hook.name, shard = *turn, error = %e, "webhook: reading the event log failed");
                    idle += 1;
                    continue;
                }
            };
            idle = 0;
            read += 1;
            let Ok(head) = serde_json::from_slice::<Head<'_>>(&line.text) else {
                skipped += 1;
                continue;
            };
            if !passes(&head, types, tenants) {
                continue;
            }
            if batch.count > 0 {
                batch.events.push(b',');
            } else {
                batch.opened = Some(Instant::now());
                batch.first_time = head.time;
            }
            batch.events.extend_from_slice(&line.text);
            batch.count += 1;
        }
        self.unparsable += skipped;
        let total = self.unparsable + self.tails.iter().map(|t| t.skipped).sum::<u64>();
        if total > self.update(|s| s.skipped_lines) {
            tracing::warn!(hook = %self.hook.name, total, "webhook: event-log lines skipped (not JSON, too long or torn)");
        }
        self.update(|s| {
            s.skipped_lines = total;
            s.pending = batch.count;
        });
        read
    }

    /// POSTs `batch` until it is acknowledged (true) or a stop is requested (false).
    fn send(&self, batch: &Batch) -> bool {
        let mut body = Vec::with_capacity(batch.events.len() + 64);
        body.extend_from_slice(b"{\"hook\":");
        body.extend_from_slice(
            serde_json::to_string(&self.hook.name)
                .unwrap_or_default()
                .as_bytes(),
        );
        body.extend_from_slice(b",\"v\":1,\"events\":[");
        body.extend_from_slice(&batch.events);
        body.extend_from_slice(b"]}");
        let mut wait = self.hook.retry_min.0;
        loop {
            self.measure(batch);
            match self.poster.post(&body) {
                Ok(_) => {
                    self.update(|s| {
                        *s.posts.entry("ok").or_default() += 1;
                        s.last_success = Some(now_ms());
                        s.failures = 0;
                    });
                    return true;
                }
                Err(e) => {
                    let label = e.label();
                    let failures = self.update(|s| {
                        *s.posts.entry(label).or_default() += 1;
                        s.last_error = Some((e.to_string(), now_ms()));
                        s.failures += 1;
                        s.failures
                    });
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(hook = %self.hook.name, failures, retry_in = ?wait, error = %e, "webhook: POST failed");
                    }
                    if self.stop.sleep(wait) {
                        return false;
                    }
                    wait = (wait * 2).min(self.hook.retry_max.0);
                }
            }
        }
    }

    /// Every tail's position now.
    fn positions(&self) -> Vec<Option<Position>> {
        self.tails.iter().map(Tail::position).collect()
    }

    /// Stores `at` as the cursor; `events` were acknowledged with it.
    fn commit(&self, at: &[Option<Position>], events: usize) {
        let mut c = Cursor::default();
        for (shard, p) in at.iter().enumerate() {
            if let Some(p) = p {
                let name = files::list(&self.log_dir, shard)
                    .into_iter()
                    .find(|f| f.inode == p.inode)
                    .map(|f| f.path)
                    .unwrap_or_default();
                c.shards.insert(shard, entry(&name, *p));
            }
        }
        let path = cursor::path(&self.log_dir, &self.hook.name);
        if let Err(e) = cursor::store(&path, &c) {
            // Not stored: what was sent is sent again after a restart (at least once).
            tracing::warn!(hook = %self.hook.name, error = %e, "webhook: storing the cursor failed");
            self.update(|s| s.events_sent += events as u64);
            return;
        }
        self.update(|s| {
            s.events_sent += events as u64;
            s.committed = c
                .shards
                .iter()
                .map(|(shard, e)| (*shard, (e.at, e.file.clone())))
                .collect();
        });
    }

    /// Measures the lag behind the committed cursor.
    fn measure(&self, batch: &Batch) {
        let committed: Vec<(usize, Position)> = {
            let s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            s.committed.iter().map(|(k, (p, _))| (*k, *p)).collect()
        };
        let mut bytes = 0;
        for shard in 0..self.tails.len() {
            let at = committed.iter().find(|(s, _)| *s == shard).map(|(_, p)| *p);
            bytes += files::lag(&files::list(&self.log_dir, shard), at);
        }
        let seconds = match batch.count {
            0 => 0.0,
            _ => now_ms().saturating_sub(batch.first_time) as f64 / 1000.0,
        };
        self.update(|s| {
            s.lag_bytes = bytes;
            s.lag_seconds = seconds;
        });
    }

    fn update<T>(&self, f: impl FnOnce(&mut Status) -> T) -> T {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// True when a line passes the filters: its type is among `types` and its tenant (`""` when
/// it has none) among `tenants`, an empty set passing everything.
fn passes(head: &Head<'_>, types: &HashSet<String>, tenants: &HashSet<String>) -> bool {
    let tenant = head.tenant.as_deref().unwrap_or("");
    (types.is_empty() || types.contains(head.kind.as_ref()))
        && (tenants.is_empty() || tenants.contains(tenant))
}

/// A cursor entry for `at` in the file now at `path`.
fn entry(path: &std::path::Path, at: Position) -> Entry {
    Entry {
        at,
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_type_and_tenant() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<HashSet<String>>();
        let head = |line: &'static str| serde_json::from_str::<Head<'static>>(line).unwrap();
        let plain = head(r#"{"type":"Delivery","time":1,"id":"0-1-1","v":1}"#);
        let shop = head(r#"{"type":"Bounce","time":1,"tenant":"shop"}"#);
        let none = set(&[]);
        assert!(passes(&plain, &none, &none));
        assert!(passes(&plain, &set(&["Delivery"]), &none));
        assert!(!passes(&plain, &set(&["Bounce"]), &none));
        assert!(!passes(&plain, &none, &set(&["shop"])));
        assert!(passes(&plain, &none, &set(&["shop", ""])));
        assert!(passes(&shop, &set(&["Bounce"]), &set(&["shop"])));
        assert!(!passes(&shop, &none, &set(&["other", ""])));
    }
}
