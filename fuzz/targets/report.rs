//! Fuzz body: reading a report that came back (DSN, ARF, non-standard bounce) and matching it.
//!
//! The first byte picks the envelope sender (null or not). Checks: no panic; the report keeps
//! within its bounds (recipients, kept headers); matching gives at least one finding; a finding
//! about a recipient names one that is a VERP target or a recipient the report itself names;
//! parsing twice gives the same report.

use std::time::{Duration, UNIX_EPOCH};

use mta::feedback::index::Sent;
use mta::feedback::matching::{self, RETURN_PATH};
use mta::feedback::{Finding, Verp, report};

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&flags, message)) = data.split_first() else {
        return;
    };
    let sender = match flags % 3 {
        0 => "",
        1 => "MAILER-DAEMON@mx.example",
        _ => "fbl@isp.example",
    };
    let parsed = report::parse(message, sender, &[RETURN_PATH]);
    assert_eq!(parsed, report::parse(message, sender, &[RETURN_PATH]));
    assert!(parsed.recipients.len() <= mta::feedback::fields::MAX_BLOCKS);
    assert!(parsed.original_headers.len() <= 1);
    let verp = Verp::new(b"fuzzing secret for VERP", 7);
    let now = UNIX_EPOCH + Duration::from_secs(20_000 * 86_400);
    let decode = |a: &str| verp.decode(a, now).ok();
    let lookup = |_: &str| {
        Some(Sent {
            queue_id: 1,
            labels: 0,
            recipient: 0,
        })
    };
    let token = verp.encode(("b", "bounces.example"), 7, 3, "a@example.org", now);
    let targets: Vec<_> = decode(&token).into_iter().collect();
    for with in [&targets[..], &[]] {
        let found = matching::findings(&parsed, with, &decode, &lookup);
        assert!(!found.is_empty());
        for f in &found {
            if let Finding::Bounce { target, .. } | Finding::Complaint { target, .. } = f {
                let named = parsed
                    .recipients
                    .iter()
                    .any(|r| r.final_recipient.contains(target.recipient.as_str()))
                    || parsed
                        .original_rcpt
                        .as_deref()
                        .is_some_and(|r| r.contains(target.recipient.as_str()));
                assert!(
                    target.recipient == "a@example.org" || named || target.queue_id == 7,
                    "{f:?}"
                );
            }
        }
    }
}
