//! The MTA's configuration: a TOML file whose every key has a built-in default.
//!
//! What it does: defines the configuration tree with its defaults, loads and validates a file
//! (errors name the key and the problem), reads the outbound AUTH credential files it names
//! (`secrets`), and prints the effective configuration back as TOML.
//!
//! What it does not do: no reloading (`changes` only says which keys differ and which of them
//! need a restart), no I/O besides reading the file and its credential files, no
//! interpretation of policies (the server and the spool read their sections).
//!
//! Invariants: a `Config` returned by [`Config::load`], [`Config::read`] or
//! [`Config::default`] has passed [`Config::validate`], and one from [`Config::load`] holds the
//! credentials of every file it names (so a reload that cannot read one keeps the old
//! configuration whole);
//! `config/mta.toml` documents the same defaults as this module.

pub mod changes;
mod cluster;
mod delivery;
mod listener;
mod pools;
mod secrets;
mod smtp;
mod tls_policy;
mod tls_rpt;
mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use cluster::ClusterSection;
pub use delivery::{
    ClientTimeoutsSection, DeliverySection, DnsSection, RateSpec, RetrySection, RouteConfig,
    SuspendSection, parse_next_hop,
};
pub use listener::{AdminSection, AuthSection, ListenerConfig, ListenerMode, TlsSection};
pub use pools::{PoolConfig, PoolMember, PoolSelection, SenderPool, SourceConfig};
pub use secrets::Secrets;
pub use smtp::{RelaySection, SmtpSection, TimeoutsSection};
pub use tls_policy::TlsPolicySection;
pub use tls_rpt::TlsRptSection;
pub use units::{ByteSize, HumanDuration};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {err}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        err: std::io::Error,
    },
    /// The file is not valid TOML or a value has the wrong type or an unknown key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key and its line.
        message: String,
    },
    /// A value is well-formed but not acceptable.
    #[error("invalid value for `{key}`: {problem}")]
    Invalid {
        /// The dotted key, e.g. `smtp.max_recipients`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// Whether the spool waits for `fdatasync` before acknowledging mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Group commit: a `250` only after the `fdatasync` covering the message has returned.
    #[default]
    Always,
    /// Never sync. Loses acknowledged mail on a crash: exists only to measure what syncing costs.
    Never,
}

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Our host name: greeting, EHLO reply, `Received:` header. Default: the system host name.
    pub hostname: String,
    /// Number of shards (executors, one pinned per CPU). 0 = one per available CPU.
    pub shards: usize,
    /// io_uring registered buffer memory per shard (needs that much locked memory).
    pub io_memory: ByteSize,
    /// Where inbound SMTP is accepted. Every shard binds every listener (SO_REUSEPORT).
    pub listeners: Vec<ListenerConfig>,
    /// The spool.
    pub spool: SpoolSection,
    /// Inbound SMTP limits and behaviour.
    pub smtp: SmtpSection,
    /// Who may send mail to where.
    pub relay: RelaySection,
    /// Graceful shutdown.
    pub shutdown: ShutdownSection,
    /// Outbound delivery.
    pub delivery: DeliverySection,
    /// DNS resolution for delivery.
    pub dns: DnsSection,
    /// Static routes: domains whose mail goes to given hosts instead of their MX hosts.
    pub routes: Vec<RouteConfig>,
    /// Egress addresses (`[[sources]]`).
    pub sources: Vec<SourceConfig>,
    /// Weighted groups of sources (`[[pools]]`).
    pub pools: Vec<PoolConfig>,
    /// Which pool a message uses.
    pub pool_selection: PoolSelection,
    /// Logs.
    pub log: LogSection,
    /// Certificates for inbound TLS and roots for outbound verification.
    pub tls: TlsSection,
    /// SMTP AUTH.
    pub auth: AuthSection,
    /// The HTTP endpoint for metrics and queue operations.
    pub admin: AdminSection,
    /// The file this configuration was read from (for reloads); not a setting.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// The credentials of the outbound AUTH files it names, read by [`Config::load`]; not a
    /// setting.
    #[serde(skip)]
    pub secrets: Secrets,
    /// DKIM signing of mail we send.
    pub dkim: crate::dkim::DkimSection,
    /// The Redis shared with other nodes, so that limits hold across them.
    pub cluster: ClusterSection,
    /// The suppression list.
    pub suppression: crate::suppression::SuppressionSection,
    /// Campaign and tenant labels.
    pub campaigns: crate::campaigns::CampaignsSection,
    /// Priority classes (`transactional`, `normal`, `bulk`) and how mail is placed in them.
    pub priority: crate::priority::PrioritySection,
    /// Endpoints the event log is POSTed to (`[[webhooks]]`).
    pub webhooks: Vec<crate::webhook::WebhookConfig>,
    /// Bounces and complaints coming back (`[feedback]`).
    pub feedback: crate::feedback::FeedbackSection,
}

/// `[log]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// Directory of the event logs (`delivery-<shard>.jsonl`).
    pub dir: PathBuf,
    /// A log file is renamed aside (`delivery-<shard>.<unix seconds>.jsonl`) past this size.
    pub rotate_size: ByteSize,
    /// ... or when it is this old.
    pub rotate_interval: HumanDuration,
    /// Rotated files older than this are deleted.
    pub keep: HumanDuration,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            dir: PathBuf::from("./log"),
            rotate_size: ByteSize::mib(256),
            rotate_interval: HumanDuration::secs(86_400),
            keep: HumanDuration::secs(14 * 86_400),
        }
    }
}

/// `[spool]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolSection {
    /// Spool directory; each shard uses `<path>/shard-<n>/`.
    pub path: PathBuf,
    /// `"always"` (group commit) or `"never"` (benchmarks only: unsafe).
    pub sync: SyncMode,
    /// A segment file is closed and a new one started past this size.
    pub segment_size: ByteSize,
    /// Fill each segment with zeros before it is used (with `sync = "always"`), so that a
    /// commit's `fdatasync` overwrites blocks the file already has instead of also writing the
    /// file's new size.
    pub preallocate: bool,
    /// Below this much free space on the spool's file system new mail gets `452 4.3.1`.
    pub min_free_space: ByteSize,
    /// Below this share of free space (percent of the file system) new mail gets `452 4.3.1`.
    pub min_free_percent: f64,
}

/// `[shutdown]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSection {
    /// How long transactions in progress may take to finish after SIGTERM/SIGINT.
    pub grace: HumanDuration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: system_hostname(),
            shards: 0,
            io_memory: ByteSize::mib(2),
            listeners: vec![ListenerConfig::smtp(SocketAddr::from((
                [127, 0, 0, 1],
                2525,
            )))],
            spool: SpoolSection::default(),
            smtp: SmtpSection::default(),
            relay: RelaySection::default(),
            shutdown: ShutdownSection::default(),
            delivery: DeliverySection::default(),
            dns: DnsSection::default(),
            routes: Vec::new(),
            sources: Vec::new(),
            pools: Vec::new(),
            pool_selection: PoolSelection::default(),
            log: LogSection::default(),
            tls: TlsSection::default(),
            auth: AuthSection::default(),
            admin: AdminSection::default(),
            source: None,
            secrets: Secrets::default(),
            dkim: crate::dkim::DkimSection::default(),
            cluster: ClusterSection::default(),
            suppression: crate::suppression::SuppressionSection::default(),
            campaigns: crate::campaigns::CampaignsSection::default(),
            priority: crate::priority::PrioritySection::default(),
            webhooks: Vec::new(),
            feedback: Default::default(),
        }
    }
}

impl Default for SpoolSection {
    fn default() -> Self {
        SpoolSection {
            path: PathBuf::from("./spool"),
            sync: SyncMode::Always,
            segment_size: ByteSize::mib(64),
            preallocate: true,
            min_free_space: ByteSize::mib(256),
            min_free_percent: 1.0,
        }
    }
}

impl Default for ShutdownSection {
    fn default() -> Self {
        ShutdownSection {
            grace: HumanDuration::secs(30),
        }
    }
}

impl Config {
    /// Reads, parses and validates a configuration file, and reads the credential files it
    /// names (an unreadable or malformed one is an error naming its key): the configuration
    /// to run with.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::read(path)?;
        config.secrets = Secrets::load(config.credential_files())?;
        Ok(config)
    }

    /// Reads, parses and validates a configuration file without reading the credential files
    /// it names: for commands that only talk to a running MTA or read its spool.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.to_owned(),
            err,
        })?;
        let mut config = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// The outbound AUTH credential files named, with their keys.
    pub fn credential_files(&self) -> impl Iterator<Item = (String, &Path)> {
        let relay = self
            .delivery
            .relay_auth_file
            .as_deref()
            .map(|p| ("delivery.relay_auth_file".to_owned(), p));
        let routes = self.routes.iter().enumerate().filter_map(|(i, r)| {
            r.auth_file
                .as_deref()
                .map(|p| (format!("routes[{i}].auth_file"), p))
        });
        relay.into_iter().chain(routes)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The number of shards to run: `shards`, or one per available CPU when it is 0.
    pub fn effective_shards(&self) -> usize {
        if self.shards == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.shards
        }
    }

    /// Checks every value that serde cannot check by type.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: &str| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                problem: problem.to_owned(),
            })
        };
        if !is_hostname(&self.hostname) {
            return invalid("hostname", "must be a fully qualified domain name");
        }
        if self.shards > 1024 {
            return invalid("shards", "at most 1024 shards");
        }
        if self.io_memory.0 < 64 * 1024 {
            return invalid("io_memory", "at least 64KiB");
        }
        if self.listeners.is_empty() {
            return invalid("listeners", "at least one listener is needed");
        }
        listener::check(&self.listeners, &self.tls, &self.auth)?;
        self.cluster.check()?;
        self.admin.address()?;
        pools::check(
            &self.sources,
            &self.pools,
            &self.pool_selection,
            self.routes
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.pool.as_deref().map(|p| (i, p))),
        )?;
        if self.spool.path.as_os_str().is_empty() {
            return invalid("spool.path", "must not be empty");
        }
        if self.spool.segment_size.0 < 1 << 20 {
            return invalid("spool.segment_size", "at least 1MiB");
        }
        if !(0.0..100.0).contains(&self.spool.min_free_percent) {
            return invalid("spool.min_free_percent", "must be from 0 to less than 100");
        }
        let smtp = &self.smtp;
        if smtp.max_message_size.0 < 1024 || smtp.max_message_size.0 > 4 << 30 {
            return invalid("smtp.max_message_size", "must be from 1KiB to 4GiB");
        }
        if smtp.max_recipients == 0 {
            return invalid("smtp.max_recipients", "must be at least 1");
        }
        if smtp.max_errors == 0 {
            return invalid("smtp.max_errors", "must be at least 1");
        }
        if smtp.max_connections == 0 {
            return invalid("smtp.max_connections", "must be at least 1");
        }
        if !(512..=65536).contains(&smtp.max_command_line) {
            return invalid(
                "smtp.max_command_line",
                "must be from 512 (RFC 5321 4.5.3.1.4) to 65536",
            );
        }
        let t = &smtp.timeouts;
        for (key, value) in [
            ("smtp.timeouts.greeting", t.greeting),
            ("smtp.timeouts.command", t.command),
            ("smtp.timeouts.data_block", t.data_block),
            ("smtp.timeouts.data_termination", t.data_termination),
        ] {
            if value.0.as_secs() < 1 {
                return invalid(key, "must be at least 1s");
            }
        }
        for (key, list) in [
            ("relay.local_domains", &self.relay.local_domains),
            ("relay.relay_domains", &self.relay.relay_domains),
        ] {
            for d in list {
                let name = d.strip_prefix("*.").unwrap_or(d);
                if !is_hostname(name) {
                    return invalid(
                        key,
                        &format!("{d:?} is not a domain or a \"*.domain\" pattern"),
                    );
                }
            }
        }
        if self.shutdown.grace.0.as_secs() > 3600 {
            return invalid("shutdown.grace", "at most 1h");
        }
        self.validate_dkim()?;
        if let Some((key, problem)) = self.campaigns.problem() {
            return invalid(key, &problem);
        }
        self.suppression
            .check()
            .map_err(|(key, problem)| ConfigError::Invalid { key, problem })?;
        let keyed = |(key, problem): (String, String)| ConfigError::Invalid { key, problem };
        self.priority.check(&self.pools).map_err(keyed)?;
        crate::webhook::WebhookConfig::check(&self.webhooks).map_err(keyed)?;
        self.feedback.check().map_err(keyed)?;
        self.delivery.validate().map_err(keyed)?;
        for (i, route) in self.routes.iter().enumerate() {
            route.validate(i).map_err(keyed)?;
        }
        if self.dns.attempts == 0 || self.dns.timeout.0.is_zero() {
            return invalid("dns", "attempts and timeout must be at least 1");
        }
        if let Some(p) = &self.relay.postmaster
            && !matches!(
                crate::smtp::address::parse_mailbox(p.as_bytes(), false),
                Ok(m) if matches!(m.domain, crate::smtp::Domain::Name(_))
            )
        {
            return invalid(
                "relay.postmaster",
                &format!("{p:?} is not a mailbox (local@domain)"),
            );
        }
        // This MTA has no mailboxes: mail it accepts for its own domains must go somewhere.
        if self.delivery.relay_host.is_none() {
            for (key, list) in [
                ("relay.local_domains", &self.relay.local_domains),
                ("relay.relay_domains", &self.relay.relay_domains),
            ] {
                for d in list {
                    // A "*.x" entry is covered by a route for "*.x" or a broader pattern.
                    let probe = match d.strip_prefix("*.") {
                        Some(suffix) => format!("0.{suffix}"),
                        None => d.clone(),
                    };
                    if self.route_for(&probe).is_none() {
                        return invalid(
                            key,
                            &format!(
                                "{d:?} has no route: add a [[routes]] entry for it or set \
                                 delivery.relay_host (this MTA has no mailboxes)"
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The mailbox that mail to `<Postmaster>` is delivered to: `relay.postmaster`, or
    /// `postmaster@<hostname>`.
    pub fn postmaster_address(&self) -> String {
        self.relay
            .postmaster
            .clone()
            .unwrap_or_else(|| format!("postmaster@{}", self.hostname))
    }

    /// Things that are allowed but probably not what the operator wants, one sentence each
    /// (printed by `mta check-config` and logged at start-up).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.relay.postmaster.is_none() {
            w.push(format!(
                "relay.postmaster is not set: mail to <Postmaster> goes to {}, routed like any \
                 other mail; set it to a mailbox an operator reads",
                self.postmaster_address()
            ));
        }
        w.extend(self.secrets.warnings());
        w
    }

    /// The configured route for `domain` (exact entries win over `*.` patterns, then the
    /// longest pattern).
    pub fn route_for(&self, domain: &str) -> Option<&RouteConfig> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut best: Option<(&RouteConfig, usize)> = None;
        for r in &self.routes {
            let pattern = r.domain.to_ascii_lowercase();
            let score = match pattern.strip_prefix('*') {
                None if pattern == domain => usize::MAX,
                Some(suffix) if domain.len() > suffix.len() && domain.ends_with(suffix) => {
                    suffix.len()
                }
                _ => continue,
            };
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((r, score));
            }
        }
        best.map(|(r, _)| r)
    }

    /// The effective configuration as TOML (what `mta check-config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("configuration serializes")
    }

    /// `[dkim]`: when enabled, at least one complete key entry, and a default domain that has
    /// a key. The key files themselves are read at start (`dkim::Signer::from_config`).
    fn validate_dkim(&self) -> Result<(), ConfigError> {
        let dkim = &self.dkim;
        let invalid = |key: String, problem: String| Err(ConfigError::Invalid { key, problem });
        if !dkim.enabled {
            return Ok(());
        }
        if dkim.keys.is_empty() {
            return invalid(
                "dkim.keys".into(),
                "signing is enabled but no key is set".into(),
            );
        }
        for (i, k) in dkim.keys.iter().enumerate() {
            if !is_hostname(k.domain.trim_end_matches('.')) {
                return invalid(format!("dkim.keys[{i}].domain"), "must be a domain".into());
            }
            if !is_hostname(&k.selector) {
                return invalid(
                    format!("dkim.keys[{i}].selector"),
                    "must be dot-separated labels (letters, digits, hyphens)".into(),
                );
            }
            if k.key_file.as_os_str().is_empty() {
                return invalid(format!("dkim.keys[{i}].key_file"), "must be set".into());
            }
        }
        if let Some(d) = &dkim.default_domain {
            let has_key = dkim.keys.iter().any(|k| {
                k.domain
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(d.trim_end_matches('.'))
            });
            if !has_key {
                return invalid(
                    "dkim.default_domain".into(),
                    format!("{d:?} has no entry in dkim.keys"),
                );
            }
        }
        Ok(())
    }
}

/// True for a syntactically valid host name: dot-separated labels of letters, digits and
/// hyphens, 1-63 octets each, 253 in all.
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The system's host name (gethostname), or `localhost.localdomain` if it is unusable.
pub fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if let Ok(name) = std::str::from_utf8(&buf[..end])
            && is_hostname(name)
        {
            return name.to_ascii_lowercase();
        }
    }
    "localhost.localdomain".to_owned()
}

#[cfg(test)]
mod tests;
