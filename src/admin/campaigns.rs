//! The admin endpoint's campaign routes: statistics, and pausing and resuming campaigns and
//! tenants.
//!
//! What it does: `GET /stats?by=campaign|tenant|provider|source&since=1h` (the rows of one
//! kind with their counters and rates, over a window of at most a day or since start),
//! `GET /campaigns?kind=campaign|tenant` (every paused one and every one with counts: its
//! pause, threshold, counts since start and since it was last resumed), `GET
//! /campaigns/<name>?kind=`, and `POST /campaigns/<name>/pause?kind=&reason=` and
//! `POST /campaigns/<name>/resume?kind=`, each change written to the event log with who asked
//! (`CampaignPaused`, `CampaignResumed`).
//!
//! What it does not do: no access decision (the endpoint's), no counting, no scheduling (each
//! shard's queue parks and routes again within a second of a change).
//!
//! Invariants: a name that is not a campaign or tenant name is a `400`; a pause is answered
//! once it is on stable storage.

use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::http::{Request, Response};
use crate::campaigns::counts::{CLASSES, NAMES};
use crate::campaigns::table::MAX_WINDOW_MINUTES;
use crate::campaigns::{Campaigns, Counts, Dim, Pause};
use crate::eventlog::EventLog;
use crate::shaping::BounceClass;

/// The host's campaign state and the event log its changes are written to (shard 0's).
pub struct Routes {
    /// The host's state.
    pub campaigns: Arc<Campaigns>,
    /// Where operators' changes are logged.
    pub log: Rc<EventLog>,
}

fn bad(e: impl Into<String>) -> Response {
    Response::json(400, &json!({"error": e.into()}))
}

/// Counters and rates as the API shows them.
pub fn counts_json(c: &Counts) -> Value {
    let mut m = Map::new();
    for (i, name) in NAMES.iter().enumerate() {
        m.insert((*name).to_owned(), json!(c.0[i]));
    }
    let classes: Map<String, Value> = BounceClass::ALL
        .iter()
        .filter(|k| c.0[CLASSES + k.index()] > 0)
        .map(|k| (k.as_str().to_owned(), json!(c.0[CLASSES + k.index()])))
        .collect();
    m.insert("bounced_by_class".into(), Value::Object(classes));
    m.insert("delivery_rate".into(), json!(c.delivery_rate()));
    m.insert("bounce_rate".into(), json!(c.bounce_rate()));
    m.insert("complaint_rate".into(), json!(c.complaint_rate()));
    Value::Object(m)
}

fn pause_json(p: &Pause) -> Value {
    json!({"reason": p.reason, "by": p.by, "since_unix": p.since_unix})
}

/// `campaign` (default) or `tenant`.
fn kind(req: &Request) -> Result<Dim, Response> {
    match req.query_param("kind").unwrap_or("campaign") {
        "campaign" => Ok(Dim::Campaign),
        "tenant" => Ok(Dim::Tenant),
        k => Err(bad(format!("kind: {k:?} is campaign or tenant"))),
    }
}

/// The window of `since` in minutes (None: since start).
fn window(req: &Request) -> Result<Option<u64>, Response> {
    let Some(v) = req.query_param("since") else {
        return Ok(None);
    };
    let d = humantime::parse_duration(v.trim()).map_err(|e| bad(format!("since: {e}")))?;
    let minutes = d.as_secs().div_ceil(60).max(1);
    if minutes > MAX_WINDOW_MINUTES {
        return Err(bad(
            "since: at most 24h (per minute for the last hour, per hour for the last day)",
        ));
    }
    Ok(Some(minutes))
}

impl Routes {
    /// Answers `/stats` and `/campaigns...`; None for another path.
    pub fn route(
        &self,
        req: &Request,
        method: &str,
        segments: &[&str],
        by: &str,
    ) -> Option<Response> {
        let now = SystemTime::now();
        Some(match (method, segments) {
            ("GET", ["stats"]) => self.stats(req, now),
            ("GET", ["campaigns"]) => match kind(req) {
                Ok(dim) => {
                    let items = self.items(dim, None, now);
                    Response::json(200, &json!({"kind": dim.as_str(), "items": items}))
                }
                Err(r) => r,
            },
            ("GET", ["campaigns", name]) => match kind(req) {
                Ok(dim) => match self.items(dim, Some(name), now).pop() {
                    Some(item) => Response::json(200, &item),
                    None => Response::json(
                        404,
                        &json!({"error": format!("no {} {name:?} is known", dim.as_str())}),
                    ),
                },
                Err(r) => r,
            },
            ("POST", ["campaigns", name, verb @ ("pause" | "resume")]) => {
                let dim = match kind(req) {
                    Ok(d) => d,
                    Err(r) => return Some(r),
                };
                if !crate::campaigns::labels::valid(name.as_bytes()) {
                    return Some(bad(format!("{name:?} is not a {} name", dim.as_str())));
                }
                self.change(dim, name, *verb == "pause", req, by, now)
            }
            _ => return None,
        })
    }

    fn stats(&self, req: &Request, now: SystemTime) -> Response {
        let by = req.query_param("by").unwrap_or("campaign");
        let Some(dim) = Dim::parse(by) else {
            return bad(format!(
                "by: {by:?} is campaign, tenant, provider, source or from_domain"
            ));
        };
        let window = match window(req) {
            Ok(w) => w,
            Err(r) => return r,
        };
        let rows: Vec<Value> = self
            .campaigns
            .report(dim, window, now)
            .iter()
            .map(|(name, c)| {
                let mut v = counts_json(c);
                v["name"] = json!(name);
                if matches!(dim, Dim::Campaign | Dim::Tenant) {
                    v["paused"] = json!(self.campaigns.pauses().get(dim, name).is_some());
                }
                v
            })
            .collect();
        Response::json(
            200,
            &json!({"by": dim.as_str(), "since_minutes": window, "rows": rows}),
        )
    }

    /// Every known campaign (or tenant) of kind `dim`, or only `only`.
    fn items(&self, dim: Dim, only: Option<&str>, now: SystemTime) -> Vec<Value> {
        let mut names: Vec<String> = self
            .campaigns
            .report(dim, None, now)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for (d, n) in self.campaigns.pauses().keys() {
            if d == dim && !names.contains(&n) {
                names.push(n);
            }
        }
        names.sort();
        if let Some(o) = only {
            names.retain(|n| n == o);
        }
        let totals: std::collections::HashMap<String, Counts> =
            self.campaigns.report(dim, None, now).into_iter().collect();
        names
            .iter()
            .map(|n| {
                let total = totals.get(n).copied().unwrap_or_default();
                json!({
                    "name": n,
                    "kind": dim.as_str(),
                    "paused": self.campaigns.pauses().get(dim, n).as_ref().map(pause_json),
                    "threshold": self.campaigns.threshold_text(dim, n),
                    "total": counts_json(&total),
                    "since_resume": self.campaigns.since_resume(dim, n).as_ref().map(counts_json),
                })
            })
            .collect()
    }

    fn change(
        &self,
        dim: Dim,
        name: &str,
        pause: bool,
        req: &Request,
        by: &str,
        now: SystemTime,
    ) -> Response {
        let kind = dim.as_str();
        let result = match pause {
            true => {
                let reason = req.query_param("reason").unwrap_or("paused by an operator");
                self.campaigns
                    .pause(dim, name, reason, by, now)
                    .map(|changed| changed.then(|| reason.to_owned()))
            }
            false => self
                .campaigns
                .resume(dim, name)
                .map(|was| was.map(|p| format!("was paused: {}", p.reason))),
        };
        match result {
            Ok(Some(reason)) => {
                self.log.campaign(pause, kind, name, &reason, by);
                Response::json(
                    200,
                    &json!({"kind": kind, "name": name, "paused": pause, "changed": true}),
                )
            }
            Ok(None) => Response::json(
                200,
                &json!({"kind": kind, "name": name, "paused": pause, "changed": false}),
            ),
            Err(e) => Response::json(503, &json!({"error": e.to_string()})),
        }
    }
}
