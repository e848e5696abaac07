//! Matching a report to what was sent: which message and which recipient a bounce or a
//! complaint is about.
//!
//! What it does: [`findings`] turns a parsed [`Report`] and the envelope it came with into
//! what it means: asynchronous bounces, complaints, reports that say nothing to act on
//! (delays, `not-spam`, authentication failure reports) and reports that cannot be matched.
//! A report is matched, in this order, by:
//! 1. the VERP address it was sent to (the token names message, labels and recipient);
//! 2. a VERP address quoted in it: the complaint's `Original-Mail-From`, or the returned
//!    message's `Return-Path`;
//! 3. the returned message's `Message-ID` (through the caller's index) with the recipient the
//!    report names (`Final-Recipient`, `Original-Rcpt-To` or the returned `To`).
//!
//! What it does not do: no I/O, no parsing (see `report`), no VERP arithmetic (the caller's
//! `decode`), no decisions about suppression or counters.
//!
//! Invariants: pure; a bounce is only a recipient whose `Action` is `failed`; every report
//! gives at least one finding.

use super::report::{DsnRecipient, Kind, Report};
use super::verp::VerpTarget;
use crate::smtp::EnhancedStatus;

/// How a report was matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// By a VERP address (the envelope's or one quoted in the report).
    Verp,
    /// By the returned message's Message-ID.
    MessageId,
}

impl How {
    /// The name in the event log.
    pub fn as_str(self) -> &'static str {
        match self {
            How::Verp => "verp",
            How::MessageId => "message_id",
        }
    }
}

/// The message and recipient a report is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The message's queue id.
    pub queue_id: u64,
    /// Its label pair (0: none).
    pub labels: u32,
    /// The recipient.
    pub recipient: String,
    /// How it was found.
    pub how: How,
}

/// What a report means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The recipient failed after the message was accepted.
    Bounce {
        /// About what.
        target: Target,
        /// The report's status (5.0.0 when it gave none).
        status: EnhancedStatus,
        /// Its diagnostic.
        diagnostic: String,
    },
    /// The recipient complained.
    Complaint {
        /// About what.
        target: Target,
        /// The feedback type (`abuse`, `fraud`, `other`).
        feedback_type: String,
    },
    /// A report with nothing to act on.
    Ignored {
        /// Why.
        reason: String,
    },
    /// A report that says something but cannot be tied to mail we sent, or cannot be read.
    Unmatched {
        /// Why.
        reason: String,
    },
}

/// The header of the returned message that may carry our VERP address.
pub const RETURN_PATH: &str = "Return-Path";

/// What `report` means. `verp` holds the decoded VERP addresses it was sent to; `decode`
/// checks any other address as one of ours; `lookup` finds a Message-ID.
pub fn findings(
    report: &Report,
    verp: &[VerpTarget],
    decode: &dyn Fn(&str) -> Option<VerpTarget>,
    lookup: &dyn Fn(&str) -> Option<(u64, u32)>,
) -> Vec<Finding> {
    let quoted = |a: Option<&str>| a.map(strip).and_then(decode);
    let mut targets: Vec<Target> = verp.iter().map(|t| target(t, How::Verp)).collect();
    if targets.is_empty() {
        let from_report = match report.kind {
            Kind::Complaint => quoted(report.original_mail_from.as_deref()),
            _ => None,
        };
        if let Some(t) = from_report.or_else(|| quoted(report.original_header(RETURN_PATH))) {
            targets.push(target(&t, How::Verp));
        }
    }
    let by_id = report.original_message_id.as_deref().and_then(lookup);
    match report.kind {
        Kind::Dsn => dsn(report, targets, by_id),
        Kind::Complaint => complaint(report, targets, by_id),
        Kind::Unknown => vec![Finding::Unmatched {
            reason: "neither a delivery status notification nor a complaint report".into(),
        }],
    }
}

fn target(t: &VerpTarget, how: How) -> Target {
    Target {
        queue_id: t.queue_id,
        labels: t.labels,
        recipient: t.recipient.clone(),
        how,
    }
}

/// An address without the angle brackets and space around it.
fn strip(a: &str) -> &str {
    a.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
}

fn same(a: &str, b: &str) -> bool {
    strip(a).eq_ignore_ascii_case(strip(b))
}

fn names(block: &DsnRecipient, recipient: &str) -> bool {
    same(&block.final_recipient, recipient)
        || block
            .original_recipient
            .as_deref()
            .is_some_and(|o| same(o, recipient))
}

fn bounce(target: Target, block: &DsnRecipient) -> Finding {
    Finding::Bounce {
        target,
        status: block.status.unwrap_or(EnhancedStatus::new(5, 0, 0)),
        diagnostic: block.diagnostic.clone(),
    }
}

fn dsn(report: &Report, targets: Vec<Target>, by_id: Option<(u64, u32)>) -> Vec<Finding> {
    let failed: Vec<&DsnRecipient> = report
        .recipients
        .iter()
        .filter(|b| b.action.eq_ignore_ascii_case("failed"))
        .collect();
    if failed.is_empty() {
        return vec![Finding::Ignored {
            reason: match report.recipients.is_empty() {
                true => "a delivery status notification without a failed recipient".into(),
                false => "a delay notice".into(),
            },
        }];
    }
    if !targets.is_empty() {
        // The VERP address names the recipient; the report's own block for it, if it has one,
        // says why.
        return targets
            .into_iter()
            .map(|t| {
                let block = failed
                    .iter()
                    .find(|b| names(b, &t.recipient))
                    .unwrap_or(&failed[0]);
                bounce(t, block)
            })
            .collect();
    }
    let Some((queue_id, labels)) = by_id else {
        return vec![Finding::Unmatched {
            reason: match report.original_message_id {
                None => "a bounce without a VERP address or a returned Message-ID".into(),
                Some(_) => "a bounce whose Message-ID is not among the messages sent".into(),
            },
        }];
    };
    failed
        .iter()
        .map(|b| {
            let t = Target {
                queue_id,
                labels,
                recipient: strip(&b.final_recipient).to_owned(),
                how: How::MessageId,
            };
            bounce(t, b)
        })
        .collect()
}

fn complaint(report: &Report, targets: Vec<Target>, by_id: Option<(u64, u32)>) -> Vec<Finding> {
    let kind = report.feedback_type.as_deref().unwrap_or("abuse");
    if !matches!(kind, "abuse" | "fraud" | "other") {
        return vec![Finding::Ignored {
            reason: format!("a feedback report of type {kind}, not a complaint"),
        }];
    }
    let feedback_type = kind.to_owned();
    if !targets.is_empty() {
        return targets
            .into_iter()
            .map(|target| Finding::Complaint {
                target,
                feedback_type: feedback_type.clone(),
            })
            .collect();
    }
    match (by_id, report.original_rcpt.as_deref()) {
        (Some((queue_id, labels)), Some(rcpt)) => vec![Finding::Complaint {
            target: Target {
                queue_id,
                labels,
                recipient: strip(rcpt).to_owned(),
                how: How::MessageId,
            },
            feedback_type,
        }],
        (None, _) => vec![Finding::Unmatched {
            reason: match report.original_message_id {
                None => "a complaint without a VERP address or a returned Message-ID".into(),
                Some(_) => "a complaint whose Message-ID is not among the messages sent".into(),
            },
        }],
        (Some(_), None) => vec![Finding::Unmatched {
            reason: "a complaint that does not name its recipient".into(),
        }],
    }
}

#[cfg(test)]
#[path = "matching_tests.rs"]
mod tests;
