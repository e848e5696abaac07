//! What operators can ask a shard's queue, and the typed answers.
//!
//! What it does: defines the requests (summary, list, one message or its content, delete,
//! actions on selected messages, pause, flush, suspend, resume, explain a destination, the
//! counters) and their answers as plain values, and builds the read-only answers from the
//! queue's parts: a summary by recipient or sender domain with an age histogram (like
//! Postfix's `qshape`), one message with its recipients' states, and why a destination is or
//! is not sending.
//!
//! What it does not do: no encoding (the admin endpoint turns answers into JSON), no actions
//! (the queue task carries out deletes, flushes and suspensions).
//!
//! Invariants: answers are `Send` values that own their data; a shard that does not have what
//! is asked says so (`None`, or [`NoRoute`]) rather than guessing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::messages::Messages;
use super::recorder::DeleteMode;
use super::routes::{Routes, split_pooled};
use super::select::{ListRow, Select};
use crate::queue::{DestinationKey, Limits, Scheduler};
use crate::shaping::RuleEngine;
use crate::spool::QueueId;

/// Upper bounds of the age buckets, in minutes (the last bucket is everything older).
pub const AGE_BUCKETS_MINUTES: [u64; 9] = [5, 10, 20, 40, 80, 160, 320, 640, 1280];

/// Buckets of a histogram: one per bound, plus everything older.
pub const AGE_BUCKETS: usize = AGE_BUCKETS_MINUTES.len() + 1;

/// What an operator asks a shard's queue.
#[derive(Clone, Debug)]
pub enum Request {
    /// Queued recipients per recipient domain (or per sender domain) with their ages.
    Summary(SummaryBy),
    /// The messages a selection matches, at most this many.
    List(Select, usize),
    /// One message, if this shard has it.
    Message(u64),
    /// One message's content as stored, if this shard has it.
    Body(u64),
    /// An action on every message a selection matches.
    Act(Op, Select),
    /// Pause (true) or resume (false) all delivery of the shard, until the next restart.
    Pause(bool),
    /// Delete a message (all its recipients not yet final).
    Delete(u64, DeleteMode),
    /// Make deferred mail due now: all, or only that of a domain or destination.
    Flush(Option<String>),
    /// Suspend a destination (a domain or a destination key) and the queues of its pool's
    /// sources, also those made while the suspension lasts.
    Suspend(String, Duration),
    /// Resume a suspended destination and its pool's sources.
    Resume(String),
    /// Why a destination, and each queue of its pool's sources, is or is not sending.
    Explain(String),
    /// The queue's counters and gauges.
    Counters,
}

impl Request {
    /// The destination an operator named, if the request names one.
    pub fn destination(&self) -> Option<&str> {
        match self {
            Request::Suspend(n, _) | Request::Resume(n) | Request::Explain(n) => Some(n),
            _ => None,
        }
    }

    /// The same request for destination `key` (once a named domain was routed).
    pub fn for_key(self, key: String) -> Request {
        match self {
            Request::Suspend(_, d) => Request::Suspend(key, d),
            Request::Resume(_) => Request::Resume(key),
            Request::Explain(_) => Request::Explain(key),
            other => other,
        }
    }

    /// The answer when the destination it names routes nowhere.
    pub fn no_route(&self) -> Answer {
        let no = NoRoute(self.destination().unwrap_or_default().to_owned());
        match self {
            Request::Suspend(..) => Answer::Suspended(Err(no)),
            Request::Resume(_) => Answer::Resumed(Err(no)),
            _ => Answer::Explained(Err(no)),
        }
    }
}

/// What [`Request::Summary`] groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryBy {
    /// The recipient's domain (like Postfix's `qshape`).
    Recipient,
    /// The sender's domain (like `qshape -s`).
    Sender,
}

/// An action on selected messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Hold: not delivered until released (durable: survives a restart).
    Hold,
    /// Release held messages: they are routed again now.
    Release,
    /// Delete (every recipient not yet final ends, with a DSN or silently).
    Delete(DeleteMode),
    /// Route waiting mail again now (after a route or DNS change): held mail stays held.
    Requeue,
}

impl Op {
    /// The action's name in the event log.
    pub fn name(self) -> &'static str {
        match self {
            Op::Hold => "hold",
            Op::Release => "release",
            Op::Delete(DeleteMode::Bounce) => "bounce",
            Op::Delete(DeleteMode::Silent) => "delete",
            Op::Requeue => "requeue",
        }
    }
}

/// What an action did on one shard.
#[derive(Clone, Debug, Default)]
pub struct Acted {
    /// Messages it acted on.
    pub messages: usize,
    /// Their recipients not yet final.
    pub recipients: usize,
    /// Why it could not be made durable, if it could not (a hold or release then holds only
    /// until the next restart).
    pub error: Option<String>,
}

/// The queue's answer.
#[derive(Clone, Debug)]
pub enum Answer {
    /// For [`Request::Summary`].
    Summary(Summary),
    /// For [`Request::List`]: the rows, and how many messages matched in all.
    List(Vec<ListRow>, usize),
    /// For [`Request::Message`]: None if this shard does not have it.
    Message(Option<MessageView>),
    /// For [`Request::Body`]: None if this shard does not have it, else the content or why it
    /// could not be read.
    Body(Option<Result<Vec<u8>, String>>),
    /// For [`Request::Act`].
    Acted(Acted),
    /// For [`Request::Pause`]: whether delivery is paused now.
    Paused(bool),
    /// For [`Request::Delete`]: None if this shard does not have it.
    Deleted(Option<Deleted>),
    /// For [`Request::Flush`]: jobs made due.
    Flushed(usize),
    /// For [`Request::Suspend`]: the destinations and for how long.
    Suspended(Result<(Covered, Duration), NoRoute>),
    /// For [`Request::Resume`].
    Resumed(Result<Covered, NoRoute>),
    /// For [`Request::Explain`].
    Explained(Result<Box<DestinationView>, NoRoute>),
    /// For [`Request::Counters`].
    Counters(Counters),
}

/// Who asks: the admin client's address and how it was let in (`127.0.0.1 network`,
/// `192.0.2.7 token`), as the event log records it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actor(pub String);

/// The queues an operator's suspend or resume acted on, on one shard.
#[derive(Clone, Debug)]
pub struct Covered {
    /// The destination named (a domain is routed to its key first).
    pub key: DestinationKey,
    /// The queues of its pool's sources (`<key>@<source>`) that this shard has now.
    pub sources: Vec<DestinationKey>,
}

/// A name an operator gave that routes nowhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoRoute(pub String);

/// Queued recipients by domain.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Messages with a recipient not final.
    pub messages: u64,
    /// Recipients not final.
    pub recipients: u64,
    /// Bytes of those messages.
    pub bytes: u64,
    /// Per recipient domain: recipients, and how many in each age bucket.
    pub domains: BTreeMap<String, (u64, [u64; AGE_BUCKETS])>,
}

/// One queued message.
#[derive(Clone, Debug)]
pub struct MessageView {
    /// Queue id.
    pub id: QueueId,
    /// Envelope sender.
    pub sender: String,
    /// Size in octets.
    pub size: usize,
    /// Arrival, Unix milliseconds.
    pub arrival_unix_ms: u64,
    /// Age.
    pub age: Duration,
    /// The client's address.
    pub client: String,
    /// The authenticated user.
    pub auth: Option<String>,
    /// The client's TLS.
    pub tls: Option<String>,
    /// Each recipient.
    pub recipients: Vec<RecipientView>,
}

/// One recipient of a queued message.
#[derive(Clone, Debug)]
pub struct RecipientView {
    /// Address.
    pub address: String,
    /// Delivered, bounced, expired or deleted.
    pub done: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The last reply or error.
    pub last_reply: String,
    /// When it is tried again (Unix milliseconds), if a retry is waiting.
    pub next_attempt_unix_ms: Option<u64>,
}

/// What a deletion did.
#[derive(Clone, Debug)]
pub struct Deleted {
    /// The message.
    pub id: QueueId,
    /// Recipients deleted.
    pub recipients: usize,
    /// How.
    pub mode: DeleteMode,
}

/// Why a destination is or is not sending.
#[derive(Clone, Debug)]
pub struct DestinationView {
    /// Its key.
    pub key: DestinationKey,
    /// The pool source it is sent from, for a source's queue (`<key>@<source>`).
    pub source: Option<String>,
    /// The local address it is sent from, when one is set (a source, a route's `source`).
    pub source_address: Option<std::net::IpAddr>,
    /// The scheduler's state; None when nothing is queued for it on this shard.
    pub state: Option<DestinationState>,
    /// In one sentence.
    pub why: String,
    /// Its hops, `name[address]`.
    pub hops: Vec<String>,
    /// The user name its hops are authenticated as (AUTH), if it has credentials.
    pub auth: Option<String>,
    /// The last connection error.
    pub last_error: Option<String>,
    /// A shaping rule in force, explained.
    pub rule: Option<String>,
    /// The TLS its hops get: the configured policy, and DANE and MTA-STS where they apply.
    pub tls_policy: Option<String>,
    /// The TLS of its last connection on this shard (version, cipher, policy, verified).
    pub last_tls: Option<String>,
    /// The queues of its pool's sources on this shard, each explained (empty for a source's
    /// own queue).
    pub sources: Vec<DestinationView>,
    /// Recipients for it on this shard that wait for a paused campaign or tenant.
    pub parked: usize,
}

/// A destination's scheduler state.
#[derive(Clone, Debug)]
pub struct DestinationState {
    /// New jobs waiting.
    pub ready_new: usize,
    /// Retries waiting.
    pub ready_retry: usize,
    /// Jobs waiting per priority class, highest first (`Class::ALL` order).
    pub ready_by_class: [usize; crate::priority::Class::COUNT],
    /// Connections open.
    pub connections: usize,
    /// Connections asked for.
    pub pending_opens: usize,
    /// Connections open or being opened by every shard (host-wide).
    pub host_connections: usize,
    /// In a cluster: the connections the cluster grants this node now.
    pub cluster_connections: Option<usize>,
    /// Suspended for how much longer, and why.
    pub suspended: Option<(Duration, String)>,
    /// Rate tokens left, if rate-limited.
    pub tokens: Option<f64>,
    /// The limits in force.
    pub limits: Limits,
}

/// The queue's counters and gauges.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Recipients delivered.
    pub delivered: u64,
    /// Attempts deferred.
    pub deferred: u64,
    /// Recipients bounced.
    pub bounced: u64,
    /// Recipients expired.
    pub expired: u64,
    /// DSNs queued.
    pub dsns: u64,
    /// Connections opened.
    pub connections: u64,
    /// Bytes of queued messages.
    pub queue_bytes: u64,
    /// Messages an operator holds.
    pub held: u64,
    /// Delivery is paused.
    pub paused: bool,
    /// Destinations suspended now.
    pub suspended: u64,
    /// DNS answers from the cache.
    pub dns_cache_hits: u64,
    /// DNS answers from a server.
    pub dns_cache_misses: u64,
}

fn age_bucket(age: Duration) -> usize {
    let minutes = age.as_secs() / 60;
    AGE_BUCKETS_MINUTES
        .iter()
        .position(|&b| minutes < b)
        .unwrap_or(AGE_BUCKETS_MINUTES.len())
}

/// The recipient domain of an address (the host name for one without a domain).
pub fn domain_of(address: &str, hostname: &str) -> String {
    match address.rsplit_once('@') {
        Some((_, d)) => d
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
        None => hostname.to_owned(),
    }
}

/// Queued recipients by recipient domain, or by sender domain (`<>` for the null sender).
pub fn summary(messages: &Messages, hostname: &str, by: SummaryBy) -> Summary {
    let mut s = Summary::default();
    for e in messages.values() {
        let bucket = age_bucket(e.msg.arrival.elapsed());
        let sender = &e.msg.record.reverse_path;
        let sender_domain = match sender.is_empty() {
            true => "<>".to_owned(),
            false => domain_of(sender, hostname),
        };
        let mut any = false;
        for (r, done) in e.msg.record.recipients.iter().zip(&e.progress.done) {
            if *done {
                continue;
            }
            any = true;
            s.recipients += 1;
            let key = match by {
                SummaryBy::Recipient => domain_of(&r.address, hostname),
                SummaryBy::Sender => sender_domain.clone(),
            };
            let d = s.domains.entry(key).or_default();
            d.0 += 1;
            d.1[bucket] += 1;
        }
        if any {
            s.messages += 1;
            s.bytes += e.msg.size as u64;
        }
    }
    s
}

/// One message, if queued here.
pub fn message(messages: &Messages, id: u64) -> Option<MessageView> {
    let e = messages.get(id)?;
    let (rec, p) = (&e.msg.record, &e.progress);
    Some(MessageView {
        id: QueueId(id),
        sender: rec.reverse_path.clone(),
        size: e.msg.size,
        arrival_unix_ms: rec.arrival_unix_ms,
        age: e.msg.arrival.elapsed(),
        client: rec.client_addr.clone(),
        auth: rec.auth.clone(),
        tls: rec.tls.clone(),
        recipients: rec
            .recipients
            .iter()
            .enumerate()
            .map(|(i, r)| RecipientView {
                address: r.address.clone(),
                done: p.done[i],
                attempts: p.attempts[i],
                last_reply: p.last[i].clone(),
                next_attempt_unix_ms: p
                    .next_attempt
                    .get(i)
                    .copied()
                    .filter(|&t| t > 0 && !p.done[i]),
            })
            .collect(),
    })
}

/// Why destination `key` is or is not sending.
pub fn explain(
    key: DestinationKey,
    sched: &Scheduler,
    routes: &Routes,
    rules: &RuleEngine,
    last_error: Option<String>,
    now: Instant,
) -> DestinationView {
    let target = routes.target(&key.0);
    let hops = target
        .map(|t| t.hops.iter().map(|(n, a)| format!("{n}[{a}]")).collect())
        .unwrap_or_default();
    let auth = target
        .and_then(|t| t.auth.as_ref())
        .map(|c| c.username().to_owned());
    let source = split_pooled(&key.0).1.map(str::to_owned);
    let source_address = target.and_then(|t| t.source);
    let rule = rules.in_force(&key.0, now);
    let tls_policy = target.map(|t| {
        let configured = match t.auth {
            Some(_) => t.tls.at_least_required(),
            None => t.tls,
        };
        let policy = super::security::Applied::Configured(configured);
        match t.security.describe() {
            d if d.is_empty() => format!("configured {policy}"),
            d => format!("configured {policy}; {d}"),
        }
    });
    let last_tls = routes.last_tls(&key).cloned();
    let Some(s) = sched.explain(&key, now) else {
        let why = match sched.host_suspension(&key, now) {
            Some((_, reason)) => format!("suspended: {reason} (nothing queued on this shard)"),
            None => "nothing queued for it on this shard".to_owned(),
        };
        return DestinationView {
            key,
            source,
            source_address,
            state: None,
            why,
            hops,
            auth,
            last_error,
            rule,
            tls_policy,
            last_tls,
            sources: Vec::new(),
            parked: 0,
        };
    };
    let queued = s.ready_new + s.ready_retry;
    let why = if let Some((_, reason)) = &s.suspended {
        format!("suspended: {reason}")
    } else if queued == 0 {
        "idle: nothing ready to send".to_owned()
    } else if s.connections + s.pending_opens >= s.limits.max_connections {
        "sending: at its connection limit".to_owned()
    } else if s.host_connections >= s.limits.max_connections {
        "waiting: other shards hold every connection the limit allows".to_owned()
    } else if s
        .cluster_connections
        .is_some_and(|c| s.host_connections >= c)
    {
        "waiting: other nodes of the cluster hold the connections the limit allows".to_owned()
    } else if s.tokens.is_some_and(|t| t < 1.0) {
        "waiting: message rate limit".to_owned()
    } else if let Some(r) = &rule {
        format!("sending, slowed by a shaping rule: {r}")
    } else {
        "sending".to_owned()
    };
    DestinationView {
        key,
        source,
        source_address,
        state: Some(DestinationState {
            ready_new: s.ready_new,
            ready_retry: s.ready_retry,
            ready_by_class: s.ready_by_class,
            connections: s.connections,
            pending_opens: s.pending_opens,
            host_connections: s.host_connections,
            cluster_connections: s.cluster_connections,
            suspended: s
                .suspended
                .map(|(until, reason)| (until.saturating_duration_since(now), reason)),
            tokens: s.tokens,
            limits: s.limits,
        }),
        why,
        hops,
        auth,
        last_error,
        rule,
        tls_policy,
        last_tls,
        sources: Vec::new(),
        parked: 0,
    }
}

/// Destinations suspended now.
pub fn suspended(sched: &Scheduler, now: Instant) -> u64 {
    sched
        .destinations()
        .filter(|k| sched.explain(k, now).is_some_and(|s| s.suspended.is_some()))
        .count() as u64
}
