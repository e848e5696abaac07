//! The `mta queue ...`, `mta dest ...` and `mta metrics` commands that talk to a running MTA
//! through its admin endpoint, printing tables (or the JSON with `--json`).
//!
//! What it does: builds the request from the arguments, sends it with the blocking admin
//! client to `admin.listen` of the configuration (or `--url`), with `admin.token` when set,
//! and prints the answer.
//!
//! What it does not do: no reading of the spool (`mta queue list|count` do that offline).
//!
//! Invariants: a non-2xx answer is an error (exit status 1) with the server's message.

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use mta::config::Config;

/// Where the running MTA is, and how to print.
#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// Configuration file (TOML): its admin.listen and admin.token are used.
    #[arg(long, short)]
    pub config: Option<std::path::PathBuf>,
    /// The admin endpoint, e.g. `http://127.0.0.1:8025` (default: from the configuration).
    #[arg(long)]
    pub url: Option<String>,
    /// Print the JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn base(config: &Config, args: &ApiArgs) -> anyhow::Result<String> {
    if let Some(url) = &args.url {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let addr = config
        .admin
        .address()?
        .context("the admin endpoint is off (admin.listen is empty)")?;
    Ok(format!("http://{addr}"))
}

/// GET or POST `path`; returns the JSON answer (or the text, for `/metrics`).
pub(crate) fn call(
    config: &Config,
    args: &ApiArgs,
    post: bool,
    path: &str,
) -> anyhow::Result<String> {
    let base = base(config, args)?;
    let token = config.admin.token.as_deref();
    let (status, body) = if post {
        mta::admin::client::post(&base, path, token, b"")?
    } else {
        mta::admin::client::get(&base, path, token)?
    };
    if !(200..300).contains(&status) {
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        anyhow::bail!("{status}: {}", message.trim_end());
    }
    Ok(body)
}

pub(crate) fn json(body: &str) -> anyhow::Result<Value> {
    serde_json::from_str(body).context("the answer is not JSON")
}

/// Prints an answer as indented `key: value` lines.
fn print_value(v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Object(_) | Value::Array(_) => {
                        println!("{pad}{k}:");
                        print_value(v, indent + 2);
                    }
                    _ => println!("{pad}{k}: {}", scalar(v)),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Object(_) | Value::Array(_) => {
                        println!("{pad}- [{i}]");
                        print_value(item, indent + 2);
                    }
                    _ => println!("{pad}- {}", scalar(item)),
                }
            }
        }
        _ => println!("{pad}{}", scalar(v)),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// `mta queue shape` (`summary`): recipients by domain and age, like `qshape`.
pub fn summary(config: &Config, args: &ApiArgs, path: &str) -> anyhow::Result<()> {
    let body = call(config, args, false, path)?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let v = json(&body)?;
    let labels: Vec<String> = v["age_buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(scalar)
        .collect();
    print!("{:<32} {:>8}", "domain", "total");
    for l in &labels {
        print!(" {l:>7}");
    }
    println!();
    let rows = v["domains"].as_array().cloned().unwrap_or_default();
    for row in &rows {
        print!(
            "{:<32} {:>8}",
            scalar(&row["domain"]),
            scalar(&row["recipients"])
        );
        for n in row["ages"].as_array().into_iter().flatten() {
            print!(" {:>7}", scalar(n));
        }
        println!();
    }
    println!(
        "{} messages, {} recipients, {} bytes",
        scalar(&v["messages"]),
        scalar(&v["recipients"]),
        scalar(&v["bytes"])
    );
    Ok(())
}

/// Any other command: the answer as `key: value` lines (or JSON).
pub fn simple(config: &Config, args: &ApiArgs, post: bool, path: &str) -> anyhow::Result<()> {
    let body = call(config, args, post, path)?;
    if args.json || path == "/metrics" {
        print!("{body}");
        if !body.ends_with('\n') {
            println!();
        }
        return Ok(());
    }
    print_value(&json(&body)?, 0);
    Ok(())
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
