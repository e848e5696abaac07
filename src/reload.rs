//! SIGHUP: what one shard reloads while it runs.
//!
//! What it does: re-reads the configuration file (relay policy, listener session settings,
//! routes and delivery limits, the shaping file), the users file and the inbound certificates,
//! each on its own: a failure keeps the previous state and says so.
//!
//! What it does not do: no listeners, spool, shard count or admin endpoint (those need a
//! restart, and a reload says so); sessions in progress keep what they started with.
//!
//! Invariants: called on the shard's own executor, between tasks; nothing half-applied.

use std::rc::Rc;
use std::sync::Arc;

use crate::auth::Users;
use crate::config::Config;
use crate::delivery::{QueueHandle, QueueMsg};
use crate::server::ServerContext;
use crate::server::connection::Entry;
use crate::server::session::SessionConfig;
use crate::shaping::Shaping;
use crate::tls::ServerTls;

/// What a reload acts on.
pub(crate) struct Live<'a> {
    pub(crate) ctx: &'a ServerContext,
    pub(crate) queue: &'a QueueHandle,
    pub(crate) entries: &'a [Rc<Entry>],
    pub(crate) tls_loaded: bool,
}

/// Reloads what can change while running: the configuration file's relay policy, routes and
/// delivery limits (when the MTA was started from a file), then the inbound certificates and
/// the users file. A failure keeps the previous state (and says so); sessions in progress keep
/// what they started with. Listeners, spool, shards and the admin endpoint need a restart.
pub(crate) fn reload(index: usize, live: &Live<'_>, config: &mut Arc<Config>) {
    let ctx = live.ctx;
    if let Some(path) = config.source.clone() {
        match Config::load(&path) {
            Ok(new) => {
                let restart = new.listeners.len() != config.listeners.len()
                    || new
                        .listeners
                        .iter()
                        .zip(&config.listeners)
                        .any(|(a, b)| a.address != b.address || a.mode != b.mode)
                    || new.spool.path != config.spool.path
                    || new.shards != config.shards
                    || new.admin.listen != config.admin.listen;
                if restart {
                    tracing::warn!(
                        shard = index,
                        "listener, spool, shard or admin changes take effect at the next restart"
                    );
                }
                let new = Arc::new(new);
                for (entry, l) in live.entries.iter().zip(&new.listeners) {
                    *entry.session.borrow_mut() =
                        Rc::new(SessionConfig::for_listener(&new, l, live.tls_loaded));
                }
                // None keeps the file in force.
                let shaping = match &new.delivery.shaping_file {
                    Some(p) => match Shaping::load(p) {
                        Ok(s) => Some(Some(Arc::new(s))),
                        Err(e) => {
                            tracing::error!(shard = index, error = %e, "shaping reload failed; keeping the old file");
                            None
                        }
                    },
                    None => Some(None),
                };
                live.queue.send(QueueMsg::Reload(new.clone(), shaping));
                *config = new;
                tracing::info!(shard = index, path = %path.display(), "configuration reloaded");
            }
            Err(e) => {
                tracing::error!(shard = index, error = %e, "configuration reload failed; keeping the old one")
            }
        }
    }
    if let Some(path) = &config.auth.users_file {
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
    if !config.tls.certificates.is_empty() {
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
}
