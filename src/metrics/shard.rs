//! One shard's metrics and their plain, sendable snapshot.
//!
//! What it does: `ShardMetrics` holds every counter, gauge and histogram a shard bumps;
//! `snapshot()` copies them into a `Snapshot` that can be sent to the shard answering a scrape;
//! `Snapshot::merge` adds snapshots together (for totals).
//!
//! What it does not do: no encoding (see `encode`), no cross-shard sharing of the live cells.
//!
//! Invariants: `Snapshot` holds plain numbers only (it is `Send + Clone`); its fields mirror
//! `ShardMetrics` one for one; enum-indexed arrays are indexed by `SessionOutcome::index` and
//! `BackpressureReason::index`.

use super::cells::{BackpressureReason, Counter, Gauge, SessionOutcome};
use super::histogram::{
    DELIVERY_LATENCY_SECONDS_BUCKETS, FDATASYNC_SECONDS_BUCKETS, GROUP_COMMIT_BATCH_BUCKETS,
    Histogram, HistogramSnapshot, REPLY_LATENCY_SECONDS_BUCKETS,
};

/// The `outcome` labels of `mta_feedback_reports_total`, in the order of
/// [`ShardMetrics::feedback_reports`].
pub const FEEDBACK_OUTCOMES: [&str; 4] = ["bounce", "complaint", "ignored", "unmatched"];

/// The live metrics of one shard; cheap to bump, not `Sync`.
#[derive(Debug)]
pub struct ShardMetrics {
    /// Inbound connections accepted.
    pub connections_accepted: Counter,
    /// Inbound connections refused (over the connection limit).
    pub connections_refused: Counter,
    /// Inbound sessions ended, by outcome.
    pub sessions_by_outcome: [Counter; 4],
    /// Messages accepted (spooled and answered `250`).
    pub messages_accepted: Counter,
    /// Recipients accepted with those messages.
    pub recipients_accepted: Counter,
    /// Recipients delivered.
    pub recipients_delivered: Counter,
    /// Delivery attempts deferred.
    pub recipients_deferred: Counter,
    /// Recipients bounced (permanent failure).
    pub recipients_bounced: Counter,
    /// Recipients given up on after the queue lifetime.
    pub recipients_expired: Counter,
    /// `RCPT TO` commands rejected.
    pub rejections_rcpt: Counter,
    /// Message data rejected.
    pub rejections_data: Counter,
    /// Recipients waiting in the queue.
    pub queue_recipients: Gauge,
    /// Bytes of the messages in the queue.
    pub queue_bytes: Gauge,
    /// Suspended destinations this shard has mail for.
    pub destinations_suspended: Gauge,
    /// Bytes the spool occupies on disk.
    pub spool_bytes: Gauge,
    /// Messages an operator holds.
    pub messages_held: Gauge,
    /// 1 while an operator (or `delivery.hold`) pauses delivery.
    pub delivery_paused: Gauge,
    /// DNS answers served from the cache.
    pub dns_cache_hits: Counter,
    /// DNS lookups that missed the cache.
    pub dns_cache_misses: Counter,
    /// DKIM: messages signed.
    pub dkim_signed: Counter,
    /// DKIM: messages in scope whose From domain has no key.
    pub dkim_no_key: Counter,
    /// DKIM: messages whose signing failed.
    pub dkim_failed: Counter,
    /// TLS-RPT: reports queued or uploaded.
    pub tls_reports_sent: Counter,
    /// TLS-RPT: reports that could not be queued or uploaded.
    pub tls_reports_failed: Counter,
    /// TLS-RPT: sessions not counted because a cap was reached.
    pub tls_rpt_dropped: Counter,
    /// TLS-RPT: policy domains in the last reported period.
    pub tls_rpt_domains: Gauge,
    /// DKIM: signed bulk messages without one-click unsubscription.
    pub bulk_without_unsubscribe: Counter,
    /// Work refused by backpressure, by reason.
    pub backpressure_refusals_by_reason: [Counter; 2],
    /// Reports that came back, by what they were (indexed like [`FEEDBACK_OUTCOMES`]).
    pub feedback_reports: [Counter; 4],
    /// Deferrals and bounces by bounce class (indexed like `shaping::BounceClass::ALL`).
    pub failures_by_class: [Counter; 9],
    /// Records per `fdatasync` in a group commit.
    pub group_commit_batch: Histogram,
    /// Seconds per `fdatasync`.
    pub fdatasync_seconds: Histogram,
    /// Seconds from the end of inbound data to the `250`.
    pub reply_latency_seconds: Histogram,
    /// Seconds a recipient spent queued until delivered.
    pub delivery_latency_seconds: Histogram,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ShardMetrics {
    /// All zero, with the standard bucket bounds.
    pub fn new() -> Self {
        ShardMetrics {
            connections_accepted: Counter::default(),
            connections_refused: Counter::default(),
            sessions_by_outcome: Default::default(),
            messages_accepted: Counter::default(),
            recipients_accepted: Counter::default(),
            recipients_delivered: Counter::default(),
            recipients_deferred: Counter::default(),
            recipients_bounced: Counter::default(),
            recipients_expired: Counter::default(),
            rejections_rcpt: Counter::default(),
            rejections_data: Counter::default(),
            queue_recipients: Gauge::default(),
            queue_bytes: Gauge::default(),
            destinations_suspended: Gauge::default(),
            spool_bytes: Gauge::default(),
            messages_held: Gauge::default(),
            delivery_paused: Gauge::default(),
            dns_cache_hits: Counter::default(),
            dns_cache_misses: Counter::default(),
            dkim_signed: Counter::default(),
            dkim_no_key: Counter::default(),
            dkim_failed: Counter::default(),
            tls_reports_sent: Counter::default(),
            tls_reports_failed: Counter::default(),
            tls_rpt_dropped: Counter::default(),
            tls_rpt_domains: Gauge::default(),
            bulk_without_unsubscribe: Counter::default(),
            backpressure_refusals_by_reason: Default::default(),
            feedback_reports: Default::default(),
            failures_by_class: Default::default(),
            group_commit_batch: Histogram::new(GROUP_COMMIT_BATCH_BUCKETS),
            fdatasync_seconds: Histogram::new(FDATASYNC_SECONDS_BUCKETS),
            reply_latency_seconds: Histogram::new(REPLY_LATENCY_SECONDS_BUCKETS),
            delivery_latency_seconds: Histogram::new(DELIVERY_LATENCY_SECONDS_BUCKETS),
        }
    }

    /// Counts one ended session.
    #[inline]
    pub fn session_ended(&self, outcome: SessionOutcome) {
        self.sessions_by_outcome[outcome.index()].inc();
    }

    /// Counts one deferral or bounce of bounce class `index`.
    #[inline]
    pub fn failure_classified(&self, index: usize) {
        if let Some(c) = self.failures_by_class.get(index) {
            c.inc();
        }
    }

    /// Counts one backpressure refusal.
    #[inline]
    pub fn backpressure_refused(&self, reason: BackpressureReason) {
        self.backpressure_refusals_by_reason[reason.index()].inc();
    }

    /// A plain copy of every value.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connections_accepted: self.connections_accepted.get(),
            connections_refused: self.connections_refused.get(),
            sessions_by_outcome: self.sessions_by_outcome.each_ref().map(Counter::get),
            messages_accepted: self.messages_accepted.get(),
            recipients_accepted: self.recipients_accepted.get(),
            recipients_delivered: self.recipients_delivered.get(),
            recipients_deferred: self.recipients_deferred.get(),
            recipients_bounced: self.recipients_bounced.get(),
            recipients_expired: self.recipients_expired.get(),
            rejections_rcpt: self.rejections_rcpt.get(),
            rejections_data: self.rejections_data.get(),
            queue_recipients: self.queue_recipients.get(),
            queue_bytes: self.queue_bytes.get(),
            destinations_suspended: self.destinations_suspended.get(),
            spool_bytes: self.spool_bytes.get(),
            messages_held: self.messages_held.get(),
            delivery_paused: self.delivery_paused.get(),
            dns_cache_hits: self.dns_cache_hits.get(),
            dns_cache_misses: self.dns_cache_misses.get(),
            dkim_signed: self.dkim_signed.get(),
            dkim_no_key: self.dkim_no_key.get(),
            dkim_failed: self.dkim_failed.get(),
            tls_reports_sent: self.tls_reports_sent.get(),
            tls_reports_failed: self.tls_reports_failed.get(),
            tls_rpt_dropped: self.tls_rpt_dropped.get(),
            tls_rpt_domains: self.tls_rpt_domains.get(),
            bulk_without_unsubscribe: self.bulk_without_unsubscribe.get(),
            backpressure_refusals_by_reason: self
                .backpressure_refusals_by_reason
                .each_ref()
                .map(Counter::get),
            feedback_reports: self.feedback_reports.each_ref().map(Counter::get),
            failures_by_class: self.failures_by_class.each_ref().map(Counter::get),
            group_commit_batch: self.group_commit_batch.snapshot(),
            fdatasync_seconds: self.fdatasync_seconds.snapshot(),
            reply_latency_seconds: self.reply_latency_seconds.snapshot(),
            delivery_latency_seconds: self.delivery_latency_seconds.snapshot(),
        }
    }
}

/// A plain copy of [`ShardMetrics`]; see there for the meaning of each field.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct Snapshot {
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub sessions_by_outcome: [u64; 4],
    pub messages_accepted: u64,
    pub recipients_accepted: u64,
    pub recipients_delivered: u64,
    pub recipients_deferred: u64,
    pub recipients_bounced: u64,
    pub recipients_expired: u64,
    pub rejections_rcpt: u64,
    pub rejections_data: u64,
    pub queue_recipients: u64,
    pub queue_bytes: u64,
    pub destinations_suspended: u64,
    pub spool_bytes: u64,
    pub messages_held: u64,
    pub delivery_paused: u64,
    pub dns_cache_hits: u64,
    pub dns_cache_misses: u64,
    pub dkim_signed: u64,
    pub dkim_no_key: u64,
    pub dkim_failed: u64,
    pub tls_reports_sent: u64,
    pub tls_reports_failed: u64,
    pub tls_rpt_dropped: u64,
    pub tls_rpt_domains: u64,
    pub bulk_without_unsubscribe: u64,
    pub backpressure_refusals_by_reason: [u64; 2],
    pub feedback_reports: [u64; 4],
    pub failures_by_class: [u64; 9],
    pub group_commit_batch: HistogramSnapshot,
    pub fdatasync_seconds: HistogramSnapshot,
    pub reply_latency_seconds: HistogramSnapshot,
    pub delivery_latency_seconds: HistogramSnapshot,
}

impl Default for Snapshot {
    fn default() -> Self {
        ShardMetrics::new().snapshot()
    }
}

impl Snapshot {
    /// Adds `other` into `self`: counters and gauges are summed, histograms merged.
    pub fn merge(&mut self, other: &Snapshot) {
        fn add(a: &mut u64, b: u64) {
            *a = a.wrapping_add(b);
        }
        add(&mut self.connections_accepted, other.connections_accepted);
        add(&mut self.connections_refused, other.connections_refused);
        for (a, b) in self
            .sessions_by_outcome
            .iter_mut()
            .zip(other.sessions_by_outcome)
        {
            add(a, b);
        }
        add(&mut self.messages_accepted, other.messages_accepted);
        add(&mut self.recipients_accepted, other.recipients_accepted);
        add(&mut self.recipients_delivered, other.recipients_delivered);
        add(&mut self.recipients_deferred, other.recipients_deferred);
        add(&mut self.recipients_bounced, other.recipients_bounced);
        add(&mut self.recipients_expired, other.recipients_expired);
        add(&mut self.rejections_rcpt, other.rejections_rcpt);
        add(&mut self.rejections_data, other.rejections_data);
        add(&mut self.queue_recipients, other.queue_recipients);
        add(&mut self.queue_bytes, other.queue_bytes);
        add(
            &mut self.destinations_suspended,
            other.destinations_suspended,
        );
        add(&mut self.spool_bytes, other.spool_bytes);
        add(&mut self.messages_held, other.messages_held);
        add(&mut self.delivery_paused, other.delivery_paused);
        add(&mut self.dns_cache_hits, other.dns_cache_hits);
        add(&mut self.dns_cache_misses, other.dns_cache_misses);
        add(&mut self.dkim_signed, other.dkim_signed);
        add(&mut self.dkim_no_key, other.dkim_no_key);
        add(&mut self.dkim_failed, other.dkim_failed);
        add(&mut self.tls_reports_sent, other.tls_reports_sent);
        add(&mut self.tls_reports_failed, other.tls_reports_failed);
        add(&mut self.tls_rpt_dropped, other.tls_rpt_dropped);
        add(&mut self.tls_rpt_domains, other.tls_rpt_domains);
        add(
            &mut self.bulk_without_unsubscribe,
            other.bulk_without_unsubscribe,
        );
        for (a, b) in self.feedback_reports.iter_mut().zip(other.feedback_reports) {
            add(a, b);
        }
        for (a, b) in self
            .backpressure_refusals_by_reason
            .iter_mut()
            .zip(other.backpressure_refusals_by_reason)
        {
            add(a, b);
        }
        for (a, b) in self
            .failures_by_class
            .iter_mut()
            .zip(other.failures_by_class)
        {
            add(a, b);
        }
        // Both sides come from `ShardMetrics::new`, so the bounds always match.
        self.group_commit_batch.merge(&other.group_commit_batch);
        self.fdatasync_seconds.merge(&other.fdatasync_seconds);
        self.reply_latency_seconds
            .merge(&other.reply_latency_seconds);
        self.delivery_latency_seconds
            .merge(&other.delivery_latency_seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_clone<T: Send + Clone + 'static>() {}

    #[test]
    fn snapshot_is_sendable() {
        assert_send_clone::<Snapshot>();
    }

    #[test]
    fn snapshot_copies_and_merge_adds() {
        let m = ShardMetrics::new();
        m.connections_accepted.add(3);
        m.session_ended(SessionOutcome::Timeout);
        m.backpressure_refused(BackpressureReason::Disk);
        m.queue_recipients.set(10);
        m.group_commit_batch.observe(3.0);
        m.delivery_latency_seconds.observe(120.0);
        let a = m.snapshot();
        assert_eq!(a.connections_accepted, 3);
        assert_eq!(a.sessions_by_outcome, [0, 1, 0, 0]);
        assert_eq!(a.backpressure_refusals_by_reason, [0, 1]);
        assert_eq!(a.group_commit_batch.count, 1);

        let mut total = a.clone();
        total.merge(&a);
        assert_eq!(total.connections_accepted, 6);
        assert_eq!(total.sessions_by_outcome, [0, 2, 0, 0]);
        assert_eq!(total.queue_recipients, 20);
        assert_eq!(total.group_commit_batch.count, 2);
        assert_eq!(total.group_commit_batch.counts[2], 2);
        assert_eq!(total.delivery_latency_seconds.sum, 240.0);

        let mut zero = Snapshot::default();
        zero.merge(&a);
        assert_eq!(zero, a);
    }
}
