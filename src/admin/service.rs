//! The task on each shard that carries out the admin endpoint's commands.
//!
//! What it does: receives [`Command`]s on the shard's inbox and answers them from the shard's
//! own state: metrics (the shard's counters with the live gauges filled in) and the delivery
//! stage's queue views and actions.
//!
//! What it does not do: no HTTP, no merging across shards.
//!
//! Invariants: runs on the shard that owns the state; answers every command it receives (with
//! JSON `null`, or an error object, when it has nothing), so the asker never waits forever.

use std::rc::Rc;

use serde_json::json;

use super::control::{Answer, Command, ShardInbox};
use crate::delivery::Stage;
use crate::metrics::{ShardMetrics, Snapshot};
use crate::server::ServerContext;
use crate::spool::Spool;

/// The shard's metrics: its histograms and counters, with the totals kept elsewhere (server,
/// delivery, spool, DNS) copied in and the gauges read now.
pub fn collect(
    metrics: &ShardMetrics,
    server: &ServerContext,
    stage: Option<&Stage>,
    spool: &Spool,
) -> Snapshot {
    let mut s = metrics.snapshot();
    let st = &server.stats;
    s.connections_accepted = st.connections.get();
    // Over the shard's limit or a per-address limit.
    s.connections_refused = st.refused.get() + st.refused_per_ip.get();
    s.messages_accepted = st.messages_accepted.get();
    s.recipients_accepted = st.recipients_accepted.get();
    let counts = spool.counts();
    s.queue_recipients = counts.recipients;
    if let Some(stage) = stage {
        let d = &stage.stats;
        s.recipients_delivered = d.delivered.get();
        s.recipients_deferred = d.deferred.get();
        s.recipients_bounced = d.bounced.get();
        s.recipients_expired = d.expired.get();
        let (_, bytes, suspended) = stage.queue_gauges();
        s.queue_bytes = bytes;
        s.destinations_suspended = suspended;
        let dns = stage.dns_stats();
        s.dns_cache_hits = dns.cache_hits;
        s.dns_cache_misses = dns.cache_misses;
    }
    if let Some(d) = &server.dkim {
        s.dkim_signed = d.stats.signed.get();
        s.dkim_no_key = d.stats.no_key.get();
        s.dkim_failed = d.stats.failed.get();
        s.bulk_without_unsubscribe = d.stats.bulk_without_unsubscribe.get();
    }
    s.spool_bytes = std::fs::read_dir(spool.dir())
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    s
}

/// Serves commands until every link is dropped. `metrics` builds the shard's snapshot.
pub async fn serve(
    mut inbox: ShardInbox,
    stage: Option<Rc<Stage>>,
    metrics: impl Fn() -> Snapshot,
) {
    while let Some((command, reply)) = inbox.next().await {
        let answer = match (&command, &stage) {
            (Command::Metrics, _) => Answer::Metrics(Box::new(metrics())),
            (_, None) => Answer::Json(json!({"error": "delivery is on hold on this host"})),
            (Command::QueueSummary, Some(s)) => Answer::Json(s.queue_summary()),
            (Command::Message(id), Some(s)) => Answer::Json(s.message_info(*id)),
            (Command::Delete(id, mode), Some(s)) => {
                Answer::Json(s.delete_message(*id, *mode).await)
            }
            (Command::Flush(target), Some(s)) => Answer::Json(s.flush_queue(target.as_deref())),
            (Command::Suspend(d, secs), Some(s)) => {
                Answer::Json(s.suspend_destination(d, *secs).await)
            }
            (Command::Resume(d), Some(s)) => Answer::Json(s.resume_destination(d).await),
            (Command::Destination(d), Some(s)) => Answer::Json(s.explain_destination(d).await),
        };
        reply.send(answer);
    }
}
