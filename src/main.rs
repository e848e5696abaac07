//! The `mta` command: run the MTA, check a configuration, look at the queue.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use mta::config::Config;

mod admin_cli;
mod campaign_cli;
mod queue_cli;
mod suppression_cli;
mod trace_cli;
use admin_cli::ApiArgs;
use mta::shutdown::SignalWatch;
use queue_cli::{DeliveryCmd, QueueCmd};
use suppression_cli::SuppressionCmd;

#[derive(Parser)]
#[command(
    name = "mta",
    version,
    about = "A thread-per-core mail transfer agent for bulk sending"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the MTA (built-in defaults when no file is given).
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print the effective configuration.
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print a users-file line `NAME:argon2-hash` for AUTH (the password is read from the
    /// terminal without echo, or from the first line of standard input).
    Passwd {
        /// The user name.
        name: String,
    },
    /// Look at and act on the queue (through the admin endpoint; `count`, and `list` when the
    /// MTA does not answer, read the spool and work while the MTA is stopped).
    Queue {
        #[command(subcommand)]
        what: QueueCmd,
    },
    /// Pause or resume all delivery of the running MTA.
    Delivery {
        #[command(subcommand)]
        what: DeliveryCmd,
    },
    /// Look at and act on delivery destinations (through the admin endpoint).
    Dest {
        #[command(subcommand)]
        what: DestCmd,
    },
    /// What became of a message: its events from the event log, by queue id, Message-ID
    /// (`<...>`) or recipient address (works while the MTA is stopped).
    Trace {
        /// A queue id, a Message-ID in angle brackets, or a recipient address.
        query: String,
        /// Only events of the last period, e.g. `2h`, `3d`.
        #[arg(long)]
        since: Option<String>,
        /// Print the matching event-log lines (JSON) instead of a summary per line.
        #[arg(long)]
        json: bool,
        /// Configuration file (TOML): its log.dir is read.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Look at and change the suppression list: addresses never sent to again (through the
    /// admin endpoint).
    Suppression {
        #[command(subcommand)]
        what: SuppressionCmd,
    },
    /// Recipients accepted, delivered, deferred, bounced (by class), expired, complained,
    /// suppressed and sent without one-click unsubscription, with rates, per campaign, tenant,
    /// provider, source or From domain (through the admin endpoint).
    Stats {
        /// campaign, tenant, provider, source or from_domain.
        #[arg(long, default_value = "campaign")]
        by: String,
        /// Only the last period, e.g. `15m`, `1h`, `24h` (at most a day; default: since start).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Look at, pause and resume campaigns and tenants (through the admin endpoint).
    Campaign {
        #[command(subcommand)]
        what: campaign_cli::CampaignCmd,
    },
    /// Print the running MTA's metrics (Prometheus text).
    Metrics {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Each webhook's committed cursor, lag, last error and last success (through the admin
    /// endpoint).
    Webhooks {
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
enum DestCmd {
    /// Why a destination (a domain, or a key like `mx:...`) is or is not sending, with the
    /// queue of each source of its pool.
    Show {
        /// Domain or destination key (`<key>@<source>` for one source's queue).
        destination: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop sending to a destination for a while (from every source of its pool, also for
    /// mail queued later).
    Suspend {
        /// Domain or destination key (`<key>@<source>` for one source's queue).
        destination: String,
        /// How long, e.g. `30m`, `2h`.
        #[arg(long = "for", default_value = "1h")]
        duration: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Lift a suspension (from every source of its pool).
    Resume {
        /// Domain or destination key (`<key>@<source>` for one source's queue).
        destination: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Logs to standard error: `MTA_LOG` filters (default `info`); `MTA_LOG_FORMAT` is `text`
/// (default; colours only when standard error is a terminal) or `json` (one object per line,
/// for journald or a log shipper).
fn init_logging() -> Result<(), String> {
    use std::io::IsTerminal;
    // glommio's own multi-line warning about unregistered buffers is replaced by the one line
    // of `memlock::check`.
    let filter = tracing_subscriber::EnvFilter::try_from_env("MTA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,glommio::sys::uring=error"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match std::env::var("MTA_LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().with_current_span(false).init(),
        Ok("text") | Err(std::env::VarError::NotPresent) => {
            builder.with_ansi(std::io::stderr().is_terminal()).init()
        }
        Ok(other) => {
            return Err(format!(
                "MTA_LOG_FORMAT={other:?}: write \"text\" or \"json\""
            ));
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err("MTA_LOG_FORMAT: write \"text\" or \"json\"".to_owned());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging() {
        eprintln!("mta: {e}");
        return ExitCode::from(2);
    }
    if let Cmd::Passwd { name } = &cli.command {
        return match passwd(name) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mta: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let config_path = match &cli.command {
        Cmd::Passwd { .. } => None,
        Cmd::Run { config } | Cmd::CheckConfig { config } => config.clone(),
        Cmd::Metrics { api } | Cmd::Stats { api, .. } | Cmd::Webhooks { api } => api.config.clone(),
        Cmd::Campaign { what } => what.config(),
        Cmd::Queue { what } => what.config(),
        Cmd::Trace { config, .. } => config.clone(),
        Cmd::Delivery { what } => what.config(),
        Cmd::Suppression { what } => what.config(),
        Cmd::Dest { what } => match what {
            DestCmd::Show { api, .. }
            | DestCmd::Suspend { api, .. }
            | DestCmd::Resume { api, .. } => api.config.clone(),
        },
    };
    // Only a run (and its check) reads the credential files; the queue and admin commands
    // need the settings alone.
    let runs = matches!(cli.command, Cmd::Run { .. } | Cmd::CheckConfig { .. });
    let config = match config_path {
        Some(path) if runs => Config::load(&path),
        Some(path) => Config::read(&path),
        None => Config::parse(""),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mta: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Cmd::Passwd { .. } => Ok(()),
        Cmd::Run { .. } => {
            // Before any executor: a ring that cannot be created is one line and status 2,
            // not a panic in every shard.
            match mta::memlock::check(config.effective_shards(), config.io_memory.0) {
                Err(line) => {
                    eprintln!("mta: {line}");
                    return ExitCode::from(2);
                }
                Ok(Some(warning)) => tracing::warn!("{warning}"),
                Ok(None) => {}
            }
            run(config)
        }
        Cmd::CheckConfig { .. } => match check_files(&config) {
            Ok(()) => {
                for w in config.warnings() {
                    eprintln!("mta: warning: {w}");
                }
                print!("{}", config.to_toml());
                Ok(())
            }
            // Like a bad key: the configuration cannot run (status 2).
            Err(e) => {
                eprintln!("mta: configuration error: {e}");
                return ExitCode::from(2);
            }
        },
        Cmd::Metrics { api } => admin_cli::simple(&config, &api, false, "/metrics"),
        Cmd::Stats { by, since, api } => campaign_cli::stats(&config, &by, since.as_deref(), &api),
        Cmd::Campaign { what } => campaign_cli::campaign(&config, what),
        Cmd::Webhooks { api } => admin_cli::simple(&config, &api, false, "/webhooks"),
        Cmd::Queue { what } => queue_cli::queue(&config, what),
        Cmd::Trace {
            query, since, json, ..
        } => trace_cli::trace(&config, &query, since.as_deref(), json),
        Cmd::Delivery { what } => queue_cli::delivery(&config, what),
        Cmd::Suppression { what } => suppression_cli::suppression(&config, what),
        Cmd::Dest { what } => match what {
            DestCmd::Show { destination, api } => admin_cli::simple(
                &config,
                &api,
                false,
                &format!("/destinations/{}", admin_cli::encode(&destination)),
            ),
            DestCmd::Suspend {
                destination,
                duration,
                api,
            } => admin_cli::simple(
                &config,
                &api,
                true,
                &format!(
                    "/destinations/{}/suspend?duration={}",
                    admin_cli::encode(&destination),
                    admin_cli::encode(&duration)
                ),
            ),
            DestCmd::Resume { destination, api } => admin_cli::simple(
                &config,
                &api,
                true,
                &format!("/destinations/{}/resume", admin_cli::encode(&destination)),
            ),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mta: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads every file the configuration names, as `mta run` would: certificates and keys, the
/// outbound trust roots, the users file, DKIM keys and the shaping file (the outbound AUTH
/// credential files were read with the configuration, by `Config::load`) and the webhooks'
/// secret files.
fn check_files(config: &Config) -> Result<(), String> {
    if !config.tls.certificates.is_empty() {
        mta::tls::ServerTls::load(&config.tls.certificates).map_err(|e| e.to_string())?;
    }
    mta::tls::ClientTls::new(config.tls.ca_file.as_deref()).map_err(|e| e.to_string())?;
    if let Some(path) = &config.auth.users_file {
        mta::auth::Users::load(path).map_err(|e| e.to_string())?;
    }
    mta::dkim::Signer::from_config(&config.dkim).map_err(|e| e.to_string())?;
    if let Some(path) = &config.delivery.shaping_file {
        mta::shaping::Shaping::load(path).map_err(|e| e.to_string())?;
    }
    for hook in &config.webhooks {
        mta::webhook::post::check_secret(hook).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `mta passwd NAME`: the users-file line for NAME.
fn passwd(name: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_whitespace) {
        anyhow::bail!("a user name must be non-empty, without ':' or white space");
    }
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(first == again, "the passwords differ");
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    anyhow::ensure!(!password.is_empty(), "empty password");
    let hash = mta::auth::hash_password(&password)?;
    Ok(format!("{name}:{hash}"))
}

fn run(config: Config) -> anyhow::Result<()> {
    // A panic in any shard ends the process (status 70) rather than leave it half-serving.
    mta::crash::install();
    let signals = SignalWatch::install().context("installing signal handlers")?;
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    let shards = config.effective_shards();
    let summary = mta::shard::run(config, signals, |addrs| {
        for addr in addrs {
            tracing::info!("listening on {addr}");
        }
        tracing::info!(shards, "ready");
    })?;
    tracing::info!(
        messages = summary.messages_accepted,
        recipients = summary.recipients_accepted,
        "stopped"
    );
    Ok(())
}
