//! Delivery: stages 4-6 of the data flow (schedule, deliver, record) for one shard.
//!
//! What it does: routes every queued recipient (configured routes, smarthost, or MX hosts),
//! delivers over pooled outbound SMTP connections, classifies every result once, records it in
//! the spool and the event log, retries with backoff, and sends DSNs (RFC 3461/3464).
//!
//! What it does not do: no inbound protocol (server), no storage format (spool), no timing
//! decisions of its own (queue).
//!
//! The parts, each owning its data: `queue_task` (the one owner of the shard's queue, fed by
//! `queue_msg`), `intake` (a message into jobs), `messages` (the message table under the
//! memory budget), `routes` (domain → destination, pools, shaping), `connection` (one
//! outbound connection's task), `batch` (one message's jobs for one destination in one
//! transaction, and each job's share of the replies), `client` (its protocol), `classify` (a report → outcomes),
//! `recorder` (outcomes → records, pure), `sinks` (records → spool, log, DSNs), `views` (what
//! operators ask, typed), `suspensions` (what operators suspended, for queues made later),
//! `policy` (the configuration's policies), `security` (DANE, MTA-STS and the configured TLS
//! policy of each hop), `start` (wiring).
//! Leaves: `route`, `myself`, `dsn`, `memory`, `message`, `phase`.

pub mod batch;
pub mod classify;
pub mod client;
pub mod connection;
pub mod dsn;
pub mod intake;
pub mod memory;
pub mod message;
pub mod messages;
pub mod myself;
pub mod phase;
pub mod policy;
pub mod queue_msg;
pub mod queue_task;
pub mod recorder;
pub mod route;
pub mod routes;
pub mod security;
pub mod select;
pub mod sinks;
pub mod start;
pub mod suspensions;
pub mod views;

pub use classify::Outcome;
pub use queue_msg::{QueueHandle, QueueMsg};
pub use queue_task::ShardQueue;
pub use start::StageParts;
pub use views::AGE_BUCKETS_MINUTES;
