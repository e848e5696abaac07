//! Reports that come back: the intake of mail to report addresses (VERP addresses of the
//! bounce domain, feedback loop addresses).
//!
//! What it does: [`consume`] takes a received message's report recipients out of it, reads the
//! report, matches it to what was sent, and applies what it means before the message is
//! answered: a `Bounce` (`"async":true`) or `Complaint` event, the recipient added to the
//! suppression list (a hard bounce class, or any complaint when configured), the campaign and
//! tenant counters (which may pause a campaign past its threshold), and for a report that
//! cannot be read or matched a `FeedbackReport` event and, when `feedback.unmatched_to` is
//! set, the report forwarded there (it stays in the message, as its new recipient).
//!
//! What it does not do: no reply to the report's sender (no reflection, no loop: a report is
//! never answered by mail), no parsing (`feedback::report`), no matching rules
//! (`feedback::matching`).
//!
//! Invariants: a report recipient never reaches the spool as such; the suppression entries
//! are synced before the `250`; everything is bounded by the message size limit the session
//! already applied.

use std::time::SystemTime;

use crate::campaigns::Dim;
use crate::eventlog::Feedback as Line;
use crate::feedback::matching::{self, RETURN_PATH};
use crate::feedback::{Finding, Shard, Target};
use crate::spool::{MessageRecord, Recipient};

use super::ServerContext;

/// The report recipients of `record` are taken out and their report applied; when the report
/// is not matched and `unmatched_to` is set, that address becomes a recipient instead. The
/// caller spools what recipients are left (none: the report was consumed). Err when what the
/// report means could not be made durable (the suppression list refused): the report is then
/// refused with a temporary failure, so that its sender tries again.
pub async fn consume(
    ctx: &ServerContext,
    fb: &Shard,
    record: &mut MessageRecord,
    client: &str,
) -> Result<(), ()> {
    let host = fb.host();
    if !record.recipients.iter().any(|r| host.consumes(&r.address)) {
        return Ok(());
    }
    let (reports, rest): (Vec<Recipient>, Vec<Recipient>) = std::mem::take(&mut record.recipients)
        .into_iter()
        .partition(|r| host.consumes(&r.address));
    record.recipients = rest;
    let now = SystemTime::now();
    let report = crate::feedback::report::parse(&record.body, &record.reverse_path, &[RETURN_PATH]);
    let verp: Vec<_> = reports
        .iter()
        .filter_map(|r| host.decode(&r.address, now))
        .collect();
    let decode = |a: &str| host.decode(a, now);
    let lookup = |id: &str| host.index().get(id);
    let findings = matching::findings(&report, &verp, &decode, &lookup);
    let report_id = record.queue_id().to_string();
    let report_message_id = crate::headers::message_id(&record.body).unwrap_or("");
    let base = Line {
        kind: "FeedbackReport",
        queue_id: "",
        recipient: "",
        status: "",
        reply: "",
        class: "",
        feedback_type: "",
        matched_by: "",
        outcome: "",
        reason: "",
        forwarded_to: "",
        reporter: &record.reverse_path,
        report_message_id,
        report_id: &report_id,
        client,
        campaign: "",
        tenant: "",
    };
    let mut forward = false;
    // Written together once every finding is known: one sync for the whole report.
    let mut entries: Vec<crate::suppression::Entry> = Vec::new();
    for f in findings {
        match f {
            Finding::Bounce {
                target,
                status,
                diagnostic,
            } => {
                ctx.metrics.feedback_reports[0].inc();
                let class = fb.classify(status, &diagnostic);
                let (campaign, tenant) = labels(fb, &target);
                let (q, s) = (queue_id(&target), status.to_string());
                ctx.log.feedback(&Line {
                    kind: "Bounce",
                    queue_id: &q,
                    recipient: &target.recipient,
                    status: &s,
                    reply: &diagnostic,
                    class: class.as_str(),
                    matched_by: target.how.as_str(),
                    campaign: &campaign,
                    tenant: &tenant,
                    ..base
                });
                if let Some(list) = &ctx.suppression {
                    let entry =
                        list.reported_bounce(&tenant, &target.recipient, class, &diagnostic);
                    entries.extend(entry);
                }
                let rows = rows(&campaign, &tenant);
                let paused = fb.campaigns().bounced_later(&rows, class, now);
                log_pauses(ctx, paused);
            }
            Finding::Complaint {
                target,
                feedback_type,
            } => {
                ctx.metrics.feedback_reports[1].inc();
                let (campaign, tenant) = labels(fb, &target);
                let q = queue_id(&target);
                ctx.log.feedback(&Line {
                    kind: "Complaint",
                    queue_id: &q,
                    recipient: &target.recipient,
                    feedback_type: &feedback_type,
                    matched_by: target.how.as_str(),
                    campaign: &campaign,
                    tenant: &tenant,
                    ..base
                });
                if host.suppress_complaints()
                    && let Some(list) = &ctx.suppression
                {
                    let reason =
                        format!("complaint ({feedback_type}) from {}", record.reverse_path);
                    entries.extend(list.complaint(&tenant, &target.recipient, &reason));
                }
                let rows = rows(&campaign, &tenant);
                let paused = fb.campaigns().complained(&rows, 1, now);
                log_pauses(ctx, paused);
            }
            Finding::Ignored { reason } => {
                ctx.metrics.feedback_reports[2].inc();
                tracing::info!(report = %report_id, %reason, "report with nothing to act on");
                ctx.log.feedback(&Line {
                    outcome: "ignored",
                    reason: &reason,
                    ..base
                });
            }
            Finding::Unmatched { reason } => {
                ctx.metrics.feedback_reports[3].inc();
                forward = !host.unmatched_to().is_empty();
                tracing::info!(report = %report_id, %reason, forwarded = forward, "report not matched");
                ctx.log.feedback(&Line {
                    outcome: "unmatched",
                    reason: &reason,
                    forwarded_to: host.unmatched_to(),
                    ..base
                });
            }
        }
    }
    if forward {
        // Alone, the forwarded report goes with the null sender: if it cannot be delivered,
        // no DSN goes back to whoever sent the report (no reflection).
        if record.recipients.is_empty() {
            record.reverse_path.clear();
        }
        record.recipients.push(Recipient::new(host.unmatched_to()));
    }
    suppress(ctx, entries).await.then_some(()).ok_or(())
}

fn queue_id(t: &Target) -> String {
    crate::spool::QueueId(t.queue_id).to_string()
}

/// The campaign and tenant of the reported message (empty when not known).
fn labels(fb: &Shard, t: &Target) -> (String, String) {
    match t.labels {
        0 => Default::default(),
        n => fb.host().labels().pair(n).unwrap_or_default(),
    }
}

fn rows<'a>(campaign: &'a str, tenant: &'a str) -> Vec<(Dim, &'a str)> {
    [(Dim::Campaign, campaign), (Dim::Tenant, tenant)]
        .into_iter()
        .filter(|(_, n)| !n.is_empty())
        .collect()
}

/// Writes `entries` to the suppression list (synced when this returns) and logs them; false
/// when the list refused them.
async fn suppress(ctx: &ServerContext, entries: Vec<crate::suppression::Entry>) -> bool {
    let Some(list) = &ctx.suppression else {
        return true;
    };
    if entries.is_empty() {
        return true;
    }
    match list.write(entries.clone()).await {
        Ok(_) => {
            for e in &entries {
                ctx.log
                    .suppression(&crate::eventlog::Suppression::of("add", e));
            }
            true
        }
        Err(err) => {
            tracing::warn!(entries = entries.len(), error = %err, "reported recipients not added to the suppression list: the report is refused for now");
            false
        }
    }
}

fn log_pauses(ctx: &ServerContext, paused: Vec<crate::campaigns::Pause>) {
    for p in paused {
        tracing::warn!(kind = %p.kind, name = %p.name, reason = %p.reason, "paused by its threshold");
        ctx.log.campaign(true, &p.kind, &p.name, &p.reason, &p.by);
    }
}
