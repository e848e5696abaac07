//! `loadgen sink`: a fast SMTP server that accepts mail for any domain and counts it, and can
//! behave like a difficult mailbox provider.
//!
//! What it does: one pinned glommio executor per thread, each binding the listen address with
//! SO_REUSEPORT; counts messages, recipients and octets per recipient domain; checks the body
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
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use hdrhistogram::Histogram;
use mta::smtp::command::parse_command;
use mta::smtp::{BareLineEnding, Command, DataDecoder, DataEvent, ForwardPath, Line, LineReader};
use mta::tls::Stream;
use serde_json::json;

use crate::message;

/// Where a fault applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The RCPT reply.
    Rcpt,
    /// The reply after the end of data.
    Data,
}

/// `[domain=]stage:code:percent`, e.g. `rcpt:451:10` or `gmail.test=data:550:5`.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// Recipient domain it applies to; None = all.
    pub domain: Option<String>,
    /// Where.
    pub stage: Stage,
    /// The reply code given.
    pub code: u16,
    /// Share of cases, 0-100.
    pub percent: f64,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("fault {s:?}: write [domain=]rcpt|data:CODE:PERCENT");
        let (domain, rest) = match s.split_once('=') {
            Some((d, r)) => (Some(d.to_ascii_lowercase()), r),
            None => (None, s),
        };
        let mut p = rest.split(':');
        let stage = match p.next() {
            Some("rcpt") => Stage::Rcpt,
            Some("data") => Stage::Data,
            _ => return Err(bad()),
        };
        let code: u16 = p.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        let percent: f64 = p.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        if !(400..600).contains(&code) || !(0.0..=100.0).contains(&percent) || p.next().is_some() {
            return Err(bad());
        }
        Ok(Fault {
            domain,
            stage,
            code,
            percent,
        })
    }
}

/// Settings of a sink.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    /// Listen address (loopback).
    pub listen: SocketAddr,
    /// Executors.
    pub threads: usize,
    /// Faults.
    pub faults: Vec<Fault>,
    /// Share of connections answered `421` at the greeting (percent).
    pub greeting_421: f64,
    /// Fixed delay before every reply.
    pub delay: Duration,
    /// Additional random delay up to this.
    pub delay_jitter: Duration,
    /// Concurrent connections allowed per thread (over it: `421`); 0 = unlimited.
    pub max_connections: usize,
    /// Share of DATA transfers on which the connection is dropped (percent).
    pub drop_mid_data: f64,
    /// Extensions to advertise.
    pub pipelining: bool,
    /// CHUNKING.
    pub chunking: bool,
    /// SIZE.
    pub size: bool,
    /// Stop after this many messages (0 = never).
    pub stop_after: u64,
    /// Stop after this long without a message once one arrived (zero = never).
    pub idle: Duration,
    /// Offer STARTTLS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Counts of one domain.
#[derive(Clone, Debug, Default)]
pub struct DomainCount {
    /// Messages with at least one recipient in the domain.
    pub messages: u64,
    /// Recipients.
    pub recipients: u64,
    /// Octets of those messages.
    pub bytes: u64,
}

/// What a sink received.
#[derive(Debug)]
pub struct SinkStats {
    /// Messages accepted.
    pub messages: u64,
    /// Recipients accepted.
    pub recipients: u64,
    /// Octets accepted.
    pub bytes: u64,
    /// Per recipient domain.
    pub domains: BTreeMap<String, DomainCount>,
    /// Loadgen messages whose digest did not match.
    pub corrupt: u64,
    /// Loadgen messages received more than once.
    pub duplicates: u64,
    /// Loadgen messages received (with a digest).
    pub checked: u64,
    /// Faults injected, by (stage, code).
    pub injected: BTreeMap<String, u64>,
    /// Connections accepted.
    pub connections: u64,
    /// Sessions upgraded with STARTTLS.
    pub tls_sessions: u64,
    /// End-to-end latency (send time to end of data), microseconds.
    pub latency: Histogram<u64>,
    /// Seconds from first to last message.
    pub active_seconds: f64,
    ids: HashSet<String>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Default for SinkStats {
    fn default() -> Self {
        SinkStats {
            messages: 0,
            recipients: 0,
            bytes: 0,
            domains: BTreeMap::new(),
            corrupt: 0,
            duplicates: 0,
            checked: 0,
            injected: BTreeMap::new(),
            connections: 0,
            tls_sessions: 0,
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds"),
            active_seconds: 0.0,
            ids: HashSet::new(),
            first: None,
            last: None,
        }
    }
}

impl SinkStats {
    fn merge(&mut self, other: SinkStats) {
        self.messages += other.messages;
        self.recipients += other.recipients;
        self.bytes += other.bytes;
        for (d, c) in other.domains {
            let e = self.domains.entry(d).or_default();
            e.messages += c.messages;
            e.recipients += c.recipients;
            e.bytes += c.bytes;
        }
        self.corrupt += other.corrupt;
        self.checked += other.checked;
        self.duplicates += other.duplicates;
        for id in other.ids {
            if !self.ids.insert(id) {
                self.duplicates += 1;
            }
        }
        for (k, n) in other.injected {
            *self.injected.entry(k).or_default() += n;
        }
        self.connections += other.connections;
        self.tls_sessions += other.tls_sessions;
        let _ = self.latency.add(&other.latency);
        self.first = match (self.first, other.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = self.last.max(other.last);
        if let (Some(f), Some(l)) = (self.first, self.last) {
            self.active_seconds = (l - f).as_secs_f64();
        }
    }

    /// Text summary.
    pub fn text(&self) -> String {
        let p = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        let mut s = format!(
            "loadgen sink: messages {} recipients {} bytes {} connections {} tls_sessions {} \
             corrupt {} duplicates {} checked {}\n  rate {:.1} msg/s over {:.3}s\n  end-to-end latency: p50={:.2}ms \
             p99={:.2}ms max={:.2}ms\n",
            self.messages,
            self.recipients,
            self.bytes,
            self.connections,
            self.tls_sessions,
            self.corrupt,
            self.duplicates,
            self.checked,
            self.messages as f64 / self.active_seconds.max(1e-9),
            self.active_seconds,
            p(0.5),
            p(0.99),
            self.latency.max() as f64 / 1000.0,
        );
        for (k, n) in &self.injected {
            s.push_str(&format!("  injected {k}: {n}\n"));
        }
        for (d, c) in self.domains.iter().take(50) {
            s.push_str(&format!(
                "  {d}: messages {} recipients {}\n",
                c.messages, c.recipients
            ));
        }
        s
    }

    /// JSON summary.
    pub fn json(&self) -> serde_json::Value {
        let domains: serde_json::Map<String, serde_json::Value> = self
            .domains
            .iter()
            .map(|(d, c)| {
                (
                    d.clone(),
                    json!({"messages": c.messages, "recipients": c.recipients, "bytes": c.bytes}),
                )
            })
            .collect();
        json!({
            "tool": "loadgen sink",
            "messages": self.messages,
            "recipients": self.recipients,
            "bytes": self.bytes,
            "connections": self.connections,
            "tls_sessions": self.tls_sessions,
            "corrupt": self.corrupt,
            "duplicates": self.duplicates,
            "checked": self.checked,
            "injected": self.injected,
            "active_seconds": self.active_seconds,
            "end_to_end_latency": {
                "p50_us": self.latency.value_at_quantile(0.5),
                "p99_us": self.latency.value_at_quantile(0.99),
                "max_us": self.latency.max(),
                "samples": self.latency.len(),
            },
            "domains": domains,
        })
    }
}

/// Shared between the sink's threads and its controller.
pub struct Control {
    /// Set to stop.
    pub stop: AtomicBool,
    /// Messages so far.
    pub messages: AtomicU64,
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
            port: AtomicUsize::new(0),
            listening: AtomicUsize::new(0),
        })
    }
}

/// Runs the sink until `control.stop`, `stop_after` messages, or the idle limit; returns the
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
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let placement = if threads <= cpus {
        PoolPlacement::MaxSpread(threads, None)
    } else {
        PoolPlacement::Unbound(threads)
    };
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
        if (opts.stop_after > 0 && n >= opts.stop_after)
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

/// Writes and flushes (TLS holds its records until flushed).
async fn send(stream: &mut Stream, data: &[u8]) -> std::io::Result<()> {
    stream.write_all(data).await?;
    stream.flush().await
}

async fn session(sh: &Shard, tcp: TcpStream) -> anyhow::Result<()> {
    tcp.set_nodelay(true).map_err(crate::gerr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(crate::gerr)?;
    let mut stream = Stream::Plain(tcp);
    let mut out = Vec::with_capacity(512);
    if (sh.opts.max_connections > 0 && sh.active.get() > sh.opts.max_connections)
        || sh.chance(sh.opts.greeting_421)
    {
        send(&mut stream, b"421 4.7.0 sink.test too busy\r\n").await?;
        return Ok(());
    }
    send(&mut stream, b"220 sink.test ESMTP loadgen sink\r\n").await?;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut start, mut end) = (0, 0);
    let mut lines = LineReader::new(4096);
    let mut rcpts: Vec<String> = Vec::new();
    let mut in_tx = false;
    let mut body = Vec::new();
    let mut data: Option<DataDecoder> = None;
    let mut chunk: Option<(u64, bool)> = None;
    loop {
        loop {
            let input = &buf[start..end];
            if let Some((remaining, last)) = chunk {
                let take = remaining.min(input.len() as u64) as usize;
                body.extend_from_slice(&input[..take]);
                start += take;
                if remaining > take as u64 {
                    chunk = Some((remaining - take as u64, last));
                    break;
                }
                chunk = None;
                if last {
                    finish(sh, &rcpts, &body, &mut out).await;
                    rcpts.clear();
                    body.clear();
                    in_tx = false;
                } else {
                    out.extend_from_slice(b"250 2.0.0 chunk ok\r\n");
                }
                continue;
            }
            if let Some(d) = &mut data {
                match d.decode(input, &mut body) {
                    DataEvent::NeedMore => {
                        start = end;
                        break;
                    }
                    DataEvent::End { consumed } => {
                        start += consumed;
                        data = None;
                        finish(sh, &rcpts, &body, &mut out).await;
                        rcpts.clear();
                        body.clear();
                        in_tx = false;
                        continue;
                    }
                }
            }
            let (n, line) = lines.next(input);
            start += n;
            let Some(line) = line else { break };
            let Line::Command(cmd) = line else {
                out.extend_from_slice(b"500 5.5.2 bad line\r\n");
                continue;
            };
            match parse_command(cmd, true) {
                Ok(Command::Ehlo(_)) => {
                    out.extend_from_slice(b"250-sink.test\r\n");
                    if sh.opts.pipelining {
                        out.extend_from_slice(b"250-PIPELINING\r\n");
                    }
                    if sh.opts.chunking {
                        out.extend_from_slice(b"250-CHUNKING\r\n");
                    }
                    if sh.opts.size {
                        out.extend_from_slice(b"250-SIZE 104857600\r\n");
                    }
                    if sh.opts.tls.is_some() && !stream.is_tls() {
                        out.extend_from_slice(b"250-STARTTLS\r\n");
                    }
                    out.extend_from_slice(
                        b"250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n",
                    );
                }
                Ok(Command::Helo(_)) => out.extend_from_slice(b"250 sink.test\r\n"),
                Ok(Command::Mail(..)) => {
                    in_tx = true;
                    rcpts.clear();
                    out.extend_from_slice(b"250 2.1.0 ok\r\n");
                }
                Ok(Command::Rcpt(path, _)) if in_tx => {
                    let domain = match &path {
                        ForwardPath::Postmaster => "postmaster".to_owned(),
                        ForwardPath::Mailbox(m) => m.domain.to_string(),
                    };
                    sh.pause().await;
                    match sh.fault(Stage::Rcpt, &domain) {
                        Some(code) => out.extend_from_slice(
                            format!("{code} {}.0.0 injected failure\r\n", code / 100).as_bytes(),
                        ),
                        None => {
                            rcpts.push(domain);
                            out.extend_from_slice(b"250 2.1.5 ok\r\n");
                        }
                    }
                }
                Ok(Command::Data) if in_tx && !rcpts.is_empty() => {
                    out.extend_from_slice(b"354 go ahead\r\n");
                    data = Some(DataDecoder::new(200 << 20, BareLineEnding::Normalize));
                    send(&mut stream, &out).await?;
                    out.clear();
                    if sh.chance(sh.opts.drop_mid_data) {
                        return Ok(());
                    }
                }
                Ok(Command::Bdat { size, last }) if in_tx && !rcpts.is_empty() => {
                    chunk = Some((size, last));
                }
                Ok(Command::Bdat { size, .. }) => {
                    // Refused chunk: its bytes are still read and dropped.
                    let mut left = size;
                    let avail = (end - start) as u64;
                    let take = left.min(avail);
                    start += take as usize;
                    left -= take;
                    while left > 0 {
                        let n = stream.read(&mut buf).await?;
                        anyhow::ensure!(n > 0, "eof in chunk");
                        let take = left.min(n as u64);
                        left -= take;
                        if take < n as u64 {
                            buf.copy_within(take as usize..n, 0);
                            (start, end) = (0, n - take as usize);
                        } else {
                            (start, end) = (0, 0);
                        }
                    }
                    out.extend_from_slice(b"554 5.5.1 no valid recipients\r\n");
                    in_tx = false;
                }
                Ok(Command::Rset) => {
                    in_tx = false;
                    rcpts.clear();
                    out.extend_from_slice(b"250 2.0.0 ok\r\n");
                }
                Ok(Command::Quit) => {
                    out.extend_from_slice(b"221 2.0.0 bye\r\n");
                    send(&mut stream, &out).await?;
                    return Ok(());
                }
                Ok(Command::StartTls) if stream.is_tls() => {
                    out.extend_from_slice(b"503 5.5.1 TLS already active\r\n")
                }
                Ok(Command::StartTls) if sh.opts.tls.is_some() => {
                    out.extend_from_slice(b"220 2.0.0 ready\r\n");
                    send(&mut stream, &out).await?;
                    out.clear();
                    let config = sh.opts.tls.clone().expect("checked");
                    stream = stream.accept_tls(config).await?;
                    sh.stats.borrow_mut().tls_sessions += 1;
                    // RFC 3207: forget everything from before the handshake.
                    (start, end) = (0, 0);
                    lines = LineReader::new(4096);
                    in_tx = false;
                    rcpts.clear();
                    body.clear();
                    break;
                }
                Ok(Command::Noop) => out.extend_from_slice(b"250 2.0.0 ok\r\n"),
                Ok(Command::Data | Command::Rcpt(..)) => {
                    out.extend_from_slice(b"503 5.5.1 bad sequence\r\n")
                }
                Ok(_) => out.extend_from_slice(b"502 5.5.1 not implemented\r\n"),
                Err(e) => e.reply(false).write_to(&mut out),
            }
        }
        if !out.is_empty() {
            send(&mut stream, &out).await?;
            out.clear();
        }
        if start == end {
            (start, end) = (0, 0);
        } else if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        let n = stream.read(&mut buf[end..]).await?;
        if n == 0 {
            return Ok(());
        }
        end += n;
    }
}

/// End of a message: count it (or inject a fault) and write the reply.
async fn finish(sh: &Shard, rcpts: &[String], body: &[u8], out: &mut Vec<u8>) {
    sh.pause().await;
    let domain = rcpts.first().map_or("", String::as_str);
    if let Some(code) = sh.fault(Stage::Data, domain) {
        out.extend_from_slice(format!("{code} {}.0.0 injected failure\r\n", code / 100).as_bytes());
        return;
    }
    let now = Instant::now();
    {
        let mut st = sh.stats.borrow_mut();
        st.messages += 1;
        st.recipients += rcpts.len() as u64;
        st.bytes += body.len() as u64;
        st.first.get_or_insert(now);
        st.last = Some(now);
        let mut seen: Vec<&str> = Vec::with_capacity(rcpts.len());
        for d in rcpts {
            let e = st.domains.entry(d.clone()).or_default();
            e.recipients += 1;
            if !seen.contains(&d.as_str()) {
                seen.push(d);
                e.messages += 1;
                e.bytes += body.len() as u64;
            }
        }
        if let Some(c) = message::check(body) {
            st.checked += 1;
            if !c.intact {
                st.corrupt += 1;
            }
            if !st.ids.insert(c.id) {
                st.duplicates += 1;
            }
            let lat = message::now_nanos().saturating_sub(c.sent_nanos) / 1000;
            let _ = st.latency.record(lat.max(1) as u64);
        }
    }
    sh.control.messages.fetch_add(1, Ordering::SeqCst);
    out.extend_from_slice(b"250 2.0.0 ok: counted\r\n");
}
