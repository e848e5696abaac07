//! The queue task's side of campaigns and tenants: counting, and parking the jobs of what is
//! paused.
//!
//! What it does: counts accepted recipients (by campaign, tenant and From domain, with those
//! of signed bulk-looking mail without RFC 8058 one-click unsubscription, which also get a
//! `BulkWithoutUnsubscribe` event) and every recipient event (by campaign, tenant, provider
//! and source) into the shard's tally, hands the tally to the host once a second
//! (logging a `CampaignPaused` event for what a threshold paused), parks each job of a paused
//! campaign or tenant when it would join a destination's queue (once routed) or be handed to
//! a connection, and routes the parked jobs again once their campaign and tenant are resumed.
//!
//! What it does not do: no threshold arithmetic, no file (the host's `Campaigns`), no
//! scheduling policy: a parked job is outside the scheduler, so it costs nothing while it
//! waits (no timer, no retry, no expiry: its recipients are still queued and counted as such).
//!
//! Invariants: runs inside the queue task; the paused set is read from the host only when its
//! generation changed (one atomic load per job otherwise); every parked job is routed again
//! when neither its campaign nor its tenant is paused any longer.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use super::ShardQueue;
use crate::campaigns::counts::{
    ACCEPTED, BOUNCED, DEFERRED, DELIVERED, EXPIRED, NO_ONE_CLICK, SUPPRESSED,
};
use crate::campaigns::{Counts, Dim};
use crate::delivery::message::Message;
use crate::delivery::recorder::Line;
use crate::queue::{DestinationKey, Job};
use crate::shaping::BounceClass;
use crate::spool::MessageRecord;

/// What the queue knows of paused campaigns and tenants.
#[derive(Debug, Default)]
pub struct Parking {
    /// The host's pause generation this copy is of.
    generation: u64,
    /// Paused campaigns.
    campaigns: HashSet<String>,
    /// Paused tenants.
    tenants: HashSet<String>,
    /// Jobs parked, by message, with the destination each was for.
    jobs: HashMap<u64, Vec<(DestinationKey, Job)>>,
    /// Recipients parked.
    pub recipients: usize,
}

impl Parking {
    /// Parked recipients for destination `key` (or a source's queue of it, `<key>@<source>`).
    pub fn for_destination(&self, key: &DestinationKey) -> usize {
        let of = |k: &DestinationKey| {
            k == key
                || k.0
                    .strip_prefix(key.0.as_str())
                    .is_some_and(|r| r.starts_with('@'))
        };
        self.jobs
            .values()
            .flatten()
            .filter(|(k, _)| of(k))
            .map(|(_, j)| j.recipients.len())
            .sum()
    }
}

/// The default name of a provider or source row.
const DEFAULT: &str = "default";

impl ShardQueue {
    /// Counts the recipients of a message just accepted, by campaign, tenant and From domain,
    /// and reports it when it is signed, bulk-looking mail without one-click unsubscription.
    pub(super) fn count_accepted(&self, record: &MessageRecord) {
        let n = record.recipients.len() as u64;
        let from = crate::dkim::from_domain(&record.body);
        let missing = self.lacks_one_click(record);
        let rows = [
            (Dim::Campaign, record.campaign.as_deref()),
            (Dim::Tenant, record.tenant.as_deref()),
            (Dim::FromDomain, from.as_deref()),
        ];
        for (dim, name) in rows {
            if let Some(name) = name {
                self.sinks.tally.count(dim, name, |c| {
                    c.0[ACCEPTED] += n;
                    if missing {
                        c.0[NO_ONE_CLICK] += n;
                    }
                });
            }
        }
        if missing {
            self.sinks.log.bulk_without_unsubscribe(
                &record.queue_id().to_string(),
                from.as_deref().unwrap_or(""),
                record.recipients.len(),
                record.campaign.as_deref().unwrap_or(""),
                record.tenant.as_deref().unwrap_or(""),
            );
        }
    }

    /// Whether `record` is DKIM-signed (the signer puts its fields first), looks like bulk mail
    /// (it has a campaign, or more recipients than `dkim.bulk_warning_recipients`) and lacks
    /// `List-Unsubscribe` with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
    fn lacks_one_click(&self, record: &MessageRecord) -> bool {
        let over = self.config.dkim.bulk_warning_recipients;
        let bulk = record.campaign.is_some() || (over > 0 && record.recipients.len() > over);
        let signed = record
            .body
            .get(..15)
            .is_some_and(|h| h.eq_ignore_ascii_case(b"DKIM-Signature:"));
        bulk && signed && !crate::dkim::has_one_click_unsubscribe(&record.body)
    }

    /// Counts the recipient events in `lines` of `msg`, which went through `dest`.
    pub(super) fn count_lines(&self, msg: &Message, lines: &[Line], dest: &str) {
        if lines.is_empty() {
            return;
        }
        let target = self.routes.target(dest);
        let provider = target
            .and_then(|t| t.provider.as_deref())
            .unwrap_or(DEFAULT);
        let source = target
            .and_then(|t| t.source)
            .map_or_else(|| DEFAULT.to_owned(), |a| a.to_string());
        let labels = [
            (Dim::Campaign, msg.record.campaign.as_deref()),
            (Dim::Tenant, msg.record.tenant.as_deref()),
            (Dim::Provider, Some(provider)),
            (Dim::Source, Some(source.as_str())),
        ];
        for line in lines {
            let index = match line.kind {
                "Delivery" => DELIVERED,
                "TransientFailure" => DEFERRED,
                "Bounce" => BOUNCED,
                "Expiration" => EXPIRED,
                "Suppressed" => SUPPRESSED,
                _ => continue,
            };
            let count = |c: &mut Counts| match index {
                BOUNCED => c.bounce(
                    BounceClass::from_name(line.class).unwrap_or(BounceClass::Unknown),
                    1,
                ),
                i => c.0[i] += 1,
            };
            for (dim, name) in labels {
                if let Some(name) = name {
                    self.sinks.tally.count(dim, name, count);
                }
            }
        }
    }

    /// Once a second: the tally goes to the host (what a threshold paused is logged), and
    /// the paused set is looked at again.
    pub(super) fn campaign_chores(&mut self) {
        for p in self.sinks.tally.flush(SystemTime::now()) {
            tracing::warn!(kind = %p.kind, name = %p.name, reason = %p.reason, "paused by its threshold");
            self.sinks
                .log
                .campaign(true, &p.kind, &p.name, &p.reason, &p.by);
        }
        self.refresh_paused();
    }

    /// Takes the host's paused set if it changed; routes again the parked jobs that are free.
    fn refresh_paused(&mut self) {
        let host = self.sinks.tally.host().clone();
        let generation = host.pauses().generation();
        if generation == self.parking.generation {
            return;
        }
        self.parking.generation = generation;
        self.parking.campaigns.clear();
        self.parking.tenants.clear();
        for (dim, name) in host.pauses().keys() {
            match dim {
                Dim::Tenant => self.parking.tenants.insert(name),
                _ => self.parking.campaigns.insert(name),
            };
        }
        let parked = std::mem::take(&mut self.parking.jobs);
        self.parking.recipients = 0;
        for (_, jobs) in parked {
            for (_, job) in jobs {
                // Parked again when still paused; routed when not.
                self.route(job);
            }
        }
    }

    /// `job` for `dest`, or None when its message's campaign or tenant is paused (then it is
    /// parked).
    pub(super) fn unpaused(&mut self, job: Job, dest: &DestinationKey) -> Option<Job> {
        if self.sinks.tally.host().pauses().generation() != self.parking.generation {
            self.refresh_paused();
        }
        let p = &self.parking;
        if p.campaigns.is_empty() && p.tenants.is_empty() {
            return Some(job);
        }
        let Some(e) = self.messages.get(job.message) else {
            return Some(job);
        };
        let r = &e.msg.record;
        let paused = |set: &HashSet<String>, name: &Option<String>| {
            name.as_deref().is_some_and(|n| set.contains(n))
        };
        if !paused(&p.campaigns, &r.campaign) && !paused(&p.tenants, &r.tenant) {
            return Some(job);
        }
        self.parking.recipients += job.recipients.len();
        let parked = (dest.clone(), job);
        self.parking
            .jobs
            .entry(parked.1.message)
            .or_default()
            .push(parked);
        None
    }
}
