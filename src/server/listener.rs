//! The accept loop of one listener on one shard.
//!
//! What it does: accepts connections on the shard's own SO_REUSEPORT socket (the kernel spreads
//! connections over the shards), spawns a task per connection, refuses connections over the
//! shard's limit with `421 4.7.0`, and stops accepting when the shard's shutdown starts.
//!
//! What it does not do: no TLS handshakes, no PROXY header and no per-address limits (the
//! connection task does those: the client address may only be known after the PROXY header).
//!
//! Invariants: an accept error (e.g. out of file descriptors) never ends the loop; it backs off
//! briefly instead. A listener's address and mode are those it was bound with; its other
//! settings ([`Entry`]) are replaced whole by a reload and read once per connection.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use std::future::Future;
use std::pin::Pin;

use glommio::net::{TcpListener, TcpStream};
use ipnet::IpNet;

use super::ServerContext;
use super::connection;
use super::session::SessionConfig;
use crate::config::{Config, ListenerConfig, ListenerMode};

/// How a listener's connections begin.
pub struct Entry {
    /// The configured address (port 0 included) it was bound with.
    pub address: SocketAddr,
    /// What the listener is for, as bound.
    pub mode: ListenerMode,
    /// TLS from the first byte (RFC 8314 implicit TLS).
    pub implicit_tls: bool,
    /// The listener's session settings.
    pub session: RefCell<Rc<SessionConfig>>,
    /// Some when a PROXY protocol header comes first and names the client: the networks
    /// allowed to send it (the load balancers).
    pub proxy_from: RefCell<Option<Rc<[IpNet]>>>,
}

impl Entry {
    /// The entry of `listener`; `tls` says whether a certificate is loaded.
    pub fn new(config: &Config, listener: &ListenerConfig, tls: bool) -> Entry {
        let entry = Entry {
            address: listener.address,
            mode: listener.mode,
            implicit_tls: listener.mode == ListenerMode::Submissions,
            session: RefCell::new(Rc::new(SessionConfig::for_listener(config, listener, tls))),
            proxy_from: RefCell::new(None),
        };
        entry.set_proxy(listener);
        entry
    }

    /// Takes a reloaded configuration: the settings of the listener with this entry's address
    /// and mode, or, when it is gone from the file (that takes a restart), the settings it was
    /// started with under the new global ones. Connections open keep what they started with.
    pub fn reload(&self, config: &Config, started: &[ListenerConfig], tls: bool) {
        let same = |l: &&ListenerConfig| l.address == self.address && l.mode == self.mode;
        let Some(listener) = config
            .listeners
            .iter()
            .find(same)
            .or_else(|| started.iter().find(same))
        else {
            return;
        };
        *self.session.borrow_mut() = Rc::new(SessionConfig::for_listener(config, listener, tls));
        self.set_proxy(listener);
    }

    fn set_proxy(&self, listener: &ListenerConfig) {
        *self.proxy_from.borrow_mut() = listener
            .proxy_protocol
            .then(|| listener.proxy_networks().into());
    }
}

/// The next accepted connection, or None once `stop` completes. An accept error (e.g. out of
/// file descriptors) is logged and retried after a short pause, never returned.
pub async fn accept_or_stop(
    listener: &TcpListener,
    mut stop: Pin<&mut impl Future<Output = ()>>,
    what: &str,
) -> Option<TcpStream> {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.as_mut().await;
            None
        })
        .await;
        match accepted {
            None => return None,
            Some(Ok(stream)) => return Some(stream),
            Some(Err(e)) => {
                tracing::warn!(error = %e, listener = what, "accept failed; backing off");
                glommio::timer::sleep(crate::timers::ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Accepts until shutdown.
pub async fn accept_loop(ctx: Rc<ServerContext>, entry: Rc<Entry>, listener: TcpListener) {
    let mut stop = std::pin::pin!(ctx.shutdown.wait());
    while let Some(stream) = accept_or_stop(&listener, stop.as_mut(), "smtp").await {
        ctx.metrics.connections_accepted.inc();
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        if ctx.active.get() >= ctx.max_connections.get() {
            ctx.metrics.connections_refused.inc();
            let hostname = entry.session.borrow().hostname.clone();
            glommio::spawn_local(connection::refuse(ctx.clone(), stream, hostname)).detach();
        } else {
            glommio::spawn_local(connection::serve(ctx.clone(), entry.clone(), stream, peer))
                .detach();
        }
    }
}
