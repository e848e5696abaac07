//! Delivery: stages 4-6 of the data flow (schedule, deliver, record) for one shard.
//!
//! What it does: routes every queued recipient (configured routes, smarthost, or MX hosts),
//! delivers over pooled outbound SMTP connections, classifies every result once, records it in
//! the spool and the delivery log, retries with backoff, and sends DSNs (RFC 3461/3464).
//!
//! What it does not do: no inbound protocol (server), no storage format (spool), no timing
//! decisions of its own (queue).
//!
//! Modules: `client` (one outbound connection), `classify` (reply → outcome), `route`
//! (domain → destination), `myself` (next hops that are this MTA), `dsn` (bounce messages), `log` (delivery log), `stage` (the shard's
//! delivery loop), `notify` (a wake-up signal).

pub mod classify;
pub mod client;
pub mod dsn;
pub mod memory;
pub mod myself;
pub mod notify;
pub mod phase;
pub mod queued;
pub mod recorder;
pub mod route;
pub mod stage;

pub use classify::Outcome;
pub use stage::control::AGE_BUCKETS_MINUTES;
pub use stage::{Stage, StageParts};
