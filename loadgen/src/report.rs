//! Results of a `send` run: reply counts, latency percentiles, as text and JSON.
//!
//! What it does: merges per-thread counters and histograms into one report and renders it, with
//! what the first TLS connection negotiated and the first connection error (if any).
//!
//! What it does not do: no measuring (the sender records), no I/O besides the caller's print.
//!
//! Invariants: `attempted = ok + refused_4xx + refused_5xx + failed`.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

use mta::tls::TlsInfo;

use crate::options::SendOptions;

/// Counters of one run.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Final reply codes, per code.
    pub by_code: BTreeMap<u16, u64>,
    /// Messages whose connection broke mid-transaction.
    pub failed: u64,
    /// Failed connection attempts.
    pub connect_errors: u64,
}

impl Counts {
    /// Counts one message's deciding reply.
    pub fn record(&mut self, code: u16) {
        *self.by_code.entry(code).or_default() += 1;
    }

    /// Adds another thread's counts.
    pub fn add(&mut self, other: &Counts) {
        for (code, n) in &other.by_code {
            *self.by_code.entry(*code).or_default() += n;
        }
        self.failed += other.failed;
        self.connect_errors += other.connect_errors;
    }

    fn class(&self, c: u16) -> u64 {
        self.by_code
            .iter()
            .filter(|(code, _)| **code / 100 == c)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default)]
pub struct Percentiles {
    /// (quantile label, microseconds).
    pub values: Vec<(&'static str, u64)>,
    /// Samples.
    pub count: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let values = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)]
            .into_iter()
            .map(|(n, q)| (n, h.value_at_quantile(q)))
            .chain([("max", h.max())])
            .collect();
        Percentiles {
            values,
            count: h.len(),
        }
    }

    fn text(&self) -> String {
        self.values
            .iter()
            .map(|(n, us)| format!("{n}={:.2}ms", *us as f64 / 1000.0))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (n, us) in &self.values {
            m.insert(format!("{n}_us"), json!(us));
        }
        m.insert("samples".into(), json!(self.count));
        serde_json::Value::Object(m)
    }
}

/// The final report of a `send` run.
#[derive(Clone, Debug)]
pub struct Report {
    /// Run id (in every message's X-Loadgen-Id).
    pub run: String,
    /// Target.
    pub target: String,
    /// Settings summary.
    pub settings: serde_json::Value,
    /// Wall time.
    pub elapsed: Duration,
    /// Counters.
    pub counts: Counts,
    /// End of data to final reply.
    pub reply: Percentiles,
    /// Whole transaction (from the intended send time in open loop).
    pub transaction: Percentiles,
    /// What the first TLS connection negotiated (None: plaintext).
    pub tls: Option<TlsInfo>,
    /// The first connection error, if any.
    pub first_error: Option<String>,
}

impl Report {
    /// Builds the report.
    pub fn new(
        opts: &SendOptions,
        run: &str,
        elapsed: Duration,
        counts: Counts,
        reply: &Histogram<u64>,
        transaction: &Histogram<u64>,
    ) -> Report {
        Report {
            run: run.to_owned(),
            target: opts.target.to_string(),
            settings: json!({
                "connections": opts.connections,
                "size": opts.size,
                "size_max": opts.size_max,
                "recipients": opts.recipients,
                "domains": opts.domains.len(),
                "pipelining": opts.pipelining,
                "bdat": opts.bdat,
                "starttls": opts.starttls,
                "threads": opts.threads,
                "pinned": opts.pin,
                "rate": opts.rate,
                "messages": opts.duration.is_none().then_some(opts.messages),
                "duration_s": opts.duration.map(|d| d.as_secs_f64()),
            }),
            elapsed,
            counts,
            reply: Percentiles::of(reply),
            transaction: Percentiles::of(transaction),
            tls: None,
            first_error: None,
        }
    }

    /// Messages that got a 2xx final reply.
    pub fn ok(&self) -> u64 {
        self.counts.class(2)
    }

    /// Messages attempted.
    pub fn attempted(&self) -> u64 {
        self.counts.by_code.values().sum::<u64>() + self.counts.failed
    }

    /// Share of attempted messages that did not get a 2xx.
    pub fn error_rate(&self) -> f64 {
        let a = self.attempted();
        if a == 0 {
            return if self.counts.connect_errors > 0 {
                1.0
            } else {
                0.0
            };
        }
        (a - self.ok()) as f64 / a as f64
    }

    /// Accepted messages per second.
    pub fn rate(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Human-readable report.
    pub fn text(&self) -> String {
        let mut extra = match &self.tls {
            Some(t) => format!("  tls: {t}\n"),
            None => "  tls: none\n".to_owned(),
        };
        if let Some(e) = &self.first_error {
            extra.push_str(&format!("  first connection error: {e}\n"));
        }
        let codes: Vec<String> = self
            .counts
            .by_code
            .iter()
            .map(|(c, n)| format!("{c}:{n}"))
            .collect();
        format!(
            "loadgen send: run {} -> {}\n  settings: {}\n  elapsed {:.3}s  attempted {}  ok {}  \
             4xx {}  5xx {}  failed {}  connect_errors {}\n  rate {:.1} msg/s\n  replies: {}\n  \
             reply latency (end of data -> reply): {}\n  transaction latency: {}\n{}",
            self.run,
            self.target,
            self.settings,
            self.elapsed.as_secs_f64(),
            self.attempted(),
            self.ok(),
            self.counts.class(4),
            self.counts.class(5),
            self.counts.failed,
            self.counts.connect_errors,
            self.rate(),
            codes.join(" "),
            self.reply.text(),
            self.transaction.text(),
            extra
        )
    }

    /// JSON report.
    pub fn json(&self) -> serde_json::Value {
        let codes: serde_json::Map<String, serde_json::Value> = self
            .counts
            .by_code
            .iter()
            .map(|(c, n)| (c.to_string(), json!(n)))
            .collect();
        json!({
            "tool": "loadgen send",
            "run": self.run,
            "target": self.target,
            "settings": self.settings,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "attempted": self.attempted(),
            "ok": self.ok(),
            "refused_4xx": self.counts.class(4),
            "refused_5xx": self.counts.class(5),
            "failed": self.counts.failed,
            "connect_errors": self.counts.connect_errors,
            "rate_per_s": self.rate(),
            "replies": codes,
            "reply_latency": self.reply.json(),
            "transaction_latency": self.transaction.json(),
            "tls": self.tls.as_ref().map(|t| json!({"version": t.version, "cipher": t.cipher})),
            "first_error": self.first_error,
        })
    }
}
