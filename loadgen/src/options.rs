//! What `loadgen send` is asked to do: the options of one load run.
//!
//! What it does: holds the settings that the CLI, the benchmark and the report share.
//!
//! What it does not do: no parsing (clap in `main.rs`), no sending (`send.rs`), no reporting
//! (`report.rs`); it imports neither, so both depend on it and not on each other.
//!
//! Invariants: plain data.

use std::net::SocketAddr;
use std::time::Duration;

/// Settings of a `send` run.
#[derive(Clone, Debug)]
pub struct SendOptions {
    /// Where to send.
    pub target: SocketAddr,
    /// Concurrent connections.
    pub connections: usize,
    /// Total messages (if no duration).
    pub messages: u64,
    /// Run for this long instead of a count.
    pub duration: Option<Duration>,
    /// Body size in octets (the smallest, with `size_max`).
    pub size: usize,
    /// Largest body size: each message gets a uniformly random size in `size..=size_max`.
    pub size_max: usize,
    /// Recipients per message.
    pub recipients: usize,
    /// Recipient domains (cycled).
    pub domains: Vec<String>,
    /// Use PIPELINING when offered.
    pub pipelining: bool,
    /// Use BDAT when CHUNKING is offered.
    pub bdat: bool,
    /// Executors (threads).
    pub threads: usize,
    /// Pin each executor to a core (see `placement`).
    pub pin: bool,
    /// Open loop: total messages per second.
    pub rate: Option<f64>,
    /// Messages per connection before reconnecting (0 = unlimited).
    pub per_connection: u64,
    /// Envelope sender.
    pub from: String,
    /// Connect and reply timeout.
    pub timeout: Duration,
    /// STARTTLS after EHLO; fail if not offered.
    pub starttls: bool,
}
