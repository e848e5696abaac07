//! `loadgen send`: drives SMTP load at a server and measures what comes back.
//!
//! What it does: runs connections spread over glommio executors (one per core by default,
//! pinned with `--pin`: see `placement`); each connection sends transactions (PIPELINING: MAIL, RCPTs and DATA or BDAT in one
//! write) with generated messages that carry an id, a send time and a body digest. Closed loop
//! (next message as soon as the reply came) or open loop (`--rate`: each message has an intended
//! send time and latency is measured from it, so a stalled server cannot hide behind coordinated
//! omission). Records hdrhistograms of the reply latency (end of data to final reply) and of the
//! whole transaction, counts every reply class, prints a progress line every second and a final
//! report.
//!
//! With `--starttls` every connection upgrades to TLS after its first EHLO (any certificate is
//! accepted) and says EHLO again; a server that does not offer STARTTLS ends the run with an
//! error instead of silently sending plaintext. The report carries what the first TLS
//! connection negotiated.
//!
//! What it does not do: no certificate checks, no AUTH; it never connects anywhere but the
//! given target.
//!
//! Invariants: bounded by message count or duration (and a hard wall-clock limit); the number of
//! messages attempted equals ok + refused + failed at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::LocalExecutorPoolBuilder;
use hdrhistogram::Histogram;
use mta::smtp::data::dot_stuff;
use mta::smtp::ehlo::Extensions;
use mta::tls::TlsInfo;

use crate::conn::Conn;
use crate::message;
use crate::report::{Counts, Report};

pub use crate::options::SendOptions;

struct Shared {
    next: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
    p99_us: Vec<AtomicU64>,
    /// The client configuration, with `starttls`.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// What the first TLS connection negotiated.
    negotiated: Mutex<Option<TlsInfo>>,
    /// The first connection error, for the report.
    first_error: Mutex<Option<String>>,
}

/// A connection error that no retry can fix (the run stops).
#[derive(Debug)]
struct Fatal(String);

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fatal {}

/// Per-thread results.
struct ThreadResult {
    counts: Counts,
    reply: Histogram<u64>,
    transaction: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

/// Runs the load and returns the report.
pub fn run(opts: SendOptions, progress: bool) -> anyhow::Result<Report> {
    anyhow::ensure!(
        opts.target.ip().is_loopback(),
        "refusing to send load to {}: loopback targets only",
        opts.target
    );
    let threads = opts.threads.max(1).min(opts.connections.max(1));
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        p99_us: (0..threads).map(|_| AtomicU64::new(0)).collect(),
        tls: if opts.starttls {
            Some(crate::tls::client_config()?)
        } else {
            None
        },
        negotiated: Mutex::new(None),
        first_error: Mutex::new(None),
    });
    let run_id = format!("{:x}", message::now_nanos() as u64);
    let started = Instant::now();
    let thread_index = Arc::new(AtomicU64::new(0));
    let placement = crate::placement::placement(threads, opts.pin);
    let handles = {
        let (opts, shared, run_id) = (opts.clone(), shared.clone(), run_id.clone());
        LocalExecutorPoolBuilder::new(placement)
            .name("loadgen")
            .io_memory(1 << 20)
            .on_all_shards(move || {
                let t = thread_index.fetch_add(1, Ordering::SeqCst) as usize;
                let (opts, shared, run_id) = (opts.clone(), shared.clone(), run_id.clone());
                async move { thread_main(t, threads, opts, shared, run_id, started).await }
            })
            .map_err(crate::gerr)?
    };
    let hard_limit = opts.duration.unwrap_or(Duration::from_secs(3600)) + Duration::from_secs(60);
    let mut last = 0;
    while !handles.handles().iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        let elapsed = started.elapsed();
        if elapsed > hard_limit {
            shared.stop.store(true, Ordering::SeqCst);
        }
        if progress && elapsed.as_secs() > last {
            last = elapsed.as_secs();
            let ok = shared.ok.load(Ordering::Relaxed);
            let p99 = shared
                .p99_us
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .max()
                .unwrap_or(0);
            eprintln!(
                "[{last:>4}s] ok={ok} rate={:.0}/s errors={} p99={:.2}ms",
                ok as f64 / elapsed.as_secs_f64(),
                shared.errors.load(Ordering::Relaxed),
                p99 as f64 / 1000.0
            );
        }
    }
    let elapsed = started.elapsed();
    let mut counts = Counts::default();
    let mut reply = histogram();
    let mut transaction = histogram();
    for r in handles.join_all() {
        let r = r.map_err(|e| anyhow::anyhow!("load thread failed: {e}"))?;
        counts.add(&r.counts);
        reply.add(&r.reply)?;
        transaction.add(&r.transaction)?;
    }
    let mut report = Report::new(&opts, &run_id, elapsed, counts, &reply, &transaction);
    report.tls = shared.negotiated.lock().expect("lock").clone();
    report.first_error = shared.first_error.lock().expect("lock").clone();
    Ok(report)
}

async fn thread_main(
    t: usize,
    threads: usize,
    opts: SendOptions,
    shared: Arc<Shared>,
    run_id: String,
    started: Instant,
) -> ThreadResult {
    let mine = (t..opts.connections).step_by(threads).count();
    let result = std::rc::Rc::new(std::cell::RefCell::new(ThreadResult {
        counts: Counts::default(),
        reply: histogram(),
        transaction: histogram(),
    }));
    let body = std::rc::Rc::new(message::body(opts.size_max.max(opts.size)));
    let digest = crc32c::crc32c(&body);
    let mut tasks = Vec::new();
    for c in 0..mine {
        let (opts, shared, run_id, result, body) = (
            opts.clone(),
            shared.clone(),
            run_id.clone(),
            result.clone(),
            body.clone(),
        );
        tasks.push(glommio::spawn_local(async move {
            connection_loop(c, &opts, &shared, &run_id, &result, &body, digest, started).await
        }));
    }
    let publisher = {
        let (shared, result) = (shared.clone(), result.clone());
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(500)).await;
                let p99 = result.borrow().transaction.value_at_quantile(0.99);
                shared.p99_us[t].store(p99, Ordering::Relaxed);
            }
        })
    };
    for task in tasks {
        task.await;
    }
    drop(publisher);
    let empty = ThreadResult {
        counts: Counts::default(),
        reply: histogram(),
        transaction: histogram(),
    };
    std::mem::replace(&mut *result.borrow_mut(), empty)
}

/// Claims the next message number, or None when the run is over.
fn claim(opts: &SendOptions, shared: &Shared, started: Instant) -> Option<u64> {
    if shared.stop.load(Ordering::Relaxed) {
        return None;
    }
    if let Some(d) = opts.duration {
        if started.elapsed() >= d {
            return None;
        }
        return Some(shared.next.fetch_add(1, Ordering::Relaxed));
    }
    let n = shared.next.fetch_add(1, Ordering::Relaxed);
    (n < opts.messages).then_some(n)
}

#[allow(clippy::too_many_arguments)]
async fn connection_loop(
    c: usize,
    opts: &SendOptions,
    shared: &Shared,
    run_id: &str,
    result: &std::cell::RefCell<ThreadResult>,
    body: &[u8],
    digest: u32,
    started: Instant,
) {
    let mut msg = Vec::with_capacity(body.len() + 512);
    let mut wire = Vec::with_capacity(body.len() + 1024);
    let mut pending: Option<u64> = None;
    let mut failures = 0u32;
    'connections: loop {
        let (mut conn, ext) = match open(opts, shared).await {
            Ok(x) => {
                failures = 0;
                x
            }
            Err(e) => {
                result.borrow_mut().counts.connect_errors += 1;
                shared.errors.fetch_add(1, Ordering::Relaxed);
                shared
                    .first_error
                    .lock()
                    .expect("lock")
                    .get_or_insert_with(|| format!("{e:#}"));
                failures += 1;
                if e.downcast_ref::<Fatal>().is_some() {
                    shared.stop.store(true, Ordering::SeqCst);
                }
                if failures > 20 || shared.stop.load(Ordering::Relaxed) {
                    // The server is gone: account for the message we held and stop.
                    if pending.is_some() {
                        result.borrow_mut().counts.failed += 1;
                    }
                    return;
                }
                glommio::timer::sleep(Duration::from_millis(50 * u64::from(failures))).await;
                continue;
            }
        };
        let pipelining = opts.pipelining && ext.pipelining;
        let bdat = opts.bdat && ext.chunking;
        let mut on_this = 0u64;
        loop {
            let seq = match pending.take() {
                Some(s) => s,
                None => match claim(opts, shared, started) {
                    Some(s) => s,
                    None => {
                        conn.close().await;
                        return;
                    }
                },
            };
            let intended = opts
                .rate
                .map(|r| started + Duration::from_secs_f64(seq as f64 / r));
            if let Some(at) = intended {
                let now = Instant::now();
                if at > now {
                    glommio::timer::sleep(at - now).await;
                }
            }
            let t0 = intended.unwrap_or_else(Instant::now);
            let rcpts: Vec<String> = (0..opts.recipients)
                .map(|r| {
                    let d = &opts.domains[(seq as usize + r) % opts.domains.len()];
                    format!("u{}.{r}@{d}", seq % 100_000)
                })
                .collect();
            if opts.size_max > opts.size {
                // A size drawn per message: the body cut at a line end near that size.
                let want = opts.size
                    + (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize
                        % (opts.size_max - opts.size + 1);
                let cut = body[..want.min(body.len())]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(body.len(), |i| i + 1);
                let part = &body[..cut];
                message::write(
                    &mut msg,
                    run_id,
                    seq,
                    &opts.from,
                    &rcpts[0],
                    part,
                    crc32c::crc32c(part),
                );
            } else {
                message::write(&mut msg, run_id, seq, &opts.from, &rcpts[0], body, digest);
            }
            match transaction(&mut conn, &mut wire, opts, &msg, &rcpts, pipelining, bdat).await {
                Ok((code, reply_latency)) => {
                    let total = t0.elapsed();
                    let mut r = result.borrow_mut();
                    r.counts.record(code);
                    if code / 100 == 2 {
                        shared.ok.fetch_add(1, Ordering::Relaxed);
                        let _ = r.reply.record(reply_latency.as_micros().max(1) as u64);
                        let _ = r.transaction.record(total.as_micros().max(1) as u64);
                    } else {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => {
                    // The connection broke mid-transaction: the message counts as failed (the
                    // server may or may not have it); reconnect for the next one.
                    result.borrow_mut().counts.failed += 1;
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    continue 'connections;
                }
            }
            on_this += 1;
            if opts.per_connection > 0 && on_this >= opts.per_connection {
                conn.close().await;
                let _ = c;
                continue 'connections;
            }
        }
    }
}

async fn open(opts: &SendOptions, shared: &Shared) -> anyhow::Result<(Conn, Extensions)> {
    let mut conn = Conn::connect(opts.target, opts.timeout).await?;
    let greeting = conn.reply().await?;
    anyhow::ensure!(greeting.code == 220, "greeting {greeting}");
    let mut ext = ehlo(&mut conn).await?;
    if let Some(config) = &shared.tls {
        if !ext.starttls {
            return Err(Fatal(format!("{} does not offer STARTTLS", opts.target)).into());
        }
        conn.write(b"STARTTLS\r\n").await?;
        let ready = conn.reply().await?;
        if ready.code != 220 {
            return Err(Fatal(format!("STARTTLS refused: {ready}")).into());
        }
        conn = conn
            .upgrade(config.clone(), crate::tls::server_name(opts.target))
            .await
            .map_err(|e| e.context("TLS handshake"))?;
        shared
            .negotiated
            .lock()
            .expect("lock")
            .get_or_insert_with(|| conn.tls().expect("TLS is on"));
        ext = ehlo(&mut conn).await?;
    }
    Ok((conn, ext))
}

async fn ehlo(conn: &mut Conn) -> anyhow::Result<Extensions> {
    conn.write(b"EHLO loadgen.test\r\n").await?;
    let ehlo = conn.reply().await?;
    anyhow::ensure!(ehlo.is_positive_completion(), "EHLO {ehlo}");
    Ok(Extensions::from_reply(&ehlo))
}

/// One transaction; returns the code of the deciding reply and the reply latency.
async fn transaction(
    conn: &mut Conn,
    wire: &mut Vec<u8>,
    opts: &SendOptions,
    msg: &[u8],
    rcpts: &[String],
    pipelining: bool,
    bdat: bool,
) -> anyhow::Result<(u16, Duration)> {
    wire.clear();
    wire.extend_from_slice(format!("MAIL FROM:<{}>\r\n", opts.from).as_bytes());
    let mut commands = vec![wire.len()];
    for r in rcpts {
        wire.extend_from_slice(format!("RCPT TO:<{r}>\r\n").as_bytes());
        commands.push(wire.len());
    }
    let data_start = wire.len();
    if bdat {
        wire.extend_from_slice(format!("BDAT {} LAST\r\n", msg.len()).as_bytes());
        wire.extend_from_slice(msg);
    } else {
        wire.extend_from_slice(b"DATA\r\n");
    }
    let sent_data;
    let mut first_bad = None;
    if pipelining {
        conn.write(wire).await?;
        sent_data = Instant::now();
        for _ in 0..=rcpts.len() {
            let r = conn.reply().await?;
            if !r.is_positive_completion() && first_bad.is_none() {
                first_bad = Some(r.code);
            }
        }
    } else {
        let mut from = 0;
        for end in commands {
            conn.write(&wire[from..end]).await?;
            from = end;
            let r = conn.reply().await?;
            if !r.is_positive_completion() && first_bad.is_none() {
                first_bad = Some(r.code);
            }
        }
        conn.write(&wire[data_start..]).await?;
        sent_data = Instant::now();
    }
    let go = conn.reply().await?;
    if bdat {
        if let (Some(code), false) = (first_bad, go.is_positive_completion()) {
            reset(conn).await?;
            return Ok((code, sent_data.elapsed()));
        }
        if !go.is_positive_completion() {
            reset(conn).await?;
        }
        return Ok((go.code, sent_data.elapsed()));
    }
    if go.code != 354 {
        reset(conn).await?;
        return Ok((first_bad.unwrap_or(go.code), sent_data.elapsed()));
    }
    wire.clear();
    dot_stuff(msg, wire);
    conn.write(wire).await?;
    let at = Instant::now();
    let done = conn.reply().await?;
    if !done.is_positive_completion() {
        reset(conn).await?;
    }
    Ok((done.code, at.elapsed()))
}

async fn reset(conn: &mut Conn) -> anyhow::Result<()> {
    conn.write(b"RSET\r\n").await?;
    conn.reply().await?;
    Ok(())
}
