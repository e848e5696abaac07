//! Wiring a shard's delivery queue from its configuration.
//!
//! What it does: builds the queue task's parts (scheduler with the retry and suspension
//! policies, routing state, message table under the shard's share of the memory budget,
//! record sinks, outbound connection settings).
//!
//! What it does not do: no running (the shard spawns [`ShardQueue::run`]), no recovery (the
//! shard hands recovered messages to the queue).
//!
//! Invariants: one shard's share of `delivery.memory_budget` is the budget divided by the
//! number of shards; settings that cannot be built (bad CA file) stop the start, naming why.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use glommio::channels::local_channel::LocalReceiver;

use super::memory::Memory;
use super::messages::Messages;
use super::policy::{failure_policy, retry_policy, settings};
use super::queue_msg::{QueueHandle, QueueMsg};
use super::queue_task::{QueueParts, ShardQueue};
use super::routes::Routes;
use super::sinks::Sinks;
use crate::config::Config;
use crate::dns::Resolver;
use crate::eventlog::EventLog;
use crate::gauge::MemoryGauge;
use crate::metrics::ShardMetrics;
use crate::queue::{HostLimits, Scheduler};
use crate::shaping::Shaping;
use crate::spool::{QueueIdGenerator, Spool};

/// What the queue shares with the rest of its shard.
pub struct StageParts {
    /// The shard's spool.
    pub spool: Spool,
    /// Queue ids of the shard (DSNs get one).
    pub ids: Rc<RefCell<QueueIdGenerator>>,
    /// The shard's metrics.
    pub metrics: Rc<ShardMetrics>,
    /// The shard's memory gauge, shared with the server.
    pub gauge: Rc<MemoryGauge>,
    /// The shard's event log.
    pub log: Rc<EventLog>,
    /// The traffic shaping file, if one is configured.
    pub shaping: Option<Arc<Shaping>>,
    /// The bound SMTP listening addresses (so that no next hop is one of them).
    pub listeners: Vec<SocketAddr>,
    /// The host's suppression list; None = off.
    pub suppression: Option<Arc<crate::suppression::Suppression>>,
    /// The delivery limits every shard shares.
    pub host_limits: Arc<HostLimits>,
    /// The host's campaign statistics and pauses.
    pub campaigns: Arc<crate::campaigns::Campaigns>,
    /// VERP envelope senders (`[feedback]`); None = off.
    pub feedback: Option<Rc<crate::feedback::Shard>>,
}

/// The queue of shard `shard`, its handle and its channel's receiving end.
pub fn build(
    config: Arc<Config>,
    shard: usize,
    resolver: Resolver,
    parts: StageParts,
) -> std::io::Result<(ShardQueue, QueueHandle, LocalReceiver<QueueMsg>)> {
    let StageParts {
        spool,
        ids,
        metrics,
        gauge,
        log,
        shaping,
        listeners,
        host_limits,
        suppression,
        campaigns,
        feedback,
    } = parts;
    let budget = config.delivery.memory_budget.0 / config.effective_shards() as u64;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        ^ (shard as u64).wrapping_mul(0x9e37_79b9);
    let retry = retry_policy(&config);
    let mut sched = Scheduler::with_host(retry.clone(), seed, host_limits);
    sched.set_failure_policy(failure_policy(&config));
    sched.set_priority_share(config.priority.share);
    let parts = QueueParts {
        settings: Rc::new(super::connection::Settings {
            feedback,
            ..settings(&config)?
        }),
        routes: Routes::new(
            config.clone(),
            resolver,
            listeners,
            shaping.clone(),
            retry,
            seed,
        ),
        messages: Messages::new(Memory::new(budget, gauge)),
        sched,
        sinks: Sinks {
            spool,
            log,
            metrics,
            ids,
            dsn_slots: Rc::new(glommio::sync::Semaphore::new(super::sinks::DSNS_AT_ONCE)),
            suppression,
            tally: Rc::new(crate::campaigns::Tally::new(campaigns)),
        },
    };
    Ok(ShardQueue::new(config, shaping, parts))
}
