//! The publisher: sends this host's changes to the list to the cluster's Redis.
//!
//! What it does: asks the writer for the changes made here after the publish point (at most
//! [`BATCH`], read from the log), publishes them with one call of the publish script
//! (`wire::PUBLISH`), then tells the writer to move the publish point past them. A change
//! that lost to a newer one in Redis is answered with that one, which the writer applies
//! here. With nothing to publish it waits to be woken by the writer (or a second). When
//! Redis cannot be reached, the changes stay in the log, the thread retries with a backoff
//! from 100 ms doubling to 5 s, and the whole backlog goes out when Redis is back. On each
//! connection, and every [`CHECK_EVERY`] while idle, it checks that Redis knows this node
//! (`<prefix>suppression:nodes`); if not (Redis lost its data, or the node is new), the writer
//! is told to publish this host's changes again from the start of its log, and the node is
//! recorded.
//!
//! What it does not do: no reading of the stream (the subscriber does).
//!
//! Invariants: the publish point moves only after Redis answered for every change before it;
//! one call in flight at a time; memory is one batch.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use redis::{Connection, Script};

use super::{BATCH, Ctx, Health, wire};
use crate::suppression::writer::{Backlog, Request};

/// How often an idle publisher checks that Redis still knows this node.
const CHECK_EVERY: Duration = Duration::from_secs(10);

/// Publishes until stopped.
pub(super) fn run(ctx: &Ctx, wake: &Receiver<()>) {
    let script = Script::new(wire::PUBLISH);
    let mut health = Health::new(&ctx.stats.publisher_down, "publishing to the cluster");
    let mut conn: Option<Connection> = None;
    let mut checked = Instant::now();
    while !ctx.stopped() {
        if conn.is_none() {
            match open(ctx) {
                Ok(c) => {
                    conn = Some(c);
                    checked = Instant::now();
                }
                Err(e) => {
                    let wait = health.failed(&e);
                    ctx.pause(wait);
                    continue;
                }
            }
        }
        let backlog = match ctx.ask(|done| Request::Outbox { limit: BATCH, done }) {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "suppression list: cannot read the changes to publish");
                ctx.pause(Duration::from_secs(1));
                continue;
            }
            None => return,
        };
        if backlog.entries.is_empty() {
            if !backlog.more {
                let _ = wake.recv_timeout(Duration::from_secs(1));
            }
            // Idle: look now and then whether Redis still knows this node (it may have
            // restarted empty without this connection noticing).
            if checked.elapsed() >= CHECK_EVERY
                && let Some(c) = conn.as_mut()
            {
                checked = Instant::now();
                if let Err(e) = check(ctx, c) {
                    conn = None;
                    let wait = health.failed(&e);
                    ctx.pause(wait);
                }
            }
            continue;
        }
        let Some(c) = conn.as_mut() else { continue };
        match publish(ctx, &script, c, &backlog) {
            Ok(newer) => {
                health.ok();
                ctx.tell(Request::Published {
                    generation: backlog.generation,
                    end: backlog.end,
                });
                // Changes that lost: the newer ones Redis holds replace them here.
                ctx.apply(newer);
            }
            Err(e) => {
                conn = None;
                let wait = health.failed(&e);
                ctx.pause(wait);
            }
        }
    }
}

/// A connection, checked.
fn open(ctx: &Ctx) -> redis::RedisResult<Connection> {
    let mut conn = ctx.connect(ctx.settings.timeout)?;
    check(ctx, &mut conn)?;
    Ok(conn)
}

/// If Redis does not know this node (no field in the node hash: the node never published, or
/// Redis lost its data), the writer publishes all of this node's changes again; the node is
/// then recorded.
fn check(ctx: &Ctx, conn: &mut Connection) -> redis::RedisResult<()> {
    let known: i64 = redis::cmd("HEXISTS")
        .arg(&ctx.keys.nodes)
        .arg(&ctx.settings.node)
        .query(conn)?;
    ctx.stats.commands.fetch_add(1, Ordering::Relaxed);
    if known == 0 && ctx.ask(Request::Republish).is_some() {
        redis::cmd("HSET")
            .arg(&ctx.keys.nodes)
            .arg(&ctx.settings.node)
            .arg(crate::suppression::now_secs())
            .exec(conn)?;
        ctx.stats.commands.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Publishes a backlog in one call; the newer changes Redis held for those that lost.
fn publish(
    ctx: &Ctx,
    script: &Script,
    conn: &mut Connection,
    backlog: &Backlog,
) -> redis::RedisResult<Vec<(crate::suppression::Entry, bool)>> {
    let mut call = script.prepare_invoke();
    call.key(&ctx.keys.stream)
        .key(&ctx.keys.state)
        .arg(wire::STREAM_LEN);
    for e in &backlog.entries {
        call.arg(wire::field(e))
            .arg(e.at)
            .arg(wire::value(e, &ctx.settings.node));
    }
    let answers: Vec<Vec<u8>> = call.invoke(conn)?;
    ctx.stats.commands.fetch_add(1, Ordering::Relaxed);
    let won = answers.iter().filter(|a| a.is_empty()).count();
    ctx.stats.published.fetch_add(won as u64, Ordering::Relaxed);
    Ok(answers
        .iter()
        .filter_map(|a| wire::decode(a))
        .map(|(node, e)| (e, node == ctx.settings.node))
        .collect())
}
