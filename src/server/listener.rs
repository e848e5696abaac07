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
//! briefly instead.

use std::rc::Rc;

use std::future::Future;
use std::pin::Pin;

use glommio::net::{TcpListener, TcpStream};

use super::ServerContext;
use super::connection::{self, Entry};

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
        if ctx.active.get() >= ctx.max_connections {
            ctx.metrics.connections_refused.inc();
            glommio::spawn_local(connection::refuse(ctx.clone(), stream)).detach();
        } else {
            glommio::spawn_local(connection::serve(ctx.clone(), entry.clone(), stream, peer))
                .detach();
        }
    }
}
