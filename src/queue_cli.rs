//! The `mta queue ...` and `mta delivery ...` commands: look at and act on the queue.
//!
//! What it does: `list`, `show`, `shape`, `hold`, `release`, `delete`, `bounce`, `requeue`,
//! `flush` and the delivery pause ask the running MTA through its admin endpoint; `count`
//! (and `list --offline`, or `list` when the MTA does not answer) read the spool directly, so
//! they work while the MTA is stopped.
//!
//! What it does not do: no decisions: the MTA selects and acts; this turns arguments into a
//! request and the answer into a table or JSON.
//!
//! Invariants: an action on selected messages needs at least one criterion (`--all` says
//! everything); a non-2xx answer is an error (exit status 1) with the server's message.

use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::admin_cli::{self, ApiArgs, encode};
use mta::config::Config;
use mta::spool::{self, QueueId};

/// Which queued messages a command means; every criterion given must hold.
#[derive(Args, Clone, Debug, Default)]
pub struct SelectArgs {
    /// Queue ids (16 hex digits).
    pub ids: Vec<String>,
    /// Messages with a recipient (not yet final) in this domain.
    #[arg(long)]
    pub domain: Option<String>,
    /// Messages from this sender: an address, a domain (`@example.com`), or `<>`.
    #[arg(long)]
    pub sender: Option<String>,
    /// Messages in this state: active, deferred or held.
    #[arg(long)]
    pub state: Option<String>,
    /// Messages at least this old, e.g. `30m`, `2d`.
    #[arg(long = "min-age")]
    pub min_age: Option<String>,
    /// Every queued message (needed when no other criterion is given).
    #[arg(long)]
    pub all: bool,
}

impl SelectArgs {
    /// The query string of the selection (without `?`).
    fn query(&self) -> String {
        let mut q: Vec<String> = self
            .ids
            .iter()
            .map(|i| format!("id={}", encode(i)))
            .collect();
        for (k, v) in [
            ("domain", &self.domain),
            ("sender", &self.sender),
            ("state", &self.state),
            ("min_age", &self.min_age),
        ] {
            if let Some(v) = v {
                q.push(format!("{k}={}", encode(v)));
            }
        }
        if self.all {
            q.push("all=1".to_owned());
        }
        q.join("&")
    }
}

/// `mta queue ...`.
#[derive(Subcommand)]
pub enum QueueCmd {
    /// The queued messages, oldest first (like mailq), from the running MTA; from the spool
    /// with --offline or when the MTA does not answer.
    List {
        #[command(flatten)]
        select: SelectArgs,
        /// At most this many messages (the running MTA's answer).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Read the spool instead of asking the running MTA.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The accounting totals, per recipient: accepted, delivered, bounced, expired, queued
    /// (reads the spool).
    Count {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Queued recipients by destination domain and age, or by sender domain (like qshape).
    #[command(alias = "summary")]
    Shape {
        /// Group by the sender's domain instead of the recipient's.
        #[arg(long)]
        sender: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One queued message and its recipients; with --body, the message as stored (like
    /// postcat).
    Show {
        /// Queue id (16 hex digits).
        id: String,
        /// Print the stored message (our Received: header first) instead.
        #[arg(long)]
        body: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Retry deferred mail now: all of it, one domain's, or one destination's.
    Flush {
        /// Only this domain, or the mail that last went through this destination key (or a
        /// source's queue of it).
        #[arg(long)]
        destination: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Hold messages: not delivered until released, across restarts (like postsuper -h).
    Hold {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Release held messages: they are tried again now (like postsuper -H).
    Release {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete messages: their pending recipients bounce, with a DSN to the sender unless
    /// --silent (like postsuper -d).
    Delete {
        #[command(flatten)]
        select: SelectArgs,
        /// No DSN to the sender.
        #[arg(long)]
        silent: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Bounce messages: their pending recipients fail with a DSN to the sender.
    Bounce {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Route waiting mail again now, after a route or DNS change (like postsuper -r).
    Requeue {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// `mta delivery ...`.
#[derive(Subcommand)]
pub enum DeliveryCmd {
    /// Stop all delivery until resumed or restarted (mail is still accepted and queued).
    Pause {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Resume delivery after a pause.
    Resume {
        #[command(flatten)]
        api: ApiArgs,
    },
}

impl QueueCmd {
    /// The configuration file the command names.
    pub fn config(&self) -> Option<PathBuf> {
        match self {
            QueueCmd::Count { config } => config.clone(),
            QueueCmd::List { api, .. }
            | QueueCmd::Shape { api, .. }
            | QueueCmd::Show { api, .. }
            | QueueCmd::Flush { api, .. }
            | QueueCmd::Hold { api, .. }
            | QueueCmd::Release { api, .. }
            | QueueCmd::Delete { api, .. }
            | QueueCmd::Bounce { api, .. }
            | QueueCmd::Requeue { api, .. } => api.config.clone(),
        }
    }
}

impl DeliveryCmd {
    /// The configuration file the command names.
    pub fn config(&self) -> Option<PathBuf> {
        match self {
            DeliveryCmd::Pause { api } | DeliveryCmd::Resume { api } => api.config.clone(),
        }
    }
}

/// Runs `mta queue ...`.
pub fn queue(config: &Config, cmd: QueueCmd) -> anyhow::Result<()> {
    match cmd {
        QueueCmd::List {
            select,
            limit,
            offline,
            api,
        } => list(config, &select, limit, offline, &api),
        QueueCmd::Count { .. } => count(config),
        QueueCmd::Shape { sender, api } => {
            let by = if sender { "sender" } else { "recipient" };
            admin_cli::summary(config, &api, &format!("/queue?by={by}"))
        }
        QueueCmd::Show { id, body, api } if body => {
            let base = admin_cli::base(config, &api)?;
            let path = format!("/queue/{}/body", encode(&id));
            let token = config.admin.token.as_deref();
            let (status, bytes) = mta::admin::client::get_bytes(&base, &path, token)?;
            if !(200..300).contains(&status) {
                let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                anyhow::bail!("{status}: {}", v["error"].as_str().unwrap_or("failed"));
            }
            std::io::stdout().write_all(&bytes)?;
            Ok(())
        }
        QueueCmd::Show { id, api, .. } => {
            admin_cli::simple(config, &api, false, &format!("/queue/{}", encode(&id)))
        }
        QueueCmd::Flush { destination, api } => {
            let path = match destination {
                Some(d) => format!("/queue/flush?destination={}", encode(&d)),
                None => "/queue/flush".to_owned(),
            };
            admin_cli::simple(config, &api, true, &path)
        }
        QueueCmd::Delete {
            select,
            silent,
            api,
        } => {
            let mode = if silent { "silent" } else { "bounce" };
            // One id and nothing else: the single-message form, which says 404 when absent.
            if select.ids.len() == 1 && select.query().matches('&').count() == 0 {
                let path = format!("/queue/{}/delete?mode={mode}", encode(&select.ids[0]));
                return admin_cli::simple(config, &api, true, &path);
            }
            act(config, &api, &format!("delete?mode={mode}&"), &select)
        }
        QueueCmd::Bounce { select, api } => act(config, &api, "delete?mode=bounce&", &select),
        QueueCmd::Hold { select, api } => act(config, &api, "hold?", &select),
        QueueCmd::Release { select, api } => act(config, &api, "release?", &select),
        QueueCmd::Requeue { select, api } => act(config, &api, "requeue?", &select),
    }
}

/// Runs `mta delivery ...`.
pub fn delivery(config: &Config, cmd: DeliveryCmd) -> anyhow::Result<()> {
    match cmd {
        DeliveryCmd::Pause { api } => admin_cli::simple(config, &api, true, "/delivery/pause"),
        DeliveryCmd::Resume { api } => admin_cli::simple(config, &api, true, "/delivery/resume"),
    }
}

/// `POST /queue/<verb><selection>`; refuses an empty selection before asking.
fn act(config: &Config, api: &ApiArgs, verb: &str, select: &SelectArgs) -> anyhow::Result<()> {
    let q = select.query();
    anyhow::ensure!(
        !q.is_empty(),
        "say which messages: queue ids, --domain, --sender, --state, --min-age or --all"
    );
    admin_cli::simple(config, api, true, &format!("/queue/{verb}{q}"))
}

/// `mta queue list`: from the running MTA, or from the spool.
fn list(
    config: &Config,
    select: &SelectArgs,
    limit: usize,
    offline: bool,
    api: &ApiArgs,
) -> anyhow::Result<()> {
    if offline {
        return list_offline(config);
    }
    let q = select.query();
    let path = format!("/queue/messages?limit={limit}&{q}");
    let body = match admin_cli::call(config, api, false, &path) {
        Ok(b) => b,
        Err(e) if is_unreachable(&e) && api.url.is_none() => {
            eprintln!("mta: the MTA does not answer ({e:#}); reading the spool instead");
            return list_offline(config);
        }
        Err(e) => return Err(e),
    };
    if api.json {
        println!("{body}");
        return Ok(());
    }
    let v = admin_cli::json(&body)?;
    println!(
        "{:<16}  {:<8}  {:>10}  {:>6}  {:>6}  {:<32}  recipients",
        "id", "state", "size", "age", "retry", "sender"
    );
    let rows = v["messages"].as_array().cloned().unwrap_or_default();
    for r in &rows {
        let recipients: Vec<&str> = r["recipients"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["address"].as_str())
            .collect();
        let sender = r["sender"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("<>");
        let retry = r["next_attempt_seconds"]
            .as_u64()
            .map_or_else(|| "-".to_owned(), |s| age(s * 1000));
        println!(
            "{:<16}  {:<8}  {:>10}  {:>6}  {:>6}  {:<32}  {}",
            r["id"].as_str().unwrap_or("-"),
            r["state"].as_str().unwrap_or("-"),
            r["size"].as_u64().unwrap_or(0),
            age(r["age_seconds"].as_u64().unwrap_or(0) * 1000),
            retry,
            sender,
            recipients.join(", ")
        );
    }
    let matched = v["matched"].as_u64().unwrap_or(0);
    if matched as usize > rows.len() {
        println!("{} of {matched} message(s) shown (--limit)", rows.len());
    } else {
        println!("{matched} message(s)");
    }
    Ok(())
}

/// Whether an admin call failed because nothing answered (the MTA is not running).
fn is_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<mta::admin::AdminError>(),
            Some(mta::admin::AdminError::Transport { .. })
        )
    })
}

/// The spool as `mta queue list|count` see it offline: empty (with a note) when it does not
/// exist yet.
fn offline(config: &Config) -> anyhow::Result<spool::OfflineSpool> {
    let path = &config.spool.path;
    if !path.exists() {
        eprintln!(
            "mta: no spool at {} yet (the MTA has not run with this configuration): the queue is empty",
            path.display()
        );
        return Ok(spool::OfflineSpool::default());
    }
    spool::read_offline(path).with_context(|| format!("reading spool {}", path.display()))
}

fn list_offline(config: &Config) -> anyhow::Result<()> {
    let queue = offline(config)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    println!(
        "{:<16}  {:<8}  {:>10}  {:>8}  {:<32}  recipients",
        "id", "state", "size", "age", "sender"
    );
    for m in &queue.messages {
        let msg = &m.message;
        let pending: Vec<&str> = msg
            .recipients
            .iter()
            .zip(&m.states)
            .filter(|(_, s)| !s.as_ref().is_some_and(spool::RecipientState::is_final))
            .map(|(r, _)| r.address.as_str())
            .collect();
        let sender = if msg.reverse_path.is_empty() {
            "<>"
        } else {
            msg.reverse_path.as_str()
        };
        println!(
            "{:<16}  {:<8}  {:>10}  {:>8}  {:<32}  {}",
            QueueId(msg.id).to_string(),
            if m.held { "held" } else { "queued" },
            m.body_len,
            age(now_ms.saturating_sub(msg.arrival_unix_ms)),
            sender,
            pending.join(", ")
        );
    }
    println!("{} message(s) queued", queue.messages.len());
    Ok(())
}

fn count(config: &Config) -> anyhow::Result<()> {
    let queue = offline(config)?;
    // Lifetime totals: what the segments on disk hold plus what deleted segments held (kept
    // by the spool's retire records), so the books balance across deletions and restarts.
    let t = queue.stats.lifetime();
    println!("accepted  {}", t.accepted);
    println!("delivered {}", t.delivered);
    println!("bounced   {}", t.bounced);
    println!("expired   {}", t.expired);
    println!("queued    {}", t.queued());
    println!("messages  {}", queue.messages.len());
    Ok(())
}

fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}
