//! `mta trace`: the story of a message from the event log, by queue id, Message-ID or
//! recipient.
//!
//! What it does: reads every shard's event log in `log.dir` (rotated files first, oldest
//! first, then the live ones), line by line, and keeps the events of the messages the query
//! names: a queue id; a Message-ID (from `Reception` events); a recipient (from `Reception`
//! and delivery events). A message once named brings all its later events along. Prints them
//! in time order, or as the JSON lines with `--json`.
//!
//! What it does not do: no asking the running MTA (the log is enough, and it works while the
//! MTA is stopped), no following of a DSN to the message it reports on.
//!
//! Invariants: memory is bounded (at most [`MAX_EVENTS`] events kept, lines over
//! [`MAX_LINE`] skipped); a line that is not JSON is skipped, never fatal.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::Value;

use mta::config::Config;

/// The most events one trace keeps.
pub const MAX_EVENTS: usize = 100_000;
/// The longest event line read.
pub const MAX_LINE: usize = 1 << 20;

/// What the query names.
enum Query {
    QueueId(String),
    MessageId(String),
    Recipient(String),
}

impl Query {
    fn parse(text: &str) -> Query {
        let t = text.trim();
        if t.len() == 16 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Query::QueueId(t.to_ascii_uppercase());
        }
        if t.starts_with('<') && t.ends_with('>') {
            return Query::MessageId(t.to_owned());
        }
        Query::Recipient(t.to_ascii_lowercase())
    }

    /// Whether event `e` names the message itself (not only through its queue id).
    fn names(&self, e: &Value) -> bool {
        match self {
            Query::QueueId(id) => e["queue_id"]
                .as_str()
                .is_some_and(|q| q.eq_ignore_ascii_case(id)),
            Query::MessageId(m) => e["message_id"].as_str() == Some(m.as_str()),
            Query::Recipient(r) => {
                let same = |v: &Value| v.as_str().is_some_and(|x| x.eq_ignore_ascii_case(r));
                same(&e["recipient"])
                    || e["recipients"]
                        .as_array()
                        .is_some_and(|all| all.iter().any(same))
            }
        }
    }
}

/// The event-log files of `dir`, oldest first by last write.
fn log_files(dir: &Path, since: Option<SystemTime>) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<(SystemTime, PathBuf)> = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading log dir {}", dir.display()))?;
    for e in entries {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("delivery-") && name.ends_with(".jsonl")) {
            continue;
        }
        let modified = e.metadata()?.modified().unwrap_or(UNIX_EPOCH);
        if since.is_some_and(|s| modified < s) {
            continue;
        }
        files.push((modified, e.path()));
    }
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// Runs `mta trace`.
pub fn trace(config: &Config, query: &str, since: Option<&str>, json: bool) -> anyhow::Result<()> {
    let since = match since {
        Some(s) => {
            let d: Duration = humantime::parse_duration(s).context("--since")?;
            Some(SystemTime::now() - d)
        }
        None => None,
    };
    let since_ms = since.map(|s| s.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()));
    let q = Query::parse(query);
    let mut ids: HashSet<String> = HashSet::new();
    let mut events: Vec<(u64, String, Value)> = Vec::new();
    let mut truncated = false;
    for path in log_files(&config.log.dir, since)? {
        let file = std::fs::File::open(&path)?;
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = std::io::Read::take(&mut reader, MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if n > MAX_LINE {
                // Skip an over-long line, and its rest when it was cut.
                if line.last() != Some(&b'\n') {
                    skip_line(&mut reader)?;
                }
                continue;
            }
            let Ok(e) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            let time = e["time"].as_u64().unwrap_or(0);
            if since_ms.is_some_and(|s| u128::from(time) < s) {
                continue;
            }
            let id = e["queue_id"].as_str().unwrap_or("").to_ascii_uppercase();
            if q.names(&e) && !id.is_empty() {
                ids.insert(id.clone());
            }
            if !ids.contains(&id) {
                continue;
            }
            if events.len() >= MAX_EVENTS {
                truncated = true;
                break;
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            events.push((time, text, e));
        }
    }
    events.sort_by_key(|(t, _, _)| *t);
    for (time, text, e) in &events {
        if json {
            println!("{text}");
            continue;
        }
        println!("{}", describe(*time, e));
    }
    if truncated {
        eprintln!("mta: stopped at {MAX_EVENTS} events; narrow the query or use --since");
    }
    if events.is_empty() {
        anyhow::bail!("no event in {} matches {query}", config.log.dir.display());
    }
    Ok(())
}

/// Discards input up to and including the next newline, without holding it.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// One event as a line: time, type, queue id, and what matters for its type.
fn describe(time: u64, e: &Value) -> String {
    let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
    let when = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(time));
    let head = format!("{when}  {:<16}  {}", s("type"), s("queue_id"));
    match e["type"].as_str().unwrap_or("") {
        "Reception" => {
            let to: Vec<&str> = e["recipients"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            format!(
                "{head}  from <{}> to {} client {} message-id {}",
                s("sender"),
                to.join(", "),
                s("client"),
                s("message_id")
            )
        }
        _ => format!(
            "{head}  {} via {} {} {} {}",
            s("recipient"),
            s("destination"),
            s("host"),
            s("status"),
            s("reply")
        ),
    }
}
