//! What each hook has done and how far behind it is, shared with the admin endpoint.
//!
//! What it does: one [`Status`] per hook behind a mutex that its runner updates after each
//! read, POST and commit; [`Status::json`] is the hook's entry in `GET /webhooks`, and
//! [`encode`] writes the `mta_webhook_*` metrics in the Prometheus text format.
//!
//! What it does not do: no decisions; nothing on a shard's mail path touches it (the event
//! log's retention asks it for the committed positions, once per rotation).
//!
//! Invariants: counters only grow; `committed` is what is on disk in the cursor file.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::files::Position;

/// The state of one hook.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// The hook's name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Committed positions by shard (what the cursor file holds), with the file's name then.
    pub committed: BTreeMap<usize, (Position, String)>,
    /// Octets of the logs after the committed positions.
    pub lag_bytes: u64,
    /// Age of the oldest event read but not yet acknowledged, in seconds (0 when none waits).
    pub lag_seconds: f64,
    /// Events waiting in the batch being sent.
    pub pending: usize,
    /// POSTs by result (`ok`, `http_error`, `transport_error`).
    pub posts: BTreeMap<&'static str, u64>,
    /// Events acknowledged by the endpoint.
    pub events_sent: u64,
    /// Lines skipped: not JSON, longer than the limit, or torn by a crash.
    pub skipped_lines: u64,
    /// Log files that were gone before the hook had read them.
    pub lost_files: u64,
    /// The last failure, and when (Unix ms).
    pub last_error: Option<(String, u64)>,
    /// When the endpoint last answered `2xx` (Unix ms).
    pub last_success: Option<u64>,
    /// Failures since the last success.
    pub failures: u32,
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Status {
    /// The hook's entry in `GET /webhooks`.
    pub fn json(&self) -> Value {
        let cursor: Vec<Value> = self
            .committed
            .iter()
            .map(|(shard, (p, file))| {
                json!({"shard": shard, "file": file, "inode": p.inode, "offset": p.offset})
            })
            .collect();
        json!({
            "name": self.name,
            "url": self.url,
            "cursor": cursor,
            "lag_bytes": self.lag_bytes,
            "lag_seconds": self.lag_seconds,
            "pending_events": self.pending,
            "posts": self.posts,
            "events_sent": self.events_sent,
            "skipped_lines": self.skipped_lines,
            "lost_files": self.lost_files,
            "failures_in_a_row": self.failures,
            "last_error": self.last_error.as_ref().map(|(e, _)| e),
            "last_error_unix_ms": self.last_error.as_ref().map(|(_, t)| t),
            "last_success_unix_ms": self.last_success,
        })
    }
}

/// The `mta_webhook_*` metrics of `hooks`.
pub fn encode(hooks: &[Status]) -> String {
    let mut out = String::new();
    if hooks.is_empty() {
        return out;
    }
    let mut family =
        |name: &str, kind: &str, help: &str, rows: &mut dyn Iterator<Item = (String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
    let hook = |h: &Status| format!("hook=\"{}\"", h.name);
    family(
        "mta_webhook_lag_bytes",
        "gauge",
        "Octets of the event logs after the hook's committed cursor.",
        &mut hooks.iter().map(|h| (hook(h), h.lag_bytes.to_string())),
    );
    family(
        "mta_webhook_lag_seconds",
        "gauge",
        "Age of the oldest event read but not yet acknowledged by the endpoint.",
        &mut hooks
            .iter()
            .map(|h| (hook(h), format!("{:.3}", h.lag_seconds))),
    );
    family(
        "mta_webhook_pending_events",
        "gauge",
        "Events in the batch being sent.",
        &mut hooks.iter().map(|h| (hook(h), h.pending.to_string())),
    );
    family(
        "mta_webhook_posts_total",
        "counter",
        "POSTs by result: ok (2xx), http_error (another status), transport_error (no answer).",
        &mut hooks.iter().flat_map(|h| {
            ["ok", "http_error", "transport_error"]
                .into_iter()
                .map(move |r| {
                    (
                        format!("hook=\"{}\",result=\"{r}\"", h.name),
                        h.posts.get(r).copied().unwrap_or(0).to_string(),
                    )
                })
        }),
    );
    family(
        "mta_webhook_events_total",
        "counter",
        "Events acknowledged by the endpoint.",
        &mut hooks.iter().map(|h| (hook(h), h.events_sent.to_string())),
    );
    family(
        "mta_webhook_skipped_lines_total",
        "counter",
        "Log lines not sent: not JSON, over the line limit, or torn by a crash.",
        &mut hooks.iter().map(|h| (hook(h), h.skipped_lines.to_string())),
    );
    family(
        "mta_webhook_lost_files_total",
        "counter",
        "Log files removed before the hook had read them.",
        &mut hooks.iter().map(|h| (hook(h), h.lost_files.to_string())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_name_each_hook_and_result() {
        let mut s = Status {
            name: "crm".into(),
            lag_bytes: 12,
            ..Status::default()
        };
        s.posts.insert("ok", 3);
        let text = encode(&[s]);
        assert!(
            text.contains("mta_webhook_lag_bytes{hook=\"crm\"} 12\n"),
            "{text}"
        );
        assert!(text.contains("mta_webhook_posts_total{hook=\"crm\",result=\"ok\"} 3\n"));
        assert!(text.contains("mta_webhook_posts_total{hook=\"crm\",result=\"http_error\"} 0\n"));
        assert!(encode(&[]).is_empty());
    }
}
