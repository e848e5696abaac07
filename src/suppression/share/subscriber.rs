//! The subscriber: brings every node's changes to the list into this host's list.
//!
//! What it does: reads the cluster's stream of changes from its position (`XREAD`, at most
//! [`BATCH`] at a time, waiting up to [`BLOCK`]) and hands them to the writer, which applies
//! those that are newer than what the list here holds and writes them to the log like any
//! change; then it saves its position in `<dir>/cluster-position`. Its own changes come back
//! too: they change nothing unless a change from another node, older in time but read
//! first, replaced them here in between. When it has no position (first join), or the stream
//! no longer reaches back to it (trimmed, or Redis lost its data), it resynchronises: it
//! reads the hash of every address's latest change in pages ([`BATCH`] a page) and applies
//! them the same way, then follows the stream from the last change that was in it before
//! the read. A resync removes nothing that the hash does not hold: an entry only this host
//! has stays (it is a change not yet published, which the publisher sends next).
//!
//! What it does not do: no publishing (the publisher does).
//!
//! Invariants: the position is saved only after the writer has written (and synced) every
//! change before it, so a crash reads some changes twice (no change the second time), never
//! skips one; a lost connection is retried with a backoff from 100 ms doubling to 5 s.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::{Connection, Value};

use super::{BATCH, BLOCK, Ctx, Health, wire};

const POSITION: &str = "cluster-position";

/// Follows the cluster's changes until stopped.
pub(super) fn run(ctx: &Ctx) {
    let mut health = Health::new(&ctx.stats.subscriber_down, "reading the cluster's changes");
    let mut position = load(ctx);
    while !ctx.stopped() {
        let result = ctx
            .connect(ctx.settings.timeout + BLOCK)
            .and_then(|mut conn| follow(ctx, &mut conn, &mut position, &mut health));
        match result {
            Ok(true) => continue,
            Ok(false) => return,
            Err(e) => {
                let wait = health.failed(&e);
                ctx.pause(wait);
            }
        }
    }
}

/// Follows the stream on `conn`; Ok(true) to start again (the writer refused a batch),
/// Ok(false) when stopped.
fn follow(
    ctx: &Ctx,
    conn: &mut Connection,
    position: &mut Option<String>,
    health: &mut Health<'_>,
) -> redis::RedisResult<bool> {
    let behind = match position.as_deref() {
        None => true,
        Some(p) => trimmed(ctx, conn, p)?,
    };
    if behind {
        match resync(ctx, conn)? {
            Some(last) => {
                save(ctx, &last);
                *position = Some(last);
            }
            None => return Ok(!ctx.stopped()),
        }
    }
    health.ok();
    while !ctx.stopped() {
        let from = position.as_deref().unwrap_or("0-0");
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&ctx.keys.stream)
            .arg(from)
            .query(conn)?;
        ctx.stats.commands.fetch_add(1, Ordering::Relaxed);
        let entries = wire::read_entries(&reply);
        let Some((last, _)) = entries.last() else {
            continue;
        };
        let last = last.clone();
        let changes = entries
            .iter()
            .filter_map(|(_, v)| wire::decode(v))
            .map(|(node, e)| (e, node == ctx.settings.node))
            .collect();
        if !ctx.apply(changes) {
            ctx.pause(Duration::from_secs(1));
            return Ok(!ctx.stopped());
        }
        save(ctx, &last);
        *position = Some(last);
    }
    Ok(false)
}

/// Whether changes after `position` may have left the stream: the stream starts after it,
/// or is empty though it gave ids past it (trimmed), or an id past it was deleted.
fn trimmed(ctx: &Ctx, conn: &mut Connection, position: &str) -> redis::RedisResult<bool> {
    let exists: i64 = redis::cmd("EXISTS").arg(&ctx.keys.stream).query(conn)?;
    ctx.stats.commands.fetch_add(1, Ordering::Relaxed);
    if exists == 0 {
        return Ok(false);
    }
    let reply: Value = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(&ctx.keys.stream)
        .query(conn)?;
    ctx.stats.commands.fetch_add(1, Ordering::Relaxed);
    let Some(at) = wire::id(position) else {
        return Ok(true);
    };
    let info = wire::StreamInfo::of(&reply);
    let gone = match info.first {
        Some(first) => first > at,
        None => info.last.is_some_and(|last| last > at),
    };
    Ok(gone || info.max_deleted.is_some_and(|deleted| deleted > at))
}

/// Applies every address's latest change from the hash; the id of the last change in the
/// stream before the read (None when stopped or the writer refused).
fn resync(ctx: &Ctx, conn: &mut Connection) -> redis::RedisResult<Option<String>> {
    let reply: Value = redis::cmd("XREVRANGE")
        .arg(&ctx.keys.stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(conn)?;
    ctx.stats.commands.fetch_add(1, Ordering::Relaxed);
    let last = wire::range_entries(&reply)
        .first()
        .map_or_else(|| "0-0".to_owned(), |(id, _)| id.clone());
    let (mut cursor, mut read) = (0u64, 0usize);
    loop {
        let reply: Value = redis::cmd("HSCAN")
            .arg(&ctx.keys.state)
            .arg(cursor)
            .arg("COUNT")
            .arg(BATCH)
            .query(conn)?;
        ctx.stats.commands.fetch_add(1, Ordering::Relaxed);
        let Some((next, values)) = wire::scan_page(&reply) else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "an HSCAN reply of an unexpected shape",
            )));
        };
        read += values.len();
        let changes = values
            .iter()
            .filter_map(|v| wire::decode(v))
            .map(|(node, e)| (e, node == ctx.settings.node))
            .collect();
        if !ctx.apply(changes) {
            return Ok(None);
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    tracing::info!(
        addresses = read,
        "suppression list: read the cluster's whole list"
    );
    Ok(Some(last))
}

/// The saved position, if it belongs to this cluster's prefix.
fn load(ctx: &Ctx) -> Option<String> {
    let text = std::fs::read_to_string(ctx.dir.join(POSITION)).ok()?;
    let (prefix, id) = text.trim_end().rsplit_once(' ')?;
    (prefix == ctx.settings.prefix && wire::id(id).is_some()).then(|| id.to_owned())
}

/// Saves the position (not synced: one lost in a crash reads some changes again).
fn save(ctx: &Ctx, id: &str) {
    let path = ctx.dir.join(POSITION);
    let tmp = path.with_extension("new");
    let saved = std::fs::write(&tmp, format!("{} {id}\n", ctx.settings.prefix))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = saved {
        tracing::warn!(error = %e, "suppression list: cannot save the cluster position");
    }
}
