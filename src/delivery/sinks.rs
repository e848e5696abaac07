//! Where the recorder's records go: the spool, the event log, the metrics, and new DSNs.
//!
//! What it does: appends recipient states to the spool (detached: the group commit makes them
//! durable), writes one event-log line per recipient event, adds hard-bounced recipients to the
//! suppression list, counts bounce classes and delivery
//! latency, and queues a DSN (RFC 3464) in a task of its own: it reads the original back from
//! the spool when the queue does not hold it, builds the report, appends it to the spool and
//! hands it to the queue like any new message, with the null reverse path; at most
//! [`DSNS_AT_ONCE`] are built at once, so that a bulk bounce does not read every original back
//! together.
//!
//! What it does not do: no decisions (the recorder), no queue state (the queue task owns it).
//!
//! Invariants: a DSN is in the spool before the queue takes it; the queue task never waits for
//! a DSN (the task does).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::dsn;
use super::message::Message;
use super::queue_msg::{QueueHandle, QueueMsg};
use super::recorder::{DsnRequest, Line, Peer};
use crate::config::Config;
use crate::eventlog::{Event, EventLog};
use crate::metrics::ShardMetrics;
use crate::shaping::BounceClass;
use crate::spool::{
    MessageRecord, QueueId, QueueIdGenerator, Recipient, RecipientState, Spool, StateRecord,
};
use crate::suppression::Suppression;

/// See the module header.
pub struct Sinks {
    /// The shard's spool.
    pub spool: Spool,
    /// The shard's event log.
    pub log: Rc<EventLog>,
    /// The shard's metrics.
    pub metrics: Rc<ShardMetrics>,
    /// Queue ids of the shard (DSNs get one).
    pub ids: Rc<RefCell<QueueIdGenerator>>,
    /// DSNs being built at once ([`DSNS_AT_ONCE`]): a bulk bounce of a large queue reads its
    /// originals back from the spool a few at a time, not all together.
    pub dsn_slots: Rc<glommio::sync::Semaphore>,
    /// The host's suppression list; None = `suppression.enabled` is off.
    pub suppression: Option<Arc<Suppression>>,
    /// The shard's counts by campaign, tenant, provider and source.
    pub tally: Rc<crate::campaigns::Tally>,
}

/// The most DSNs a shard builds at once (each may read its original back from the spool).
pub const DSNS_AT_ONCE: u64 = 16;

impl Sinks {
    /// Appends recipient states of message `id`.
    pub fn states(&self, id: QueueId, states: Vec<(u32, RecipientState)>) {
        for (recipient, state) in states {
            let rec = StateRecord {
                id: id.0,
                recipient,
                state,
            };
            if let Err(e) = self.spool.append_state_detached(&rec) {
                tracing::warn!(queue_id = %id, recipient, error = %e, "recording a delivery state failed");
            }
        }
    }

    /// Writes the event-log lines about `msg`, at `dest`, answered by `peer`.
    pub fn lines(&self, msg: &Message, lines: &[Line], dest: &str, peer: &Peer) {
        if lines.is_empty() {
            return;
        }
        let id_text = msg.record.queue_id().to_string();
        for line in lines {
            self.log.record(&Event {
                kind: line.kind,
                queue_id: &id_text,
                sender: &msg.record.reverse_path,
                recipient: &msg.recipient(line.recipient).address,
                destination: dest,
                host: &peer.host,
                tls: &peer.tls,
                tls_policy: &peer.tls_policy.policy,
                tls_verified: peer.tls_policy.verified,
                auth: &peer.auth,
                reply: &line.reply,
                class: line.class,
                status: &line.status.to_string(),
                attempt: line.attempt,
                duration_ms: line.duration_ms,
                size: msg.size,
                campaign: msg.record.campaign.as_deref().unwrap_or(""),
                tenant: msg.record.tenant.as_deref().unwrap_or(""),
                priority: line.priority.map_or("", crate::priority::Class::name),
            });
        }
    }

    /// Adds the recipients of `msg` whose bounce (in `lines`) is of a hard-bounce class to the
    /// suppression list, with a `Suppression` event each.
    pub fn suppress_bounced(&self, msg: &Message, lines: &[Line]) {
        let Some(list) = &self.suppression else {
            return;
        };
        for line in lines.iter().filter(|l| l.kind == "Bounce") {
            let Some(class) = BounceClass::from_name(line.class) else {
                continue;
            };
            let address = &msg.recipient(line.recipient).address;
            let tenant = msg.record.tenant.as_deref().unwrap_or("");
            if let Some(e) = list.bounced(tenant, address, class, &line.reply) {
                self.log
                    .suppression(&crate::eventlog::Suppression::of("add", &e));
            }
        }
    }

    /// Counts failures by class and the latency of `delivered` recipients of `msg`.
    pub fn count(&self, msg: &Message, classes: &[BounceClass], delivered: u64) {
        for class in classes {
            self.metrics.failure_classified(class.index());
        }
        if delivered > 0 {
            let latency = msg.arrival.elapsed().as_secs_f64();
            for _ in 0..delivered {
                self.metrics.delivery_latency_seconds.observe(latency);
            }
        }
    }

    /// Queues a DSN to the sender of `msg` in a task of its own; `body` is the original when
    /// the queue holds it. The queue hears of it as [`QueueMsg::Dsn`].
    pub fn dsn(
        &self,
        msg: Rc<Message>,
        body: Option<Rc<Vec<u8>>>,
        request: DsnRequest,
        config: Arc<Config>,
        queue: QueueHandle,
    ) {
        let (spool, ids, slots) = (self.spool.clone(), self.ids.clone(), self.dsn_slots.clone());
        glommio::spawn_local(async move {
            // Held until the report is in the spool (the semaphore is never closed).
            let Ok(_slot) = slots.acquire_permit(1).await else {
                return;
            };
            let rec = &msg.record;
            // The original is needed for the report: held, or read back from the spool. If
            // it cannot be read, the report goes out with what is known (no original content).
            let original = match body {
                Some(b) => b,
                None => match spool.read_message(rec.queue_id()).await {
                    Ok(r) => Rc::new(r.body),
                    Err(e) => {
                        tracing::warn!(queue_id = %rec.queue_id(), error = %e, "DSN without the original message");
                        Rc::new(Vec::new())
                    }
                },
            };
            let id = ids.borrow_mut().next(SystemTime::now());
            let unique = id.to_string();
            let original_id = QueueId(rec.id).to_string();
            let envid = msg
                .mail_params
                .envid
                .as_deref()
                .map(crate::smtp::params::xtext_encode);
            let body = dsn::build(&dsn::DsnInput {
                reporting_mta: &config.hostname,
                to: &rec.reverse_path,
                envid: envid.as_deref(),
                queue_id: &original_id,
                arrival: UNIX_EPOCH + Duration::from_millis(rec.arrival_unix_ms),
                date: SystemTime::now(),
                recipients: &request.recipients,
                original: &original,
                ret: request.ret,
                unique: &unique,
            });
            let record = MessageRecord {
                id: id.0,
                reverse_path: String::new(),
                mail_params: Vec::new(),
                recipients: vec![Recipient::new(rec.reverse_path.clone())],
                arrival_unix_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                client_addr: "local".into(),
                helo: config.hostname.clone(),
                tls: None,
                auth: None,
                campaign: None,
                tenant: None,
                body,
                priority: 0,
            };
            match spool.append_message(&record).await {
                Ok(()) => queue.send(QueueMsg::Dsn(record)),
                Err(e) => tracing::warn!(queue_id = %unique, error = %e, "queueing a DSN failed"),
            }
        })
        .detach();
    }
}
