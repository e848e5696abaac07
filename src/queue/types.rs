//! The scheduler's value types: destination names, jobs, limits, rates, the retry and failure
//! policies, and what a poll or a deferral answers.
//!
//! What it does not do: no scheduling (the parent module's `Scheduler`).
//!
//! Invariants: plain values, cheap to copy or clone; defaults are the documented ones.

use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::priority::Class;

/// Names a destination queue: `route:<pattern>`, `relay:<host>` or `mx:<sorted MX hosts>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestinationKey(pub String);

/// A key is looked up by its text (the same hash as the `String` it wraps).
impl std::borrow::Borrow<str> for DestinationKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DestinationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job's recipient indices: up to four inline, more on the heap.
pub type Recipients = smallvec::SmallVec<[u32; 4]>;

/// Some recipients of one message going to one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The message's queue id.
    pub message: u64,
    /// Indices into the message's recipient list.
    pub recipients: Recipients,
    /// The recipients' domain (one shared copy per name: [`super::DomainNames`]).
    pub domain: Rc<str>,
    /// Attempts already made.
    pub attempts: u32,
    /// When the message was accepted (for the lifetime).
    pub arrival: Instant,
    /// The priority class its destination serves it in (kept through retries).
    pub priority: Class,
}

/// A message rate: `messages` per `per`, with a burst of `messages` (GCRA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Messages per period (also the burst).
    pub messages: u32,
    /// The period.
    pub per: Duration,
}

/// Limits of a destination (for the whole host).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Connections.
    pub max_connections: usize,
    /// Messages per connection (enforced by the pool; kept for `explain`).
    pub max_messages_per_connection: u32,
    /// Recipients per transaction: bigger jobs are split on `submit`.
    pub max_recipients_per_transaction: usize,
    /// Message rate, if limited.
    pub rate: Option<Rate>,
    /// Rate of new connections, if limited.
    pub connection_rate: Option<Rate>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10,
            max_messages_per_connection: 100,
            max_recipients_per_transaction: 100,
            rate: None,
            connection_rate: None,
        }
    }
}

/// Retry policy.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// First retry after.
    pub first: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Growth per attempt.
    pub multiplier: f64,
    /// Spread, as a fraction (0.1 = ±10%).
    pub jitter: f64,
    /// Queue lifetime.
    pub lifetime: Duration,
}

/// What `defer` decided.
#[derive(Debug, PartialEq, Eq)]
pub enum DeferOutcome {
    /// The job will be due at this time.
    Scheduled {
        /// When.
        at: Instant,
    },
    /// The next attempt would be past the lifetime: bounce it.
    Expired(Job),
}

/// The answer of `poll`.
#[derive(Debug, Default)]
pub struct Poll {
    /// Retries whose time has come (re-route and `submit` them).
    pub due: Vec<Job>,
    /// Destinations that should get one more connection now.
    pub open: Vec<DestinationKey>,
    /// When to poll again at the latest.
    pub next_wakeup: Option<Instant>,
}

/// A destination's state, for operators.
#[derive(Clone, Debug)]
pub struct DestinationState {
    /// New jobs waiting.
    pub ready_new: usize,
    /// Retried jobs waiting.
    pub ready_retry: usize,
    /// Jobs waiting per priority class, highest first (`Class::ALL` order).
    pub ready_by_class: [usize; Class::COUNT],
    /// Connections open.
    pub connections: usize,
    /// Connections asked for and not yet reported.
    pub pending_opens: usize,
    /// Connections open or being opened to it by every shard (the host-wide leases).
    pub host_connections: usize,
    /// In a cluster: the connections the cluster grants this node now.
    pub cluster_connections: Option<usize>,
    /// Suspended until, and why.
    pub suspended: Option<(Instant, String)>,
    /// Rate tokens available (if rate-limited).
    pub tokens: Option<f64>,
    /// The limits in force.
    pub limits: Limits,
}

/// Suspension after consecutive connection failures.
#[derive(Clone, Copy, Debug)]
pub struct FailurePolicy {
    /// Consecutive failures that suspend.
    pub threshold: u32,
    /// First suspension.
    pub backoff: Duration,
    /// Longest suspension.
    pub max_backoff: Duration,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            threshold: 5,
            backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(1800),
        }
    }
}
