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

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};

use crate::admin::api::Api;
use crate::admin::control::{self, ShardInbox, ShardLink};
use crate::admin::{AccessPolicy, LiveAccess, service};
use crate::auth::Users;
use crate::config::{Config, SyncMode};
use crate::delivery::{QueueMsg, StageParts};
use crate::disk::storage_monitor;
use crate::dns::{DnsConfig, Resolver};
use crate::eventlog::EventLog;
use crate::metrics::ShardMetrics;
use crate::reload::{Live, reload};
use crate::server::listener::Entry;
use crate::server::login::Login;
use crate::server::{ServerContext, Shared, listener};
use crate::shaping::Shaping;
use crate::shutdown::{Shutdown, SignalWatch};
use crate::sockets::{bind_when_free, resolve_listeners, socket};
use crate::spool::{self, QueueIdGenerator, Spool, SpoolConfig};
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

async fn shard_main(
    index: usize,
    mut config: Arc<Config>,
    addrs: Vec<SocketAddr>,
    inbound: Inbound,
    (signals, mut generation): (SignalWatch, u64),
    ready: mpsc::Sender<Result<(), String>>,
) -> Result<RunSummary, ShardError> {
    let fail = |message: String| ShardError::Shard {
        shard: index,
        message,
    };
    let spool_config = SpoolConfig {
        // Absolute: the io_uring directory open does not resolve relative paths.
        dir: std::path::absolute(&config.spool.path)
            .unwrap_or_else(|_| config.spool.path.clone())
            .join(format!("shard-{index}")),
        shard: index as u16,
        sync: match config.spool.sync {
            SyncMode::Always => spool::SyncMode::Always,
            SyncMode::Never => spool::SyncMode::Never,
        },
        segment_size: config.spool.segment_size.0,
        max_batch_bytes: 8 << 20,
        // The bodies the delivery queue may hold (its share of the memory budget): recovery
        // reads no more than that into memory; the rest is read back when sent.
        recovery_body_budget: match config.delivery.hold {
            true => 0,
            false => crate::delivery::memory::body_share(
                config.delivery.memory_budget.0 / config.effective_shards() as u64,
            ),
        },
    };
    let (spool, recovered) = match Spool::open(spool_config).await {
        Ok(opened) => opened,
        Err(e) => {
            let message = format!("cannot open spool: {e}");
            let _ = ready.send(Err(message.clone()));
            return Err(fail(message));
        }
    };
    tracing::info!(
        shard = index,
        queued = recovered.messages.len(),
        segments = recovered.stats.segments,
        truncated_bytes = recovered.stats.truncated_bytes,
        "spool recovered"
    );
    let shutdown = Rc::new(Shutdown::default());
    let metrics = Rc::new(ShardMetrics::new());
    let gauge = Rc::new(crate::gauge::MemoryGauge::new(
        config.delivery.memory_budget.0 / config.effective_shards() as u64,
    ));
    let log = match EventLog::new(&config.log, index) {
        Ok(l) => Rc::new(l),
        Err(e) => {
            let message = format!("event log in {}: {e}", config.log.dir.display());
            let _ = ready.send(Err(message.clone()));
            return Err(fail(message));
        }
    };
    spool.attach_metrics(metrics.clone());
    // TLS reporting: counting starts before any routing.
    let (tls_rpt, report_jobs) = match inbound.tls_rpt {
        Some((link, jobs)) => (Some(link), jobs),
        None => (None, None),
    };
    if let Some(link) = &tls_rpt {
        link.install();
    }
    {
        // The lines about the records of a batch are in the log file before the batch.
        let log = log.clone();
        spool.before_write(Rc::new(move || log.flush()));
    }
    if let Some(hooks) = inbound.hooks.clone() {
        log.set_retention_guard(Box::new(move |path| hooks.releases(index, path)));
    }
    let ids = Rc::new(RefCell::new(QueueIdGenerator::resume(
        index as u16,
        spool.last_id(),
    )));
    if config.delivery.hold {
        tracing::info!(shard = index, "delivery on hold: mail stays queued");
    }
    let d = &config.dns;
    let dns = DnsConfig {
        servers: d.servers.clone(),
        timeout: d.timeout.0,
        attempts: d.attempts,
        min_ttl: d.min_ttl.0,
        max_ttl: d.max_ttl.0,
        negative_max_ttl: d.negative_max_ttl.0,
        cache_size: d.cache_size,
    };
    let resolver = match Resolver::new(dns) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("DNS: {e}");
            let _ = ready.send(Err(message.clone()));
            return Err(fail(message));
        }
    };
    let feedback = inbound.feedback.clone().map(|host| {
        let c = inbound.campaigns.clone();
        Rc::new(crate::feedback::Shard::new(
            host,
            inbound.shaping.clone(),
            c,
        ))
    });
    let parts = StageParts {
        feedback: feedback.clone(),
        spool: spool.clone(),
        ids: ids.clone(),
        metrics: metrics.clone(),
        gauge: gauge.clone(),
        log: log.clone(),
        shaping: inbound.shaping.clone(),
        listeners: addrs.to_vec(),
        host_limits: inbound.host_limits.clone(),
        suppression: inbound.suppression.clone(),
        campaigns: inbound.campaigns.clone(),
    };
    let report_resolver = resolver.clone();
    let (mut queue, queue_handle, queue_rx) =
        match crate::delivery::start::build(config.clone(), index, resolver, parts) {
            Ok(q) => q,
            Err(e) => {
                let message = format!("outbound TLS roots (tls.ca_file): {e}");
                let _ = ready.send(Err(message.clone()));
                return Err(fail(message));
            }
        };
    for m in recovered.messages {
        queue.recovered(m);
    }
    let accepted: Option<crate::server::HandOn> = {
        let queue = queue_handle.clone();
        Some(Rc::new(move |record| {
            queue.send(QueueMsg::Accepted(record))
        }))
    };
    let delivering = glommio::spawn_local(queue.run(queue_rx));
    let mut ctx = ServerContext::new(
        &config,
        Shared {
            spool: spool.clone(),
            ids,
            accepted,
            shutdown: shutdown.clone(),
            auth_throttle: inbound.auth_throttle,
            admission: inbound.admission.clone(),
            metrics: metrics.clone(),
            gauge,
            log: log.clone(),
        },
    );
    ctx.suppression = inbound.suppression.clone();
    ctx.feedback = feedback;
    ctx.dkim = inbound
        .dkim
        .map(|signer| crate::server::dkim::Signing::new(signer, &config.dkim, metrics.clone()));
    let ctx = Rc::new(ctx);
    if let Some(jobs) = report_jobs {
        crate::tls_rpt::sender::spawn(&config, report_resolver, &ctx, &queue_handle, jobs);
    }
    let tls_rpt_flush = tls_rpt
        .as_ref()
        .map(|link| glommio::spawn_local(link.clone().flush_loop(metrics.clone())));
    if let Some(inbox) = inbound.inbox {
        let (spool, metrics) = (spool.clone(), metrics.clone());
        glommio::spawn_local(service::serve(
            inbox,
            queue_handle.clone(),
            move |counters| service::collect(&metrics, counters, &spool),
        ))
        .detach();
    }
    let mut admin_access = None;
    if let Some((sock, links)) = inbound.admin {
        // SAFETY: a bound, listening TCP socket whose ownership moves to glommio.
        let listener = unsafe { TcpListener::from_raw_fd(sock.into_raw_fd()) };
        let access = LiveAccess::new(AccessPolicy {
            allow: config.admin.allow.clone(),
            token: config.admin.token.clone(),
        });
        admin_access = Some(access.clone());
        let api = Rc::new(
            Api::new(links, access)
                .with_cluster(inbound.host_limits.cluster().cloned())
                .with_suppression(inbound.suppression.clone(), log.clone())
                .with_campaigns(inbound.campaigns.clone(), log.clone())
                .with_webhooks(inbound.hooks.clone()),
        );
        let stop = shutdown.clone();
        glommio::spawn_local(crate::admin::serve(listener, api, async move {
            stop.wait().await
        }))
        .detach();
    }
    let tls_loaded = inbound.tls.is_some();
    *ctx.tls.borrow_mut() = inbound.tls;
    ctx.login.replace_users(inbound.users);
    let mut accepting = Vec::new();
    let mut entries = Vec::new();
    for (addr, listener_config) in addrs.iter().zip(&config.listeners) {
        let entry = Rc::new(Entry::new(&config, listener_config, tls_loaded));
        if index == 0 && listener_config.proxy_protocol && listener_config.proxy_from.is_none() {
            tracing::info!(%addr, "PROXY headers accepted from loopback only (set proxy_from for the load balancers)");
        }
        let bound = socket(*addr, true).and_then(|sock| {
            sock.listen(1024)?;
            // SAFETY: a bound, listening TCP socket whose ownership moves to glommio.
            Ok(unsafe { TcpListener::from_raw_fd(sock.into_raw_fd()) })
        });
        entries.push(entry.clone());
        match bound {
            Ok(l) => accepting.push(glommio::spawn_local(listener::accept_loop(
                ctx.clone(),
                entry,
                l,
            ))),
            Err(e) => {
                let message = format!("cannot listen on {addr}: {e}");
                let _ = ready.send(Err(message.clone()));
                return Err(fail(message));
            }
        }
    }
    let monitor = glommio::spawn_local(storage_monitor(ctx.clone(), config.clone()));
    if let Some(after) = crate::crash::fault_panic_after() {
        let ctx = ctx.clone();
        let accepted = move || ctx.metrics.messages_accepted.get();
        glommio::spawn_local(crate::crash::panic_after(accepted, after, index)).detach();
    }
    let _ = ready.send(Ok(()));

    let started = config.clone();
    while !signals.requested() {
        glommio::timer::sleep(crate::timers::SIGNAL_POLL).await;
        if signals.reload_generation() != generation {
            generation = signals.reload_generation();
            let live = Live {
                ctx: &ctx,
                queue: &queue_handle,
                entries: &entries,
                started: &started,
                admin: admin_access.as_ref(),
            };
            reload(index, &live, &mut config);
        }
    }
    shutdown.start(config.shutdown.grace.0);
    for task in accepting {
        task.await;
    }
    // Sessions close themselves by the grace deadline; allow a little more for their writes.
    let give_up = Instant::now() + config.shutdown.grace.0 + Duration::from_secs(5);
    while ctx.active.get() > 0 && Instant::now() < give_up {
        glommio::timer::sleep(crate::timers::DRAIN_POLL).await;
    }
    drop(monitor);
    // The queue lets transactions in flight end (at most 10 s); anything cut off is retried
    // after the restart.
    queue_handle.send(QueueMsg::Stop);
    delivering.await;
    drop(tls_rpt_flush);
    if let Some(link) = &tls_rpt {
        link.finish(&metrics);
    }
    spool
        .close()
        .await
        .map_err(|e| fail(format!("closing spool: {e}")))?;
    tracing::info!(
        shard = index,
        accepted = ctx.metrics.messages_accepted.get(),
        "shard stopped"
    );
    Ok(RunSummary {
        messages_accepted: ctx.metrics.messages_accepted.get(),
        recipients_accepted: ctx.metrics.recipients_accepted.get(),
    })
}

/// What inbound sessions need that is loaded from files once at start (and again on reload).
struct Inbound {
    tls: Option<ServerTls>,
    users: Option<Arc<Users>>,
    auth_throttle: Arc<std::sync::Mutex<crate::auth::FailureThrottle>>,
    /// The delivery limits every shard shares.
    host_limits: Arc<crate::queue::HostLimits>,
    /// The per-address inbound limits every shard shares.
    admission: Arc<crate::server::admission::Admission>,
    /// The traffic shaping file.
    shaping: Option<Arc<Shaping>>,
    /// This shard's admin command queue.
    inbox: Option<ShardInbox>,
    /// Shard 0 only: the admin endpoint's socket and every shard's command link.
    admin: Option<(socket2::Socket, Vec<ShardLink>)>,
    dkim: Option<Arc<crate::dkim::Signer>>,
    /// The host's suppression list.
    suppression: Option<Arc<Suppression>>,
    /// The link to the TLS reporter, and (shard 0) the channel of due report periods.
    tls_rpt: Option<(
        crate::tls_rpt::link::ShardLink,
        Option<crate::tls_rpt::link::Jobs>,
    )>,
    /// The host's campaign statistics and pauses.
    campaigns: Arc<crate::campaigns::Campaigns>,
    /// The running webhooks (retention of the event log, admin view).
    hooks: Option<Arc<crate::webhook::Hooks>>,
    /// Report addresses and VERP (`[feedback]`).
    feedback: Option<Arc<crate::feedback::Feedback>>,
}

/// Binds the admin endpoint. A failure is logged and the MTA runs without it: mail matters
/// more than the dashboard (e.g. a second instance on one host with the default port).
fn bind_admin(config: &Config) -> Option<socket2::Socket> {
    let addr = config.admin.address().ok().flatten()?;
    let bound = match addr.port() {
        0 => socket(addr, false),
        _ => bind_when_free(addr),
    }
    .and_then(|s| {
        s.listen(128)?;
        Ok(s)
    });
    match bound {
        Ok(s) => {
            let local = s
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .unwrap_or(addr);
            tracing::info!("admin API on {local}");
            Some(s)
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot bind the admin API; running without it");
            None
        }
    }
}
