//! The suppression list through real sockets: `mta suppression add` makes RCPT refuse the
//! address (or delivery drop it, in `delivery` mode), a hard bounce adds its recipient so that
//! the next message to it is not sent, and the list survives a SIGKILL.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::receiver::Scripted;
use common::{Client, Mta, mta_cli, mta_cli_json, queue_counts, tempdir, wait_log, write_config};
use serde_json::Value;

fn config(dir: &Path, port: u16, extra: &str) -> std::path::PathBuf {
    write_config(
        dir,
        "",
        &format!(
            "[delivery]\nidle_timeout = \"2s\"\n[delivery.retry]\nfirst = \"1s\"\nmax = \"2s\"\n{extra}\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{port}\"]\n\
             [[routes]]\ndomain = \"src.test\"\nhosts = [\"127.0.0.1:{port}\"]\n"
        ),
    )
}

/// The reply to each of `rcpts` in one transaction from loopback (a trusted network), then
/// the message's reply if any recipient was taken.
fn transaction(mta: &Mta, rcpts: &[&str]) -> (Vec<String>, Option<String>) {
    let mut c = Client::connect(mta.addr);
    c.reply();
    c.send(b"EHLO c.test\r\n");
    c.reply();
    c.send(b"MAIL FROM:<a@src.test>\r\n");
    assert!(c.reply().unwrap().starts_with("250"));
    let mut replies = Vec::new();
    for r in rcpts {
        c.send(format!("RCPT TO:<{r}>\r\n").as_bytes());
        replies.push(c.reply().unwrap());
    }
    if !replies.iter().any(|r| r.starts_with("250")) {
        return (replies, None);
    }
    c.send(b"DATA\r\n");
    assert!(c.reply().unwrap().starts_with("354"));
    c.send(b"Subject: news\r\n\r\nhello\r\n.\r\n");
    (replies, c.reply())
}

fn of_type<'a>(log: &'a [Value], t: &str) -> Vec<&'a Value> {
    log.iter().filter(|e| e["type"] == t).collect()
}

#[test]
fn an_added_address_is_refused_at_rcpt_and_survives_a_kill() {
    let dir = tempdir();
    let sink = Scripted::start(false, 0);
    let cfg = config(dir.path(), sink.port, "");
    let mut mta = Mta::start(dir.path(), &cfg);
    let admin = mta.admin.unwrap();
    let (ok, out, err) = mta_cli(
        admin,
        &cfg,
        &[
            "suppression",
            "add",
            "Gone@Dest.test",
            "--reason",
            "asked to stop",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("listed gone@dest.test"), "{out}");

    let (replies, done) = transaction(&mta, &["gone@dest.test", "ok@dest.test"]);
    assert!(replies[0].starts_with("550 5.7.1"), "{replies:?}");
    assert!(
        replies[0].contains("suppression list (manual)"),
        "{replies:?}"
    );
    assert!(replies[1].starts_with("250"), "{replies:?}");
    assert!(done.unwrap().starts_with("250"));
    let got = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, vec!["ok@dest.test"]);

    // The operator is named in the event, as in operator events.
    let log = wait_log(dir.path(), "Suppression event", |l| {
        !of_type(l, "Suppression").is_empty()
    });
    let e = of_type(&log, "Suppression")[0];
    assert_eq!(e["action"], "add");
    assert_eq!(e["recipient"], "gone@dest.test");
    assert_eq!(e["reason"], "asked to stop");
    assert!(e["by"].as_str().unwrap().starts_with("127.0.0.1"), "{e}");

    // SIGKILL: the entry was synced before the add returned.
    mta.kill();
    let mta = Mta::start(dir.path(), &cfg);
    let admin = mta.admin.unwrap();
    let (replies, _) = transaction(&mta, &["gone@dest.test"]);
    assert!(replies[0].starts_with("550 5.7.1"), "{replies:?}");
    let listed = mta_cli_json(admin, &cfg, &["suppression", "list"]);
    assert_eq!(listed["listed"], 1);
    assert_eq!(listed["entries"][0]["address"], "gone@dest.test");
    assert_eq!(listed["entries"][0]["kind"], "manual");

    // Export, remove, and import again.
    let (ok, exported, err) = mta_cli(admin, &cfg, &["suppression", "export"]);
    assert!(ok, "{err}");
    assert_eq!(exported.lines().count(), 1);
    let (ok, out, _) = mta_cli(admin, &cfg, &["suppression", "remove", "gone@dest.test"]);
    assert!(ok && out.contains("removed gone@dest.test"), "{out}");
    let (replies, done) = transaction(&mta, &["gone@dest.test"]);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    assert!(done.unwrap().starts_with("250"));
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, format!("{exported}new@dest.test,by phone\n")).unwrap();
    let (ok, out, err) = mta_cli(
        admin,
        &cfg,
        &["suppression", "import", file.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("2 lines imported, 2 addresses newly listed"),
        "{out}"
    );
    let check = mta_cli_json(admin, &cfg, &["suppression", "check", "NEW@dest.test"]);
    assert_eq!(check["listed"], true);
    let (replies, _) = transaction(&mta, &["gone@dest.test", "new@dest.test"]);
    assert!(
        replies.iter().all(|r| r.starts_with("550 5.7.1")),
        "{replies:?}"
    );
}

#[test]
fn in_delivery_mode_a_suppressed_recipient_is_dropped_and_accounted() {
    let dir = tempdir();
    let sink = Scripted::start(false, 0);
    let cfg = config(
        dir.path(),
        sink.port,
        "[suppression]\nmode = \"delivery\"\n",
    );
    let mut mta = Mta::start(dir.path(), &cfg);
    let (ok, _, err) = mta_cli(
        mta.admin.unwrap(),
        &cfg,
        &["suppression", "add", "x@dest.test"],
    );
    assert!(ok, "{err}");
    let (replies, done) = transaction(&mta, &["x@dest.test", "y@dest.test"]);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    assert!(done.unwrap().starts_with("250"));
    let got = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(got[0].to, vec!["y@dest.test"]);
    let log = wait_log(dir.path(), "Suppressed event", |l| {
        !of_type(l, "Suppressed").is_empty()
    });
    let e = of_type(&log, "Suppressed")[0];
    assert_eq!(e["recipient"], "x@dest.test");
    assert_eq!(e["status"], "5.7.1");
    assert_eq!(e["class"], "manual");
    // No DSN by default: the sink got the one message only.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sink.got.lock().unwrap().len(), 1);
    mta.stop();
    let counts = queue_counts(&cfg);
    assert_eq!(counts["accepted"], 2, "{counts:?}");
    assert_eq!(counts["delivered"], 1, "{counts:?}");
    assert_eq!(counts["bounced"], 1, "{counts:?}");
    assert_eq!(counts["queued"], 0, "{counts:?}");
}

#[test]
fn a_hard_bounce_suppresses_the_next_message_to_its_recipient() {
    let dir = tempdir();
    let sink = Scripted::start(false, 0);
    let cfg = config(
        dir.path(),
        sink.port,
        "[suppression]\nmode = \"delivery\"\n",
    );
    let mut mta = Mta::start(dir.path(), &cfg);
    let admin = mta.admin.unwrap();
    // The scripted receiver refuses `bad...` with 550 5.1.1: a bad_mailbox bounce.
    let (_, done) = transaction(&mta, &["bad1@dest.test"]);
    assert!(done.unwrap().starts_with("250"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let check = mta_cli_json(admin, &cfg, &["suppression", "check", "bad1@dest.test"]);
        if check["listed"] == true {
            assert_eq!(check["kind"], "hard_bounce");
            break;
        }
        assert!(Instant::now() < deadline, "the bounce did not list bad1");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The event log is not synced: wait for its flush, then SIGKILL (listed means synced).
    wait_log(dir.path(), "Suppression event", |l| {
        !of_type(l, "Suppression").is_empty()
    });
    mta.kill();
    let mta = Mta::start(dir.path(), &cfg);
    let (_, done) = transaction(&mta, &["bad1@dest.test", "good@dest.test"]);
    assert!(done.unwrap().starts_with("250"));
    let log = wait_log(dir.path(), "Suppressed event", |l| {
        !of_type(l, "Suppressed").is_empty()
    });
    // bad1 bounced once (the first message) and was never tried again.
    let bounces: Vec<_> = of_type(&log, "Bounce")
        .into_iter()
        .filter(|e| e["recipient"] == "bad1@dest.test")
        .collect();
    assert_eq!(bounces.len(), 1, "{log:#?}");
    assert_eq!(bounces[0]["class"], "bad_mailbox");
    let added = of_type(&log, "Suppression");
    assert_eq!(added.len(), 1);
    assert_eq!(
        (added[0]["by"].as_str(), added[0]["kind"].as_str()),
        (Some("delivery"), Some("hard_bounce"))
    );
    let suppressed = of_type(&log, "Suppressed");
    assert_eq!(suppressed[0]["recipient"], "bad1@dest.test");
    // good@ went out (with the DSN of the first bounce to a@src.test before it).
    let got = sink.wait_for(2, Duration::from_secs(20));
    assert!(
        got.iter().any(|m| m.to == vec!["good@dest.test"]),
        "{got:?}"
    );
    assert!(
        got.iter()
            .all(|m| !m.to.iter().any(|t| t.starts_with("bad1")))
    );
}

#[test]
fn bad_requests_are_refused_and_a_list_turned_off_answers_404() {
    let dir = tempdir();
    let cfg = write_config(dir.path(), "", "");
    let mta = Mta::start(dir.path(), &cfg);
    let admin = mta.admin.unwrap();
    let post = |path: &str, body: &str| {
        common::http_status(
            admin,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    assert_eq!(post("/suppression/add?address=%3C%3E", ""), 400);
    assert_eq!(
        post("/suppression/add?address=a@b.test&tenant=a%20b", ""),
        400
    );
    assert_eq!(
        post("/suppression/add?address=a@b.test&expires=soon", ""),
        400
    );
    assert_eq!(post("/suppression/import", "ok@b.test\n<>\n"), 400);
    assert_eq!(post("/suppression/import", "ok@b.test\n"), 200);
    let (ok, _, err) = mta_cli(admin, &cfg, &["suppression", "list", "--limit", "0"]);
    assert!(!ok && err.contains("limit"), "{err}");
    drop(mta);

    let dir = tempdir();
    let cfg = write_config(dir.path(), "", "[suppression]\nenabled = false\n");
    let mta = Mta::start(dir.path(), &cfg);
    let (ok, _, err) = mta_cli(mta.admin.unwrap(), &cfg, &["suppression", "list"]);
    assert!(!ok && err.contains("404"), "{err}");
    assert!(!dir.path().join("spool/suppression").exists());
}
