//! Listening sockets: binding with the options every shard needs, giving port-0 listeners one
//! concrete port, and waiting for a port a dying process still holds.
//!
//! What it does: checks at start-up that every listener's address can be bound, binds the
//! per-shard sockets (SO_REUSEADDR, and SO_REUSEPORT so that every shard serves the same
//! address), and retries an address in use for up to [`LISTEN_WAIT`].
//!
//! What it does not do: no listening or accepting (the shards do), no configuration.
//!
//! Invariants: a port-0 listener keeps its port (held by a placeholder socket) until every
//! shard has bound it; an exclusive bind proves nobody else holds a fixed port.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::Config;

/// Checks that every listener can be bound and gives port-0 listeners a concrete port. The
/// returned placeholder sockets (bound with SO_REUSEPORT, not listening) hold those ports until
/// the shards have bound them. An error names the address that cannot be bound.
pub(crate) fn resolve_listeners(
    config: &Config,
) -> Result<(Vec<SocketAddr>, Vec<socket2::Socket>), (SocketAddr, std::io::Error)> {
    let mut addrs = Vec::new();
    let mut placeholders = Vec::new();
    for l in &config.listeners {
        let addr = l.address;
        let err = |source| (addr, source);
        if addr.port() == 0 {
            let sock = socket(addr, true).map_err(err)?;
            let bound = sock
                .local_addr()
                .map_err(err)?
                .as_socket()
                .expect("an inet socket");
            addrs.push(bound);
            placeholders.push(sock);
        } else {
            // Without SO_REUSEPORT the bind fails if anything else holds the port.
            drop(bind_when_free(addr).map_err(err)?);
            addrs.push(addr);
        }
    }
    Ok((addrs, placeholders))
}

/// How long a start waits for a listening port that is still held. A process killed with
/// io_uring requests in flight releases its sockets only when the kernel has torn its rings
/// down, shortly after it has exited: a restart right after a crash must not fail on that.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// Binds `addr` exclusively (no SO_REUSEPORT), retrying while it is in use, up to
/// [`LISTEN_WAIT`].
pub(crate) fn bind_when_free(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let deadline = Instant::now() + LISTEN_WAIT;
    let mut logged = false;
    loop {
        match socket(addr, false) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                if !logged {
                    tracing::warn!(%addr, "listening address in use; waiting up to 10 s for it to be released (a previous instance may still be closing)");
                    logged = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// A TCP socket bound to `addr` with SO_REUSEADDR (so connections in TIME_WAIT from a
/// previous run do not block a restart) and, if `share`, SO_REUSEPORT (every shard binds the
/// same address and the kernel spreads connections).
pub(crate) fn socket(addr: SocketAddr, share: bool) -> std::io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if share {
        sock.set_reuse_port(true)?;
    }
    sock.bind(&addr.into())?;
    Ok(sock)
}
