//! `loadgen sink`'s options: where it listens and which faults it injects.
//!
//! What it does: [`SinkOptions`], and [`Fault`] parsed from `[domain=]rcpt|data:CODE:PERCENT`.
//!
//! What it does not do: no serving (`sink.rs`), no counting (`sink_stats.rs`).
//!
//! Invariants: a parsed fault's percentage is within 0..=100.

use super::*;

/// Where a fault applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The RCPT reply.
    Rcpt,
    /// The reply after the end of data.
    Data,
}

/// `[domain=]stage:code:percent`, e.g. `rcpt:451:10` or `gmail.test=data:550:5`.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// Recipient domain it applies to; None = all.
    pub domain: Option<String>,
    /// Where.
    pub stage: Stage,
    /// The reply code given.
    pub code: u16,
    /// Share of cases, 0-100.
    pub percent: f64,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("fault {s:?}: write [domain=]rcpt|data:CODE:PERCENT");
        let (domain, rest) = match s.split_once('=') {
            Some((d, r)) => (Some(d.to_ascii_lowercase()), r),
            None => (None, s),
        };
        let mut p = rest.split(':');
        let stage = match p.next() {
            Some("rcpt") => Stage::Rcpt,
            Some("data") => Stage::Data,
            _ => return Err(bad()),
        };
        let code: u16 = p.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        let percent: f64 = p.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        if !(400..600).contains(&code) || !(0.0..=100.0).contains(&percent) || p.next().is_some() {
            return Err(bad());
        }
        Ok(Fault {
            domain,
            stage,
            code,
            percent,
        })
    }
}

/// Settings of a sink.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    /// Listen address (loopback).
    pub listen: SocketAddr,
    /// Executors.
    pub threads: usize,
    /// Pin each executor to a core (see `placement`).
    pub pin: bool,
    /// Faults.
    pub faults: Vec<Fault>,
    /// Share of connections answered `421` at the greeting (percent).
    pub greeting_421: f64,
    /// Fixed delay before every reply.
    pub delay: Duration,
    /// Additional random delay up to this.
    pub delay_jitter: Duration,
    /// Concurrent connections allowed per thread (over it: `421`); 0 = unlimited.
    pub max_connections: usize,
    /// Share of DATA transfers on which the connection is dropped (percent).
    pub drop_mid_data: f64,
    /// Extensions to advertise.
    pub pipelining: bool,
    /// CHUNKING.
    pub chunking: bool,
    /// SIZE.
    pub size: bool,
    /// Stop after this many messages (0 = never).
    pub stop_after: u64,
    /// Stop after this many recipients (0 = never).
    pub stop_after_recipients: u64,
    /// Stop after this long without a message once one arrived (zero = never).
    pub idle: Duration,
    /// Offer STARTTLS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}
