//! The admin endpoint's routes: metrics, queue and destination views and actions.
//!
//! What it does: answers `GET /metrics` (Prometheus text), `GET /queue` (queued recipients by
//! recipient or, with `?by=sender`, sender domain with an age histogram, like `qshape`),
//! `GET /queue/messages` (a selection, oldest first), `GET /queue/<id>`, `GET /queue/<id>/body`,
//! `POST /queue/hold|release|requeue|delete` (a selection; `?mode=bounce|silent`),
//! `POST /queue/flush` (`?destination=<domain or key>` for one), `POST /queue/<id>/delete`,
//! `POST /delivery/pause|resume`, `POST /destinations/<d>/suspend` (`?duration=1h`),
//! `POST /destinations/<d>/resume`, `GET /destinations/<d>`, `GET /webhooks` (each hook's
//! cursor, lag and errors, from the hooks' shared state) and `GET /health`, by asking every
//! shard (with who asks, for the event log) and merging the answers; `/suppression...` goes to
//! the suppression routes (`suppression`), which use the host's list directly, and `/stats` and
//! `/campaigns...` to the campaign routes (`campaigns`), which use the host's campaign state.
//!
//! What it does not do: no state of its own; no execution (each shard acts on its own queue).
//!
//! Invariants: every request but `GET /health` is refused with `403`, before its body is read,
//! unless the access policy in force (`admin.allow` and `admin.token`, as last reloaded)
//! permits it (allowed network or bearer token): the reads show
//! senders, recipients, client addresses and AUTH names and cause DNS lookups, so they are
//! guarded like the changes; answers are JSON except `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use serde_json::{Value, json};

use super::LiveAccess;
use super::control::{Actor, Answer, Command, DeleteMode, QueueAnswer, ShardLink, ask_all};
use super::encode;
use super::http::{Handler, Head, Method, Request, Response};
use super::query;
use crate::delivery::queue_task::MAX_LIST;
use crate::delivery::views::{Op, Request as Ask, SummaryBy};
use crate::spool::QueueId;

/// The routes, over the shards' command links.
pub struct Api {
    links: Vec<ShardLink>,
    access: LiveAccess,
    cluster: Option<std::sync::Arc<crate::queue::ClusterLink>>,
    suppression: Option<super::suppression::Routes>,
    campaigns: Option<super::campaigns::Routes>,
    webhooks: Option<std::sync::Arc<crate::webhook::Hooks>>,
}

impl Api {
    /// Routes over `links` (one per shard, in shard order), guarded by the access policy in
    /// force at each request.
    pub fn new(links: Vec<ShardLink>, access: LiveAccess) -> Api {
        Api {
            links,
            access,
            cluster: None,
            suppression: None,
            campaigns: None,
            webhooks: None,
        }
    }

    /// Adds the node's cluster state to the metrics.
    pub fn with_cluster(self, cluster: Option<std::sync::Arc<crate::queue::ClusterLink>>) -> Api {
        Api { cluster, ..self }
    }

    /// The same, with the suppression routes over `list` (None: they answer that the list is
    /// off), logging changes to `log`.
    pub fn with_suppression(
        mut self,
        list: Option<std::sync::Arc<crate::suppression::Suppression>>,
        log: std::rc::Rc<crate::eventlog::EventLog>,
    ) -> Api {
        self.suppression = list.map(|list| super::suppression::Routes { list, log });
        self
    }

    /// The same, with the campaign routes (`/stats`, `/campaigns...`) over `campaigns`,
    /// logging changes to `log`.
    pub fn with_campaigns(
        mut self,
        campaigns: std::sync::Arc<crate::campaigns::Campaigns>,
        log: std::rc::Rc<crate::eventlog::EventLog>,
    ) -> Api {
        self.campaigns = Some(super::campaigns::Routes { campaigns, log });
        self
    }

    /// The same, with `GET /webhooks` and the webhooks' metrics.
    pub fn with_webhooks(self, webhooks: Option<std::sync::Arc<crate::webhook::Hooks>>) -> Api {
        Api { webhooks, ..self }
    }

    async fn route(&self, req: Request) -> Response {
        let decoded: Vec<String> = req
            .path
            .trim_end_matches('/')
            .split('/')
            .skip(1)
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let method = match req.method {
            Method::GET => "GET",
            Method::POST => "POST",
            _ => "OTHER",
        };
        if segments.first() == Some(&"suppression") {
            let by = self.actor(&req).0;
            let answer = match &self.suppression {
                Some(routes) => routes.route(&req, &segments, &by).await,
                None => Some(Response::json(
                    404,
                    &json!({"error": "the suppression list is off (suppression.enabled)"}),
                )),
            };
            return answer.unwrap_or_else(Response::not_found);
        }
        if matches!(segments.first(), Some(&("stats" | "campaigns")))
            && let Some(routes) = &self.campaigns
            && let Some(answer) = routes.route(&req, method, &segments, &self.actor(&req).0)
        {
            return answer;
        }
        match (method, segments.as_slice()) {
            ("GET", ["health"]) => {
                Response::json(200, &json!({"status": "ok", "shards": self.links.len()}))
            }
            ("GET", ["metrics"]) => self.metrics().await,
            ("GET", ["webhooks"]) => {
                let hooks: Vec<Value> = self
                    .webhooks
                    .iter()
                    .flat_map(|h| h.statuses())
                    .map(|s| s.json())
                    .collect();
                Response::json(200, &json!({"webhooks": hooks}))
            }
            ("GET", ["queue"]) => {
                let by = match req.query_param("by") {
                    None | Some("recipient") => SummaryBy::Recipient,
                    Some("sender") => SummaryBy::Sender,
                    Some(_) => {
                        return Response::json(400, &json!({"error": "by is recipient or sender"}));
                    }
                };
                self.summary(by).await
            }
            ("GET", ["queue", "messages"]) => self.list(&req).await,
            ("POST", ["queue", verb @ ("hold" | "release" | "delete" | "requeue")]) => {
                self.act(&req, verb).await
            }
            ("POST", ["delivery", verb @ ("pause" | "resume")]) => {
                let ask = Ask::Pause(*verb == "pause");
                let paused = queue_answers(&self.links, ask, self.actor(&req))
                    .await
                    .iter()
                    .any(|(_, a)| matches!(a, QueueAnswer::Paused(true)));
                Response::json(200, &json!({"paused": paused}))
            }
            ("GET", ["queue", id, "body"]) => match QueueId::from_str(id) {
                Ok(id) => self.body(id).await,
                Err(_) => Response::json(400, &json!({"error": "a queue id is 16 hex digits"})),
            },
            ("GET", ["queue", id]) => match QueueId::from_str(id) {
                Ok(id) => {
                    self.first(
                        Ask::Message(id.0),
                        Actor::default(),
                        "no such queued message",
                    )
                    .await
                }
                Err(_) => Response::json(400, &json!({"error": "a queue id is 16 hex digits"})),
            },
            ("POST", ["queue", "flush"]) => {
                let target = req.query_param("destination").map(str::to_owned);
                let flushed: usize =
                    queue_answers(&self.links, Ask::Flush(target), self.actor(&req))
                        .await
                        .iter()
                        .map(|(_, a)| match a {
                            QueueAnswer::Flushed(n) => *n,
                            _ => 0,
                        })
                        .sum();
                Response::json(200, &json!({"flushed": flushed}))
            }
            ("POST", ["queue", id, "delete"]) => {
                let mode = match req.query_param("mode").unwrap_or("bounce") {
                    "bounce" => DeleteMode::Bounce,
                    "silent" => DeleteMode::Silent,
                    _ => return Response::json(400, &json!({"error": "mode is bounce or silent"})),
                };
                match QueueId::from_str(id) {
                    Ok(id) => {
                        self.first(
                            Ask::Delete(id.0, mode),
                            self.actor(&req),
                            "no such queued message",
                        )
                        .await
                    }
                    Err(_) => Response::json(400, &json!({"error": "a queue id is 16 hex digits"})),
                }
            }
            ("POST", ["destinations", d, "suspend"]) => {
                let duration = match suspend_duration(req.query_param("duration")) {
                    Ok(d) => d,
                    Err(e) => return Response::json(400, &json!({"error": e})),
                };
                self.per_shard(Ask::Suspend((*d).to_owned(), duration), self.actor(&req))
                    .await
            }
            ("POST", ["destinations", d, "resume"]) => {
                self.per_shard(Ask::Resume((*d).to_owned()), self.actor(&req))
                    .await
            }
            ("GET", ["destinations", d]) => {
                self.per_shard(Ask::Explain((*d).to_owned()), self.actor(&req))
                    .await
            }
            ("GET" | "POST", _) => Response::not_found(),
            _ => Response::json(405, &json!({"error": "method not allowed"})),
        }
    }

    async fn metrics(&self) -> Response {
        let snapshots: Vec<_> = ask_all(&self.links, Command::Metrics)
            .await
            .into_iter()
            .filter_map(|(shard, a)| match a {
                Answer::Metrics(s) => Some((shard, *s)),
                Answer::Queue(_) => None,
            })
            .collect();
        Response {
            status: 200,
            content_type: crate::metrics::CONTENT_TYPE,
            body: {
                let mut text = crate::metrics::encode(&snapshots);
                if let Some(link) = &self.cluster {
                    text.push_str(&crate::metrics::encode_cluster(link));
                }
                if let Some(s) = &self.suppression {
                    text.push_str(&s.list.metrics());
                }
                if let Some(c) = &self.campaigns {
                    text.push_str(&c.campaigns.metrics());
                }
                if let Some(hooks) = &self.webhooks {
                    text.push_str(&hooks.metrics());
                }
                text.into_bytes()
            },
        }
    }

    async fn summary(&self, by: SummaryBy) -> Response {
        let answers = queue_answers(&self.links, Ask::Summary(by), Actor::default()).await;
        let summaries = answers.iter().filter_map(|(_, a)| match a {
            QueueAnswer::Summary(s) => Some(s),
            _ => None,
        });
        Response::json(200, &encode::summary(summaries))
    }

    /// Who asks, for the event log.
    fn actor(&self, req: &Request) -> Actor {
        let by_token = self.access.token_matches(req.header("authorization"));
        query::actor(req, by_token)
    }

    /// `GET /queue/messages`: the selected messages of every shard, oldest first.
    async fn list(&self, req: &Request) -> Response {
        let select = match query::select(req, true) {
            Ok(s) => s,
            Err(e) => return Response::json(400, &json!({"error": e})),
        };
        let limit = match req.query_param("limit").map(str::parse::<usize>) {
            None => 1000,
            Some(Ok(n)) if n <= MAX_LIST => n,
            Some(_) => {
                let e = format!("limit is a number up to {MAX_LIST}");
                return Response::json(400, &json!({"error": e}));
            }
        };
        let answers = queue_answers(&self.links, Ask::List(select, limit), Actor::default()).await;
        let (mut rows, mut matched) = (Vec::new(), 0u64);
        for (_, a) in &answers {
            let v = encode::answer(a);
            matched += v["matched"].as_u64().unwrap_or(0);
            if let Value::Array(r) = &v["messages"] {
                rows.extend(r.iter().cloned());
            }
        }
        rows.sort_by_key(|r| r["arrival_unix_ms"].as_u64().unwrap_or(0));
        rows.truncate(limit);
        Response::json(200, &json!({"matched": matched, "messages": rows}))
    }

    /// `POST /queue/hold|release|delete|requeue`: an action on the selected messages.
    async fn act(&self, req: &Request, verb: &str) -> Response {
        let select = match query::select(req, false) {
            Ok(s) => s,
            Err(e) => return Response::json(400, &json!({"error": e})),
        };
        let op = match verb {
            "hold" => Op::Hold,
            "release" => Op::Release,
            "requeue" => Op::Requeue,
            _ => match req.query_param("mode").unwrap_or("bounce") {
                "bounce" => Op::Delete(DeleteMode::Bounce),
                "silent" => Op::Delete(DeleteMode::Silent),
                _ => return Response::json(400, &json!({"error": "mode is bounce or silent"})),
            },
        };
        let answers = queue_answers(&self.links, Ask::Act(op, select), self.actor(req)).await;
        let (mut messages, mut recipients, mut errors) = (0, 0, Vec::new());
        for (_, a) in &answers {
            if let QueueAnswer::Acted(a) = a {
                messages += a.messages;
                recipients += a.recipients;
                errors.extend(a.error.clone());
            }
        }
        let status = if errors.is_empty() { 200 } else { 500 };
        Response::json(
            status,
            &json!({"action": op.name(), "messages": messages, "recipients": recipients,
                    "errors": errors}),
        )
    }

    /// `GET /queue/<id>/body`: the message as stored (our `Received:` first).
    async fn body(&self, id: QueueId) -> Response {
        for (_, a) in queue_answers(&self.links, Ask::Body(id.0), Actor::default()).await {
            match a {
                QueueAnswer::Body(Some(Ok(body))) => {
                    return Response {
                        status: 200,
                        content_type: "message/rfc822",
                        body,
                    };
                }
                QueueAnswer::Body(Some(Err(e))) => {
                    return Response::json(500, &json!({"error": e}));
                }
                _ => {}
            }
        }
        Response::json(404, &json!({"error": "no such queued message"}))
    }

    /// The first shard's non-null answer, or 404.
    async fn first(&self, request: Ask, by: Actor, missing: &str) -> Response {
        match queue_answers(&self.links, request, by)
            .await
            .iter()
            .map(|(_, a)| encode::answer(a))
            .find(|v| !v.is_null())
        {
            Some(v) => Response::json(200, &v),
            None => Response::json(404, &json!({"error": missing})),
        }
    }

    /// Every shard's answer, as `{"shards": [{"shard": n, ...}]}`.
    async fn per_shard(&self, request: Ask, by: Actor) -> Response {
        let shards: Vec<Value> = queue_answers(&self.links, request, by)
            .await
            .iter()
            .map(|(shard, a)| {
                let mut v = encode::answer(a);
                if let Some(o) = v.as_object_mut() {
                    o.insert("shard".to_owned(), json!(shard));
                }
                v
            })
            .collect();
        let status = if shards.iter().any(|v| v.get("error").is_some()) {
            404
        } else {
            200
        };
        Response::json(status, &json!({"shards": shards}))
    }
}

/// The longest suspension an operator may ask for (`?duration=` of a suspend).
pub const MAX_SUSPEND: Duration = Duration::from_secs(30 * 86_400);

/// The suspension asked for: one hour when absent, at most [`MAX_SUSPEND`].
fn suspend_duration(value: Option<&str>) -> Result<Duration, String> {
    let Some(value) = value else {
        return Ok(Duration::from_secs(3600));
    };
    let d = humantime::parse_duration(value.trim()).map_err(|e| format!("duration: {e}"))?;
    if d > MAX_SUSPEND {
        return Err(format!(
            "duration: at most {} days",
            MAX_SUSPEND.as_secs() / 86_400
        ));
    }
    Ok(d)
}

/// Every shard's queue answer to `request`, in shard order (shards that are gone are left out).
async fn queue_answers(links: &[ShardLink], request: Ask, by: Actor) -> Vec<(usize, QueueAnswer)> {
    ask_all(links, Command::Queue(request, by))
        .await
        .into_iter()
        .filter_map(|(shard, a)| match a {
            Answer::Queue(q) => Some((shard, q)),
            Answer::Metrics(_) => None,
        })
        .collect()
}

impl Handler for Api {
    fn admit(&self, head: &Head<'_>) -> Option<Response> {
        let health = *head.method == Method::GET && head.path.trim_end_matches('/') == "/health";
        if health
            || self
                .access
                .permits_change(head.peer.ip(), head.header("authorization"))
        {
            return None;
        }
        Some(Response::json(
            403,
            &json!({"error": "not allowed from this address without the token"}),
        ))
    }

    fn handle(&self, req: Request) -> Pin<Box<dyn Future<Output = Response> + '_>> {
        Box::pin(self.route(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspend_durations_are_bounded() {
        assert_eq!(suspend_duration(None), Ok(Duration::from_secs(3600)));
        assert_eq!(suspend_duration(Some("2h")), Ok(Duration::from_secs(7200)));
        assert_eq!(suspend_duration(Some("30days")), Ok(MAX_SUSPEND));
        for bad in [
            "30days 1s",
            "1000000000y",
            "500000000000y",
            "99999999999999999999s",
            "x",
        ] {
            assert!(suspend_duration(Some(bad)).is_err(), "{bad}");
        }
    }
}
