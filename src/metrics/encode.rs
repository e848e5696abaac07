//! The Prometheus text exposition of the shards' snapshots.
//!
//! What it does: builds a `prometheus_client` registry (prefix `mta`) around one collector
//! over the given snapshots and encodes it with the Prometheus text encoder (version 0.0.4):
//! counters get `_total`, every sample carries a `shard` label, and the enum-indexed families
//! an `outcome` or `reason` label; histograms are written with their `le` buckets.
//!
//! What it does not do: no HTTP, no gathering of snapshots across shards, no exemplars.
//!
//! Invariants: label cardinality is bounded by the shard count times the fixed enums; the
//! output is always the encoder's text (encoding into a `String` cannot fail).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::cells::{BackpressureReason, SessionOutcome};
use super::histogram::HistogramSnapshot;
use super::shard::Snapshot;

/// The `Content-Type` of the text that [`encode`] produces.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Encodes `(shard, snapshot)` pairs as Prometheus text.
pub fn encode(snapshots: &[(usize, Snapshot)]) -> String {
    let mut registry = Registry::with_prefix("mta");
    registry.register_collector(Box::new(Shards(snapshots.to_vec())));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    out
}

/// The collector over one scrape's snapshots.
#[derive(Debug)]
struct Shards(Vec<(usize, Snapshot)>);

type Field = fn(&Snapshot) -> u64;
type HistField = fn(&Snapshot) -> &HistogramSnapshot;

const COUNTERS: &[(&str, &str, Field)] = &[
    (
        "connections_accepted",
        "Inbound connections accepted.",
        |s| s.connections_accepted,
    ),
    (
        "connections_refused",
        "Inbound connections refused over a connection limit (per shard or per address).",
        |s| s.connections_refused,
    ),
    ("messages_accepted", "Messages accepted.", |s| {
        s.messages_accepted
    }),
    ("recipients_accepted", "Recipients accepted.", |s| {
        s.recipients_accepted
    }),
    ("recipients_delivered", "Recipients delivered.", |s| {
        s.recipients_delivered
    }),
    ("recipients_deferred", "Delivery attempts deferred.", |s| {
        s.recipients_deferred
    }),
    ("recipients_bounced", "Recipients bounced.", |s| {
        s.recipients_bounced
    }),
    (
        "recipients_expired",
        "Recipients expired in the queue.",
        |s| s.recipients_expired,
    ),
    ("rejections_rcpt", "RCPT TO commands rejected.", |s| {
        s.rejections_rcpt
    }),
    ("rejections_data", "Message data rejected.", |s| {
        s.rejections_data
    }),
    (
        "dns_cache_hits",
        "DNS answers served from the cache.",
        |s| s.dns_cache_hits,
    ),
    (
        "dns_cache_misses",
        "DNS lookups that missed the cache.",
        |s| s.dns_cache_misses,
    ),
    ("dkim_signed", "Messages DKIM-signed.", |s| s.dkim_signed),
    (
        "dkim_no_key",
        "Messages in DKIM scope whose From domain has no key.",
        |s| s.dkim_no_key,
    ),
    (
        "dkim_failed",
        "Messages whose DKIM signing failed (spooled unsigned).",
        |s| s.dkim_failed,
    ),
    (
        "bulk_without_unsubscribe",
        "Signed bulk messages without one-click unsubscription (RFC 8058).",
        |s| s.bulk_without_unsubscribe,
    ),
    (
        "tls_reports_sent",
        "TLS reports (RFC 8460) queued for mail or uploaded.",
        |s| s.tls_reports_sent,
    ),
    (
        "tls_reports_failed",
        "TLS reports that could not be queued or uploaded.",
        |s| s.tls_reports_failed,
    ),
    (
        "tls_rpt_dropped",
        "TLS sessions not counted for reports because a cap was reached.",
        |s| s.tls_rpt_dropped,
    ),
];

const GAUGES: &[(&str, &str, Field)] = &[
    (
        "queue_recipients",
        "Recipients waiting in the queue.",
        |s| s.queue_recipients,
    ),
    ("queue_bytes", "Bytes of the queued messages.", |s| {
        s.queue_bytes
    }),
    (
        "destinations_suspended",
        "Suspended destinations this shard has mail for (a host-wide suspension is counted by every shard that has mail for it).",
        |s| s.destinations_suspended,
    ),
    ("spool_bytes", "Bytes the spool occupies on disk.", |s| {
        s.spool_bytes
    }),
    ("messages_held", "Messages an operator holds.", |s| {
        s.messages_held
    }),
    (
        "delivery_paused",
        "1 while delivery is paused (mta delivery pause, delivery.hold).",
        |s| s.delivery_paused,
    ),
    (
        "tls_rpt_domains",
        "Policy domains in the last TLS reporting period.",
        |s| s.tls_rpt_domains,
    ),
];

const HISTOGRAMS: &[(&str, &str, HistField)] = &[
    (
        "group_commit_batch",
        "Records per fdatasync in a group commit.",
        |s| &s.group_commit_batch,
    ),
    ("fdatasync_seconds", "Seconds per fdatasync.", |s| {
        &s.fdatasync_seconds
    }),
    (
        "reply_latency_seconds",
        "Seconds from the end of inbound data to the 250.",
        |s| &s.reply_latency_seconds,
    ),
    (
        "delivery_latency_seconds",
        "Seconds queued until delivered.",
        |s| &s.delivery_latency_seconds,
    ),
];

impl Collector for Shards {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, field) in COUNTERS {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (shard, s) in &self.0 {
                let labels = [("shard", shard.to_string())];
                metric
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, u64, u64>(&field(s), None)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "sessions",
                "Inbound sessions ended, by outcome.",
                None,
                MetricType::Counter,
            )?;
            for (shard, s) in &self.0 {
                for outcome in SessionOutcome::ALL {
                    let labels = [
                        ("shard", shard.to_string()),
                        ("outcome", outcome.label().into()),
                    ];
                    let v = s.sessions_by_outcome[outcome.index()];
                    metric
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, u64, u64>(&v, None)?;
                }
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "backpressure_refusals",
                "Work refused by backpressure, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (shard, s) in &self.0 {
                for reason in BackpressureReason::ALL {
                    let labels = [
                        ("shard", shard.to_string()),
                        ("reason", reason.label().into()),
                    ];
                    let v = s.backpressure_refusals_by_reason[reason.index()];
                    metric
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, u64, u64>(&v, None)?;
                }
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "feedback_reports",
                "Findings of reports that came back (bounces, complaints), by outcome.",
                None,
                MetricType::Counter,
            )?;
            for (shard, s) in &self.0 {
                for (i, outcome) in super::shard::FEEDBACK_OUTCOMES.iter().enumerate() {
                    let labels = [("shard", shard.to_string()), ("outcome", (*outcome).into())];
                    let v = s.feedback_reports[i];
                    metric
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, u64, u64>(&v, None)?;
                }
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "delivery_failures",
                "Recipient deferrals and bounces, by bounce class.",
                None,
                MetricType::Counter,
            )?;
            for (shard, s) in &self.0 {
                for class in crate::shaping::BounceClass::ALL {
                    let labels = [
                        ("shard", shard.to_string()),
                        ("class", class.as_str().into()),
                    ];
                    let v = s.failures_by_class[class.index()];
                    metric
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, u64, u64>(&v, None)?;
                }
            }
        }
        for (name, help, field) in GAUGES {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (shard, s) in &self.0 {
                let labels = [("shard", shard.to_string())];
                metric.encode_family(&labels)?.encode_gauge(&field(s))?;
            }
        }
        for (name, help, field) in HISTOGRAMS {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (shard, s) in &self.0 {
                let h = field(s);
                let labels = [("shard", shard.to_string())];
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.finite_buckets(), None)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ShardMetrics;

    /// Checks every line is a comment or `name{labels} value` with a numeric value.
    fn parse(text: &str) -> Vec<(String, String, f64)> {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => {
                    assert!(rest.ends_with('}'), "unclosed labels: {line}");
                    (n.to_string(), rest.trim_end_matches('}').to_string())
                }
                None => (series.to_string(), String::new()),
            };
            assert!(name.starts_with("mta_"), "unprefixed: {line}");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad name: {line}"
            );
            samples.push((name, labels, value));
        }
        samples
    }

    fn value(samples: &[(String, String, f64)], name: &str, labels: &str) -> f64 {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|s| s.2)
            .unwrap_or_else(|| panic!("missing {name}{{{labels}}}"))
    }

    #[test]
    fn encodes_counters_gauges_and_histograms_per_shard() {
        let a = ShardMetrics::new();
        a.connections_accepted.add(7);
        a.session_ended(SessionOutcome::Completed);
        a.backpressure_refused(BackpressureReason::Memory);
        a.queue_bytes.set(4096);
        a.group_commit_batch.observe(3.0);
        a.group_commit_batch.observe(300.0);
        a.fdatasync_seconds.observe(0.002);
        let b = ShardMetrics::new();
        b.connections_accepted.inc();
        let text = encode(&[(0, a.snapshot()), (1, b.snapshot())]);

        assert!(text.contains("# TYPE mta_connections_accepted_total counter\n"));
        assert!(text.contains("mta_connections_accepted_total{shard=\"0\"} 7\n"));
        assert!(text.contains("mta_connections_accepted_total{shard=\"1\"} 1\n"));
        assert!(text.contains("# TYPE mta_queue_bytes gauge\n"));
        assert!(text.contains("mta_queue_bytes{shard=\"0\"} 4096\n"));
        assert!(text.contains("# TYPE mta_group_commit_batch histogram\n"));
        assert!(
            text.contains("mta_group_commit_batch_bucket{shard=\"0\",le=\"4\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("mta_group_commit_batch_bucket{shard=\"0\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("mta_group_commit_batch_count{shard=\"0\"} 2\n"));
        assert!(text.contains("mta_sessions_total{shard=\"0\",outcome=\"completed\"} 1\n"));
        assert!(
            text.contains("mta_backpressure_refusals_total{shard=\"0\",reason=\"memory\"} 1\n")
        );

        let samples = parse(&text);
        assert_eq!(
            value(&samples, "mta_group_commit_batch_sum", "shard=\"0\""),
            303.0
        );
        assert_eq!(
            value(
                &samples,
                "mta_fdatasync_seconds_bucket",
                "shard=\"0\",le=\"0.001\""
            ),
            0.0
        );
        assert_eq!(
            value(
                &samples,
                "mta_fdatasync_seconds_bucket",
                "shard=\"0\",le=\"0.0025\""
            ),
            1.0
        );
        assert_eq!(
            value(
                &samples,
                "mta_sessions_total",
                "shard=\"1\",outcome=\"timeout\""
            ),
            0.0
        );

        // Buckets are cumulative and end at the count.
        let buckets: Vec<f64> = samples
            .iter()
            .filter(|(n, l, _)| {
                n == "mta_group_commit_batch_bucket" && l.starts_with("shard=\"0\"")
            })
            .map(|s| s.2)
            .collect();
        assert_eq!(buckets.len(), 10);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(buckets.last().copied(), Some(2.0));

        // Only shard and the fixed enums as labels.
        for (_, labels, _) in &samples {
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let key = pair.split('=').next().unwrap_or("");
                assert!(
                    ["shard", "outcome", "reason", "class", "le"].contains(&key),
                    "label {key}"
                );
            }
        }
    }

    #[test]
    fn empty_input_encodes_descriptors_only() {
        let text = encode(&[]);
        assert!(text.contains("# TYPE mta_spool_bytes gauge"));
        assert!(parse(&text).is_empty());
        assert!(CONTENT_TYPE.starts_with("text/plain"));
    }
}
