//! The delivery log: one JSON line per delivery attempt and per reception, per shard.
//!
//! What it does: appends records to an in-memory buffer and writes it to
//! `<log.dir>/delivery-<shard>.jsonl` when it passes 64 KiB or when `flush` is called (the shard
//! flushes every second and at shutdown). No sync per line: the log is a record for operators,
//! the spool is the source of truth.
//!
//! What it does not do: no rotation yet (a later operations feature), no reading.
//!
//! Invariants: each line is one JSON object terminated by `\n`; fields: `type`, `time` (unix
//! ms), `queue_id`, `recipient`, `destination`, `host`, `reply`, `status`, `attempt`,
//! `duration_ms`, `size`, `sender`.

use std::cell::RefCell;
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// One event.
pub struct Event<'a> {
    /// Reception, Delivery, TransientFailure, Bounce, Expiration.
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
    /// The reply or failure.
    pub reply: &'a str,
    /// Enhanced status code.
    pub status: &'a str,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// Time the attempt took.
    pub duration_ms: u64,
    /// Message size.
    pub size: usize,
}

/// A shard's delivery log.
pub struct DeliveryLog {
    path: PathBuf,
    buf: RefCell<Vec<u8>>,
}

impl DeliveryLog {
    /// A log for `shard` in `dir` (created if needed).
    pub fn new(dir: &std::path::Path, shard: usize) -> std::io::Result<DeliveryLog> {
        std::fs::create_dir_all(dir)?;
        Ok(DeliveryLog {
            path: dir.join(format!("delivery-{shard}.jsonl")),
            buf: RefCell::new(Vec::with_capacity(64 * 1024)),
        })
    }

    /// Appends one record.
    pub fn record(&self, e: &Event<'_>) {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut b = self.buf.borrow_mut();
        let _ = writeln!(
            b,
            "{{\"type\":{},\"time\":{time},\"queue_id\":{},\"sender\":{},\"recipient\":{},\
             \"destination\":{},\"host\":{},\"tls\":{},\"reply\":{},\"status\":{},\"attempt\":{},\
             \"duration_ms\":{},\"size\":{}}}",
            json(e.kind),
            json(e.queue_id),
            json(e.sender),
            json(e.recipient),
            json(e.destination),
            json(e.host),
            json(e.tls),
            json(e.reply),
            json(e.status),
            e.attempt,
            e.duration_ms,
            e.size
        );
        let full = b.len() >= 64 * 1024;
        drop(b);
        if full {
            self.flush();
        }
    }

    /// Writes what is buffered (errors are reported once per flush and the lines dropped).
    pub fn flush(&self) {
        let data = std::mem::take(&mut *self.buf.borrow_mut());
        if data.is_empty() {
            return;
        }
        let r = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(&data));
        if let Err(e) = r {
            tracing::warn!(path = %self.path.display(), error = %e, "delivery log write failed");
        }
    }
}

/// A JSON string literal.
fn json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::json;

    #[test]
    fn escapes() {
        assert_eq!(json("a\"b\\c\r\n"), "\"a\\\"b\\\\c\\u000d\\u000a\"");
    }
}
