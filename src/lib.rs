//! A thread-per-core mail transfer agent for bulk sending.
//!
//! The map of the crate, in the order mail flows through it:
//! - [`proxy`]: the HAProxy PROXY protocol v1/v2 header, sans-IO (original client address).
//! - [`smtp`]: the SMTP protocol, sans-IO (commands, replies, paths, DATA/BDAT decoding).
//! - [`auth`]: SMTP AUTH, sans-IO (SASL PLAIN/LOGIN, users file, failure throttle).
//! - [`server`]: inbound sessions of one shard (accept, parse, hand to the spool).
//! - [`spool`]: the per-shard append-only store with group commit, and its recovery.
//! - [`priority`]: priority classes and how a message is placed in one (pure).
//! - [`queue`]: the delivery scheduler (pure: destinations, retries, limits).
//! - [`dns`]: the per-shard DNS client (MX and address lookups, cache; TLSA and TXT).
//! - [`mta_sts`]: MTA-STS policies (RFC 8461): parsing, HTTPS fetch, durable cache.
//! - [`delivery`]: outbound connections, outcome classification, records, DSNs.
//! - [`tls_rpt`]: TLS reporting (RFC 8460): session counts per policy domain, daily reports.
//! - [`gauge`]: the shard's memory gauge, one budget for mail received and mail queued.
//! - [`headers`]: fields of a stored message's header section (`Message-ID`, pool headers).
//! - [`eventlog`]: the per-shard JSON-lines log of receptions, rejections and deliveries.
//! - [`shaping`]: per-provider traffic shaping, adaptive backoff rules, bounce classes (pure).
//! - [`tls`]: rustls configurations and the stream that STARTTLS upgrades.
//! - [`dkim`]: DKIM signing of outgoing messages (RSA-SHA256, Ed25519-SHA256).
//! - [`suppression`]: the host's suppression list (addresses never sent to again), durable.
//! - [`config`]: the TOML configuration and its defaults.
//! - [`shutdown`]: signals and the per-shard stop notice.
//! - [`crash`]: the process-wide panic policy (a panic anywhere exits the process).
//! - [`sockets`]: binding listening sockets (shared ports, waiting for a port still held).
//! - [`reload`]: what a shard reloads on SIGHUP.
//! - [`disk`]: the spool's free-space monitor.
//! - [`memlock`]: the locked memory the shards' io_uring rings need, checked before they start.
//! - [`read_buffer`]: a connection's unconsumed input, compacted before each read.
//! - [`timers`]: every periodic chore of a shard, with its period.
//! - [`shard`]: the one place that wires a shard together and runs them all.
//! - [`metrics`]: per-shard counters and histograms, and their Prometheus text.
//! - [`admin`]: the admin HTTP endpoint's server, access policy and CLI client.
//! - [`webhook`]: event-log lines POSTed to HTTP(S) endpoints, at least once.

pub mod admin;
pub mod auth;
pub mod campaigns;
pub mod cluster;
pub mod config;
pub mod crash;
pub mod delivery;
pub mod disk;
pub mod dkim;
pub mod dns;
pub mod eventlog;
pub mod feedback;
pub mod gauge;
pub mod headers;
pub mod memlock;
pub mod metrics;
pub mod mta_sts;
pub mod priority;
pub mod proxy;
pub mod queue;
pub mod read_buffer;
pub mod reload;
pub mod server;
pub mod shaping;
pub mod shard;
pub mod shutdown;
pub mod smtp;
pub mod sockets;
pub mod spool;
pub mod suppression;
pub mod timers;
pub mod tls;
pub mod tls_rpt;
pub mod webhook;
