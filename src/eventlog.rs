//! The event log: one JSON line per reception, rejection, delivery, operator event, change
//! to the suppression list and campaign pause or resume, per shard.
//!
//! What it does: formats records into an in-memory buffer and appends it to
//! `<log.dir>/delivery-<shard>.jsonl` when it passes 64 KiB or when `flush` is called (the shard
//! flushes every second and at shutdown, the spool before each group commit writes, and
//! [`EventLog::written`] once for all the lines buffered before it); rotates the file by size
//! and age (the old file is renamed `delivery-<shard>.<unix seconds>.jsonl`, with `-<n>` added
//! for a second rotation within the same second) and deletes rotated files older than the
//! retention that the retention guard (the webhooks) releases. No sync: the log is a record for
//! operators, the spool is the source of truth. The schema is in `docs/LOG_SCHEMA.md`.
//!
//! What it does not do: no reading, no compression, no shipping elsewhere (`webhook`).
//!
//! Invariants: each line is one JSON object terminated by `\n`, with `type`, `time` (unix
//! ms), `id` (`<shard>-<start ms>-<n>`, unique on the host) and `v` (the schema version)
//! first; a line is never split across two files; a file left ending mid-line by a crash gets
//! a line end before the next line.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::LogSection;

/// A delivery event: `Delivery`, `TransientFailure`, `Bounce`, `Expiration`, `AdminAction`.
pub struct Event<'a> {
    /// The event type.
    pub kind: &'a str,
    /// Queue id.
    pub queue_id: &'a str,
    /// Envelope sender.
    pub sender: &'a str,
    /// Recipient.
    pub recipient: &'a str,
    /// Destination (queue) name.
    pub destination: &'a str,
    /// Remote host and address, if one answered.
    pub host: &'a str,
    /// TLS version and cipher of the connection, empty for plaintext.
    pub tls: &'a str,
    /// The TLS policy the connection applied (`dane`, `mta-sts`, `opportunistic`, ...).
    pub tls_policy: &'a str,
    /// `yes`/`no`: the server's certificate was authenticated; empty for plaintext.
    pub tls_verified: &'a str,
    /// The user name the connection authenticated as (outbound AUTH), empty without AUTH.
    pub auth: &'a str,
    /// The reply or failure.
    pub reply: &'a str,
    /// Enhanced status code.
    pub status: &'a str,
    /// Bounce class of a failure (`bad_mailbox`, `policy_spam`, ...), empty otherwise.
    pub class: &'a str,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// Time the attempt took.
    pub duration_ms: u64,
    /// Message size.
    pub size: usize,
    /// The message's campaign, empty without one (then not written).
    pub campaign: &'a str,
    /// The message's tenant, empty without one (then not written).
    pub tenant: &'a str,
    /// The priority class the attempt was made in; empty for recipients ended without one.
    pub priority: &'a str,
}

/// A shard's event log.
pub struct EventLog {
    dir: PathBuf,
    shard: usize,
    path: PathBuf,
    buf: RefCell<Vec<u8>>,
    size: Cell<u64>,
    opened: Cell<Instant>,
    rotate_size: Cell<u64>,
    rotate_interval: Cell<Duration>,
    keep: Cell<Duration>,
    /// `<shard>-<start ms>-`, the fixed part of every line's `id`.
    id_prefix: String,
    /// Lines formatted so far (the last part of the `id`).
    seq: Cell<u64>,
    /// Calls of `flush`, for [`EventLog::written`].
    flushes: Cell<u64>,
    /// A flush for the waiters of `written` is on its way.
    flush_queued: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
    /// Says whether a rotated file past the retention may be deleted (None: always).
    guard: RefCell<Option<RetentionGuard>>,
    /// The live file, open for appending, and when it was opened.
    file: RefCell<Option<(std::fs::File, Instant)>>,
}

/// How long the live file is written through one open handle before it is opened by name
/// again.
const REOPEN: Duration = Duration::from_secs(1);

/// Says whether the rotated file at the path may be deleted.
pub type RetentionGuard = Box<dyn Fn(&Path) -> bool>;

/// The event schema's version, the `v` of every line (`docs/LOG_SCHEMA.md`, "Versions").
pub const SCHEMA_VERSION: u32 = 1;

impl EventLog {
    /// The log of `shard` per `[log]` (the directory is created if needed).
    pub fn new(cfg: &LogSection, shard: usize) -> std::io::Result<EventLog> {
        std::fs::create_dir_all(&cfg.dir)?;
        let path = cfg.dir.join(format!("delivery-{shard}.jsonl"));
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        let mut buf = Vec::with_capacity(64 * 1024);
        if size > 0 && !ends_with_newline(&path, size) {
            // A crash in the middle of a write: the torn line stays alone on its line.
            buf.push(b'\n');
        }
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Ok(EventLog {
            dir: cfg.dir.clone(),
            shard,
            path,
            buf: RefCell::new(buf),
            size: Cell::new(size),
            opened: Cell::new(Instant::now()),
            rotate_size: Cell::new(cfg.rotate_size.0),
            rotate_interval: Cell::new(cfg.rotate_interval.0),
            keep: Cell::new(cfg.keep.0),
            id_prefix: format!("{shard}-{start}-"),
            seq: Cell::new(0),
            flushes: Cell::new(0),
            flush_queued: Cell::new(false),
            waiters: RefCell::new(Vec::new()),
            guard: RefCell::new(None),
            file: RefCell::new(None),
        })
    }

    /// Keeps rotated files past the retention unless `guard` releases them.
    pub fn set_retention_guard(&self, guard: RetentionGuard) {
        *self.guard.borrow_mut() = Some(guard);
    }

    /// Resolves once every line buffered before the call is written to the file (or its write
    /// failed: the log never stops mail). The callers of one executor turn share one write: the
    /// first queues a task that flushes after the tasks already woken have run. Only inside
    /// the shard's executor.
    pub fn written(self: &Rc<Self>) -> impl std::future::Future<Output = ()> + use<> {
        let target = self.flushes.get() + 1;
        if !self.flush_queued.replace(true) {
            let log = self.clone();
            glommio::spawn_local(async move { log.flush() }).detach();
        }
        let log = self.clone();
        std::future::poll_fn(move |cx| {
            if log.flushes.get() >= target {
                return Poll::Ready(());
            }
            log.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
    }

    /// Takes a reloaded `[log]`'s rotation and retention (the directory stays: a new one
    /// takes a restart).
    pub fn set_rotation(&self, cfg: &LogSection) {
        self.rotate_size.set(cfg.rotate_size.0);
        self.rotate_interval.set(cfg.rotate_interval.0);
        self.keep.set(cfg.keep.0);
    }

    fn begin(&self, kind: &str) -> std::cell::RefMut<'_, Vec<u8>> {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        let mut b = self.buf.borrow_mut();
        b.extend_from_slice(b"{\"type\":");
        json(&mut b, kind);
        let _ = write!(
            b,
            ",\"time\":{time},\"id\":\"{}{seq}\",\"v\":{SCHEMA_VERSION}",
            self.id_prefix
        );
        b
    }

    fn end(&self, mut b: std::cell::RefMut<'_, Vec<u8>>) {
        b.extend_from_slice(b"}\n");
        let full = b.len() >= 64 * 1024;
        drop(b);
        if full {
            self.flush();
        }
    }

    /// Appends a delivery event.
    pub fn record(&self, e: &Event<'_>) {
        let mut b = self.begin(e.kind);
        for (key, value) in [
            ("queue_id", e.queue_id),
            ("sender", e.sender),
            ("recipient", e.recipient),
            ("destination", e.destination),
            ("host", e.host),
            ("tls", e.tls),
            ("tls_policy", e.tls_policy),
            ("tls_verified", e.tls_verified),
            ("auth", e.auth),
            ("reply", e.reply),
            ("status", e.status),
            ("class", e.class),
            ("priority", e.priority),
        ] {
            field(&mut b, key, value);
        }
        let _ = write!(
            b,
            ",\"attempt\":{},\"duration_ms\":{},\"size\":{}",
            e.attempt, e.duration_ms, e.size
        );
        labels(&mut b, e.campaign, e.tenant);
        self.end(b);
    }

    /// Writes what is buffered, rotating first when the file is due (errors are reported and
    /// the lines dropped: the log must never stop mail).
    pub fn flush(&self) {
        self.write_buffer();
        self.flushes.set(self.flushes.get() + 1);
        self.flush_queued.set(false);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    fn write_buffer(&self) {
        // The buffer keeps its capacity: it is cleared, not replaced.
        let mut data = self.buf.borrow_mut();
        if data.is_empty() {
            return;
        }
        let size = self.size.get();
        if size > 0
            && (size + data.len() as u64 > self.rotate_size.get()
                || self.opened.get().elapsed() >= self.rotate_interval.get())
        {
            self.rotate();
        }
        // The file stays open between writes (they come at every group commit), and is
        // opened again by name at most a second later, as a write used to.
        let mut file = self.file.borrow_mut();
        if file.as_ref().is_some_and(|(_, at)| at.elapsed() >= REOPEN) {
            *file = None;
        }
        if file.is_none() {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                Ok(f) => *file = Some((f, Instant::now())),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "event log write failed");
                    data.clear();
                    return;
                }
            }
        }
        let r = file.as_mut().map(|(f, _)| f.write_all(&data));
        match r {
            Some(Ok(())) => self.size.set(self.size.get() + data.len() as u64),
            Some(Err(e)) => {
                *file = None;
                tracing::warn!(path = %self.path.display(), error = %e, "event log write failed")
            }
            None => {}
        }
        data.clear();
    }

    /// Renames the current file aside and deletes rotated files past the retention.
    fn rotate(&self) {
        // Whatever happens, the next write opens the file by name.
        *self.file.borrow_mut() = None;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Never overwrite an earlier rotation of the same second.
        let mut aside = self
            .dir
            .join(format!("delivery-{}.{secs}.jsonl", self.shard));
        let mut n = 1;
        while aside.exists() {
            aside = self
                .dir
                .join(format!("delivery-{}.{secs}-{n}.jsonl", self.shard));
            n += 1;
        }
        if let Err(e) = std::fs::rename(&self.path, &aside) {
            tracing::warn!(path = %self.path.display(), error = %e, "event log rotation failed");
            return;
        }
        self.size.set(0);
        self.opened.set(Instant::now());
        let prefix = format!("delivery-{}.", self.shard);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let guard = self.guard.borrow();
        let mut kept = 0;
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with(&prefix) || !name.ends_with(".jsonl") {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > self.keep.get()));
            if old && guard.as_ref().is_some_and(|g| !g(&entry.path())) {
                kept += 1;
            } else if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        if kept > 0 {
            tracing::info!(
                shard = self.shard,
                files = kept,
                "rotated event-log files kept past log.keep: a webhook has not read them yet"
            );
        }
    }
}

/// True when the last octet of the `size`-octet file at `path` is a line end (or it cannot be
/// read: then nothing is added).
fn ends_with_newline(path: &Path, size: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8; 1];
    std::fs::File::open(path)
        .and_then(|f| f.read_exact_at(&mut last, size - 1))
        .map_or(true, |()| last[0] == b'\n')
}

/// Appends `,"key":"value"` (the key is a literal that needs no escaping).
/// Appends `campaign` and `tenant`, each only when not empty.
fn labels(out: &mut Vec<u8>, campaign: &str, tenant: &str) {
    for (key, value) in [("campaign", campaign), ("tenant", tenant)] {
        if !value.is_empty() {
            field(out, key, value);
        }
    }
}

fn field(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    json(out, value);
}

/// Appends `s` as a JSON string literal, escaping in place (no allocation).
fn json(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        if c != b'"' && c != b'\\' && c >= 0x20 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            c => {
                let _ = write!(out, "\\u{:04x}", c);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
#[path = "eventlog_tests.rs"]
mod tests;

#[path = "eventlog_feedback.rs"]
mod feedback;
pub use feedback::Feedback;

#[path = "eventlog_lines.rs"]
mod lines;
pub use lines::{Operator, Reception, Rejection, Suppression, TlsReport};
