//! The event log lines about reports that came back: `Bounce` (with `"async":true`),
//! `Complaint` and `FeedbackReport`.
//!
//! What it does: writes one line per finding of a report, with the message and recipient it
//! is about, how it was matched and the report's own reference.
//!
//! What it does not do: no matching, no effects.
//!
//! Invariants: written through the shard's log like every other line (same ids, same
//! flushing), and only fields with a value are written.

use std::io::Write;

use super::{EventLog, field, labels};

/// A report's finding (`Bounce`, `Complaint` or `FeedbackReport`).
pub struct Feedback<'a> {
    /// `Bounce`, `Complaint` or `FeedbackReport`.
    pub kind: &'a str,
    /// The queue id of the message the report is about; empty when unmatched.
    pub queue_id: &'a str,
    /// The recipient it is about; empty when unmatched.
    pub recipient: &'a str,
    /// Bounces: the reported status and diagnostic, and its bounce class.
    pub status: &'a str,
    /// The diagnostic.
    pub reply: &'a str,
    /// The bounce class.
    pub class: &'a str,
    /// Complaints: the feedback type.
    pub feedback_type: &'a str,
    /// `verp` or `message_id`; empty when unmatched.
    pub matched_by: &'a str,
    /// `FeedbackReport`: `ignored` or `unmatched`.
    pub outcome: &'a str,
    /// Why a report was ignored or not matched.
    pub reason: &'a str,
    /// Where an unmatched report was forwarded; empty when only logged.
    pub forwarded_to: &'a str,
    /// The report's envelope sender, its Message-ID, and the id given to it at reception.
    pub reporter: &'a str,
    /// The report's Message-ID.
    pub report_message_id: &'a str,
    /// The id the report was given at reception (its `250`).
    pub report_id: &'a str,
    /// The client that sent the report.
    pub client: &'a str,
    /// The reported message's campaign and tenant, as far as they are known.
    pub campaign: &'a str,
    /// The tenant.
    pub tenant: &'a str,
}

impl EventLog {
    /// Appends a line about a report's finding.
    pub fn feedback(&self, f: &Feedback<'_>) {
        let mut b = self.begin(f.kind);
        for (key, value) in [
            ("queue_id", f.queue_id),
            ("recipient", f.recipient),
            ("status", f.status),
            ("reply", f.reply),
            ("class", f.class),
            ("feedback_type", f.feedback_type),
            ("matched_by", f.matched_by),
            ("outcome", f.outcome),
            ("reason", f.reason),
            ("forwarded_to", f.forwarded_to),
            ("reporter", f.reporter),
            ("report_message_id", f.report_message_id),
            ("report_id", f.report_id),
            ("client", f.client),
        ] {
            if !value.is_empty() {
                field(&mut b, key, value);
            }
        }
        if f.kind == "Bounce" {
            let _ = write!(b, ",\"async\":true");
        }
        labels(&mut b, f.campaign, f.tenant);
        self.end(b);
    }
}
