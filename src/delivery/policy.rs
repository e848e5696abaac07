//! The delivery policies a configuration gives: the retry schedule, the suspension after
//! repeated connection failures, and the outbound connection settings.
//!
//! What it does: reads them out of `[delivery]` and `[tls]`, at start and on every reload.
//!
//! What it does not do: no checks (the configuration's own), no state.
//!
//! Invariants: the same configuration always gives the same policies.

use super::client::ClientTimeouts;
use super::connection::Settings;
use crate::config::Config;
use crate::queue::{FailurePolicy, RetryPolicy};
use crate::tls::ClientTls;

/// The retry schedule of `config`.
pub fn retry_policy(config: &Config) -> RetryPolicy {
    let r = &config.delivery.retry;
    RetryPolicy {
        first: r.first.0,
        max: r.max.0,
        multiplier: r.multiplier,
        jitter: r.jitter,
        lifetime: r.lifetime.0,
    }
}

/// The suspension after repeated connection failures of `config`.
pub fn failure_policy(config: &Config) -> FailurePolicy {
    let s = &config.delivery.suspend;
    FailurePolicy {
        threshold: s.after_connect_failures,
        backoff: s.backoff.0,
        max_backoff: s.max_backoff.0,
    }
}

/// The outbound connection settings of `config`; an error names a bad `tls.ca_file`.
pub fn settings(config: &Config) -> std::io::Result<Settings> {
    let d = &config.delivery;
    let t = &d.timeouts;
    Ok(Settings {
        helo: d
            .helo_name
            .clone()
            .unwrap_or_else(|| config.hostname.clone()),
        timeouts: ClientTimeouts {
            connect: t.connect.0,
            greeting: t.greeting.0,
            command: t.command.0,
            data_init: t.data_init.0,
            data_block: t.data_block.0,
            data_termination: t.data_termination.0,
        },
        tls: ClientTls::new(config.tls.ca_file.as_deref()).map_err(std::io::Error::other)?,
        tls_fallback: d.tls_fallback.0,
        idle: d.idle_timeout.0,
        feedback: None,
    })
}
