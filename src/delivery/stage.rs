//! The delivery stage of one shard: takes accepted (and recovered) messages, routes each
//! recipient domain to a destination, lets the scheduler decide what goes when, runs the
//! outbound connections, and records every result.
//!
//! What it does: owns the shard's queued messages (bodies in memory), its scheduler, its DNS
//! client and its outbound connections. Per destination it opens up to the scheduler's limit of
//! connections, reuses each for many messages (RSET between failed transactions), and closes it
//! after `max_messages_per_connection` or `idle_timeout`. Every recipient result is classified
//! once, appended to the spool (crossing the recipient off, or recording its next attempt),
//! written to the delivery log, and permanent failures produce a DSN to the sender.
//!
//! What it does not do: no protocol (the client), no timing policy (the scheduler), no storage
//! format (the spool).
//!
//! Invariants: single-threaded (Rc/RefCell, no borrow held across `.await`); a recipient leaves
//! memory only when a final state was appended for it; a message with a null reverse path never
//! causes a DSN; a connection that failed before any transaction succeeded on it counts as a
//! connection failure, a reused connection that dies before MAIL is accepted is replaced without
//! counting an attempt.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::classify::Outcome;
use super::client::{ClientError, ClientTimeouts, Connection, Envelope, TlsRequest};
use super::dsn;
use super::memory::Memory;
use super::myself::Myself;
use super::notify::Notify;
use super::queued::{Facts, Progress, Queued};
use super::recorder::{self, JobResult, Peer, Records};
use super::route::{Routed, Target, route};
use crate::config::Config;
use crate::dns::Resolver;
use crate::eventlog::{Event, EventLog};
use crate::metrics::ShardMetrics;
use crate::queue::{DestinationKey, FailurePolicy, Job, RetryPolicy, Scheduler};
use crate::shaping::{RuleEngine, Shaping};
use crate::smtp::EnhancedStatus;
use crate::smtp::Reply;
use crate::spool::{
    MessageRecord, QueueId, QueueIdGenerator, Recipient, RecipientState, RecoveredMessage, Spool,
    StateRecord,
};
use crate::tls::{ClientTls, TlsPolicy};

/// Counters of the stage.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Recipients delivered.
    pub delivered: Cell<u64>,
    /// Attempts deferred.
    pub deferred: Cell<u64>,
    /// Recipients bounced.
    pub bounced: Cell<u64>,
    /// Recipients expired.
    pub expired: Cell<u64>,
    /// DSNs queued.
    pub dsns: Cell<u64>,
    /// Connections opened.
    pub connections: Cell<u64>,
    /// Outbound connections open now.
    pub open: Cell<usize>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// What a stage shares with the rest of its shard.
pub struct StageParts {
    /// The shard's spool.
    pub spool: Spool,
    /// Queue ids of the shard (DSNs get one).
    pub ids: Rc<RefCell<QueueIdGenerator>>,
    /// The shard's metrics.
    pub metrics: Rc<ShardMetrics>,
    /// The shard's memory gauge, shared with the server.
    pub gauge: Rc<crate::gauge::MemoryGauge>,
    /// The shard's event log.
    pub log: Rc<EventLog>,
    /// The traffic shaping file, if one is configured.
    pub shaping: Option<Arc<Shaping>>,
    /// The bound SMTP listening addresses (so that no next hop is one of them).
    pub listeners: Vec<SocketAddr>,
}

/// One shard's delivery stage.
pub struct Stage {
    /// Replaced whole on reload (routes, limits); readers take a clone of the `Arc`.
    config: RefCell<Arc<Config>>,
    spool: Spool,
    resolver: Resolver,
    /// Which next hops are this MTA itself (rebuilt on reload: `delivery.own_addresses`).
    myself: RefCell<Rc<Myself>>,
    /// The bound SMTP listening addresses.
    listeners: Vec<SocketAddr>,
    ids: Rc<RefCell<QueueIdGenerator>>,
    sched: RefCell<Scheduler>,
    messages: RefCell<HashMap<u64, Rc<Queued>>>,
    targets: RefCell<HashMap<DestinationKey, Rc<Target>>>,
    /// Recently routed domains and their targets (cleared every second and on reload).
    route_cache: RefCell<HashMap<String, Rc<Target>>>,
    wake: Notify,
    log: Rc<EventLog>,
    timeouts: ClientTimeouts,
    helo: String,
    stopping: Cell<bool>,
    tls: ClientTls,
    metrics: Rc<ShardMetrics>,
    /// What queued mail may cost in memory.
    memory: Memory,
    /// The traffic shaping file (replaced on reload).
    shaping: RefCell<Option<Arc<Shaping>>>,
    /// Adaptive backoff state per destination.
    rules: RefCell<RuleEngine>,
    /// The global retry schedule (shaped destinations may have their own).
    retry_policy: RetryPolicy,
    /// Random state for picking a pool's source.
    pick: Cell<u64>,
    /// Last connection error per destination, for operators.
    last_error: RefCell<HashMap<DestinationKey, String>>,
    /// Hosts whose opportunistic handshake failed, sent to in plaintext until the instant.
    tls_fallback: RefCell<HashMap<SocketAddr, Instant>>,
    /// Counters.
    pub stats: DeliveryStats,
}

/// The longest wait taken from a recovered Deferred state (a year: later than any retry
/// schedule's lifetime, so the recipient expires when it comes due).
const MAX_SPOOLED_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn domain_of(r: &Recipient, hostname: &str) -> String {
    match r.address.rsplit_once('@') {
        Some((_, d)) => d
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
        None => hostname.to_owned(),
    }
}

impl Stage {
    /// Builds the stage of a shard.
    pub fn new(
        config: Arc<Config>,
        shard: usize,
        resolver: Resolver,
        parts: StageParts,
    ) -> std::io::Result<Rc<Stage>> {
        let StageParts {
            spool,
            ids,
            metrics,
            gauge,
            log,
            shaping,
            listeners,
        } = parts;
        let myself = RefCell::new(Rc::new(Myself::new(
            &listeners,
            &config.delivery.own_addresses,
        )));
        let memory_budget = config.delivery.memory_budget.0 / config.effective_shards() as u64;
        let d = &config.delivery;
        let retry = RetryPolicy {
            first: d.retry.first.0,
            max: d.retry.max.0,
            multiplier: d.retry.multiplier,
            jitter: d.retry.jitter,
            lifetime: d.retry.lifetime.0,
        };
        let t = &d.timeouts;
        let timeouts = ClientTimeouts {
            connect: t.connect.0,
            greeting: t.greeting.0,
            command: t.command.0,
            data_init: t.data_init.0,
            data_block: t.data_block.0,
            data_termination: t.data_termination.0,
        };
        let seed = unix_ms(SystemTime::now()) ^ (shard as u64).wrapping_mul(0x9e37_79b9);
        let mut sched = Scheduler::new(retry.clone(), seed);
        sched.set_failure_policy(FailurePolicy {
            threshold: d.suspend.after_connect_failures,
            backoff: d.suspend.backoff.0,
            max_backoff: d.suspend.max_backoff.0,
        });
        let config_ca = config.tls.ca_file.clone();
        Ok(Rc::new(Stage {
            helo: d
                .helo_name
                .clone()
                .unwrap_or_else(|| config.hostname.clone()),
            log,
            config: RefCell::new(config),
            spool,
            resolver,
            myself,
            listeners,
            ids,
            sched: RefCell::new(sched),
            messages: RefCell::new(HashMap::new()),
            targets: RefCell::new(HashMap::new()),
            wake: Notify::default(),
            timeouts,
            stopping: Cell::new(false),
            tls: ClientTls::new(config_ca.as_deref()).map_err(std::io::Error::other)?,
            tls_fallback: RefCell::new(HashMap::new()),
            route_cache: RefCell::new(HashMap::new()),
            metrics,
            rules: RefCell::new(
                shaping
                    .as_ref()
                    .map_or_else(|| RuleEngine::new(Vec::new()), |s| s.rule_engine()),
            ),
            shaping: RefCell::new(shaping),
            retry_policy: retry.clone(),
            pick: Cell::new(seed | 1),
            memory: Memory::new(memory_budget, gauge),
            last_error: RefCell::new(HashMap::new()),
            stats: DeliveryStats::default(),
        }))
    }

    /// Messages held.
    pub fn queued_messages(&self) -> usize {
        self.messages.borrow().len()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// Applies a reloaded configuration: routes, per-destination limits, relay host and TLS
    /// policies take effect at the next routing decision (every new message and every retry is
    /// routed afresh); mail already waiting in a destination's queue, and connections already
    /// open, go on as they are.
    pub fn reload(&self, config: Arc<Config>) {
        *self.myself.borrow_mut() =
            Rc::new(Myself::new(&self.listeners, &config.delivery.own_addresses));
        *self.config.borrow_mut() = config;
        self.route_cache.borrow_mut().clear();
        self.wake.notify();
    }

    /// Stops opening connections; open ones finish their transaction and close.
    pub fn stop(&self) {
        self.stopping.set(true);
        self.wake.notify();
        self.log.flush();
    }

    /// Routes a job's domain (DNS may take a while) and queues it, or fails its recipients.
    /// A domain routed less than a second ago is queued at once, from the route cache.
    fn route_and_submit(self: &Rc<Self>, job: Job) {
        let cached = self.route_cache.borrow().get(&job.domain).cloned();
        if let Some(target) = cached {
            self.submit_routed(&target, job);
            return;
        }
        let stage = self.clone();
        glommio::spawn_local(async move {
            let config = stage.config();
            let myself = stage.myself.borrow().clone();
            match route(&config, &stage.resolver, &myself, &job.domain).await {
                Routed::Target(target) => {
                    let pool = stage
                        .messages
                        .borrow()
                        .get(&job.message)
                        .and_then(|q| q.pool.clone());
                    let target =
                        stage.with_source(target, pool.as_deref(), &job.domain, &stage.pick);
                    let target = stage.shape(target, &job.domain);
                    // With source pools each message picks its own source: nothing to reuse.
                    if config.pools.is_empty() {
                        stage
                            .route_cache
                            .borrow_mut()
                            .insert(job.domain.clone(), target.clone());
                    }
                    stage
                        .targets
                        .borrow_mut()
                        .insert(target.key.clone(), target.clone());
                    stage.submit_routed(&target, job);
                }
                Routed::Failed(outcome) => stage.fail_jobs([job], &outcome, "").await,
            }
            stage.wake.notify();
        })
        .detach();
    }

    /// Queues a routed job on its destination, with the destination's limits in force.
    fn submit_routed(&self, target: &Rc<Target>, job: Job) {
        if !self.targets.borrow().contains_key(&target.key) {
            self.targets
                .borrow_mut()
                .insert(target.key.clone(), target.clone());
        }
        let now = Instant::now();
        self.apply_limits(target, now);
        self.sched.borrow_mut().submit(&target.key, job, now);
        // The scheduling loop looks again: the destination may need a connection.
        self.wake.notify();
    }

    /// The scheduling loop: runs until `stop`.
    pub async fn run(self: Rc<Self>) {
        let mut last_flush = Instant::now();
        while !self.stopping.get() {
            let now = Instant::now();
            let poll = self.sched.borrow_mut().poll(now);
            for job in poll.due {
                self.route_and_submit(job);
            }
            for dest in poll.open {
                let stage = self.clone();
                glommio::spawn_local(async move { stage.connection(dest).await }).detach();
            }
            if last_flush.elapsed() >= Duration::from_secs(1) {
                // Routes are reused for at most a second (DNS answers and reloads show soon).
                self.route_cache.borrow_mut().clear();
                self.log.flush();
                self.refresh_limits();
                last_flush = Instant::now();
            }
            let wait = poll
                .next_wakeup
                .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now))
                .clamp(Duration::from_millis(1), Duration::from_secs(1));
            futures_lite::future::or(glommio::timer::sleep(wait), self.wake.wait()).await;
        }
        self.log.flush();
    }

    /// Drops the oldest held bodies while bodies and envelopes exceed their share of the budget.
    fn evict(&self) {
        let messages = self.messages.borrow();
        while let Some((id, size)) = self.memory.next_eviction() {
            if let Some(q) = messages.get(&id)
                && q.body.borrow_mut().take().is_some()
            {
                self.memory.drop_body(size);
            }
        }
        if self.memory.needs_compact() {
            self.memory
                .compact(|id| messages.get(&id).is_some_and(|q| q.body.borrow().is_some()));
        }
    }

    /// The body of a queued message: held, or read back from the spool (and held again when
    /// it fits the budget).
    async fn body(&self, q: &Queued) -> Result<Rc<Vec<u8>>, crate::spool::SpoolError> {
        if let Some(b) = q.body.borrow().as_ref() {
            return Ok(b.clone());
        }
        let record = self.spool.read_message(QueueId(q.record.id)).await?;
        let body = Rc::new(record.body);
        if self.memory.may_hold(q.size as u64) && q.body.borrow().is_none() {
            *q.body.borrow_mut() = Some(body.clone());
            self.memory.hold(q.record.id, q.size as u64);
        }
        Ok(body)
    }

    /// Forgets a message whose recipients are all final, with what it cost in memory.
    fn forget(&self, id: u64) {
        if let Some(q) = self.messages.borrow_mut().remove(&id) {
            if q.body.borrow_mut().take().is_some() {
                self.memory.drop_body(q.size as u64);
            }
            self.memory.release_meta(q.meta);
        }
    }

    /// Connects to one hop with the destination's TLS policy. An opportunistic handshake that
    /// fails is retried at once in plaintext, and the host is sent to in plaintext for
    /// `delivery.tls_fallback` (a receiver with a broken TLS stack still gets its mail).
    async fn open(
        &self,
        name: &str,
        addr: SocketAddr,
        target: &Target,
    ) -> Result<Connection, ClientError> {
        let now = Instant::now();
        let mut policy = target.tls;
        if policy == TlsPolicy::Opportunistic {
            let mut fallback = self.tls_fallback.borrow_mut();
            match fallback.get(&addr) {
                Some(until) if *until > now => policy = TlsPolicy::None,
                Some(_) => {
                    fallback.remove(&addr);
                }
                None => {}
            }
        }
        let request = |policy| TlsRequest {
            policy,
            configs: &self.tls,
            server_name: name,
        };
        let helo = target.helo.as_ref().unwrap_or(&self.helo);
        let (source, timeouts) = (target.source, self.timeouts);
        match Connection::open(addr, source, helo, timeouts, request(policy)).await {
            Err(ClientError::Tls {
                reason,
                handshake: true,
            }) if policy == TlsPolicy::Opportunistic => {
                tracing::warn!(host = name, %addr, %reason, "TLS failed; falling back to plaintext");
                let until = now + self.config().delivery.tls_fallback.0;
                self.tls_fallback.borrow_mut().insert(addr, until);
                Connection::open(addr, source, helo, timeouts, request(TlsPolicy::None)).await
            }
            other => other,
        }
    }
}

#[path = "stage_control.rs"]
pub mod control;
#[path = "stage_finish.rs"]
mod finish;
#[path = "stage_intake.rs"]
mod intake;
#[path = "stage_pools.rs"]
mod pools;
#[path = "stage_session.rs"]
mod session;
#[path = "stage_shaping.rs"]
mod shaping;
