//! `loadgen sink`'s counters: per domain, per shard, merged into one report.
//!
//! What it does: counts messages, recipients, octets, corrupt and duplicate messages and
//! end-to-end latencies, and prints or encodes them.
//!
//! What it does not do: no serving, no options.
//!
//! Invariants: each shard counts its own; merging adds them.

use super::*;

/// Counts of one domain.
#[derive(Clone, Debug, Default)]
pub struct DomainCount {
    /// Messages with at least one recipient in the domain.
    pub messages: u64,
    /// Recipients.
    pub recipients: u64,
    /// Octets of those messages.
    pub bytes: u64,
}

/// What a sink received.
#[derive(Debug)]
pub struct SinkStats {
    /// Messages accepted.
    pub messages: u64,
    /// Recipients accepted.
    pub recipients: u64,
    /// Octets accepted.
    pub bytes: u64,
    /// Per recipient domain.
    pub domains: BTreeMap<String, DomainCount>,
    /// Loadgen messages whose digest did not match.
    pub corrupt: u64,
    /// Loadgen messages received more than once.
    pub duplicates: u64,
    /// Loadgen messages received (with a digest).
    pub checked: u64,
    /// Faults injected, by (stage, code).
    pub injected: BTreeMap<String, u64>,
    /// Connections accepted.
    pub connections: u64,
    /// Sessions upgraded with STARTTLS.
    pub tls_sessions: u64,
    /// End-to-end latency (send time to end of data), microseconds.
    pub latency: Histogram<u64>,
    /// Seconds from first to last message.
    pub active_seconds: f64,
    pub(super) ids: HashSet<String>,
    pub(super) first: Option<Instant>,
    pub(super) last: Option<Instant>,
}

impl Default for SinkStats {
    fn default() -> Self {
        SinkStats {
            messages: 0,
            recipients: 0,
            bytes: 0,
            domains: BTreeMap::new(),
            corrupt: 0,
            duplicates: 0,
            checked: 0,
            injected: BTreeMap::new(),
            connections: 0,
            tls_sessions: 0,
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds"),
            active_seconds: 0.0,
            ids: HashSet::new(),
            first: None,
            last: None,
        }
    }
}

impl SinkStats {
    pub(super) fn merge(&mut self, other: SinkStats) {
        self.messages += other.messages;
        self.recipients += other.recipients;
        self.bytes += other.bytes;
        for (d, c) in other.domains {
            let e = self.domains.entry(d).or_default();
            e.messages += c.messages;
            e.recipients += c.recipients;
            e.bytes += c.bytes;
        }
        self.corrupt += other.corrupt;
        self.checked += other.checked;
        self.duplicates += other.duplicates;
        for id in other.ids {
            if !self.ids.insert(id) {
                self.duplicates += 1;
            }
        }
        for (k, n) in other.injected {
            *self.injected.entry(k).or_default() += n;
        }
        self.connections += other.connections;
        self.tls_sessions += other.tls_sessions;
        let _ = self.latency.add(&other.latency);
        self.first = match (self.first, other.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = self.last.max(other.last);
        if let (Some(f), Some(l)) = (self.first, self.last) {
            self.active_seconds = (l - f).as_secs_f64();
        }
    }

    /// Text summary.
    pub fn text(&self) -> String {
        let p = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        let mut s = format!(
            "loadgen sink: messages {} recipients {} bytes {} connections {} tls_sessions {} \
             corrupt {} duplicates {} checked {}\n  rate {:.1} msg/s over {:.3}s\n  end-to-end latency: p50={:.2}ms \
             p99={:.2}ms max={:.2}ms\n",
            self.messages,
            self.recipients,
            self.bytes,
            self.connections,
            self.tls_sessions,
            self.corrupt,
            self.duplicates,
            self.checked,
            self.messages as f64 / self.active_seconds.max(1e-9),
            self.active_seconds,
            p(0.5),
            p(0.99),
            self.latency.max() as f64 / 1000.0,
        );
        for (k, n) in &self.injected {
            s.push_str(&format!("  injected {k}: {n}\n"));
        }
        for (d, c) in self.domains.iter().take(50) {
            s.push_str(&format!(
                "  {d}: messages {} recipients {}\n",
                c.messages, c.recipients
            ));
        }
        s
    }

    /// JSON summary.
    pub fn json(&self) -> serde_json::Value {
        let domains: serde_json::Map<String, serde_json::Value> = self
            .domains
            .iter()
            .map(|(d, c)| {
                (
                    d.clone(),
                    json!({"messages": c.messages, "recipients": c.recipients, "bytes": c.bytes}),
                )
            })
            .collect();
        json!({
            "tool": "loadgen sink",
            "messages": self.messages,
            "recipients": self.recipients,
            "bytes": self.bytes,
            "connections": self.connections,
            "tls_sessions": self.tls_sessions,
            "corrupt": self.corrupt,
            "duplicates": self.duplicates,
            "checked": self.checked,
            "injected": self.injected,
            "active_seconds": self.active_seconds,
            "end_to_end_latency": {
                "p50_us": self.latency.value_at_quantile(0.5),
                "p99_us": self.latency.value_at_quantile(0.99),
                "max_us": self.latency.max(),
                "samples": self.latency.len(),
            },
            "domains": domains,
        })
    }
}
