//! The shard's own TLS session counts: what connection tasks count, handed to the reporter
//! every few seconds.
//!
//! What it does: when TLS reporting is on, the shard installs a table on its thread
//! ([`install`]); connection tasks [`record`] each session with a receiver that has a policy;
//! the shard's flush task [`take`]s the table's counts and sends them to the reporter thread.
//! Failures of sessions to the domains this shard is sending reports to ([`quiet`]) are not
//! counted, so that a report that cannot be delivered does not report itself (RFC 8460 3).
//!
//! What it does not do: no merging across shards, no saving, no sending (`store.rs`,
//! `sender.rs`).
//!
//! Invariants: the table lives in a thread-local of the shard's executor thread (one shard,
//! one thread): no lock, no atomic, no sharing; a borrow never crosses an `.await` (every
//! function here is synchronous). Without [`install`] recording does nothing.

use std::cell::RefCell;
use std::collections::HashSet;

use super::tally::{Caps, Outcome, PolicyDesc, Tally};

struct Table {
    caps: Caps,
    tally: Tally,
    quiet: HashSet<String>,
}

thread_local! {
    static TABLE: RefCell<Option<Table>> = const { RefCell::new(None) };
}

/// Starts counting on this thread (the shard's), within `caps`.
pub fn install(caps: Caps) {
    TABLE.with(|t| {
        *t.borrow_mut() = Some(Table {
            caps,
            tally: Tally::default(),
            quiet: HashSet::new(),
        });
    });
}

/// Stops counting on this thread; what was not taken is returned.
pub fn uninstall() -> Option<Tally> {
    TABLE.with(|t| t.borrow_mut().take().map(|t| t.tally))
}

/// True when this thread counts sessions.
pub fn enabled() -> bool {
    TABLE.with(|t| t.borrow().is_some())
}

/// Counts one session of `domain` under `policy`.
pub fn record(domain: &str, policy: &PolicyDesc, outcome: Outcome<'_>) {
    TABLE.with(|t| {
        if let Some(t) = t.borrow_mut().as_mut() {
            if matches!(outcome, Outcome::Failure { .. }) && t.quiet.contains(domain) {
                return;
            }
            t.tally.count(t.caps, domain, policy, outcome);
        }
    });
}

/// The counts since the last take, if any.
pub fn take() -> Option<Tally> {
    TABLE.with(|t| {
        let mut t = t.borrow_mut();
        let table = t.as_mut()?;
        match table.tally.is_empty() {
            true => None,
            false => Some(std::mem::take(&mut table.tally)),
        }
    })
}

/// From now on, failed sessions to `domain` are not counted on this shard (reports go
/// there). Bounded by the domain cap: beyond it the set starts again.
pub fn quiet(domain: &str) {
    TABLE.with(|t| {
        if let Some(t) = t.borrow_mut().as_mut() {
            if t.quiet.len() >= t.caps.domains {
                t.quiet.clear();
            }
            t.quiet.insert(domain.to_ascii_lowercase());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls_rpt::result::ResultType;
    use crate::tls_rpt::tally::PolicyKind;

    #[test]
    fn counts_on_this_thread_only_when_installed() {
        let p = PolicyDesc {
            kind: PolicyKind::Sts,
            strings: vec![],
            mx: vec![],
        };
        let fail = Outcome::Failure {
            result: ResultType::ValidationFailure,
            sending_ip: None,
            mx: "mx.r.test",
            receiving_ip: None,
        };
        record("a.test", &p, Outcome::Success);
        assert!(!enabled());
        install(Caps {
            domains: 10,
            details: 10,
        });
        record("a.test", &p, Outcome::Success);
        quiet("r.test");
        record("r.test", &p, fail);
        record("r.test", &p, Outcome::Success);
        let t = take().unwrap();
        assert_eq!(t.domains["a.test"][0].success, 1);
        assert_eq!(t.domains["r.test"][0].failure, 0);
        assert_eq!(t.domains["r.test"][0].success, 1);
        assert!(take().is_none());
        assert!(uninstall().unwrap().is_empty());
    }
}
