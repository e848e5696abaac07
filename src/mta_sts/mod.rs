//! MTA-STS (RFC 8461): receivers that publish a policy get mail only over TLS with a valid
//! certificate, to the MX hosts the policy names.
//!
//! What it does: parses records and policies (`policy.rs`), fetches policies over HTTPS
//! (`fetch.rs`) and keeps them per shard in memory and on disk for their `max_age`
//! (`cache.rs`).
//!
//! What it does not do: no decision about a connection (delivery applies the policy: MX
//! hosts that do not match are left out in `enforce` mode, and the certificate must verify),
//! no TLS-RPT reports (a failed fetch is counted for them, `tls_rpt`).
//!
//! Invariants: a fetch happens only in a routing task, bounded in time and size; a domain
//! whose policy cannot be had and is not cached is treated as having none (RFC 8461 5.1).

mod cache;
mod fetch;
mod policy;

pub use cache::{Cached, MAX_DOMAINS, MtaSts};
pub use fetch::{FetchError, FetchSettings, fetch, response_body};
pub use policy::{MAX_AGE_LIMIT, Mode, Policy, PolicyError, parse, record_id};
