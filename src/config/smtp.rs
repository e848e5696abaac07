//! The inbound settings: `[smtp]` (limits), `[smtp.timeouts]` and `[relay]` (who may send
//! where, and where `<Postmaster>` goes), with their defaults.
//!
//! What it does: defines the sections and their built-in values.
//!
//! What it does not do: no validation across sections (`Config::validate` does it), no policy
//! (the server applies these).
//!
//! Invariants: the defaults here are the ones `config/mta.toml` documents.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::HumanDuration;
use super::units::ByteSize;
use crate::smtp::BareLineEnding;

/// `[smtp]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSection {
    /// Largest message accepted (advertised with SIZE, enforced while reading).
    pub max_message_size: ByteSize,
    /// Recipients per message; extra RCPTs get `452 4.5.3`.
    pub max_recipients: usize,
    /// Errors per session before `421 4.7.0` and close.
    pub max_errors: u32,
    /// A message whose header has more `Received:` fields than this is refused with
    /// `554 5.4.6` (RFC 5321 6.3 loop detection, Postfix's `hopcount_limit`); mail recovered
    /// from the spool at start-up with more (queued before this check existed, or under a
    /// larger limit) bounces with the same status.
    pub max_received_headers: usize,
    /// Concurrent inbound connections per shard; over it: `421 4.7.0` at the greeting.
    pub max_connections: usize,
    /// Concurrent inbound connections per client address per shard (0 = unlimited); over it:
    /// `421 4.7.0` instead of the greeting.
    pub max_connections_per_ip: usize,
    /// New inbound connections per client address per second per shard (0 = unlimited), a
    /// token bucket with a burst of the same size; over it: `421 4.7.0`.
    pub max_connection_rate_per_ip: u32,
    /// Longest command line in octets, CRLF included (RFC 5321 4.5.3.1.4: at least 512).
    pub max_command_line: usize,
    /// `"reject"` (default) or `"normalize"`: what to do with a bare CR or LF in message data.
    pub bare_line_ending: BareLineEnding,
    /// Inbound timeouts.
    pub timeouts: TimeoutsSection,
}

/// `[smtp.timeouts]`: how long the server waits for the client (RFC 5321 4.5.3.2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsSection {
    /// From the greeting to the client's first command.
    pub greeting: HumanDuration,
    /// Between commands (RFC 5321 4.5.3.2.7 server timeout: 5 minutes).
    pub command: HumanDuration,
    /// Between two reads while receiving DATA or BDAT bytes (4.5.3.2.5: 3 minutes).
    pub data_block: HumanDuration,
    /// The whole of one DATA or BDAT transfer, from `354` to the end of data (4.5.3.2.6).
    pub data_termination: HumanDuration,
}

/// `[relay]`: the relay policy applied at RCPT.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySection {
    /// Domains this host accepts mail for from anyone (it relays them on: it has no mailboxes).
    pub local_domains: Vec<String>,
    /// Domains this host relays for from anyone (backup MX style).
    pub relay_domains: Vec<String>,
    /// Client networks that may send to any domain.
    pub trusted_networks: Vec<IpNet>,
    /// Where mail to `<Postmaster>` (no domain, RFC 5321 4.5.1) goes: a mailbox an operator
    /// reads, e.g. `"postmaster@example.com"`. Unset: `postmaster@<hostname>`, with a warning.
    pub postmaster: Option<String>,
}

impl Default for SmtpSection {
    fn default() -> Self {
        SmtpSection {
            max_message_size: ByteSize::mib(25),
            max_recipients: 1000,
            max_errors: 20,
            max_received_headers: 100,
            max_connections: 1000,
            max_connections_per_ip: 20,
            max_connection_rate_per_ip: 0,
            max_command_line: 512,
            bare_line_ending: BareLineEnding::Reject,
            timeouts: TimeoutsSection::default(),
        }
    }
}

impl Default for TimeoutsSection {
    fn default() -> Self {
        TimeoutsSection {
            greeting: HumanDuration::secs(300),
            command: HumanDuration::secs(300),
            data_block: HumanDuration::secs(180),
            data_termination: HumanDuration::secs(600),
        }
    }
}

impl Default for RelaySection {
    fn default() -> Self {
        RelaySection {
            local_domains: Vec::new(),
            relay_domains: Vec::new(),
            trusted_networks: vec![
                "127.0.0.0/8".parse().expect("literal network"),
                "::1/128".parse().expect("literal network"),
            ],
            postmaster: None,
        }
    }
}
