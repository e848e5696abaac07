//! The JSON of the queue's typed answers, as the admin endpoint shows them.
//!
//! What it does: turns each shard's answer (a summary, a list, a message, a deletion, an
//! action, a suspension, a destination's state) into the JSON object the endpoint returns,
//! and merges the shards' summaries, lists and actions into one.
//!
//! What it does not do: no HTTP, no asking (the routes do both).
//!
//! Invariants: field names and shapes are the endpoint's documented ones (`docs/OPERATIONS.md`);
//! a shard that lacks what was asked gives JSON `null`, a name that routes nowhere an
//! `{"error": ...}` object.

use serde_json::{Value, json};

use crate::delivery::recorder::DeleteMode;
use crate::delivery::select::ListRow;
use crate::delivery::views::{
    AGE_BUCKETS, AGE_BUCKETS_MINUTES, Answer, DestinationView, MessageView, Summary,
};
use crate::queue::DestinationKey;

/// One shard's answer as JSON.
pub fn answer(a: &Answer) -> Value {
    match a {
        Answer::Summary(s) => summary_of_shard(s),
        Answer::Message(m) => m.as_ref().map_or(Value::Null, message),
        Answer::Deleted(d) => d.as_ref().map_or(Value::Null, |d| {
            json!({"id": d.id.to_string(), "recipients": d.recipients, "mode": match d.mode {
                DeleteMode::Bounce => "bounce",
                DeleteMode::Silent => "silent",
            }})
        }),
        Answer::Flushed(n) => json!({"flushed": n}),
        Answer::Suspended(Ok((acted, d))) => json!({
            "destination": acted.key.0,
            "suspended_seconds": d.as_secs(),
            "sources": keys(&acted.sources),
        }),
        Answer::Resumed(Ok(acted)) => {
            json!({"destination": acted.key.0, "resumed": true, "sources": keys(&acted.sources)})
        }
        Answer::Explained(Ok(v)) => destination(v),
        Answer::Suspended(Err(no)) | Answer::Resumed(Err(no)) | Answer::Explained(Err(no)) => {
            json!({"error": format!("{}: no route", no.0)})
        }
        Answer::List(rows, matched) => {
            json!({"matched": matched, "messages": rows.iter().map(list_row).collect::<Vec<_>>()})
        }
        Answer::Acted(a) => {
            json!({"messages": a.messages, "recipients": a.recipients, "error": a.error})
        }
        Answer::Paused(on) => json!({"paused": on}),
        Answer::Counters(_) | Answer::Body(_) => Value::Null,
    }
}

/// One row of `mta queue list`.
fn list_row(r: &ListRow) -> Value {
    let recipients: Vec<Value> = r
        .recipients
        .iter()
        .map(|(address, last)| json!({"address": address, "last_reply": last}))
        .collect();
    json!({
        "id": r.id.to_string(),
        "state": r.state.name(),
        "sender": r.sender,
        "size": r.size,
        "arrival_unix_ms": r.arrival_unix_ms,
        "age_seconds": r.age.as_secs(),
        "next_attempt_seconds": r.next_attempt_in.map(|d| d.as_secs()),
        "recipients": recipients,
    })
}

fn keys(keys: &[DestinationKey]) -> Vec<&str> {
    keys.iter().map(|k| k.0.as_str()).collect()
}

fn summary_of_shard(s: &Summary) -> Value {
    let domains: serde_json::Map<String, Value> = s
        .domains
        .iter()
        .map(|(d, (n, ages))| (d.clone(), json!({"recipients": n, "ages": ages.to_vec()})))
        .collect();
    json!({"messages": s.messages, "recipients": s.recipients, "bytes": s.bytes, "domains": domains})
}

/// The shards' summaries as one: totals, the age bucket labels, and the domains with the most
/// recipients first.
pub fn summary<'a>(shards: impl IntoIterator<Item = &'a Summary>) -> Value {
    let mut total = Summary::default();
    for s in shards {
        total.messages += s.messages;
        total.recipients += s.recipients;
        total.bytes += s.bytes;
        for (d, (n, ages)) in &s.domains {
            let e = total.domains.entry(d.clone()).or_default();
            e.0 += n;
            for (sum, a) in e.1.iter_mut().zip(ages) {
                *sum += a;
            }
        }
    }
    let mut rows: Vec<(String, u64, [u64; AGE_BUCKETS])> = total
        .domains
        .into_iter()
        .map(|(d, (n, ages))| (d, n, ages))
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(d, n, ages)| json!({"domain": d, "recipients": n, "ages": ages.to_vec()}))
        .collect();
    let labels: Vec<String> = AGE_BUCKETS_MINUTES
        .iter()
        .map(|m| format!("<{m}m"))
        .chain(std::iter::once(format!(
            ">={}m",
            AGE_BUCKETS_MINUTES[AGE_BUCKETS_MINUTES.len() - 1]
        )))
        .collect();
    json!({
        "messages": total.messages,
        "recipients": total.recipients,
        "bytes": total.bytes,
        "age_buckets": labels,
        "domains": rows,
    })
}

fn message(m: &MessageView) -> Value {
    let recipients: Vec<Value> = m
        .recipients
        .iter()
        .map(|r| {
            json!({
                "address": r.address,
                "final": r.done,
                "attempts": r.attempts,
                "last_reply": r.last_reply,
                "next_attempt_unix_ms": r.next_attempt_unix_ms,
            })
        })
        .collect();
    json!({
        "id": m.id.to_string(),
        "sender": m.sender,
        "size": m.size,
        "arrival_unix_ms": m.arrival_unix_ms,
        "age_seconds": m.age.as_secs(),
        "client": m.client,
        "auth": m.auth,
        "tls": m.tls,
        "recipients": recipients,
    })
}

/// One destination's view; a pool's sources' queues are listed under `sources`, each with
/// its `source` (name) and `source_address`.
fn destination(v: &DestinationView) -> Value {
    let sources: Vec<Value> = v.sources.iter().map(destination).collect();
    let Some(s) = &v.state else {
        return json!({
            "destination": v.key.0,
            "source": v.source,
            "source_address": v.source_address,
            "known": false,
            "hops": v.hops,
            "auth": v.auth,
            "tls_policy": v.tls_policy,
            "last_tls": v.last_tls,
            "why": v.why,
            "sources": sources,
            "parked_paused": v.parked,
        });
    };
    let suspended = s
        .suspended
        .as_ref()
        .map(|(left, reason)| json!({"seconds_left": left.as_secs(), "reason": reason}));
    json!({
        "destination": v.key.0,
        "source": v.source,
        "source_address": v.source_address,
        "known": true,
        "why": v.why,
        "parked_paused": v.parked,
        "ready_new": s.ready_new,
        "ready_retry": s.ready_retry,
        "ready_by_class": crate::priority::Class::ALL
            .iter()
            .map(|c| (c.name().to_owned(), json!(s.ready_by_class[c.index()])))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
        "connections": s.connections,
        "pending_opens": s.pending_opens,
        "host_connections": s.host_connections,
        "cluster_connections": s.cluster_connections,
        "suspended": suspended,
        "rate_tokens": s.tokens,
        "limits": {
            "max_connections": s.limits.max_connections,
            "max_messages_per_connection": s.limits.max_messages_per_connection,
            "max_recipients_per_transaction": s.limits.max_recipients_per_transaction,
            "rate": s.limits.rate.map(|r| format!("{}/{}s", r.messages, r.per.as_secs_f64())),
        },
        "last_error": v.last_error,
        "rule_in_force": v.rule,
        "hops": v.hops,
        "auth": v.auth,
        "tls_policy": v.tls_policy,
        "last_tls": v.last_tls,
        "sources": sources,
    })
}
