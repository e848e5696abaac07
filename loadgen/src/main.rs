//! `loadgen`: the load generator and sink for benchmarking SMTP servers (this MTA or any other).
//!
//! - `loadgen send`: drive SMTP load at a server and report reply counts and latencies.
//! - `loadgen sink`: a fast counting SMTP server that can act like a difficult mailbox provider.
//! - `loadgen bench`: sink + MTA + load in one command, and a benchmark card.

mod bench;
mod conn;
mod message;
mod options;
mod placement;
mod report;
mod send;
mod sink;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "SMTP load generator and sink (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send messages to an SMTP server and measure the replies.
    Send(SendArgs),
    /// Run a counting SMTP sink.
    Sink(SinkArgs),
    /// Benchmark an MTA end to end: sink, MTA routed to it, load, and a benchmark card.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Messages.
    #[arg(long, short = 'n', default_value_t = 20_000)]
    messages: u64,
    /// Concurrent connections.
    #[arg(long, short = 'c', default_value_t = 50)]
    connections: usize,
    /// Message body size.
    #[arg(long, short = 's', default_value_t = 4096)]
    size: usize,
    /// Recipients per message.
    #[arg(long, default_value_t = 1)]
    recipients: usize,
    /// N generated recipient domains (all relayed to the sink).
    #[arg(long, default_value_t = 1)]
    domains: usize,
    /// Load generator executors (default 1: leave the cores to the MTA).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Sink executors.
    #[arg(long, default_value_t = 1)]
    sink_threads: usize,
    /// Pin the load generator's and the sink's executors to cores (default: the kernel places
    /// them, beside the MTA's pinned shards).
    #[arg(long)]
    pin: bool,
    /// The mta binary (default: next to this one).
    #[arg(long)]
    mta: Option<PathBuf>,
    /// MTA shards (0 = one per core).
    #[arg(long, default_value_t = 0)]
    shards: usize,
    /// MTA spool sync: always | never.
    #[arg(long, default_value = "always")]
    sync: String,
    /// Directory on the disk to test; the MTA's spool goes in a temporary directory inside it.
    #[arg(long, default_value = "/tmp")]
    spool_dir: PathBuf,
    /// MTA outbound connections to the sink (the MTA's limits hold for the whole host).
    #[arg(long, default_value_t = 25)]
    max_connections: usize,
    /// Benchmark another MTA already running on this address (it must relay to --peer-sink).
    #[arg(long)]
    peer: Option<SocketAddr>,
    /// With --peer: where this command's sink listens.
    #[arg(long, default_value = "127.0.0.1:2526")]
    peer_sink: SocketAddr,
    /// Give up waiting for delivery after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "300s")]
    deadline: Duration,
    /// TOML appended to the generated MTA configuration (e.g. a `[dkim]` section).
    #[arg(long)]
    mta_config_extra: Option<PathBuf>,
    /// Write the card as JSON to this file ("-" = standard output).
    #[arg(long)]
    json: Option<PathBuf>,
    /// TLS on both legs: the sink offers STARTTLS, the load uses it, and the MTA gets a
    /// generated certificate (its outbound STARTTLS to the sink is opportunistic).
    #[arg(long)]
    tls: bool,
    /// No progress lines on standard error (each second: rate, p99, errors; then delivered).
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args)]
struct SendArgs {
    /// Target host:port (loopback only).
    #[arg(long, default_value = "127.0.0.1:2525")]
    target: SocketAddr,
    /// Concurrent connections.
    #[arg(long, short = 'c', default_value_t = 50)]
    connections: usize,
    /// Total messages (ignored with --duration).
    #[arg(long, short = 'n', default_value_t = 10_000)]
    messages: u64,
    /// Run for this long instead ("30s", "2m").
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Message body size in octets: "4096", or a range "1000-20000" (uniform per message).
    #[arg(long, short = 's', default_value = "4096", value_parser = parse_size)]
    size: (usize, usize),
    /// Recipients per message.
    #[arg(long, default_value_t = 1)]
    recipients: usize,
    /// Recipient domains: a comma-separated list.
    #[arg(long, value_delimiter = ',', default_value = "example.net")]
    domains: Vec<String>,
    /// Instead of --domains: N generated domains d0.loadgen.test .. d(N-1).loadgen.test.
    #[arg(long)]
    generated_domains: Option<usize>,
    /// Do not pipeline even if offered.
    #[arg(long)]
    no_pipelining: bool,
    /// Use BDAT when the server offers CHUNKING.
    #[arg(long)]
    bdat: bool,
    /// STARTTLS after EHLO (any certificate accepted); fail if the server does not offer it.
    #[arg(long)]
    starttls: bool,
    /// Executors (threads). Default: one per core.
    #[arg(long)]
    threads: Option<usize>,
    /// Pin each executor to a core, spread over the cores (default: the kernel places them).
    #[arg(long)]
    pin: bool,
    /// Open loop: messages per second in total (latency from the intended send time).
    #[arg(long)]
    rate: Option<f64>,
    /// Messages per connection before reconnecting (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    per_connection: u64,
    /// Envelope sender.
    #[arg(long, default_value = "loadgen@loadgen.test")]
    from: String,
    /// Write the report as JSON to this file ("-" = standard output).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Exit with status 1 if more than this share of messages failed (0-1).
    #[arg(long, default_value_t = 0.0)]
    max_error_rate: f64,
    /// No progress lines.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args)]
struct SinkArgs {
    /// Listen address (loopback; port 0 picks one and prints it).
    #[arg(long, default_value = "127.0.0.1:2526")]
    listen: SocketAddr,
    /// Executors (threads). Default: one per core.
    #[arg(long)]
    threads: Option<usize>,
    /// Pin each executor to a core, spread over the cores (default: the kernel places them).
    #[arg(long)]
    pin: bool,
    /// Inject failures: [domain=]rcpt|data:CODE:PERCENT (repeatable), e.g. rcpt:451:10.
    #[arg(long)]
    fault: Vec<sink::Fault>,
    /// Percent of connections answered 421 at the greeting.
    #[arg(long, default_value_t = 0.0)]
    greeting_421: f64,
    /// Delay before RCPT and end-of-data replies ("20ms").
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    delay: Duration,
    /// Extra random delay up to this.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    delay_jitter: Duration,
    /// Concurrent connections per thread (0 = unlimited); over it: 421.
    #[arg(long, default_value_t = 0)]
    max_connections: usize,
    /// Percent of DATA transfers on which the connection is dropped.
    #[arg(long, default_value_t = 0.0)]
    drop_mid_data: f64,
    /// Do not advertise PIPELINING.
    #[arg(long)]
    no_pipelining: bool,
    /// Do not advertise CHUNKING.
    #[arg(long)]
    no_chunking: bool,
    /// Do not advertise SIZE.
    #[arg(long)]
    no_size: bool,
    /// Offer STARTTLS (with a self-signed certificate made at start unless --tls-cert is given).
    #[arg(long)]
    tls: bool,
    /// PEM certificate chain for --tls.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Stop after this many messages.
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Stop after this many recipients (however many transactions carried them).
    #[arg(long, default_value_t = 0)]
    count_recipients: u64,
    /// Stop after this long without a message (once one arrived), e.g. "5s".
    #[arg(long, value_parser = humantime::parse_duration)]
    idle: Option<Duration>,
    /// Write the counts as JSON to this file ("-" = standard output).
    #[arg(long)]
    json: Option<PathBuf>,
}

fn write_json(path: &PathBuf, value: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    if path.as_os_str() == "-" {
        println!("{text}");
    } else {
        std::fs::write(path, text + "\n")?;
    }
    Ok(())
}

/// glommio's error type is not `Sync`; carry its message instead.
pub(crate) fn gerr<T>(e: glommio::GlommioError<T>) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// "N" or "A-B" octets.
fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let num = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|_| format!("bad size {s:?}"))
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(format!("size range {s:?} is empty"));
            }
            Ok((a, b))
        }
        None => num(s).map(|n| (n, n)),
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Send(a) => {
            let domains = match a.generated_domains {
                Some(n) => (0..n.max(1))
                    .map(|i| format!("d{i}.loadgen.test"))
                    .collect(),
                None => a.domains,
            };
            let opts = send::SendOptions {
                target: a.target,
                connections: a.connections.max(1),
                messages: a.messages,
                duration: a.duration,
                size: a.size.0,
                size_max: a.size.1,
                recipients: a.recipients.max(1),
                domains,
                pipelining: !a.no_pipelining,
                bdat: a.bdat,
                threads: a.threads.unwrap_or_else(cores),
                pin: a.pin,
                rate: a.rate,
                per_connection: a.per_connection,
                from: a.from,
                timeout: Duration::from_secs(60),
                starttls: a.starttls,
            };
            let report = send::run(opts, !a.quiet)?;
            print!("{}", report.text());
            if let Some(path) = &a.json {
                write_json(path, &report.json())?;
            }
            Ok(if report.error_rate() > a.max_error_rate {
                eprintln!(
                    "loadgen: error rate {:.4} above --max-error-rate {}",
                    report.error_rate(),
                    a.max_error_rate
                );
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Bench(a) => {
            let mta = match a.mta {
                Some(p) => p,
                None => std::env::current_exe()?.with_file_name("mta"),
            };
            anyhow::ensure!(
                ["always", "never"].contains(&a.sync.as_str()),
                "--sync is always or never"
            );
            let opts = bench::BenchOptions {
                send: send::SendOptions {
                    target: "127.0.0.1:0".parse()?,
                    connections: a.connections.max(1),
                    messages: a.messages.max(1),
                    duration: None,
                    size: a.size,
                    size_max: a.size,
                    recipients: a.recipients.max(1),
                    domains: (0..a.domains.max(1))
                        .map(|i| format!("d{i}.loadgen.test"))
                        .collect(),
                    pipelining: true,
                    bdat: false,
                    threads: a.threads.max(1),
                    pin: a.pin,
                    rate: None,
                    per_connection: 0,
                    from: "loadgen@loadgen.test".into(),
                    timeout: Duration::from_secs(60),
                    starttls: a.tls,
                },
                sink_threads: a.sink_threads.max(1),
                pin: a.pin,
                mta,
                shards: a.shards,
                sync: a.sync,
                spool_parent: a.spool_dir,
                max_connections: a.max_connections.max(1),
                peer: a.peer,
                peer_sink: a.peer_sink,
                deadline: a.deadline,
                tls: a.tls,
                progress: !a.quiet,
                mta_config_extra: match &a.mta_config_extra {
                    Some(path) => Some(
                        std::fs::read_to_string(path)
                            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
                    ),
                    None => None,
                },
            };
            let card = bench::run(opts)?;
            print!("{}", bench::text(&card));
            if let Some(path) = &a.json {
                write_json(path, &card)?;
            }
            Ok(if card["complete"].as_bool() == Some(true) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Sink(a) => {
            let opts = sink::SinkOptions {
                listen: a.listen,
                threads: a.threads.unwrap_or_else(cores),
                pin: a.pin,
                faults: a.fault,
                greeting_421: a.greeting_421,
                delay: a.delay,
                delay_jitter: a.delay_jitter,
                max_connections: a.max_connections,
                drop_mid_data: a.drop_mid_data,
                pipelining: !a.no_pipelining,
                chunking: !a.no_chunking,
                size: !a.no_size,
                stop_after: a.count,
                stop_after_recipients: a.count_recipients,
                idle: a.idle.unwrap_or(Duration::ZERO),
                tls: if a.tls || a.tls_cert.is_some() {
                    Some(tls::server_config(a.tls_cert.zip(a.tls_key))?)
                } else {
                    None
                },
            };
            let control = sink::Control::new();
            let mut signals = signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT])?;
            let c2 = control.clone();
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    c2.stop.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            });
            let stats = sink::run(opts, control, |addr| {
                eprintln!("loadgen sink: listening on {addr}");
            })?;
            print!("{}", stats.text());
            if let Some(path) = &a.json {
                write_json(path, &stats.json())?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
