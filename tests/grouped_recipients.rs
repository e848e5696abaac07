//! Recipients of one message that share a next hop share one transaction, through real
//! sockets: 50 recipients in 5 domains under one `*.` route (or behind `relay_host`) go in one
//! MAIL with 50 RCPTs, split at `max_recipients_per_transaction`; each recipient's reply is
//! still accounted on its own (a refused one bounces with a DSN, a deferred one is retried
//! alone) and the books balance.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::receiver::{Received, Scripted};
use common::{Mta, event_log, queue_counts, submit, tempdir, write_config};

/// `n` recipients spread over `d0.news.test` .. `d4.news.test`, in turn.
fn recipients(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("user{i}@d{}.news.test", i % 5))
        .collect()
}

fn domains(m: &Received) -> BTreeSet<String> {
    m.to.iter()
        .map(|r| r.split('@').nth(1).unwrap().to_owned())
        .collect()
}

#[test]
fn fifty_recipients_in_five_domains_under_one_route_share_a_transaction() {
    let receiver = Scripted::start(false, 1);
    let port = receiver.port;
    let dir = tempdir();
    let cfg = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\nidle_timeout = \"2s\"\n[delivery.retry]\nfirst = \"1s\"\nmax = \"2s\"\n\
             [[routes]]\ndomain = \"*.news.test\"\nhosts = [\"127.0.0.1:{port}\"]\n\
             [[routes]]\ndomain = \"src.test\"\nhosts = [\"127.0.0.1:{port}\"]\n"
        ),
    );
    let mut mta = Mta::start(dir.path(), &cfg);
    let mut rcpts = recipients(48);
    rcpts.insert(7, "bad1@d2.news.test".into());
    rcpts.insert(30, "slow1@d4.news.test".into());
    let rcpt_refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    submit(&mta, &rcpt_refs, "news");
    // The transaction with 48 accepted recipients, the DSN for bad1, the retry of slow1.
    let got = receiver.wait_for(3, Duration::from_secs(30));
    assert_eq!(got.len(), 3, "{got:?}");
    let first = &got[0];
    assert_eq!(
        first.to.len(),
        48,
        "one transaction carried every recipient"
    );
    assert_eq!(domains(first).len(), 5);
    let dsn = got.iter().find(|m| m.from.is_empty()).expect("a DSN");
    assert!(
        dsn.body
            .contains("Final-Recipient: rfc822; bad1@d2.news.test")
    );
    assert!(
        !dsn.body.contains("Final-Recipient: rfc822; user"),
        "only the refused recipient is reported"
    );
    assert!(
        got.iter().any(|m| m.to == ["slow1@d4.news.test"]),
        "retried alone"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(mta.stop().success());
    let events = event_log(dir.path());
    let kinds = |kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    // 49 recipients of the message and the DSN's one delivered; one bounce, one deferral.
    assert_eq!(kinds("Delivery"), 50);
    assert_eq!(kinds("Bounce"), 1);
    assert_eq!(kinds("TransientFailure"), 1);
    let counts = queue_counts(&cfg);
    assert_eq!(counts["accepted"], 51, "{counts:?}");
    assert_eq!(counts["delivered"], 50, "{counts:?}");
    assert_eq!(counts["bounced"], 1, "{counts:?}");
    assert_eq!(counts["queued"], 0, "{counts:?}");
}

#[test]
fn relay_host_transactions_split_at_the_recipient_limit() {
    let receiver = Scripted::start(false, 0);
    let dir = tempdir();
    let cfg = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\nidle_timeout = \"2s\"\nmax_connections = 1\n\
             max_recipients_per_transaction = 20\nrelay_host = \"127.0.0.1:{}\"\n",
            receiver.port
        ),
    );
    let mut mta = Mta::start(dir.path(), &cfg);
    let rcpts = recipients(50);
    let rcpt_refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    submit(&mta, &rcpt_refs, "news");
    // Jobs of 10 (one per domain) join while they fit: 20, 20 and 10.
    let got = receiver.wait_for(3, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    let got_now = receiver.got.lock().unwrap().clone();
    assert_eq!(got_now.len(), 3, "{got:?}");
    let mut sizes: Vec<usize> = got_now.iter().map(|m| m.to.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [10, 20, 20]);
    let all: BTreeSet<&String> = got_now.iter().flat_map(|m| &m.to).collect();
    assert_eq!(all.len(), 50, "every recipient exactly once");
    assert!(got_now.iter().all(|m| m.to.len() <= 20));
    assert!(mta.stop().success());
    let counts = queue_counts(&cfg);
    assert_eq!(counts["delivered"], 50, "{counts:?}");
    assert_eq!(counts["queued"], 0, "{counts:?}");
}
