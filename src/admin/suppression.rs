//! The admin endpoint's suppression routes.
//!
//! What it does: `GET /suppression` (a page of the live entries: `limit`, `cursor`,
//! `contains`), `GET /suppression/check?address=` (whether and why one address is listed),
//! `POST /suppression/add` (`address`, `reason`, `expires` as a duration, `tenant`),
//! `POST /suppression/remove` (`address`, `tenant`) and `POST /suppression/import` (a body of
//! lines: an address, optionally followed by a comma and a reason, or a JSON object as
//! `export` prints them). Each change is answered once it is on stable storage, and written to
//! the event log with who asked: a `Suppression` event per address added or removed, one
//! `Operator` event per import.
//!
//! What it does not do: no access decision (the endpoint's), no storage (the list's).
//!
//! Invariants: an address or tenant that cannot be listed is a `400` naming it, never
//! stored; a page holds at most [`MAX_PAGE`] entries; an import body is bounded by the
//! endpoint's `MAX_BODY` (the command line sends a large file in parts).

use std::rc::Rc;
use std::sync::Arc;

use serde_json::{Value, json};

use super::http::{Request, Response};
use crate::eventlog::{EventLog, Operator, Suppression as Event};
use crate::suppression::address::{self, valid, valid_tenant};
use crate::suppression::{Entry, Kind, Op, Suppression, normalise, now_secs};

/// The most entries one page holds.
pub const MAX_PAGE: usize = 10_000;

/// The list and the event log its changes are written to (shard 0's).
pub struct Routes {
    /// The host's list.
    pub list: Arc<Suppression>,
    /// Where operators' changes are logged.
    pub log: Rc<EventLog>,
}

fn bad(e: impl Into<String>) -> Response {
    Response::json(400, &json!({"error": e.into()}))
}

fn failed(e: impl std::fmt::Display) -> Response {
    Response::json(503, &json!({"error": e.to_string()}))
}

/// An entry as answers and exports show it.
pub fn entry_json(e: &Entry) -> Value {
    json!({
        "address": e.address,
        "tenant": e.tenant,
        "kind": e.kind.as_str(),
        "reason": e.reason,
        "by": e.by,
        "at_unix": e.at,
        "expires_unix": e.expires,
    })
}

/// The tenant of a request (`tenant`, default the global list), checked.
fn tenant(req: &Request) -> Result<String, Response> {
    let t = req.query_param("tenant").unwrap_or("").trim();
    match valid_tenant(t) {
        true => Ok(t.to_owned()),
        false => Err(bad(format!(
            "tenant: {t:?} is not a tenant name (printable, no blanks, at most {} octets)",
            address::MAX_TENANT
        ))),
    }
}

/// The address of a request, normalised and checked.
fn address_of(req: &Request) -> Result<String, Response> {
    let a = req.query_param("address").unwrap_or("");
    match valid(a) {
        true => Ok(normalise(a)),
        false => Err(bad(format!("address: {a:?} cannot be listed"))),
    }
}

/// An expiry (`expires`, a duration from now) as unix seconds, 0 = never.
fn expiry(value: Option<&str>, now: u64) -> Result<u64, String> {
    match value.map(str::trim) {
        None | Some("") | Some("never") => Ok(0),
        Some(v) => {
            let d = humantime::parse_duration(v).map_err(|e| format!("expires: {e}"))?;
            Ok(now.saturating_add(d.as_secs().max(1)))
        }
    }
}

impl Routes {
    /// Routes `/suppression...`; None when the path is not one of them.
    pub async fn route(&self, req: &Request, segments: &[&str], by: &str) -> Option<Response> {
        let post = req.method == super::http::Method::POST;
        Some(match (post, segments) {
            (false, ["suppression"]) | (false, ["suppression", "export"]) => self.page(req).await,
            (false, ["suppression", "check"]) => self.check(req),
            (true, ["suppression", "add"]) => self.add(req, by).await,
            (true, ["suppression", "remove"]) => self.remove(req, by).await,
            (true, ["suppression", "import"]) => self.import(req, by).await,
            _ => return None,
        })
    }

    async fn page(&self, req: &Request) -> Response {
        let limit = match req.query_param("limit").map(str::parse::<usize>) {
            None => 1000,
            Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
            Some(_) => return bad(format!("limit is a number from 1 to {MAX_PAGE}")),
        };
        let contains = req.query_param("contains").unwrap_or("");
        match self
            .list
            .page(req.query_param("cursor"), limit, contains)
            .await
        {
            Ok((page, next)) => Response::json(
                200,
                &json!({
                    "listed": self.list.len(),
                    "entries": page.entries.iter().map(entry_json).collect::<Vec<_>>(),
                    "next": next,
                }),
            ),
            Err(e) => bad(e.to_string()),
        }
    }

    fn check(&self, req: &Request) -> Response {
        let (address, tenant) = match (address_of(req), tenant(req)) {
            (Ok(a), Ok(t)) => (a, t),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        let kind = self.list.check(&tenant, &address);
        Response::json(
            200,
            &json!({"address": address, "tenant": tenant, "listed": kind.is_some(),
                    "kind": kind.map(Kind::as_str)}),
        )
    }

    async fn add(&self, req: &Request, by: &str) -> Response {
        let (address, tenant) = match (address_of(req), tenant(req)) {
            (Ok(a), Ok(t)) => (a, t),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        let at = now_secs();
        let expires = match expiry(req.query_param("expires"), at) {
            Ok(x) => x,
            Err(e) => return bad(e),
        };
        let entry = Entry {
            op: Op::Add,
            kind: Kind::Manual,
            tenant,
            address,
            reason: req.query_param("reason").unwrap_or("").to_owned(),
            by: by.to_owned(),
            at,
            expires,
        };
        match self.list.write(vec![entry.clone()]).await {
            Ok(was) => {
                self.logged("add", &entry);
                self.log.written().await;
                let mut v = entry_json(&entry);
                v["was_listed"] = json!(was.first().copied().unwrap_or(false));
                Response::json(200, &v)
            }
            Err(e) => failed(e),
        }
    }

    async fn remove(&self, req: &Request, by: &str) -> Response {
        let (address, tenant) = match (address_of(req), tenant(req)) {
            (Ok(a), Ok(t)) => (a, t),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        let entry = Entry {
            op: Op::Remove,
            kind: Kind::Manual,
            tenant,
            address,
            reason: String::new(),
            by: by.to_owned(),
            at: now_secs(),
            expires: 0,
        };
        match self.list.write(vec![entry.clone()]).await {
            Ok(was) => {
                let removed = was.first().copied().unwrap_or(false);
                if removed {
                    self.logged("remove", &entry);
                    self.log.written().await;
                }
                Response::json(200, &json!({"address": entry.address, "removed": removed}))
            }
            Err(e) => failed(e),
        }
    }

    async fn import(&self, req: &Request, by: &str) -> Response {
        let default_tenant = match tenant(req) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let Ok(text) = std::str::from_utf8(&req.body) else {
            return bad("the body is not UTF-8");
        };
        let at = now_secs();
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line, &default_tenant, by, at) {
                Ok(e) => entries.push(e),
                Err(e) => return bad(format!("line {}: {e}", n + 1)),
            }
        }
        let total = entries.len();
        match self.list.write(entries).await {
            Ok(was) => {
                let new = was.iter().filter(|w| !**w).count();
                self.log.operator(&Operator {
                    action: "suppression_import",
                    target: &format!("{total} addresses"),
                    by,
                    messages: 0,
                    recipients: 0,
                });
                self.log.written().await;
                Response::json(200, &json!({"imported": total, "new": new}))
            }
            Err(e) => failed(e),
        }
    }

    fn logged(&self, action: &str, e: &Entry) {
        self.log.suppression(&Event::of(action, e));
    }
}

/// One import line: `address[,reason]`, or an exported JSON object (its address, tenant,
/// kind, reason and expiry are kept; the time and who are the import's).
fn parse_line(line: &str, tenant: &str, by: &str, at: u64) -> Result<Entry, String> {
    let mut e = Entry {
        op: Op::Add,
        kind: Kind::Manual,
        tenant: tenant.to_owned(),
        address: String::new(),
        reason: String::new(),
        by: by.to_owned(),
        at,
        expires: 0,
    };
    if line.starts_with('{') {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        e.address = v["address"].as_str().unwrap_or("").to_owned();
        if let Some(t) = v["tenant"].as_str() {
            e.tenant = t.to_owned();
        }
        if let Some(k) = v["kind"].as_str() {
            e.kind = Kind::from_name(k).ok_or_else(|| format!("kind {k:?} is not known"))?;
        }
        e.reason = v["reason"].as_str().unwrap_or("").to_owned();
        e.expires = v["expires_unix"].as_u64().unwrap_or(0);
    } else {
        let (a, reason) = line.split_once(',').unwrap_or((line, ""));
        e.address = a.to_owned();
        e.reason = reason.trim().to_owned();
    }
    if !valid(&e.address) {
        return Err(format!("{:?} cannot be listed", e.address));
    }
    if !valid_tenant(&e.tenant) {
        return Err(format!("tenant {:?} is not a tenant name", e.tenant));
    }
    e.address = normalise(&e.address);
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_lines() {
        let e = parse_line("User@X.example, asked by phone", "", "me", 5).unwrap();
        assert_eq!(
            (e.address.as_str(), e.reason.as_str()),
            ("user@x.example", "asked by phone")
        );
        let j = r#"{"address":"a@b.example","tenant":"acme","kind":"hard_bounce","reason":"550","expires_unix":9}"#;
        let e = parse_line(j, "", "me", 5).unwrap();
        assert_eq!(
            (e.tenant.as_str(), e.kind, e.expires),
            ("acme", Kind::HardBounce, 9)
        );
        assert!(parse_line("<>", "", "me", 5).is_err());
        assert!(parse_line(r#"{"address":"a@b","kind":"x"}"#, "", "me", 5).is_err());
        assert!(parse_line("{nope", "", "me", 5).is_err());
    }

    #[test]
    fn expiries() {
        assert_eq!(expiry(None, 100), Ok(0));
        assert_eq!(expiry(Some("never"), 100), Ok(0));
        assert_eq!(expiry(Some("1h"), 100), Ok(3700));
        assert!(expiry(Some("soon"), 100).is_err());
    }
}
