//! SMTP TLS reporting (RFC 8460): how TLS sessions with receivers that publish a policy
//! (MTA-STS, DANE) went, reported once a period to the addresses each policy domain
//! publishes.
//!
//! What it does: connection tasks count each session's outcome on their shard
//! (`recorder.rs`, counts in `tally.rs` with the RFC's result types from `result.rs`); every
//! few seconds each shard hands its counts to the reporter thread (`store.rs`), which keeps
//! the period's counts, saves them under `<spool.path>/tls-rpt/`, and when a period is due
//! hands it to shard 0 (`sender.rs`), which builds the JSON reports (`report.rs`) and sends
//! them by mail through the queue (`message.rs`) or by HTTPS (`post.rs`).
//!
//! What it does not do: no decision about a connection (delivery applies the policies), no
//! reports about report delivery, no reports of sessions without a policy.
//!
//! Invariants: counting takes no lock and allocates only for a domain, policy or failure
//! detail not yet seen in the period; everything kept is capped
//! (`delivery.tls_policy.tls_rpt.max_domains`, `max_failure_details`); a period is on disk
//! (saved state or pending file) from its first save until its reports are queued or
//! uploaded.

pub mod link;
pub mod message;
pub mod post;
pub mod recorder;
pub mod report;
pub mod result;
pub mod sender;
pub mod store;
pub mod tally;

pub use result::{ResultType, classify};
pub use tally::{Caps, Outcome, PolicyDesc, PolicyKind, Tally};
