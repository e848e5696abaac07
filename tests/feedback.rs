//! Bounces and complaints coming back, through real sockets: mail goes out with VERP
//! envelope senders (one recipient a transaction), a DSN sent later with Python's smtplib to a
//! VERP address records an asynchronous bounce and suppresses the recipient for the message's
//! tenant, so that the next message to it is not sent; an ARF complaint to a feedback loop
//! address, matched by its Message-ID, records a complaint, counts it for the campaign and
//! pauses the campaign past its threshold; a report that matches nothing is forwarded to the
//! operator, never relayed where its domain routes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::receiver::Scripted;
use common::{Client, Mta, mta_cli_json, tempdir, wait_log, write_config};
use serde_json::Value;

const SECRET: &str = "an-operator-secret-of-some-length";

fn config(dir: &Path, port: u16, feedback: &str, delivery: &str) -> PathBuf {
    write_config(
        dir,
        "",
        &format!(
            "[delivery]\nidle_timeout = \"1s\"\n{delivery}\n[delivery.retry]\nfirst = \"1s\"\nmax = \"2s\"\n\
             [feedback]\nsecret = \"{SECRET}\"\n{feedback}\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{port}\"]\n\
             [[routes]]\ndomain = \"*.src.test\"\nhosts = [\"127.0.0.1:{port}\"]\n\
             [[routes]]\ndomain = \"src.test\"\nhosts = [\"127.0.0.1:{port}\"]\n"
        ),
    )
}

/// Sends `message` with Python's smtplib from `sender` (empty: the null sender) to `rcpt`;
/// returns the RCPT and DATA replies.
fn report(mta: &Mta, dir: &Path, sender: &str, rcpt: &str, message: &str) -> Value {
    let file = dir.join(format!("report-{}.eml", rand_suffix()));
    std::fs::write(&file, message).unwrap();
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/send_report.py"
        ))
        .arg(mta.addr.ip().to_string())
        .arg(mta.addr.port().to_string())
        .arg(sender)
        .arg(rcpt)
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn events<'a>(log: &'a [Value], kind: &str, rcpt: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|e| e["type"] == kind && (rcpt.is_empty() || e["recipient"] == rcpt))
        .collect()
}

fn dsn(verp: &str, rcpt: &str) -> String {
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.dest.test>\r\n\
         To: {verp}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
         \r\n\
         --B\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         Your message could not be delivered.\r\n\
         --B\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.dest.test\r\n\
         \r\n\
         Final-Recipient: rfc822; {rcpt}\r\n\
         Action: failed\r\n\
         Status: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: user unknown\r\n\
         \r\n\
         --B--\r\n"
    )
}

fn arf(rcpt: &str, message_id: &str) -> String {
    format!(
        "From: Feedback Loop <fbl@isp.test>\r\n\
         To: fbl@src.test\r\n\
         Subject: complaint\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\
         \r\n\
         --F\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         This is an abuse report.\r\n\
         --F\r\n\
         Content-Type: message/feedback-report\r\n\
         \r\n\
         Feedback-Type: abuse\r\n\
         User-Agent: isp-fbl/1.0\r\n\
         Version: 1\r\n\
         Original-Rcpt-To: <{rcpt}>\r\n\
         \r\n\
         --F\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         From: news@src.test\r\n\
         To: {rcpt}\r\n\
         Subject: news\r\n\
         Message-ID: <{message_id}>\r\n\
         \r\n\
         --F--\r\n"
    )
}

#[test]
fn an_asynchronous_bounce_suppresses_the_recipient_and_the_next_message_is_not_sent() {
    let dir = tempdir();
    let sink = Scripted::start(false, 0);
    let feedback = "bounce_domain = \"bounces.src.test\"\nverp_senders = [\"src.test\"]\n";
    let cfg = config(dir.path(), sink.port, feedback, "");
    let mut mta = Mta::start(dir.path(), &cfg);
    common::submit_message(
        &mta,
        "news@src.test",
        &["ann@dest.test", "bob@dest.test"],
        "X-Campaign: spring\r\nX-Tenant: acme\r\nSubject: news\r\n\r\nhello\r\n",
    );
    let got = sink.wait_for(2, Duration::from_secs(20));
    // One recipient a transaction, each with its own VERP envelope sender.
    let bob = got
        .iter()
        .find(|m| m.to == ["bob@dest.test"])
        .expect("bob's copy");
    let ann = got
        .iter()
        .find(|m| m.to == ["ann@dest.test"])
        .expect("ann's copy");
    assert!(bob.from.starts_with("bounce+"), "{}", bob.from);
    assert!(
        bob.from.ends_with("=bob=dest.test@bounces.src.test"),
        "{}",
        bob.from
    );
    assert_ne!(ann.from, bob.from);
    // A forged token and a made-up address of the bounce domain are refused at RCPT.
    let forged = bob.from.replace("=bob=dest.test", "=eve=dest.test");
    let r = report(
        &mta,
        dir.path(),
        "",
        &forged,
        &dsn(&forged, "eve@dest.test"),
    );
    assert_eq!(r["rcpt"][0], 550, "{r}");
    let r = report(
        &mta,
        dir.path(),
        "",
        "postmaster-x@bounces.src.test",
        "Subject: x\r\n\r\nx\r\n",
    );
    assert_eq!(r["rcpt"][0], 550, "{r}");
    // Its postmaster takes mail (RFC 5321 4.5.1), read as a report like the rest.
    let r = report(
        &mta,
        dir.path(),
        "someone@else.test",
        "Postmaster@bounces.src.test",
        "Subject: hello\r\n\r\nfor the postmaster\r\n",
    );
    assert_eq!(r["data"][0], 250, "{r}");
    // The DSN comes back later, from a client that is not trusted for relaying either.
    let r = report(
        &mta,
        dir.path(),
        "",
        &bob.from,
        &dsn(&bob.from, "bob@dest.test"),
    );
    assert_eq!(r["data"][0], 250, "{r}");
    let log = wait_log(dir.path(), "asynchronous bounce", |l| {
        !events(l, "Bounce", "bob@dest.test").is_empty()
            && !events(l, "Suppression", "bob@dest.test").is_empty()
            && !events(l, "FeedbackReport", "").is_empty()
    });
    let b = events(&log, "Bounce", "bob@dest.test")[0];
    assert_eq!(b["async"], true, "{b}");
    assert_eq!(
        (
            b["class"].as_str(),
            b["status"].as_str(),
            b["matched_by"].as_str(),
            b["campaign"].as_str(),
            b["tenant"].as_str()
        ),
        (
            Some("bad_mailbox"),
            Some("5.1.1"),
            Some("verp"),
            Some("spring"),
            Some("acme")
        ),
        "{b}"
    );
    let s = events(&log, "Suppression", "bob@dest.test")[0];
    assert_eq!(
        (s["tenant"].as_str(), s["by"].as_str()),
        (Some("acme"), Some("report"))
    );
    assert!(
        events(&log, "FeedbackReport", "")
            .iter()
            .any(|e| e["outcome"] == "unmatched" && e["reporter"] == "someone@else.test"),
        "the postmaster's mail is logged as an unmatched report"
    );
    // The reports themselves went nowhere: the sink still has the two copies only.
    assert_eq!(sink.got.lock().unwrap().len(), 2);
    let check = mta_cli_json(
        mta.admin.unwrap(),
        &cfg,
        &["suppression", "check", "bob@dest.test", "--tenant", "acme"],
    );
    assert_eq!(check["listed"], true, "{check}");
    // The next message to bob is not sent: without a tenant it is refused at RCPT only when
    // the global list has it (a trusted client) ...
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\nMAIL FROM:<news@src.test>\r\nRCPT TO:<bob@dest.test>\r\nQUIT\r\n");
    c.reply();
    assert_eq!(
        c.codes(2),
        vec![250, 250],
        "acme's entry is not in the global list"
    );
    // ... and the tenant's message is dropped at delivery.
    common::submit_message(
        &mta,
        "news@src.test",
        &["bob@dest.test", "ann@dest.test"],
        "X-Campaign: summer\r\nX-Tenant: acme\r\nSubject: more news\r\n\r\nhello\r\n",
    );
    let log = wait_log(dir.path(), "Suppressed", |l| {
        !events(l, "Suppressed", "bob@dest.test").is_empty()
            && events(l, "Delivery", "ann@dest.test").len() == 2
    });
    assert_eq!(
        events(&log, "Suppressed", "bob@dest.test")[0]["tenant"],
        "acme"
    );
    assert_eq!(
        sink.got
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.to == ["bob@dest.test"])
            .count(),
        1
    );
    // The bounce counts for the campaign.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = mta_cli_json(mta.admin.unwrap(), &cfg, &["stats", "--by", "campaign"]);
        let row = v["rows"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == "spring").cloned())
            .unwrap_or(Value::Null);
        // (Each shard hands its own counts over once a second; the report counts at once.)
        if row["bounced"] == 1 && row["delivered"] == 2 {
            assert_eq!(row["accepted"], 2, "{v:#}");
            assert_eq!(row["bounced_by_class"]["bad_mailbox"], 1, "{v:#}");
            break;
        }
        assert!(Instant::now() < deadline, "{v:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    mta.stop();
}

#[test]
fn a_complaint_is_matched_by_message_id_and_pauses_its_campaign() {
    let dir = tempdir();
    let sink = Scripted::start(false, 0);
    let shaping = dir.path().join("shaping.toml");
    std::fs::write(
        &shaping,
        "[campaign.spring]\ncomplaint_rate = \"10%\"\nmin_messages = 2\n",
    )
    .unwrap();
    let feedback =
        "report_addresses = [\"fbl@src.test\"]\nunmatched_to = \"postmaster@dest.test\"\n";
    let delivery = format!("shaping_file = \"{}\"", shaping.display());
    let cfg = config(dir.path(), sink.port, feedback, &delivery);
    let mut mta = Mta::start(dir.path(), &cfg);
    for (i, rcpt) in ["cat@dest.test", "dan@dest.test"].iter().enumerate() {
        common::submit_message(
            &mta,
            "news@src.test",
            &[rcpt],
            &format!(
                "X-Campaign: spring\r\nMessage-ID: <m{i}@src.test>\r\nSubject: news\r\n\r\nhello\r\n"
            ),
        );
    }
    let got = sink.wait_for(2, Duration::from_secs(20));
    assert!(
        got.iter().all(|m| m.from == "news@src.test"),
        "no VERP configured"
    );
    // Shards hand what they accepted to the Message-ID index once a second: the complaint
    // is sent again until it is matched (the unmatched tries are logged as such).
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let r = report(
            &mta,
            dir.path(),
            "fbl@isp.test",
            "fbl@src.test",
            &arf("cat@dest.test", "m0@src.test"),
        );
        assert_eq!(r["data"][0], 250, "{r}");
        let log = common::event_log(dir.path());
        if !events(&log, "Complaint", "cat@dest.test").is_empty() {
            break log;
        }
        assert!(Instant::now() < deadline, "never matched: {log:#?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let c = events(&log, "Complaint", "cat@dest.test")[0];
    assert_eq!(
        (
            c["feedback_type"].as_str(),
            c["matched_by"].as_str(),
            c["campaign"].as_str(),
            c["reporter"].as_str()
        ),
        (
            Some("abuse"),
            Some("message_id"),
            Some("spring"),
            Some("fbl@isp.test")
        ),
        "{c}"
    );
    // One complaint in two messages is over 10%: the campaign is paused.
    let log = wait_log(dir.path(), "CampaignPaused", |l| {
        !events(l, "CampaignPaused", "").is_empty()
            && !events(l, "Suppression", "cat@dest.test").is_empty()
    });
    let p = events(&log, "CampaignPaused", "")[0];
    assert_eq!(
        (p["name"].as_str(), p["by"].as_str()),
        (Some("spring"), Some("threshold"))
    );
    assert!(
        p["reason"].as_str().unwrap().starts_with("complaint rate"),
        "{p}"
    );
    assert_eq!(
        events(&log, "Suppression", "cat@dest.test")[0]["kind"],
        "complaint"
    );
    let v = mta_cli_json(mta.admin.unwrap(), &cfg, &["stats", "--by", "campaign"]);
    let row = v["rows"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "spring").cloned())
        .unwrap();
    assert_eq!(row["complained"], 1, "{v:#}");
    // A report that is no report at all goes to the operator, not where its domain routes.
    let r = report(
        &mta,
        dir.path(),
        "someone@else.test",
        "fbl@src.test",
        "Subject: hello\r\n\r\nnot a report\r\n",
    );
    assert_eq!(r["data"][0], 250, "{r}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sink.got.lock().unwrap().iter().any(|m| {
        m.to == ["postmaster@dest.test"] && m.body.contains("not a report") && m.from.is_empty()
    }) {
        assert!(
            Instant::now() < deadline,
            "the unmatched report was not forwarded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = wait_log(dir.path(), "unmatched report", |l| {
        events(l, "FeedbackReport", "")
            .iter()
            .any(|e| e["outcome"] == "unmatched" && e["reporter"] == "someone@else.test")
    });
    let (ok, metrics, _) = common::mta_cli(mta.admin.unwrap(), &cfg, &["metrics"]);
    assert!(ok);
    let count = |outcome: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("mta_feedback_reports_total{")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(count("complaint"), 1, "{metrics}");
    assert!(count("unmatched") >= 1, "{metrics}");
    assert!(events(&log, "Reception", "").iter().all(|e| {
        e["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r != "fbl@src.test")
    }));
    // The index of Message-IDs survives a restart: a complaint about the other message, sent
    // before it, still matches.
    mta.stop();
    let mut mta = Mta::start(dir.path(), &cfg);
    let r = report(
        &mta,
        dir.path(),
        "fbl@isp.test",
        "fbl@src.test",
        &arf("dan@dest.test", "m1@src.test"),
    );
    assert_eq!(r["data"][0], 250, "{r}");
    let log = wait_log(dir.path(), "complaint after the restart", |l| {
        !events(l, "Complaint", "dan@dest.test").is_empty()
    });
    assert_eq!(
        events(&log, "Complaint", "dan@dest.test")[0]["matched_by"],
        "message_id"
    );
    mta.stop();
}
