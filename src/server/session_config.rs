//! The settings of a shard's inbound sessions, taken from the configuration per listener.
//!
//! What it does: gathers what a session needs to know (host name, size and count limits, the
//! relay policy, the listener's mode, whether STARTTLS and AUTH are offered) into one value
//! that every session of a listener shares.
//!
//! What it does not do: no protocol (the session), no reloading (a reload builds a new value).
//!
//! Invariants: `starttls` is never set on an implicit-TLS (`submissions`) listener; `auth` is
//! set only when a users file is configured.

use super::relay::RelayPolicy;
use crate::config::{Config, ListenerConfig, ListenerMode};
use crate::smtp::BareLineEnding;

/// The session's settings, shared by all sessions of a shard.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Our host name.
    pub hostname: String,
    /// Largest message accepted, in octets.
    pub max_message_size: u64,
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// Error replies before the session is closed.
    pub max_errors: u32,
    /// More `Received:` fields than this in a message's header: `554 5.4.6`.
    pub max_received_headers: usize,
    /// Longest command line, CRLF included.
    pub max_command_line: usize,
    /// What to do with bare CR/LF in message data.
    pub bare_line_ending: BareLineEnding,
    /// Who may relay where.
    pub relay: RelayPolicy,
    /// What the listener is for.
    pub mode: ListenerMode,
    /// STARTTLS is offered (a certificate is configured and TLS is not implicit).
    pub starttls: bool,
    /// AUTH can succeed (a users file is configured).
    pub auth: bool,
    /// AUTH is offered before TLS too.
    pub auth_plaintext: bool,
    /// Suppressed recipients of trusted or authenticated clients are refused at RCPT.
    pub suppress_at_rcpt: bool,
    /// How accepted messages get their campaign and tenant (`[campaigns]`).
    pub labeling: crate::campaigns::Labeling,
    /// How a message's priority class is chosen.
    pub priority: crate::priority::Chooser,
}

impl SessionConfig {
    /// The session settings of one listener; `tls` says whether a certificate is loaded.
    pub fn for_listener(config: &Config, listener: &ListenerConfig, tls: bool) -> Self {
        SessionConfig {
            mode: listener.mode,
            starttls: tls && listener.mode != ListenerMode::Submissions,
            auth: config.auth.users_file.is_some(),
            auth_plaintext: listener.auth_plaintext,
            ..SessionConfig::from_config(config)
        }
    }

    /// The session settings of a plain `smtp` listener without TLS or AUTH.
    pub fn from_config(config: &Config) -> Self {
        SessionConfig {
            hostname: config.hostname.clone(),
            max_message_size: config.smtp.max_message_size.0,
            max_received_headers: config.smtp.max_received_headers,
            max_recipients: config.smtp.max_recipients,
            max_errors: config.smtp.max_errors,
            max_command_line: config.smtp.max_command_line,
            bare_line_ending: config.smtp.bare_line_ending,
            relay: RelayPolicy::new(&config.relay),
            mode: ListenerMode::Smtp,
            starttls: false,
            auth: false,
            auth_plaintext: false,
            suppress_at_rcpt: config.suppression.enabled
                && config.suppression.mode == crate::suppression::Mode::Rcpt,
            labeling: crate::campaigns::Labeling::new(&config.campaigns),
            priority: crate::priority::Chooser::new(config),
        }
    }
}
