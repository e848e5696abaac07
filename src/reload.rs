//! SIGHUP: what one shard reloads while it runs.
//!
//! What it does: re-reads the configuration file and applies every key that can change while
//! running: the inbound limits and timeouts, each listener's session and PROXY settings, the
//! spool's free-space floor, the AUTH delay and throttle, the event log's rotation, the users
//! file, the inbound certificates, the DKIM keys and settings, the admin endpoint's `allow` and
//! `token` (on the shard that serves it), and, through the queue, the routes, sources and
//! pools, delivery limits, retry and suspension policies, outbound settings and the shaping
//! file. Each file is loaded on its own: a failure keeps the previous state and says so. For
//! every key read only at start ([`changes::RESTART_ONLY`]) whose value in the file differs
//! from the running one, shard 0 logs one warning naming the key.
//!
//! What it does not do: nothing that needs a restart (listeners' addresses and modes, spool,
//! shards, DNS, memory budget, log directory, admin address, turning DKIM on or off);
//! connections and sessions in progress keep what they started with.
//!
//! Invariants: called on the shard's own executor, between tasks; nothing half-applied.

use std::rc::Rc;
use std::sync::Arc;

use crate::admin::{AccessPolicy, LiveAccess};
use crate::auth::Users;
use crate::config::{Config, changes};
use crate::delivery::{QueueHandle, QueueMsg};
use crate::server::ServerContext;
use crate::server::listener::Entry;
use crate::shaping::Shaping;
use crate::tls::ServerTls;

/// What a reload acts on.
pub(crate) struct Live<'a> {
    pub(crate) ctx: &'a ServerContext,
    pub(crate) queue: &'a QueueHandle,
    pub(crate) entries: &'a [Rc<Entry>],
    /// The configuration the shard started with: what the restart-only keys still are.
    pub(crate) started: &'a Config,
    /// The admin endpoint's access policy, on the shard that serves the endpoint.
    pub(crate) admin: Option<&'a LiveAccess>,
}

/// Reloads what can change while running (see the module header). A configuration file that
/// does not load keeps the running configuration (the users file and certificates it names are
/// still re-read).
pub(crate) fn reload(index: usize, live: &Live<'_>, config: &mut Arc<Config>) {
    let mut loaded = None;
    if let Some(path) = config.source.clone() {
        match Config::load(&path) {
            Ok(new) => {
                if index == 0 {
                    for key in changes::restart_keys(live.started, &new) {
                        tracing::warn!("{key} changed: takes effect at the next restart");
                    }
                }
                let new = Arc::new(new);
                live.queue
                    .send(QueueMsg::Reload(new.clone(), shaping(index, &new)));
                *config = new;
                loaded = Some(path);
            }
            Err(e) => {
                tracing::error!(shard = index, error = %e, "configuration reload failed; keeping the old one")
            }
        }
    }
    let ctx = live.ctx;
    users(index, ctx, config);
    certificates(index, ctx, config);
    let tls = ctx.tls.borrow().is_some();
    ctx.reload(config);
    for entry in live.entries {
        entry.reload(config, &live.started.listeners, tls);
    }
    if let Some(signing) = &ctx.dkim
        && config.dkim.enabled
    {
        match crate::dkim::Signer::from_config(&config.dkim) {
            Ok(signer) => signing.replace(Arc::new(signer), &config.dkim),
            Err(e) => {
                tracing::error!(shard = index, error = %e, "DKIM key reload failed; keeping the old keys")
            }
        }
    }
    if let Some(access) = live.admin {
        access.set(AccessPolicy {
            allow: config.admin.allow.clone(),
            token: config.admin.token.clone(),
        });
    }
    if let Some(path) = loaded {
        tracing::info!(shard = index, path = %path.display(), "configuration reloaded");
    }
}

/// The shaping file of `config` re-read: `Some(None)` when none is configured, None when it
/// failed to load (the file in force stays).
fn shaping(index: usize, config: &Config) -> Option<Option<Arc<Shaping>>> {
    match &config.delivery.shaping_file {
        Some(p) => match Shaping::load(p) {
            Ok(s) => Some(Some(Arc::new(s))),
            Err(e) => {
                tracing::error!(shard = index, error = %e, "shaping reload failed; keeping the old file");
                None
            }
        },
        None => Some(None),
    }
}

/// The users file re-read (AUTH fails for everyone once `auth.users_file` is unset).
fn users(index: usize, ctx: &ServerContext, config: &Config) {
    let Some(path) = &config.auth.users_file else {
        ctx.login.replace_users(None);
        return;
    };
    match Users::load(path) {
        Ok(users) => {
            ctx.login.replace_users(Some(Arc::new(users)));
            tracing::info!(shard = index, "users reloaded");
        }
        Err(e) => {
            tracing::error!(shard = index, error = %e, "users reload failed; keeping the old ones")
        }
    }
}

/// The inbound certificates re-read (none configured: STARTTLS is no longer offered).
fn certificates(index: usize, ctx: &ServerContext, config: &Config) {
    if config.tls.certificates.is_empty() {
        *ctx.tls.borrow_mut() = None;
        return;
    }
    match ServerTls::load(&config.tls.certificates) {
        Ok(tls) => {
            *ctx.tls.borrow_mut() = Some(tls);
            tracing::info!(shard = index, "certificates reloaded");
        }
        Err(e) => {
            tracing::error!(shard = index, error = %e, "certificate reload failed; keeping the old ones")
        }
    }
}
