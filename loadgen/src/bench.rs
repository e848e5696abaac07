//! `loadgen bench`: one command that benchmarks an MTA end to end and prints a benchmark card.
//!
//! What it does: starts a sink, measures the wire limit (`send` straight into the sink), starts
//! the `mta` binary with a generated configuration that relays everything to a fresh sink (or
//! uses `--peer`, any MTA already running and routed to `--peer-sink`), drives the same load
//! through it, waits until the sink has every message (or a deadline), stops everything it
//! started, and prints machine, settings, accepted/s, delivered/s, latencies, MTA CPU per 1,000
//! messages and peak RSS, as text and JSON. With `--tls` both legs are encrypted: the sinks
//! offer STARTTLS, the load uses it, and the MTA gets a self-signed certificate generated into
//! the run's temporary directory (its outbound STARTTLS to the sink is the default,
//! opportunistic); the card says `tls: true`.
//!
//! What it does not do: no traffic off loopback; no tuning of the MTA beyond the options given
//! (`--mta-config-extra` appends TOML, e.g. a `[dkim]` section, to the generated configuration).
//!
//! Invariants: bounded in count and time; every process it started is stopped by PID.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::report::Report;
use crate::send::{self, SendOptions};
use crate::sink::{self, Control, SinkOptions, SinkStats};

/// Settings of a bench run.
pub struct BenchOptions {
    /// Load settings (target is filled in).
    pub send: SendOptions,
    /// Sink executors.
    pub sink_threads: usize,
    /// Pin the sink's executors to cores (the load's are in `send.pin`).
    pub pin: bool,
    /// The `mta` binary.
    pub mta: PathBuf,
    /// MTA shards (0 = one per core).
    pub shards: usize,
    /// `always` or `never`.
    pub sync: String,
    /// Where the MTA's spool goes (a temporary directory inside it).
    pub spool_parent: PathBuf,
    /// Outbound connections to the sink (host-wide in the MTA).
    pub max_connections: usize,
    /// Benchmark this already-running MTA instead of starting one.
    pub peer: Option<SocketAddr>,
    /// With `--peer`: the sink address the peer relays to (this command listens there).
    pub peer_sink: SocketAddr,
    /// Give up waiting for delivery after this long.
    pub deadline: Duration,
    /// TLS on both legs.
    pub tls: bool,
    /// TOML appended to the generated MTA configuration (`--mta-config-extra`).
    pub mta_config_extra: Option<String>,
    /// Progress lines on standard error while it runs.
    pub progress: bool,
}

struct RunningSink {
    control: Arc<Control>,
    addr: SocketAddr,
    thread: std::thread::JoinHandle<anyhow::Result<SinkStats>>,
}

fn start_sink(
    listen: SocketAddr,
    (threads, pin): (usize, bool),
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<RunningSink> {
    let control = Control::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let c = control.clone();
    let opts = SinkOptions {
        listen,
        threads,
        pin,
        faults: Vec::new(),
        greeting_421: 0.0,
        delay: Duration::ZERO,
        delay_jitter: Duration::ZERO,
        max_connections: 0,
        drop_mid_data: 0.0,
        pipelining: true,
        chunking: true,
        size: true,
        stop_after: 0,
        stop_after_recipients: 0,
        idle: Duration::ZERO,
        tls,
    };
    let thread = std::thread::spawn(move || {
        sink::run(opts, c, |addr| {
            let _ = tx.send(addr);
        })
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(15))
        .map_err(|_| anyhow::anyhow!("sink did not start"))?;
    Ok(RunningSink {
        control,
        addr,
        thread,
    })
}

impl RunningSink {
    fn count(&self) -> u64 {
        self.control.messages.load(Ordering::SeqCst)
    }
    fn recipients(&self) -> u64 {
        self.control.recipients.load(Ordering::SeqCst)
    }
    fn stop(self) -> anyhow::Result<SinkStats> {
        self.control.stop.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("sink thread panicked"))?
    }
}

/// CPU seconds (user + system) and peak RSS in KiB of a process.
fn usage(pid: u32) -> (f64, u64) {
    let tck = 100.0; // USER_HZ on Linux
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(") ")?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / tck)
        })
        .unwrap_or(0.0);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    (cpu, rss)
}

fn machine(spool: &std::path::Path) -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "kernel": kernel,
        "filesystem": filesystem(spool),
    })
}

fn filesystem(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return "unknown".into();
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: NUL-terminated path and a valid out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown".into();
    }
    match st.f_type as u64 {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        other => format!("0x{other:x}"),
    }
}

fn start_mta(
    opts: &BenchOptions,
    dir: &std::path::Path,
    sink: SocketAddr,
) -> anyhow::Result<(Child, SocketAddr)> {
    let config = dir.join("mta.toml");
    let tls = if opts.tls {
        let cert = crate::tls::self_signed(dir)?;
        format!(
            "[tls]\n[[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.cert_file.display(),
            cert.key_file.display()
        )
    } else {
        String::new()
    };
    std::fs::write(
        &config,
        format!(
            "hostname = \"bench.loadgen.test\"\nshards = {}\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\
             [spool]\npath = \"{}\"\nsync = \"{}\"\nmin_free_space = 0\nmin_free_percent = 0.0\n\
             [smtp]\nmax_connections_per_ip = 0\n\
             [delivery]\nrelay_host = \"{sink}\"\nmax_connections = {}\n[log]\ndir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            opts.shards,
            dir.join("spool").display(),
            opts.sync,
            opts.max_connections,
            dir.join("log").display()
        ) + &tls
            + opts.mta_config_extra.as_deref().unwrap_or(""),
    )?;
    let mut child = Command::new(&opts.mta)
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", opts.mta.display()))?;
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut addr = None;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("listening on ") {
                addr = line[i + 13..]
                    .split_whitespace()
                    .next()
                    .and_then(|a| a.parse().ok());
            }
            if line.contains(" ready") {
                let _ = tx.send(addr);
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(addr)) => Ok((child, addr)),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("mta did not become ready")
        }
    }
}

/// Runs the benchmark and returns the card as JSON.
pub fn run(opts: BenchOptions) -> anyhow::Result<serde_json::Value> {
    let n = opts.send.messages;
    let tls = if opts.tls {
        Some(crate::tls::server_config(None)?)
    } else {
        None
    };
    // 1. The wire limit: send straight into a sink.
    let base_sink = start_sink(
        "127.0.0.1:0".parse()?,
        (opts.sink_threads, opts.pin),
        tls.clone(),
    )?;
    let mut o = opts.send.clone();
    o.target = base_sink.addr;
    if opts.progress {
        eprintln!("wire limit: {n} messages straight into a sink");
    }
    let baseline = send::run(o, opts.progress)?;
    base_sink.stop()?;

    // 2. Through the MTA.
    let listen = if opts.peer.is_some() {
        opts.peer_sink
    } else {
        "127.0.0.1:0".parse()?
    };
    let sink = start_sink(listen, (opts.sink_threads, opts.pin), tls)?;
    let dir = tempfile::Builder::new()
        .prefix("loadgen-bench")
        .tempdir_in(&opts.spool_parent)?;
    let (mut child, target) = match opts.peer {
        Some(peer) => (None, peer),
        None => {
            let (c, a) = start_mta(&opts, dir.path(), sink.addr)?;
            (Some(c), a)
        }
    };
    let pid = child.as_ref().map(Child::id);
    let cpu0 = pid.map_or(0.0, |p| usage(p).0);
    let started = Instant::now();
    let mut o = opts.send.clone();
    o.target = target;
    if opts.progress {
        eprintln!("through the MTA at {target}: {n} messages, relayed to a sink");
    }
    let through: anyhow::Result<Report> = send::run(o, opts.progress);
    let accepted = through.as_ref().map_or(0, Report::ok);
    // One accepted message may reach the sink in several transactions (one per next hop and
    // recipient batch): delivery is complete when every recipient has arrived.
    let expected = accepted * opts.send.recipients as u64;
    let deadline = started + opts.deadline;
    let mut shown = started.elapsed().as_secs();
    while sink.recipients() < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = started.elapsed().as_secs();
        if opts.progress && now > shown {
            shown = now;
            eprintln!(
                "[{now:>4}s] delivered recipients={}/{expected} transactions={}",
                sink.recipients(),
                sink.count()
            );
        }
    }
    let delivered_in = started.elapsed();
    let (cpu1, rss) = pid.map_or((0.0, 0), usage);
    if let Some(c) = child.as_mut() {
        // SAFETY: kill(2) on the PID of the child we started.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let stop_by = Instant::now() + Duration::from_secs(40);
        while c.try_wait()?.is_none() {
            if Instant::now() > stop_by {
                let _ = c.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.wait();
    }
    let stats = sink.stop()?;
    let report = through?;
    let delivered = stats.messages;
    let secs = delivered_in.as_secs_f64().max(1e-9);
    let e2e = |q: f64| stats.latency.value_at_quantile(q);
    Ok(json!({
        "tool": "loadgen bench",
        "machine": machine(dir.path()),
        "mta": match opts.peer {
            Some(p) => json!({"peer": p.to_string()}),
            None => json!({"binary": opts.mta.display().to_string(), "shards": opts.shards,
                "sync": opts.sync, "tls": opts.tls, "max_connections": opts.max_connections,
                "config_extra": opts.mta_config_extra.is_some()}),
        },
        "tls": opts.tls,
        "sink_tls_sessions": stats.tls_sessions,
        "load_tls": report.json()["tls"],
        "load": report.settings,
        "messages": n,
        "accepted": accepted,
        "delivered": delivered,
        "complete": stats.recipients >= expected && accepted == n,
        "recipients_expected": expected,
        "recipients_delivered": stats.recipients,
        "accepted_per_s": report.rate(),
        "delivered_per_s": delivered as f64 / secs,
        "delivered_recipients_per_s": stats.recipients as f64 / secs,
        "accept_latency": report.json()["reply_latency"],
        "end_to_end_latency_us": {"p50": e2e(0.5), "p90": e2e(0.9), "p99": e2e(0.99), "max": stats.latency.max()},
        "mta_cpu_s_per_1000": if pid.is_some() && delivered > 0 { json!((cpu1 - cpu0) * 1000.0 / delivered as f64) } else { json!(null) },
        "mta_peak_rss_kib": if pid.is_some() { json!(rss) } else { json!(null) },
        "corrupt": stats.corrupt,
        "duplicates": stats.duplicates,
        "baseline_wire_per_s": baseline.rate(),
        "ratio_to_wire": report.rate() / baseline.rate().max(1e-9),
    }))
}

/// The card as text.
pub fn text(card: &serde_json::Value) -> String {
    let f = |k: &str| card[k].as_f64().unwrap_or(0.0);
    format!(
        "loadgen bench\n  machine:    {}\n  mta:        {}\n  load:       {}\n  messages:   {} accepted {} delivered {} (transactions; complete: {})\n  \
         recipients: {} delivered of {}: {:.1} recipients/s\n  \
         accepted:   {:.1} msg/s   delivered: {:.1} msg/s   wire limit (send -> sink): {:.1} msg/s\n  \
         accept latency: {}\n  end-to-end latency (us): {}\n  mta cpu per 1000 msgs: {}s   peak rss: {} KiB\n  \
         integrity: corrupt {} duplicates {}\n  tls: {} (sink TLS sessions {}, load {})\n",
        card["machine"],
        card["mta"],
        card["load"],
        card["messages"],
        card["accepted"],
        card["delivered"],
        card["complete"],
        card["recipients_delivered"],
        card["recipients_expected"],
        f("delivered_recipients_per_s"),
        f("accepted_per_s"),
        f("delivered_per_s"),
        f("baseline_wire_per_s"),
        card["accept_latency"],
        card["end_to_end_latency_us"],
        card["mta_cpu_s_per_1000"],
        card["mta_peak_rss_kib"],
        card["corrupt"],
        card["duplicates"],
        card["tls"],
        card["sink_tls_sessions"],
        card["load_tls"],
    )
}
