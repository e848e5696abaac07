//! Wires the shards together: one pinned glommio executor per core, each with its own
//! listeners, spool and server, and the process-level start and stop around them.
//!
//! What it does: resolves listener ports (port 0 gets one port shared by all shards), starts
//! the executors, opens each shard's spool (recovery), binds every listener on every shard with
//! SO_REUSEPORT (`sockets`), starts the spool's free-space monitor (`disk`), applies SIGHUP
//! reloads (`reload`), and on a stop request drains the sessions and closes the spool.
//!
//! What it does not do: no protocol, no storage format, no policy: those live in `server`,
//! `spool` and `config`. This is the only module that knows how the pieces fit.
//!
//! Invariants: a shard shares nothing mutable with another on the mail path; the only
//! cross-thread values are the configuration (read-only), what is loaded from files at start
//! (certificates, users, DKIM keys: read-only), the AUTH failure throttle (one mutex, touched
//! only by AUTH commands, so that the limit holds for the host), the delivery limits'
//! host-wide state (`queue::HostLimits`: atomics per destination, so that connection and rate
//! limits hold for the host), the suppression list (a table of atomics that every shard reads
//! without a lock, changed only by its writer thread), the campaign statistics and pauses (a
//! mutex each shard takes once a second, and a generation number read per job), the
//! webhooks' state (a mutex per hook, asked by the event log only when it rotates), the admin
//! endpoint's links to the shards, the TLS reporter's channels (every shard sends its session
//! counts every few seconds; shard 0 receives the periods due for reporting), the stop request
//! (one atomic) and the start-up channel.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};

use crate::admin::control::{self, ShardInbox, ShardLink};
use crate::auth::Users;
use crate::config::Config;
use crate::server::login::Login;
use crate::shaping::Shaping;
use crate::shutdown::SignalWatch;
use crate::sockets::resolve_listeners;
use crate::suppression::Suppression;
use crate::tls::ServerTls;

/// Why the MTA could not run.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The executors could not be started.
    #[error("cannot start shards: {0}")]
    Executor(String),
    /// The inbound TLS certificates could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A DKIM key could not be loaded.
    #[error("DKIM: {0}")]
    Dkim(#[from] crate::dkim::DkimError),
    /// The traffic shaping file could not be loaded.
    #[error("shaping: {0}")]
    Shaping(#[from] crate::shaping::ShapingError),
    /// The users file could not be loaded.
    #[error("auth: {0}")]
    Auth(#[from] crate::auth::AuthError),
    /// The suppression list could not be loaded.
    #[error(transparent)]
    Suppression(#[from] crate::suppression::SuppressionError),
    /// The TLS reporter could not start (its directory under the spool).
    #[error("TLS reports: {0}")]
    TlsRpt(std::io::Error),
    /// The paused campaigns could not be read.
    #[error(transparent)]
    Campaigns(#[from] crate::campaigns::PauseError),
    /// `[feedback]` could not be set up (its secret file, its label book).
    #[error("{0}")]
    Feedback(#[from] crate::feedback::FeedbackError),
    /// A webhook could not start.
    #[error(transparent)]
    Webhook(#[from] crate::webhook::WebhookError),
    /// A shard failed.
    #[error("shard {shard}: {message}")]
    Shard {
        /// The shard index.
        shard: usize,
        /// What failed.
        message: String,
    },
}

/// What a run of the MTA did, summed over shards.
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    /// Messages acknowledged.
    pub messages_accepted: u64,
    /// Recipients of those messages.
    pub recipients_accepted: u64,
}

/// Runs the MTA until a stop is requested through `signals`. `on_ready` is called with the
/// bound listener addresses once every shard accepts connections.
pub fn run(
    config: Config,
    signals: SignalWatch,
    on_ready: impl FnOnce(&[SocketAddr]),
) -> Result<RunSummary, ShardError> {
    let shards = config.effective_shards();
    let (addrs, placeholders) =
        resolve_listeners(&config).map_err(|(addr, source)| ShardError::Listen { addr, source })?;
    // Loaded once here so that a bad certificate stops the start with a clear error.
    let server_tls = match config.tls.certificates.is_empty() {
        true => None,
        false => Some(ServerTls::load(&config.tls.certificates)?),
    };
    let users = match &config.auth.users_file {
        Some(path) => Some(Arc::new(Users::load(path)?)),
        None => None,
    };
    // Likewise the DKIM keys: a missing or bad key file stops the start, naming the file.
    let dkim = match config.dkim.enabled {
        true => Some(Arc::new(crate::dkim::Signer::from_config(&config.dkim)?)),
        false => None,
    };
    let auth_throttle = Login::shared_throttle(&config.auth);
    // Every shard's scheduler takes its destinations' leases and tokens from this one state
    // (in a cluster, filled by the cluster agent from the Redis all nodes share).
    let (host_limits, cluster) = crate::cluster::start(&config.cluster, &config.hostname);
    // And every shard's server admits client addresses against this one table.
    let admission = Arc::new(crate::server::admission::Admission::host(&config));
    let shaping = match &config.delivery.shaping_file {
        Some(path) => Some(Arc::new(Shaping::load(path)?)),
        None => None,
    };
    // One list for the host, loaded before any shard takes mail.
    let suppression = match config.suppression.enabled {
        true => Some(Suppression::open_shared(
            &config.suppression,
            &config.spool.path,
            config
                .cluster
                .enabled()
                .then(|| crate::cluster::Settings::from_config(&config.cluster, &config.hostname)),
        )?),
        false => None,
    };
    // Report addresses, VERP and the label book (None: no reports are read).
    let feedback = crate::feedback::Feedback::open(&config.feedback, &config.spool.path)?;
    // The TLS reporter thread, with every shard's link to it (None: reporting is off).
    let reporter = crate::tls_rpt::link::Reporter::start(&config).map_err(ShardError::TlsRpt)?;
    let rpt_link = reporter.as_ref().map(|r| (r.link(), r.jobs()));
    // One campaign state for the host: statistics, thresholds and the paused set.
    let campaigns = Arc::new(crate::campaigns::Campaigns::open(
        config.campaigns.top,
        &config.spool.path,
        shaping
            .as_ref()
            .map(|s| s.thresholds().clone())
            .unwrap_or_default(),
    )?);
    // The figures are saved once a minute and at shutdown, and read back at the next start.
    let stats_saver = crate::campaigns::saver::Saver::start(campaigns.clone())
        .map_err(|e| ShardError::Executor(format!("campaign figures thread: {e}")))?;
    // Each hook reads the shards' event logs on a thread of its own.
    let hooks = crate::webhook::Hooks::start(
        &config.webhooks,
        &config.log.dir,
        shards,
        config.tls.ca_file.as_deref(),
    )?;
    let (links, inboxes): (Vec<ShardLink>, Vec<ShardInbox>) =
        (0..shards).map(|_| control::link()).unzip();
    let inboxes = Arc::new(Mutex::new(
        inboxes.into_iter().map(Some).collect::<Vec<_>>(),
    ));
    let admin = Arc::new(Mutex::new(bind_admin(&config)));
    let config = Arc::new(config);
    let next_index = Arc::new(AtomicUsize::new(0));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let placement = match CpuSet::online() {
        Ok(cpus) if cpus.len() >= shards => PoolPlacement::MaxSpread(shards, Some(cpus)),
        Ok(cpus) => PoolPlacement::Fenced(shards, cpus),
        Err(_) => PoolPlacement::Unbound(shards),
    };
    let shard_addrs = addrs.clone();
    let shard_signals = signals.clone();
    let shard_suppression = suppression.clone();
    let shard_hooks = hooks.clone();
    // Taken before any shard starts: a SIGHUP that lands while the shards start up (after the
    // configuration was read) is still seen as a reload by every shard.
    let start_generation = signals.reload_generation();
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("shard")
        .io_memory(config.io_memory.0 as usize)
        .on_all_shards(move || {
            let index = next_index.fetch_add(1, Ordering::SeqCst);
            let config = config.clone();
            let addrs = shard_addrs.clone();
            let signals = shard_signals.clone();
            let ready = ready_tx.clone();
            let take = |v: &mut Vec<Option<ShardInbox>>| v.get_mut(index).and_then(Option::take);
            let inbound = Inbound {
                tls: server_tls.clone(),
                users: users.clone(),
                auth_throttle: auth_throttle.clone(),
                host_limits: host_limits.clone(),
                admission: admission.clone(),
                shaping: shaping.clone(),
                inbox: take(&mut inboxes.lock().unwrap_or_else(|e| e.into_inner())),
                admin: match index {
                    0 => admin
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                        .map(|l| (l, links.clone())),
                    _ => None,
                },
                dkim: dkim.clone(),
                suppression: shard_suppression.clone(),
                tls_rpt: rpt_link.as_ref().map(|(link, jobs)| {
                    let jobs = match index {
                        0 => crate::tls_rpt::link::take_jobs(jobs),
                        _ => None,
                    };
                    (link.clone(), jobs)
                }),
                campaigns: campaigns.clone(),
                hooks: shard_hooks.clone(),
                feedback: feedback.clone(),
            };
            let signals = (signals, start_generation);
            async move { shard_main(index, config, addrs, inbound, signals, ready).await }
        })
        .map_err(|e| ShardError::Executor(e.to_string()))?;
    let mut startup_error = None;
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                startup_error.get_or_insert(message);
            }
            Err(_) => {
                startup_error.get_or_insert_with(|| "a shard stopped during start-up".into());
                break;
            }
        }
    }
    drop(placeholders);
    match &startup_error {
        None => on_ready(&addrs),
        Some(_) => signals.request(),
    }
    let mut summary = RunSummary::default();
    let mut failure = None;
    let joined = handles.join_all();
    // Every shard has stopped: the changes they handed to the list are written before exit.
    if let Some(list) = &suppression {
        list.close();
    }
    // Every shard has handed its last TLS session counts over: the reporter saves them.
    if let Some(r) = reporter {
        r.stop();
    }
    // Every shard has handed its figures over: they are saved for the next start.
    stats_saver.stop();
    // What the hooks did not send yet, they send after the next start.
    if let Some(hooks) = &hooks {
        hooks.stop();
    }
    // The shards are done: the cluster agent gives this node's leases back.
    if let Some(cluster) = cluster {
        cluster.stop();
    }
    for (shard, result) in joined.into_iter().enumerate() {
        match result {
            Ok(Ok(s)) => {
                summary.messages_accepted += s.messages_accepted;
                summary.recipients_accepted += s.recipients_accepted;
            }
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(ShardError::Shard {
                    shard,
                    message: e.to_string(),
                });
            }
        }
    }
    if let Some(message) = startup_error {
        return Err(failure.unwrap_or(ShardError::Shard { shard: 0, message }));
    }
    failure.map_or(Ok(summary), Err)
}

#[path = "shard_main.rs"]
mod shard_main;
use shard_main::{Inbound, bind_admin, shard_main};
