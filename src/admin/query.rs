//! What an admin request's query says: which queued messages it selects, and who asks.
//!
//! What it does: reads the selection parameters (`id` (repeatable), `domain`, `sender`,
//! `min_age`, `state`, `all`) into a [`Select`], and names the asker for the event log from
//! the peer's address and whether it presented the bearer token.
//!
//! What it does not do: no access decision (the endpoint admits or refuses a request before
//! this runs), no acting.
//!
//! Invariants: a malformed value is an error naming the parameter, never ignored; at most
//! [`MAX_IDS`] ids per request.

use std::str::FromStr;

use super::http::Request;
use crate::delivery::select::{MessageState, Select, Sender};
use crate::delivery::views::Actor;
use crate::spool::QueueId;

/// The most queue ids one request may name.
pub const MAX_IDS: usize = 10_000;

/// The selection of a request; with `default_all`, no criterion means every message.
pub fn select(req: &Request, default_all: bool) -> Result<Select, String> {
    let mut s = Select::default();
    for (k, v) in &req.query {
        match k.as_str() {
            "id" => {
                if s.ids.len() >= MAX_IDS {
                    return Err(format!("at most {MAX_IDS} ids"));
                }
                let id = QueueId::from_str(v.trim())
                    .map_err(|_| format!("id: {v:?} is not a queue id (16 hex digits)"))?;
                s.ids.push(id.0);
            }
            "domain" => s.domain = Some(v.trim().trim_start_matches('@').to_ascii_lowercase()),
            "sender" => s.sender = Some(Sender::parse(v)),
            "min_age" => {
                let d = humantime::parse_duration(v.trim()).map_err(|e| format!("min_age: {e}"))?;
                s.min_age = Some(d);
            }
            "state" => {
                s.state = Some(
                    MessageState::parse(v.trim())
                        .ok_or_else(|| format!("state: {v:?} is not active, deferred or held"))?,
                );
            }
            "all" => s.all = matches!(v.as_str(), "" | "1" | "true" | "yes"),
            _ => {}
        }
    }
    if default_all && !s.is_given() {
        s.all = true;
    }
    if !s.is_given() {
        return Err("say which messages: id, domain, sender, min_age, state or all".to_owned());
    }
    Ok(s)
}

/// Who asks: `<address> token` when the request carries the configured bearer token
/// (`by_token`), else `<address> network` (let in by `admin.allow`).
pub fn actor(req: &Request, by_token: bool) -> Actor {
    let how = if by_token { "token" } else { "network" };
    Actor(format!("{} {how}", req.peer.ip().to_canonical()))
}
