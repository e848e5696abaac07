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
use std::time::Duration;

use glommio::net::TcpListener;

use super::ServerContext;
use super::connection::{self, Entry};

/// Accepts until shutdown.
pub async fn accept_loop(ctx: Rc<ServerContext>, entry: Rc<Entry>, listener: TcpListener) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            ctx.shutdown.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let stats = &ctx.stats;
        stats.connections.set(stats.connections.get() + 1);
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        if ctx.active.get() >= ctx.max_connections {
            stats.refused.set(stats.refused.get() + 1);
            glommio::spawn_local(connection::refuse(ctx.clone(), stream)).detach();
        } else {
            glommio::spawn_local(connection::serve(ctx.clone(), entry.clone(), stream, peer))
                .detach();
        }
    }
}
