//! The task on each shard that carries out the admin endpoint's commands.
//!
//! What it does: receives [`Command`]s on the shard's inbox; metrics it answers from the
//! shard's counters with the queue's counters and the live gauges filled in, and every queue
//! question it passes to the shard's queue task through the queue's channel.
//!
//! What it does not do: no HTTP, no merging across shards, no queue state (the queue task owns
//! it).
//!
//! Invariants: runs on the shard that owns the state; answers every command it receives while
//! the queue task runs, so the asker never waits forever (a queue that has ended answers
//! nothing and the asker leaves the shard out).

use super::control::{Answer, Command, ShardInbox};
use crate::delivery::QueueHandle;
use crate::delivery::views::{Actor, Answer as QueueAnswer, Counters, Request};
use crate::metrics::{ShardMetrics, Snapshot};
use crate::spool::Spool;

/// The shard's metrics: the counters and histograms the server, DKIM and the spool bump in
/// place, with what the queue task owns (its counters, sent by value) copied in and the gauges
/// read now.
pub fn collect(metrics: &ShardMetrics, queue: Counters, spool: &Spool) -> Snapshot {
    let mut s = metrics.snapshot();
    let counts = spool.counts();
    s.queue_recipients = counts.recipients;
    s.recipients_delivered = queue.delivered;
    s.recipients_deferred = queue.deferred;
    s.recipients_bounced = queue.bounced;
    s.recipients_expired = queue.expired;
    s.queue_bytes = queue.queue_bytes;
    s.destinations_suspended = queue.suspended;
    s.dns_cache_hits = queue.dns_cache_hits;
    s.dns_cache_misses = queue.dns_cache_misses;
    s.spool_bytes = spool.disk_bytes();
    s.messages_held = queue.held;
    s.delivery_paused = u64::from(queue.paused);
    s
}

/// Serves commands until every link is dropped. `metrics` builds the shard's snapshot from
/// the queue's counters.
pub async fn serve(
    mut inbox: ShardInbox,
    queue: QueueHandle,
    metrics: impl Fn(Counters) -> Snapshot,
) {
    while let Some((command, reply)) = inbox.next().await {
        let answer = match command {
            Command::Metrics => {
                let counters = match queue.ask(Request::Counters, Actor::default()).await {
                    Some(QueueAnswer::Counters(c)) => c,
                    _ => Counters::default(),
                };
                Answer::Metrics(Box::new(metrics(counters)))
            }
            Command::Queue(request, by) => match queue.ask(request, by).await {
                Some(a) => Answer::Queue(a),
                None => continue,
            },
        };
        reply.send(answer);
    }
}
