//! The thread that hears what other nodes decided: it reads the cluster's suspension table
//! once per connection, then listens on the cluster's channel and applies every suspension,
//! resumption and reduction another node publishes to this host's registry.
//!
//! What it does: connect (with the configured timeout), apply the stored suspensions still in
//! force (and remove the expired ones), subscribe, apply each published note whose node is
//! not this one. A lost connection is retried with a doubling backoff (100 ms to 5 s), and the
//! table is read again, so nothing published during the gap is missed.
//!
//! What it does not do: no publishing (the agent publishes), no limits.
//!
//! Invariants: a note is applied without being published again (no echo between nodes); a
//! malformed line is ignored; the thread checks its stop flag at least once a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Keys, Settings, wire};
use crate::queue::{HostLimits, Note, instant_of_ms, unix_ms};

/// Listens until `stop` is set.
pub fn run(settings: Settings, host: Arc<HostLimits>, stop: Arc<AtomicBool>) {
    let keys = Keys::new(&settings.prefix);
    let mut backoff = Duration::from_millis(100);
    while !stop.load(Ordering::Acquire) {
        match listen(&settings, &keys, &host, &stop) {
            Ok(()) => return,
            Err(e) => {
                tracing::debug!(error = %e, "cluster channel lost; listening again");
                let until = std::time::Instant::now() + backoff;
                while std::time::Instant::now() < until && !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn listen(
    settings: &Settings,
    keys: &Keys,
    host: &HostLimits,
    stop: &AtomicBool,
) -> redis::RedisResult<()> {
    let client = redis::Client::open(settings.redis.as_str())?;
    let mut conn = client.get_connection_with_timeout(settings.timeout)?;
    conn.set_read_timeout(Some(settings.timeout))?;
    conn.set_write_timeout(Some(settings.timeout))?;
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe(&keys.channel)?;
    // Subscribed first, then the table: a note published in between is seen twice at worst.
    sync(settings, keys, host, &client)?;
    pubsub.set_read_timeout(Some(Duration::from_secs(1)))?;
    while !stop.load(Ordering::Acquire) {
        let msg = match pubsub.get_message() {
            Ok(m) => m,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e),
        };
        let Ok(line) = std::str::from_utf8(msg.get_payload_bytes()) else {
            continue;
        };
        if let Some(p) = wire::decode(line)
            && p.node != settings.node
        {
            apply(host, &p.node, p.note);
        }
    }
    Ok(())
}

/// Applies the suspensions stored in the cluster's table (removing the expired ones).
fn sync(
    settings: &Settings,
    keys: &Keys,
    host: &HostLimits,
    client: &redis::Client,
) -> redis::RedisResult<()> {
    let mut conn = client.get_connection_with_timeout(settings.timeout)?;
    conn.set_read_timeout(Some(settings.timeout))?;
    let table: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(&keys.suspensions)
        .query(&mut conn)?;
    let now_ms = unix_ms(std::time::Instant::now());
    let mut expired = Vec::new();
    for (key, value) in &table {
        match wire::read_suspension(value) {
            Some((until, node, reason)) if until > now_ms => apply(
                host,
                node,
                Note::Suspend {
                    key: key.clone(),
                    until_ms: until,
                    reason: reason.to_owned(),
                },
            ),
            _ => expired.push(key.clone()),
        }
    }
    if !expired.is_empty() {
        redis::cmd("HDEL")
            .arg(&keys.suspensions)
            .arg(&expired)
            .exec(&mut conn)?;
    }
    Ok(())
}

/// Applies a decision of node `node` to this host.
pub fn apply(host: &HostLimits, node: &str, note: Note) {
    match note {
        Note::Suspend {
            key,
            until_ms,
            reason,
        } => {
            let reason = match reason.ends_with(')') && reason.contains("(node ") {
                true => reason,
                false => format!("{reason} (node {node})"),
            };
            tracing::info!(destination = %key, node, reason = %reason,
                "destination suspended by another node");
            host.entry(&key)
                .apply_suspension(instant_of_ms(until_ms), reason);
        }
        Note::Resume { key } => host.entry(&key).apply_resume(),
        Note::Reduce {
            key,
            rate,
            rule,
            value,
            since_ms,
        } => host
            .entry(&key)
            .apply_reduction(rate, rule, value, since_ms),
    }
}
