//! One shard's life: everything a shard builds on its own executor (spool recovery, event
//! log, delivery queue, server context, listeners, the admin endpoint on shard 0), its loop
//! that applies reloads until a stop is requested, and its drain and close.
//!
//! What it does not do: nothing shared between shards is made here (the parent `shard` loads
//! it once and hands it over in an [`Inbound`]).
//!
//! Invariants: a shard reports ready (or why not) exactly once; it stops accepting before it
//! drains, and closes its spool last.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;

use crate::admin::api::Api;
use crate::admin::control::{ShardInbox, ShardLink};
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
use crate::server::{ServerContext, Shared, listener};
use crate::shaping::Shaping;
use crate::shutdown::{Shutdown, SignalWatch};
use crate::sockets::{bind_when_free, socket};
use crate::spool::{self, QueueIdGenerator, Spool, SpoolConfig};
use crate::suppression::Suppression;
use crate::tls::ServerTls;

use super::{RunSummary, ShardError};

pub(super) async fn shard_main(
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
        preallocate: config.spool.preallocate,
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
pub(super) struct Inbound {
    pub(super) tls: Option<ServerTls>,
    pub(super) users: Option<Arc<Users>>,
    pub(super) auth_throttle: Arc<std::sync::Mutex<crate::auth::FailureThrottle>>,
    /// The delivery limits every shard shares.
    pub(super) host_limits: Arc<crate::queue::HostLimits>,
    /// The per-address inbound limits every shard shares.
    pub(super) admission: Arc<crate::server::admission::Admission>,
    /// The traffic shaping file.
    pub(super) shaping: Option<Arc<Shaping>>,
    /// This shard's admin command queue.
    pub(super) inbox: Option<ShardInbox>,
    /// Shard 0 only: the admin endpoint's socket and every shard's command link.
    pub(super) admin: Option<(socket2::Socket, Vec<ShardLink>)>,
    pub(super) dkim: Option<Arc<crate::dkim::Signer>>,
    /// The host's suppression list.
    pub(super) suppression: Option<Arc<Suppression>>,
    /// The link to the TLS reporter, and (shard 0) the channel of due report periods.
    pub(super) tls_rpt: Option<(
        crate::tls_rpt::link::ShardLink,
        Option<crate::tls_rpt::link::Jobs>,
    )>,
    /// The host's campaign statistics and pauses.
    pub(super) campaigns: Arc<crate::campaigns::Campaigns>,
    /// The running webhooks (retention of the event log, admin view).
    pub(super) hooks: Option<Arc<crate::webhook::Hooks>>,
    /// Report addresses and VERP (`[feedback]`).
    pub(super) feedback: Option<Arc<crate::feedback::Feedback>>,
}

/// Binds the admin endpoint. A failure is logged and the MTA runs without it: mail matters
/// more than the dashboard (e.g. a second instance on one host with the default port).
pub(super) fn bind_admin(config: &Config) -> Option<socket2::Socket> {
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
