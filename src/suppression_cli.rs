//! The `mta suppression ...` commands: look at and change the suppression list of the running
//! MTA through its admin endpoint.
//!
//! What it does: `list` (a table, or JSON), `check`, `add`, `remove`, `import FILE` (sent in
//! parts that fit the endpoint's body limit, each written and synced before the next is sent)
//! and `export` (every live entry as one JSON line each, page after page).
//!
//! What it does not do: no reading of the list's file (the MTA owns it); no decisions.
//!
//! Invariants: a non-2xx answer is an error (exit status 1) with the server's message; an
//! import stops at the first part refused, saying how many lines went in before it.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use crate::admin_cli::{self, ApiArgs, encode};
use mta::config::Config;

/// The largest import part sent at once (under the endpoint's 64 KiB body limit).
const PART: usize = 60 * 1024;

/// `mta suppression ...`.
#[derive(Subcommand)]
pub enum SuppressionCmd {
    /// The listed addresses (up to --limit), oldest first.
    List {
        /// Only addresses containing this.
        #[arg(long)]
        contains: Option<String>,
        /// At most this many (up to 10000; `export` prints them all).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Whether an address is listed, and why.
    Check {
        /// The address.
        address: String,
        /// The tenant's list (besides the global one).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List addresses: they are never sent to again (until removed, or until --expires).
    Add {
        /// The addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
        /// Why (kept with the entry).
        #[arg(long)]
        reason: Option<String>,
        /// The entry stops counting after this long, e.g. `30d` (default: never).
        #[arg(long)]
        expires: Option<String>,
        /// The tenant whose list it is (default: the global list).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Unlist addresses.
    Remove {
        /// The addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
        /// The tenant whose list it is (default: the global list).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List every address of FILE (`-`: standard input): one per line, optionally followed by
    /// a comma and a reason, or the JSON lines `export` prints.
    Import {
        /// The file.
        file: PathBuf,
        /// The tenant of lines that name none (default: the global list).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print every listed address as a JSON line (what `import` reads).
    Export {
        #[command(flatten)]
        api: ApiArgs,
    },
}

impl SuppressionCmd {
    /// The configuration file named.
    pub fn config(&self) -> Option<PathBuf> {
        match self {
            SuppressionCmd::List { api, .. }
            | SuppressionCmd::Check { api, .. }
            | SuppressionCmd::Add { api, .. }
            | SuppressionCmd::Remove { api, .. }
            | SuppressionCmd::Import { api, .. }
            | SuppressionCmd::Export { api } => api.config.clone(),
        }
    }
}

/// Runs a `mta suppression` command.
pub fn suppression(config: &Config, cmd: SuppressionCmd) -> anyhow::Result<()> {
    match cmd {
        SuppressionCmd::List {
            contains,
            limit,
            api,
        } => {
            let mut path = format!("/suppression?limit={limit}");
            if let Some(c) = contains {
                path.push_str(&format!("&contains={}", encode(&c)));
            }
            let body = admin_cli::call(config, &api, false, &path)?;
            if api.json {
                println!("{body}");
                return Ok(());
            }
            let v = admin_cli::json(&body)?;
            let rows = v["entries"].as_array().cloned().unwrap_or_default();
            println!(
                "{:<40} {:<12} {:<20} {:<20} reason",
                "address", "kind", "added", "expires"
            );
            for e in &rows {
                println!(
                    "{:<40} {:<12} {:<20} {:<20} {}",
                    shown(e),
                    e["kind"].as_str().unwrap_or(""),
                    time(e["at_unix"].as_u64()),
                    time(e["expires_unix"].as_u64()),
                    e["reason"].as_str().unwrap_or("")
                );
            }
            let more = if v["next"].is_null() {
                ""
            } else {
                " (more: export)"
            };
            println!("{} shown of {} listed{more}", rows.len(), v["listed"]);
            Ok(())
        }
        SuppressionCmd::Check {
            address,
            tenant,
            api,
        } => {
            let mut path = format!("/suppression/check?address={}", encode(&address));
            if let Some(t) = tenant {
                path.push_str(&format!("&tenant={}", encode(&t)));
            }
            admin_cli::simple(config, &api, false, &path)
        }
        SuppressionCmd::Add {
            addresses,
            reason,
            expires,
            tenant,
            api,
        } => {
            for a in addresses {
                let mut path = format!("/suppression/add?address={}", encode(&a));
                for (k, v) in [
                    ("reason", &reason),
                    ("expires", &expires),
                    ("tenant", &tenant),
                ] {
                    if let Some(v) = v {
                        path.push_str(&format!("&{k}={}", encode(v)));
                    }
                }
                let body = admin_cli::call(config, &api, true, &path)?;
                if api.json {
                    println!("{body}");
                    continue;
                }
                println!("listed {}", shown(&admin_cli::json(&body)?));
            }
            Ok(())
        }
        SuppressionCmd::Remove {
            addresses,
            tenant,
            api,
        } => {
            for a in addresses {
                let mut path = format!("/suppression/remove?address={}", encode(&a));
                if let Some(t) = &tenant {
                    path.push_str(&format!("&tenant={}", encode(t)));
                }
                let body = admin_cli::call(config, &api, true, &path)?;
                if api.json {
                    println!("{body}");
                    continue;
                }
                let v = admin_cli::json(&body)?;
                match v["removed"].as_bool() {
                    Some(true) => println!("removed {}", v["address"].as_str().unwrap_or(&a)),
                    _ => println!("{} was not listed", v["address"].as_str().unwrap_or(&a)),
                }
            }
            Ok(())
        }
        SuppressionCmd::Import { file, tenant, api } => import(config, &api, &file, tenant),
        SuppressionCmd::Export { api } => export(config, &api),
    }
}

fn shown(e: &Value) -> String {
    let a = e["address"].as_str().unwrap_or("");
    match e["tenant"].as_str() {
        Some(t) if !t.is_empty() => format!("{a} ({t})"),
        _ => a.to_owned(),
    }
}

fn time(unix: Option<u64>) -> String {
    match unix {
        None | Some(0) => "-".to_owned(),
        Some(s) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string()
        }
    }
}

fn import(
    config: &Config,
    api: &ApiArgs,
    file: &PathBuf,
    tenant: Option<String>,
) -> anyhow::Result<()> {
    let input: Box<dyn BufRead> = match file.to_str() {
        Some("-") => Box::new(std::io::stdin().lock()),
        _ => Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?,
        )),
    };
    let base = admin_cli::base(config, api)?;
    let token = config.admin.token.as_deref();
    let path = match &tenant {
        Some(t) => format!("/suppression/import?tenant={}", encode(t)),
        None => "/suppression/import".to_owned(),
    };
    let (mut part, mut lines, mut sent, mut new) = (String::new(), 0u64, 0u64, 0u64);
    let mut send = |part: &mut String, lines: &mut u64| -> anyhow::Result<()> {
        if part.is_empty() {
            return Ok(());
        }
        let (status, body) = mta::admin::client::post(&base, &path, token, part.as_bytes())?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            anyhow::bail!(
                "{status}: {message} (in the part after line {sent}; {sent} lines imported before it)"
            );
        }
        new += admin_cli::json(&body)?["new"].as_u64().unwrap_or(0);
        sent += *lines;
        part.clear();
        *lines = 0;
        Ok(())
    };
    for line in input.lines() {
        let line = line.context("reading the import file")?;
        if line.len() + 1 > PART {
            anyhow::bail!("a line of {} bytes is too long", line.len());
        }
        if part.len() + line.len() + 1 > PART {
            send(&mut part, &mut lines)?;
        }
        part.push_str(&line);
        part.push('\n');
        lines += 1;
    }
    send(&mut part, &mut lines)?;
    println!("{sent} lines imported, {new} addresses newly listed");
    Ok(())
}

fn export(config: &Config, api: &ApiArgs) -> anyhow::Result<()> {
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/suppression/export?limit=10000".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", encode(c)));
        }
        let v = admin_cli::json(&admin_cli::call(config, api, false, &path)?)?;
        for e in v["entries"].as_array().into_iter().flatten() {
            writeln!(out, "{e}")?;
        }
        match v["next"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    out.flush()?;
    Ok(())
}
