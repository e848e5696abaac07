//! `loadgen sink`: a fast SMTP server that accepts mail for any domain and counts it, and can
//! behave like a difficult mailbox provider.
//!
//! What it does: one glommio executor per thread (pinned with `--pin`: see `placement`), each
//! binding the listen address with SO_REUSEPORT; counts messages, recipients and octets per recipient domain; checks the body
//! digest of loadgen messages (corrupt and duplicate messages are counted) and records the
//! end-to-end latency from their send time. Faults on request: a share of given replies at RCPT
//! or at the end of data (per domain or for all), `421` at the greeting, fixed or random reply
//! delays, a cap on concurrent connections, connections dropped mid-DATA, and extensions
//! switched off. With a TLS configuration it offers STARTTLS (RFC 3207: input buffered before
//! the upgrade is discarded, the session starts over and needs a new EHLO) and counts the
//! sessions that upgraded.
//!
//! What it does not do: no storage (messages are counted and dropped), no implicit TLS, no
//! client certificates (certificate setup is in `tls.rs`).
//!
//! Invariants: every accepted message is counted exactly once; the parser is the MTA's own
//! (CRLF-only line framing, DATA decoding), so what the sink counts is what an RFC-conforming
//! server would have received.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::LocalExecutorPoolBuilder;
use glommio::net::{TcpListener, TcpStream};
use hdrhistogram::Histogram;
use mta::smtp::command::parse_command;
use mta::smtp::{BareLineEnding, Command, DataDecoder, DataEvent, ForwardPath, Line, LineReader};
use mta::tls::Stream;
use serde_json::json;

use crate::message;

#[path = "sink_options.rs"]
mod options;
#[path = "sink_session.rs"]
mod session;
#[path = "sink_stats.rs"]
mod stats;

pub use options::{Fault, SinkOptions, Stage};
use session::session;
pub use stats::SinkStats;

/// Shared between the sink's threads and its controller.
pub struct Control {
    /// Set to stop.
    pub stop: AtomicBool,
    /// Messages (transactions) so far.
    pub messages: AtomicU64,
    /// Recipients of those messages.
    pub recipients: AtomicU64,
    /// Bound port (set once listening).
    pub port: AtomicUsize,
    /// Threads listening.
    pub listening: AtomicUsize,
}

impl Control {
    /// A fresh control block.
    pub fn new() -> Arc<Control> {
        Arc::new(Control {
            stop: AtomicBool::new(false),
            messages: AtomicU64::new(0),
            recipients: AtomicU64::new(0),
            port: AtomicUsize::new(0),
            listening: AtomicUsize::new(0),
        })
    }
}

/// Runs the sink until `control.stop`, `stop_after` messages or `stop_after_recipients`
/// recipients, or the idle limit; returns the
/// merged counts. `on_listening` gets the bound address once every thread listens.
pub fn run(
    opts: SinkOptions,
    control: Arc<Control>,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<SinkStats> {
    anyhow::ensure!(
        opts.listen.ip().is_loopback(),
        "the sink listens on loopback only"
    );
    let threads = opts.threads.max(1);
    // Port 0: bind once to learn a port, then every thread binds it with SO_REUSEPORT.
    let mut listen = opts.listen;
    let placeholder = socket(listen)?;
    if let Some(a) = placeholder.local_addr()?.as_socket() {
        listen.set_port(a.port());
    }
    let placement = crate::placement::placement(threads, opts.pin);
    let seed = Arc::new(AtomicU64::new(0x9e37_79b9_7f4a_7c15));
    let handles = {
        let (opts, control) = (opts.clone(), control.clone());
        LocalExecutorPoolBuilder::new(placement)
            .name("sink")
            .io_memory(1 << 20)
            .on_all_shards(move || {
                let s = seed.fetch_add(0x1234_5678_9abc, Ordering::SeqCst);
                let (opts, control) = (opts.clone(), control.clone());
                async move { shard(listen, opts, control, s).await }
            })
            .map_err(crate::gerr)?
    };
    let started = Instant::now();
    while control.listening.load(Ordering::SeqCst) < threads {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "sink threads did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    control.port.store(listen.port() as usize, Ordering::SeqCst);
    on_listening(listen);
    let mut last_count = 0;
    let mut last_change = Instant::now();
    while !control.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
        let n = control.messages.load(Ordering::SeqCst);
        if n != last_count {
            last_count = n;
            last_change = Instant::now();
        }
        let recipients = control.recipients.load(Ordering::SeqCst);
        if (opts.stop_after > 0 && n >= opts.stop_after)
            || (opts.stop_after_recipients > 0 && recipients >= opts.stop_after_recipients)
            || (!opts.idle.is_zero() && n > 0 && last_change.elapsed() >= opts.idle)
        {
            control.stop.store(true, Ordering::SeqCst);
        }
    }
    drop(placeholder);
    let mut total = SinkStats::default();
    for r in handles.join_all() {
        total.merge(r.map_err(|e| anyhow::anyhow!("sink thread failed: {e}"))?);
    }
    Ok(total)
}

/// A socket bound with SO_REUSEADDR and SO_REUSEPORT (every thread binds the same address).
fn socket(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.bind(&addr.into())?;
    Ok(sock)
}

struct Shard {
    opts: SinkOptions,
    control: Arc<Control>,
    stats: RefCell<SinkStats>,
    rng: std::cell::Cell<u64>,
    active: std::cell::Cell<usize>,
}

impl Shard {
    /// True with probability `percent`/100 (xorshift64*).
    fn chance(&self, percent: f64) -> bool {
        if percent <= 0.0 {
            return false;
        }
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        let r = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        r * 100.0 < percent
    }

    fn fault(&self, stage: Stage, domain: &str) -> Option<u16> {
        for f in &self.opts.faults {
            if f.stage == stage
                && f.domain.as_deref().is_none_or(|d| d == domain)
                && self.chance(f.percent)
            {
                let key = format!(
                    "{}:{}",
                    if stage == Stage::Rcpt { "rcpt" } else { "data" },
                    f.code
                );
                *self.stats.borrow_mut().injected.entry(key).or_default() += 1;
                return Some(f.code);
            }
        }
        None
    }

    async fn pause(&self) {
        let mut d = self.opts.delay;
        if !self.opts.delay_jitter.is_zero() {
            let mut x = self.rng.get().rotate_left(17) ^ 0x5851_f42d;
            x ^= x << 13;
            self.rng.set(x);
            d += Duration::from_micros(x % self.opts.delay_jitter.as_micros().max(1) as u64);
        }
        if !d.is_zero() {
            glommio::timer::sleep(d).await;
        }
    }
}

async fn shard(
    listen: SocketAddr,
    opts: SinkOptions,
    control: Arc<Control>,
    seed: u64,
) -> SinkStats {
    let listener = socket(listen)
        .and_then(|s| {
            s.listen(1024)?;
            // SAFETY: a bound, listening socket whose ownership moves to glommio.
            Ok(unsafe { TcpListener::from_raw_fd(s.into_raw_fd()) })
        })
        .expect("bind sink listener");
    let sh = Rc::new(Shard {
        opts,
        control,
        stats: RefCell::new(SinkStats::default()),
        rng: std::cell::Cell::new(seed | 1),
        active: std::cell::Cell::new(0),
    });
    sh.control.listening.fetch_add(1, Ordering::SeqCst);
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            while !sh.control.stop.load(Ordering::Relaxed) {
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            None
        })
        .await;
        let Some(Ok(stream)) = accepted else {
            if accepted.is_none() {
                break;
            }
            continue;
        };
        sh.stats.borrow_mut().connections += 1;
        let sh2 = sh.clone();
        glommio::spawn_local(async move {
            sh2.active.set(sh2.active.get() + 1);
            let _ = session(&sh2, stream).await;
            sh2.active.set(sh2.active.get() - 1);
        })
        .detach();
    }
    let mut stats = std::mem::take(&mut *sh.stats.borrow_mut());
    stats.ids.shrink_to_fit();
    stats
}
