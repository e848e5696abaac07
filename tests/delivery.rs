//! Delivery through real sockets: the MTA relays to scripted SMTP servers on loopback,
//! retries temporary failures, bounces permanent ones with a DSN, reuses connections, and the
//! books balance.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::receiver::Scripted;
use common::{Client, Mta, tempdir, write_config};

fn config(dir: &std::path::Path, port: u16, extra: &str) -> std::path::PathBuf {
    write_config(
        dir,
        "",
        &format!(
            "[delivery]\nidle_timeout = \"2s\"\nmax_connections = 2\n[delivery.retry]\nfirst = \"1s\"\nmax = \"2s\"\n{extra}\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{port}\"]\n\
             [[routes]]\ndomain = \"src.test\"\nhosts = [\"127.0.0.1:{port}\"]\n"
        ),
    )
}

/// Both shards' delivery events (receptions and rejections left out).
fn delivery_log(dir: &std::path::Path) -> String {
    (0..2)
        .map(|i| {
            std::fs::read_to_string(dir.join(format!("log/delivery-{i}.jsonl"))).unwrap_or_default()
        })
        .collect::<String>()
        .lines()
        .filter(|l| {
            !l.starts_with("{\"type\":\"Reception\"") && !l.starts_with("{\"type\":\"Rejection\"")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A client connection past the greeting and EHLO.
fn session(mta: &Mta) -> Client {
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    c
}

fn send(c: &mut Client, from: &str, rcpts: &[&str], body: &str) -> String {
    let mut cmd = format!("MAIL FROM:<{from}>\r\n");
    for r in rcpts {
        cmd.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    cmd.push_str("DATA\r\n");
    c.send(cmd.as_bytes());
    for _ in 0..rcpts.len() + 2 {
        c.reply().unwrap();
    }
    c.send(format!("{body}.\r\n").as_bytes());
    c.reply().unwrap()
}

fn queue_count(config: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["queue", "count", "--config"])
        .arg(config)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn relays_over_reused_connections_and_books_balance() {
    for chunking in [false, true] {
        let sink = Scripted::start(chunking, 0);
        let dir = tempdir();
        let cfg = config(dir.path(), sink.port, "");
        let mut mta = Mta::start(dir.path(), &cfg);
        let mut c = session(&mta);
        for i in 0..50 {
            let r = send(
                &mut c,
                "a@src.test",
                &["u1@dest.test", "u2@dest.test"],
                &format!("Subject: {i}\r\n\r\n..dot line\r\nbody {i}\r\n"),
            );
            assert!(r.starts_with("250 2.0.0 Ok: queued"), "{r}");
        }
        let got = sink.wait_for(50, Duration::from_secs(30));
        assert_eq!(
            got.len(),
            50,
            "chunking={chunking} {:?}",
            got.iter()
                .filter(|m| m.from.is_empty() || m.to.len() != 2)
                .collect::<Vec<_>>()
        );
        assert!(
            got.iter()
                .all(|m| m.to == ["u1@dest.test", "u2@dest.test"] && m.from == "a@src.test")
        );
        assert!(
            got.iter()
                .all(|m| m.body.contains("\r\n.dot line\r\n") && m.body.starts_with("Received: ")),
            "{:?}",
            got[0]
        );
        // 50 messages went over at most max_connections x shards connections.
        assert!(
            sink.connections.load(Ordering::SeqCst) <= 4,
            "{}",
            sink.connections.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(mta.stop().success());
        let counts = queue_count(&cfg);
        assert!(
            counts.contains("accepted  100")
                && counts.contains("delivered 100")
                && counts.contains("queued    0"),
            "{counts}"
        );
        let log = delivery_log(dir.path());
        assert_eq!(
            log.lines()
                .filter(|l| l.contains("\"type\":\"Delivery\""))
                .count(),
            100,
            "{log}"
        );
    }
}

#[test]
fn temporary_failures_are_retried_and_permanent_ones_bounce_with_a_dsn() {
    let sink = Scripted::start(false, 1);
    let dir = tempdir();
    let cfg = config(dir.path(), sink.port, "");
    let mut mta = Mta::start(dir.path(), &cfg);
    let mut c = session(&mta);
    let r = send(
        &mut c,
        "sender@src.test",
        &["slow@dest.test", "bad@dest.test", "ok@dest.test"],
        "Subject: mixed\r\n\r\nhello\r\n",
    );
    assert!(r.starts_with("250"), "{r}");
    // First attempt: ok delivered, bad bounced, slow deferred; then the DSN to the sender,
    // then the retry of slow (after about 1s).
    let got = sink.wait_for(3, Duration::from_secs(30));
    assert_eq!(got.len(), 3, "{got:?}");
    let dsn = got
        .iter()
        .find(|m| m.from.is_empty())
        .expect("a DSN with a null reverse path");
    assert_eq!(dsn.to, ["sender@src.test"]);
    assert!(
        dsn.body
            .contains("Content-Type: multipart/report; report-type=delivery-status"),
        "{}",
        dsn.body
    );
    assert!(
        dsn.body
            .contains("Final-Recipient: rfc822; bad@dest.test\r\nAction: failed\r\nStatus: 5.1.1"),
        "{}",
        dsn.body
    );
    assert!(!dsn.body.contains("Final-Recipient: rfc822; slow@dest.test"));
    assert!(got.iter().any(|m| m.to == ["slow@dest.test"]), "retried");
    assert!(got.iter().any(|m| m.to == ["ok@dest.test"]));
    std::thread::sleep(Duration::from_millis(500));
    assert!(mta.stop().success());
    let counts = queue_count(&cfg);
    // 3 original recipients + 1 DSN recipient: 3 delivered, 1 bounced.
    assert!(
        counts.contains("accepted  4")
            && counts.contains("delivered 3")
            && counts.contains("bounced   1")
            && counts.contains("queued    0"),
        "{counts}"
    );
}

#[test]
fn null_sender_never_bounces_and_unreachable_destination_defers() {
    // Port 9 on loopback: nothing listens, connections are refused.
    let dir = tempdir();
    let cfg = config(dir.path(), 9, "");
    let mut mta = Mta::start(dir.path(), &cfg);
    let mut c = session(&mta);
    let r = send(&mut c, "", &["x@dest.test"], "Subject: n\r\n\r\nx\r\n");
    assert!(r.starts_with("250"), "{r}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(mta.stop().success());
    let counts = queue_count(&cfg);
    assert!(
        counts.contains("accepted  1") && counts.contains("queued    1"),
        "{counts}"
    );
    let log = delivery_log(dir.path());
    assert!(log.contains("\"type\":\"TransientFailure\""), "{log}");
}

#[test]
fn sigkill_while_delivering_loses_nothing_and_books_balance() {
    let sink = Scripted::start(true, 0);
    let dir = tempdir();
    let cfg = config(dir.path(), sink.port, "");
    let mut mta = Mta::start(dir.path(), &cfg);
    let mut c = session(&mta);
    let mut accepted: Vec<String> = Vec::new();
    for i in 0..400 {
        let rcpts: Vec<String> = (0..1 + i % 2)
            .map(|k| format!("r{i}.{k}@dest.test"))
            .collect();
        let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        let r = send(
            &mut c,
            "a@src.test",
            &refs,
            &format!("Subject: crash {i}\r\n\r\nbody {i}\r\n"),
        );
        if r.starts_with("250") {
            accepted.extend(rcpts);
        }
        if i == 150 {
            // Kill once delivery is under way.
            let deadline = Instant::now() + Duration::from_secs(20);
            while sink.got.lock().unwrap().len() < 20 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            mta.signal(libc::SIGKILL);
            let _ = mta.wait(Duration::from_secs(10));
            break;
        }
    }
    assert!(accepted.len() > 100, "{}", accepted.len());
    let mut again = Mta::start(dir.path(), &cfg);
    // Every acknowledged recipient reaches the receiver (at least once).
    let deadline = Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let got: std::collections::HashSet<String> = sink
            .got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|m| m.to.clone())
            .collect();
        let missing: Vec<&String> = accepted.iter().filter(|r| !got.contains(*r)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing.len();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(missing, 0, "acknowledged recipients never delivered");
    std::thread::sleep(Duration::from_millis(500));
    assert!(again.stop().success());
    let counts = queue_count(&cfg);
    let field = |name: &str| -> u64 {
        counts
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {counts}"))
    };
    // A message in flight at the kill may be in the spool without its 250 having arrived.
    assert!(field("accepted") >= accepted.len() as u64, "{counts}");
    assert_eq!(
        field("accepted"),
        field("delivered") + field("bounced") + field("expired") + field("queued"),
        "{counts}"
    );
    assert_eq!(field("queued"), 0, "{counts}");
}

#[test]
fn notify_success_and_never_are_honoured() {
    let sink = Scripted::start(false, 0);
    let dir = tempdir();
    let cfg = config(dir.path(), sink.port, "");
    let mut mta = Mta::start(dir.path(), &cfg);
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    assert!(c.reply().unwrap().contains("250-DSN"));
    c.send(b"MAIL FROM:<s@src.test> RET=HDRS ENVID=env+2B1\r\nRCPT TO:<ok@dest.test> NOTIFY=SUCCESS ORCPT=rfc822;ok@dest.test\r\nRCPT TO:<bad@dest.test> NOTIFY=NEVER\r\nDATA\r\n");
    assert_eq!(c.codes(4), [250, 250, 250, 354]);
    c.send(b"Subject: dsn\r\n\r\nsecret body\r\n.\r\n");
    assert!(c.reply().unwrap().starts_with("250"));
    // The message to ok@, then one "relayed" DSN (the scripted server has no DSN extension);
    // nothing for bad@ (NOTIFY=NEVER).
    let got = sink.wait_for(2, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(1500));
    let got_all = sink.got.lock().unwrap().clone();
    assert_eq!(got_all.len(), 2, "{got:?}");
    let dsn = got_all.iter().find(|m| m.from.is_empty()).expect("a DSN");
    assert!(
        dsn.body.contains("Action: relayed\r\nStatus: 2.0.0"),
        "{}",
        dsn.body
    );
    assert!(
        dsn.body.contains("Original-Envelope-Id: env+2B1\r\n"), // xtext, as on the wire
        "{}",
        dsn.body
    );
    assert!(
        dsn.body.contains("Original-Recipient: rfc822;ok@dest.test"),
        "{}",
        dsn.body
    );
    assert!(
        dsn.body.contains("Content-Type: text/rfc822-headers"),
        "RET=HDRS: {}",
        dsn.body
    );
    assert!(!dsn.body.contains("secret body"));
    assert!(!dsn.body.contains("bad@dest.test"));
    assert!(mta.stop().success());
}

/// A server that answers every connection with `greeting` and then says nothing more (it keeps
/// the connection open for `hold`).
fn one_liner(greeting: &'static str, hold: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            std::thread::spawn(move || {
                let _ = stream.write_all(greeting.as_bytes());
                std::thread::sleep(hold);
            });
        }
    });
    port
}

#[test]
fn refused_greeting_moves_to_the_next_host_and_silence_times_out() {
    let sink = Scripted::start(false, 0);
    let busy = one_liner("421 4.3.2 busy, try another host\r\n", Duration::ZERO);
    let silent = one_liner("220 silent.test ESMTP\r\n", Duration::from_secs(20));
    let dir = tempdir();
    let cfg = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\n[delivery.retry]\nfirst = \"30s\"\nmax = \"60s\"\n\
             [delivery.timeouts]\ncommand = \"1s\"\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{busy}\", \"127.0.0.1:{}\"]\n\
             [[routes]]\ndomain = \"quiet.test\"\nhosts = [\"127.0.0.1:{silent}\"]\n",
            sink.port
        ),
    );
    let mut mta = Mta::start(dir.path(), &cfg);
    let mut c = session(&mta);
    assert!(
        send(
            &mut c,
            "a@src.test",
            &["u@dest.test"],
            "Subject: next\r\n\r\nx\r\n"
        )
        .starts_with("250")
    );
    assert!(
        send(
            &mut c,
            "a@src.test",
            &["u@quiet.test"],
            "Subject: quiet\r\n\r\nx\r\n"
        )
        .starts_with("250")
    );
    let got = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, ["u@dest.test"]);
    // The silent server's EHLO times out after 1s: a deferral, logged, the recipient still queued.
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        mta.drain_log();
        let log = delivery_log(dir.path());
        if log.contains("u@quiet.test") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let line = log
        .lines()
        .find(|l| l.contains("u@quiet.test"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("\"type\":\"TransientFailure\"") && line.contains("timeout"),
        "{line}"
    );
    assert!(mta.stop().success());
    let counts = queue_count(&cfg);
    assert!(
        counts.contains("delivered 1") && counts.contains("queued    1"),
        "{counts}"
    );
}
