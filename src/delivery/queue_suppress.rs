//! The queue task's side of the suppression list: suppressed recipients are taken out of a job
//! just before it goes to a connection.
//!
//! What it does: checks each recipient of a job against the host's list (the message's
//! tenant's entries, then the global ones); those listed are
//! ended there, as the recorder's [`recorder::ended`] says: a `Suppressed` event with the
//! entry's kind as its class, counted as bounced (so the accounting still balances), and a
//! DSN to the sender only with `suppression.dsn`.
//!
//! What it does not do: no changes to the list (hard bounces add to it through the sinks), no
//! check at reception (the server refuses at RCPT in `rcpt` mode).
//!
//! Invariants: runs inside the queue task; a job comes back with only recipients that are not
//! listed, or not at all when none is left.

use std::time::SystemTime;

use super::ShardQueue;
use crate::delivery::recorder::{self, End, Peer};
use crate::queue::Job;
use crate::smtp::EnhancedStatus;

impl ShardQueue {
    /// `job` without its suppressed recipients, which end here; None when none is left.
    pub(super) fn unsuppressed(&mut self, mut job: Job, dest: &str) -> Option<Job> {
        if !self.config.suppression.enabled {
            return Some(job);
        }
        let Some(list) = self.sinks.suppression.clone() else {
            return Some(job);
        };
        let e = self.messages.get_mut(job.message)?;
        let mut dropped = Vec::new();
        // The message's tenant's list, then the global one.
        let m = e.msg.clone();
        let tenant = m.record.tenant.as_deref().unwrap_or("");
        job.recipients
            .retain(|&mut i| match list.check(tenant, &m.recipient(i).address) {
                Some(kind) => {
                    dropped.push((i, kind.as_str()));
                    false
                }
                None => true,
            });
        if dropped.is_empty() {
            return Some(job);
        }
        let msg = e.msg.clone();
        let end = End {
            kind: "Suppressed",
            reason: recorder::SUPPRESSED,
            status: EnhancedStatus::new(5, 7, 1),
            dsn: self.config.suppression.dsn,
        };
        let records = recorder::ended(&msg, &mut e.progress, &dropped, &end, SystemTime::now());
        self.carry_out(&msg, records, dest, &Peer::default());
        (!job.recipients.is_empty()).then_some(job)
    }
}
