//! The queue task of one shard: the one owner of the shard's queued mail.
//!
//! What it does: owns, by value, the queued messages and the memory budget (`Messages`), the
//! `Scheduler`, the routing state (`Routes`), the shaping rules' state and the counters. It
//! takes typed messages ([`QueueMsg`]) on one local channel: new and recovered mail, routes
//! found, what connection tasks report, operators' requests, reloads and the stop. Between
//! messages it asks the scheduler what is due and starts connection tasks, and every
//! [`QUEUE_CHORES`] it does its chores. Like Postfix's qmgr, nothing else touches its state:
//! DNS lookups, connections and DSNs run in tasks of their own and report back by value.
//!
//! What it does not do: no I/O of its own besides appending records (detached) and writing
//! the event log; no decisions about outcomes (the recorder), no timing policy (the
//! scheduler), no protocol (connection tasks).
//!
//! Invariants: a recipient leaves memory only when a final state was appended for it; every
//! job handed to a connection comes back as exactly one result; no suppressed recipient is in a
//! job handed to a connection; with `delivery.hold` no
//! destination is routed or connected to, and the queue still answers operators.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use glommio::channels::local_channel::LocalReceiver;

use super::connection::{self, Plan, Settings};
use super::intake::{self, Arrival};
use super::messages::Messages;
use super::queue_msg::{QueueHandle, QueueMsg};
use super::recorder::{self, JobResult, Peer, Records};
use super::route::{Routed, Target};
use super::routes::Routes;
use super::sinks::Sinks;
use super::suspensions::{self, Suspensions};
use super::views::Counters;
use crate::config::Config;
use crate::queue::{DestinationKey, DomainNames, Job, Scheduler};
use crate::shaping::{RuleEngine, Shaping};
use crate::spool::{MessageRecord, RecoveredMessage};
use crate::timers::QUEUE_CHORES;

/// What a queue task is built from, besides its configuration.
pub struct QueueParts {
    /// Where records go.
    pub sinks: Sinks,
    /// The routing state.
    pub routes: Routes,
    /// The scheduler.
    pub sched: Scheduler,
    /// The message table.
    pub messages: Messages,
    /// The outbound connections' settings.
    pub settings: Rc<Settings>,
}

/// See the module header.
pub struct ShardQueue {
    config: Arc<Config>,
    hold: bool,
    messages: Messages,
    sched: Scheduler,
    routes: Routes,
    rules: RuleEngine,
    sinks: Sinks,
    settings: Rc<Settings>,
    counters: Counters,
    /// Last connection error per destination, for operators.
    last_error: HashMap<DestinationKey, String>,
    /// Operators' suspensions, for the queues made while they last.
    suspensions: Suspensions,
    /// Hosts whose opportunistic handshake failed, sent to in plaintext until the instant.
    tls_fallback: HashMap<SocketAddr, Instant>,
    /// With `delivery.hold` (or an operator's pause): jobs kept, not routed.
    held: Vec<Job>,
    /// Messages an operator holds, with their jobs taken out of the scheduler.
    holds: HashMap<u64, Vec<Job>>,
    /// The jobs' domain names, one copy each.
    domain_names: DomainNames,
    /// Connection tasks started and not yet ended.
    live: usize,
    stopping: bool,
    /// Something changed what the scheduler would say.
    dirty: bool,
    tx: QueueHandle,
    /// Jobs of paused campaigns and tenants.
    pub(super) parking: campaigns::Parking,
}

impl ShardQueue {
    /// The queue of a shard and the sending end of its channel; `rx` is for [`Self::run`].
    pub fn new(
        config: Arc<Config>,
        shaping: Option<Arc<Shaping>>,
        parts: QueueParts,
    ) -> (ShardQueue, QueueHandle, LocalReceiver<QueueMsg>) {
        let (tx, rx) = super::queue_msg::channel();
        let queue = ShardQueue {
            hold: config.delivery.hold,
            config,
            messages: parts.messages,
            sched: parts.sched,
            routes: parts.routes,
            rules: shaping
                .as_ref()
                .map_or_else(|| RuleEngine::new(Vec::new()), |s| s.rule_engine()),
            sinks: parts.sinks,
            settings: parts.settings,
            counters: Counters::default(),
            last_error: HashMap::new(),
            suspensions: Suspensions::default(),
            tls_fallback: HashMap::new(),
            held: Vec::new(),
            holds: HashMap::new(),
            domain_names: DomainNames::default(),
            live: 0,
            stopping: false,
            dirty: true,
            tx: tx.clone(),
            parking: campaigns::Parking::default(),
        };
        (queue, tx, rx)
    }

    /// Takes a message recovered from the spool, whose body may be only its header section
    /// (then the rest is read back from the spool when it is sent).
    pub fn recovered(&mut self, m: RecoveredMessage) {
        if m.held {
            self.holds.insert(m.message.id, Vec::new());
        }
        self.take(Arrival {
            record: m.message,
            states: Some(m.states),
            complete: m.body_complete,
            size: m.body_len,
            eight_bit: m.eight_bit,
        });
    }

    /// Runs until stopped and every connection has ended (or 10 s after the stop).
    pub async fn run(mut self, rx: LocalReceiver<QueueMsg>) {
        let mut chores = Instant::now() + QUEUE_CHORES;
        let mut give_up = None;
        // When the scheduler last asked to be asked again (a rate token or a host-wide
        // connection lease due then).
        let mut asked: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let due = asked.is_some_and(|t| now >= t);
            let next = match self.dirty || due || self.sched.deferred_len() > 0 {
                true => self.poll(now),
                false => asked,
            };
            asked = next;
            if now >= chores {
                self.chores(now);
                chores = now + QUEUE_CHORES;
                // Another node may have lifted a suspension this queue waits on: look again
                // once a second.
                self.dirty |= self.sched.host().cluster().is_some();
            }
            if self.stopping && (self.live == 0 || give_up.is_some_and(|t| now >= t)) {
                break;
            }
            let wake = next.map_or(chores, |t: Instant| t.min(chores));
            let wait = wake
                .saturating_duration_since(now)
                .max(std::time::Duration::from_millis(1));
            let msg = futures_lite::future::or(async { rx.recv().await }, async {
                glommio::timer::sleep(wait).await;
                None
            })
            .await;
            let Some(msg) = msg else { continue };
            self.handle(msg);
            // Take what else is waiting before asking the scheduler again.
            for _ in 0..256 {
                match futures_lite::future::poll_once(rx.recv()).await {
                    Some(Some(msg)) => self.handle(msg),
                    _ => break,
                }
            }
            if self.stopping && give_up.is_none() {
                give_up = Some(Instant::now() + std::time::Duration::from_secs(10));
            }
        }
        // The last second's figures reach the host before it saves them.
        self.campaign_chores();
        self.sinks.log.flush();
    }

    /// Asks the scheduler what is due: retries are routed, destinations get connections.
    /// Returns when to ask again.
    fn poll(&mut self, now: Instant) -> Option<Instant> {
        self.dirty = false;
        let poll = self.sched.poll(now);
        for job in poll.due {
            if let Some(e) = self.messages.get_mut(job.message) {
                e.progress.retry_due(&job.recipients);
            }
            self.route(job);
        }
        if self.hold {
            // Paused: no connection; what a connection put back waits with the rest.
            for dest in &poll.open {
                self.sched.connection_open_failed(dest);
            }
            let ready = self.sched.drain_ready();
            self.held.extend(ready);
        } else if !self.stopping {
            for dest in poll.open {
                self.connect(dest, now);
            }
        }
        poll.next_wakeup
    }

    fn handle(&mut self, msg: QueueMsg) {
        match msg {
            QueueMsg::Accepted(record) => self.accepted(record),
            QueueMsg::Dsn(record) => {
                self.counters.dsns += 1;
                self.accepted(record);
            }
            QueueMsg::Routed(job, routed) => self.routed(job, routed),
            QueueMsg::Conn(event) => self.conn(event),
            QueueMsg::Admin(request, by, reply) => self.admin(request, by, reply),
            QueueMsg::Reload(config, shaping) => self.reload(config, shaping),
            QueueMsg::Stop => {
                self.stopping = true;
                self.sinks.log.flush();
            }
        }
    }

    /// Applies a reloaded configuration: routes, relay host, sources and pools take effect at
    /// the next routing decision (every new message and every retry is routed afresh); the
    /// destinations in use take the new per-destination limits, TLS policies, retry schedules
    /// and EHLO names at once; new connections get the new outbound settings (EHLO name,
    /// timeouts, TLS roots), and the next deferral the new retry and suspension policies.
    /// Connections already open go on as they are. A re-read shaping file brings its rules: an
    /// unchanged rule keeps its reductions and match counts, a changed or removed one's
    /// reductions end (`RuleEngine::reload`); a suspension already in force runs to its end (an
    /// operator lifts it with `mta dest resume`).
    fn reload(&mut self, config: Arc<Config>, shaping: Option<Option<Arc<Shaping>>>) {
        if let Some(file) = &shaping {
            let rules = file.as_ref().map(|s| s.rule_engine().rules().to_vec());
            self.rules.reload(rules.unwrap_or_default());
            let thresholds = file.as_ref().map(|s| s.thresholds().clone());
            let host = self.sinks.tally.host();
            host.set_thresholds(thresholds.unwrap_or_default());
        }
        self.sinks.tally.host().set_top(config.campaigns.top);
        let shaping = shaping.unwrap_or_else(|| self.routes.shaping().cloned());
        self.routes.reload(config.clone(), shaping);
        let now = Instant::now();
        let targets: Vec<Rc<Target>> = self.routes.targets().cloned().collect();
        for t in targets {
            self.apply_limits(&t, now);
        }
        match super::policy::settings(&config) {
            Ok(s) => {
                self.settings = Rc::new(super::connection::Settings {
                    feedback: self.settings.feedback.clone(),
                    ..s
                })
            }
            Err(e) => {
                tracing::error!(error = %e, "outbound TLS roots (tls.ca_file) reload failed; keeping the old ones")
            }
        }
        self.sched
            .set_retry_policy(super::policy::retry_policy(&config));
        self.sched
            .set_failure_policy(super::policy::failure_policy(&config));
        self.sched.set_priority_share(config.priority.share);
        if config.delivery.hold != self.config.delivery.hold {
            self.pause(config.delivery.hold);
        }
        self.config = config;
        self.dirty = true;
    }

    fn accepted(&mut self, record: MessageRecord) {
        self.count_accepted(&record);
        let size = record.body.len();
        let eight_bit = !record.body.is_ascii();
        self.take(Arrival {
            record,
            states: None,
            complete: true,
            size,
            eight_bit,
        });
    }

    fn take(&mut self, arrival: Arrival) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let routes = &self.routes;
        let feedback = &self.settings.feedback;
        let Some(i) = intake::take(
            arrival,
            &self.config,
            &mut self.domain_names,
            |r, b| routes.pool_of(r, b),
            |sender, pool| {
                feedback
                    .as_ref()
                    .is_some_and(|f| f.host().verp_applies(sender, pool))
            },
            (Instant::now(), now_ms),
        ) else {
            return;
        };
        self.messages.insert(Rc::new(i.msg), i.body, i.progress);
        if let Some((job, outcome)) = i.bounce {
            self.finish(JobResult::decided(job, outcome), "");
            return;
        }
        for (job, at) in i.later {
            match self.holds.get_mut(&job.message) {
                Some(h) => h.push(job),
                None => self.sched.defer_until(job, at),
            }
        }
        for job in i.now {
            self.route(job);
        }
        self.dirty = true;
    }

    /// Routes a job's domain (DNS may take a while: a task of its own) and queues it, or keeps
    /// it with `delivery.hold`. A domain routed less than a second ago is queued at once.
    fn route(&mut self, job: Job) {
        if let Some(h) = self.holds.get_mut(&job.message) {
            h.push(job);
            return;
        }
        if self.hold {
            self.held.push(job);
            return;
        }
        if let Some(target) = self.routes.cached(&job.domain) {
            self.routes.remember(&target);
            let target = self.routes.for_message(target, self.tls_optional(&job));
            self.submit(&target, job);
            return;
        }
        let lookup = self.routes.lookup(job.domain.to_string());
        let tx = self.tx.clone();
        glommio::spawn_local(async move {
            let routed = lookup.await;
            tx.send(QueueMsg::Routed(job, routed));
        })
        .detach();
    }

    fn routed(&mut self, job: Job, routed: Routed) {
        match routed {
            Routed::Target(_) if self.hold || self.holds.contains_key(&job.message) => {
                self.route(job);
            }
            Routed::Target(target) => {
                let pool = self
                    .messages
                    .get(job.message)
                    .and_then(|e| e.msg.pool.clone());
                let target = self.routes.place(target, pool.as_deref(), &job.domain);
                let target = self.routes.for_message(target, self.tls_optional(&job));
                self.submit(&target, job);
            }
            Routed::Failed(outcome) => self.finish(JobResult::decided(job, outcome), ""),
        }
    }

    /// The job's message says `TLS-Required: No` (RFC 8689 5).
    fn tls_optional(&self, job: &Job) -> bool {
        let msg = self.messages.get(job.message);
        msg.is_some_and(|e| e.msg.tls_optional)
    }

    /// Queues a routed job on its destination, with the destination's limits in force; a new
    /// queue that an operator's suspension covers starts suspended.
    fn submit(&mut self, target: &Target, job: Job) {
        let Some(job) = self.unpaused(job, &target.key) else {
            return;
        };
        let now = Instant::now();
        if !self.sched.knows(&target.key)
            && let Some(until) = self.suspensions.for_new_queue(&target.key.0, now)
        {
            self.sched
                .suspend(&target.key, until, suspensions::REASON.to_owned());
        }
        self.apply_limits(target, now);
        self.sched.submit(&target.key, job, now);
        self.dirty = true;
    }

    /// Starts a connection task for `dest`.
    fn connect(&mut self, dest: DestinationKey, now: Instant) {
        let Some(target) = self.routes.target(&dest.0).cloned() else {
            self.sched.connection_open_failed(&dest);
            return;
        };
        self.tls_fallback.retain(|_, until| *until > now);
        let plaintext = target
            .hops
            .iter()
            .map(|(_, a)| *a)
            .filter(|a| self.tls_fallback.contains_key(a))
            .collect();
        let plan = Plan {
            dest,
            target,
            plaintext,
            settings: self.settings.clone(),
            spool: self.sinks.spool.clone(),
            queue: self.tx.clone(),
        };
        self.live += 1;
        glommio::spawn_local(connection::run(plan)).detach();
    }

    /// Records a job's result: states, log, counters, retries, DSNs, suspensions.
    fn finish(&mut self, result: JobResult, dest: &str) {
        let Some(e) = self.messages.get_mut(result.job.message) else {
            return;
        };
        let msg = e.msg.clone();
        let peer = result.peer.clone();
        let own = self.routes.target(dest).and_then(|t| t.retry.clone());
        let routes = &self.routes;
        let classify = |status, diagnostic: &str| routes.classify(status, diagnostic);
        let cx = recorder::Context {
            now: Instant::now(),
            wall: SystemTime::now(),
            retry: own.as_ref(),
            after_421: self.config.delivery.suspend.after_421.0,
            destination: dest,
            classify: &classify,
        };
        let records = recorder::attempt(&msg, &mut e.progress, result, &mut self.sched, &cx);
        let id = msg.record.id;
        self.carry_out(&msg, records, dest, &peer);
        // A message held while this attempt was out: its retry waits for the release.
        if !self.holds.is_empty() && self.holds.contains_key(&id) {
            let jobs = self.sched.remove_message(id);
            if let Some(h) = self.holds.get_mut(&id) {
                h.extend(jobs);
            }
        }
    }

    /// Does what the recorder decided for message `msg`, at `dest`, answered by `peer`.
    fn carry_out(
        &mut self,
        msg: &Rc<super::message::Message>,
        r: Records,
        dest: &str,
        peer: &Peer,
    ) {
        let key = || DestinationKey(dest.to_owned());
        self.dirty = true;
        if let Some(job) = r.requeue {
            self.sched.submit(&key(), job, Instant::now());
            return;
        }
        if let Some((until, why)) = r.suspend {
            self.sched.suspend(&key(), until, why);
        }
        for reply in &r.feedback {
            self.observe(&key(), reply);
        }
        let id = msg.record.queue_id();
        self.sinks.states(id, r.states);
        self.sinks.lines(msg, &r.lines, dest, peer);
        self.count_lines(msg, &r.lines, dest);
        self.sinks.suppress_bounced(msg, &r.lines);
        self.sinks.count(msg, &r.classes, r.counts.delivered);
        let c = &mut self.counters;
        c.delivered += r.counts.delivered;
        c.deferred += r.counts.deferred;
        c.bounced += r.counts.bounced;
        c.expired += r.counts.expired;
        if let Some(request) = r.dsn {
            let body = self.messages.get(id.0).and_then(|e| e.body.clone());
            self.sinks.dsn(
                msg.clone(),
                body,
                request,
                self.config.clone(),
                self.tx.clone(),
            );
        }
        if r.finished {
            self.messages.forget(id.0);
            self.holds.remove(&id.0);
        }
    }

    /// Every [`QUEUE_CHORES`]: routes are forgotten (DNS answers and reloads show soon), the
    /// log is flushed, rules relax and limits follow, idle destinations are forgotten.
    fn chores(&mut self, now: Instant) {
        self.rules.prune(now);
        self.suspensions.prune(now);
        {
            let live: HashSet<&DestinationKey> = self.sched.destinations().collect();
            self.routes.prune(&live);
            self.last_error.retain(|k, _| live.contains(k));
        }
        let targets: Vec<Rc<Target>> = self.routes.targets().cloned().collect();
        for t in targets {
            self.apply_limits(&t, now);
        }
        self.tls_fallback.retain(|_, until| *until > now);
        self.sched.host().prune(now);
        self.campaign_chores();
        self.sinks.log.flush();
    }
}

#[path = "queue_admin.rs"]
mod admin;
#[path = "queue_campaigns.rs"]
mod campaigns;
#[path = "queue_conns.rs"]
mod conns;
#[path = "queue_ops.rs"]
mod ops;
#[path = "queue_shaping.rs"]
mod shaping;
#[path = "queue_suppress.rs"]
mod suppress;
pub use ops::MAX_LIST;
