//! Campaigns and tenants through real sockets: the header fields are read at reception and
//! stripped when configured, every event of the message names them, a tenant's hard bounce
//! suppresses for that tenant only, and the labels survive a restart.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::receiver::Scripted;
use common::{Client, Mta, event_log, tempdir, write_config};
use serde_json::Value;

fn config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    write_config(
        dir,
        "",
        &format!(
            "[delivery]\nidle_timeout = \"1s\"\n[delivery.retry]\nfirst = \"1s\"\nmax = \"2s\"\n\
             [suppression]\nmode = \"delivery\"\n{extra}\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{port}\"]\n"
        ),
    )
}

/// Sends one message from loopback (a trusted network) with the given labels; panics unless
/// it is accepted.
fn send(mta: &Mta, campaign: Option<&str>, tenant: Option<&str>, rcpts: &[&str]) {
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    let mut cmd = String::from("MAIL FROM:<news@src.test>\r\n");
    for r in rcpts {
        cmd.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    cmd.push_str("DATA\r\n");
    c.send(cmd.as_bytes());
    let mut want = vec![250; rcpts.len() + 1];
    want.push(354);
    assert_eq!(c.codes(rcpts.len() + 2), want);
    let mut msg = String::from("Subject: news\r\n");
    if let Some(x) = campaign {
        msg.push_str(&format!("X-Campaign: {x}\r\n"));
    }
    if let Some(x) = tenant {
        msg.push_str(&format!("X-Tenant: {x}\r\n"));
    }
    msg.push_str("\r\nhello\r\n.\r\n");
    c.send(msg.as_bytes());
    let r = c.reply().unwrap();
    assert!(r.starts_with("250"), "{r}");
}

/// Waits until `pred` holds of the event log (it is flushed every second).
fn wait_log(dir: &Path, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = event_log(dir);
        if pred(&log) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in the event log: {log:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn events<'a>(log: &'a [Value], kind: &str, rcpt: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|e| e["type"] == kind && (rcpt.is_empty() || e["recipient"] == rcpt))
        .collect()
}

#[test]
fn labels_are_stripped_logged_and_key_the_tenants_suppression() {
    let dir = tempdir();
    let sink = Scripted::start(false, 0);
    let cfg = config(dir.path(), sink.port, "[campaigns]\nstrip = true\n");
    let mut mta = Mta::start(dir.path(), &cfg);
    send(
        &mta,
        Some("spring"),
        Some("acme"),
        &["ok1@dest.test", "bad1@dest.test"],
    );
    let got = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);
    assert!(!got[0].body.contains("X-Campaign"), "{}", got[0].body);
    assert!(!got[0].body.contains("X-Tenant"), "{}", got[0].body);
    assert!(got[0].body.contains("Subject: news"));
    let log = wait_log(dir.path(), "suppression", |l| {
        !events(l, "Suppression", "").is_empty()
    });
    for e in events(&log, "Reception", "")
        .into_iter()
        .chain(events(&log, "Delivery", "ok1@dest.test"))
        .chain(events(&log, "Bounce", "bad1@dest.test"))
    {
        assert_eq!(
            (e["campaign"].as_str(), e["tenant"].as_str()),
            (Some("spring"), Some("acme")),
            "{e}"
        );
    }
    let s = events(&log, "Suppression", "");
    assert_eq!(
        (s[0]["recipient"].as_str(), s[0]["tenant"].as_str()),
        (Some("bad1@dest.test"), Some("acme"))
    );
    // The tenant's list drops the address for that tenant; without a tenant it is sent again
    // (and bounces again).
    send(&mta, Some("summer"), Some("acme"), &["bad1@dest.test"]);
    let log = wait_log(dir.path(), "Suppressed", |l| {
        !events(l, "Suppressed", "bad1@dest.test").is_empty()
    });
    assert_eq!(events(&log, "Suppressed", "")[0]["campaign"], "summer");
    send(&mta, None, None, &["bad1@dest.test"]);
    let log = wait_log(dir.path(), "second bounce", |l| {
        events(l, "Bounce", "bad1@dest.test").len() == 2
    });
    let second = events(&log, "Bounce", "bad1@dest.test")[1];
    assert!(
        second.get("campaign").is_none() && second.get("tenant").is_none(),
        "{second}"
    );
    mta.stop();
}

#[test]
fn labels_are_kept_without_strip_and_survive_a_restart() {
    let dir = tempdir();
    let port = common::closed_port();
    // Nothing answers at first: the message waits in the queue.
    let cfg = config(dir.path(), port, "");
    let mut mta = Mta::start(dir.path(), &cfg);
    send(&mta, Some("autumn"), Some("globex"), &["late@dest.test"]);
    wait_log(dir.path(), "deferral", |l| {
        !events(l, "TransientFailure", "").is_empty()
    });
    mta.kill();
    // Now a receiver answers, at the route of the restarted MTA.
    let sink = Scripted::start(false, 0);
    let cfg = config(dir.path(), sink.port, "");
    let mut mta = Mta::start(dir.path(), &cfg);
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].body.contains("X-Campaign: autumn"),
        "{}",
        got[0].body
    );
    let log = wait_log(dir.path(), "delivery", |l| {
        !events(l, "Delivery", "late@dest.test").is_empty()
    });
    let d = events(&log, "Delivery", "late@dest.test")[0];
    assert_eq!(
        (d["campaign"].as_str(), d["tenant"].as_str()),
        (Some("autumn"), Some("globex"))
    );
    mta.stop();
}
