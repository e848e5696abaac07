//! Mail never loops (RFC 5321 6.3): a route back to the MTA itself and an MX pointing at
//! loopback bounce with 5.4.6 without a connection, and bounces of mail from untrusted
//! clients return only the header of the original.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::receiver::Scripted;
use common::{Client, Mta, event_log, tempdir, write_config};
use mta::dns::fake::{FakeDns, FakeZone};
use serde_json::Value;

/// Waits until the event log has an event of `kind` for `recipient`.
fn wait_event(dir: &std::path::Path, kind: &str, recipient: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(e) = event_log(dir)
            .into_iter()
            .find(|e| e["type"] == kind && e["recipient"] == recipient)
        {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} event for {recipient}: {:?}",
            event_log(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `recipient`'s bounce and checks it is a 5.4.6 whose reply says `why`.
fn assert_loop_bounce(dir: &std::path::Path, recipient: &str, why: &str) {
    let bounce = wait_event(dir, "Bounce", recipient);
    assert_eq!(bounce["status"], "5.4.6", "{bounce}");
    assert!(
        bounce["reply"].as_str().unwrap_or_default().contains(why),
        "{bounce}"
    );
}

/// A `[[routes]]` entry sending `domain` to 127.0.0.1:`port`.
fn route(domain: &str, port: u16) -> String {
    format!("[[routes]]\ndomain = \"{domain}\"\nhosts = [\"127.0.0.1:{port}\"]\n")
}

/// One `Received:` field, `n` times.
fn hops(n: usize) -> String {
    "Received: from a.test by b.test; Tue, 1 Dec 2026 10:00:00 +0000\r\n".repeat(n)
}

fn receptions(dir: &std::path::Path) -> usize {
    event_log(dir)
        .iter()
        .filter(|e| e["type"] == "Reception")
        .count()
}

/// Sends one message from `from` to `to` with `body` and returns the final reply.
fn send(mta: &Mta, from: &str, to: &str, body: &str) -> String {
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    c.send(format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n").as_bytes());
    assert_eq!(c.codes(3), vec![250, 250, 354]);
    c.send(format!("{body}\r\n.\r\n").as_bytes());
    c.reply().unwrap()
}

#[test]
fn a_route_back_to_the_mta_itself_bounces_with_5_4_6() {
    let sink = Scripted::start(false, 0);
    let dir = tempdir();
    let delivery = |loop_port: u16| {
        format!(
            "[delivery]\n[relay]\nrelay_domains = [\"loop.test\"]\n{}{}",
            route("src.test", sink.port),
            route("loop.test", loop_port)
        )
    };
    // The MTA's own port is known once it listens: start with a harmless route, then point
    // loop.test at the MTA itself and reload.
    let config = write_config(dir.path(), "", &delivery(9));
    let mut mta = Mta::start(dir.path(), &config);
    write_config(dir.path(), "", &delivery(mta.addr.port()));
    mta.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !mta
        .drain_log()
        .iter()
        .filter(|l| l.contains("configuration reloaded"))
        .count()
        .eq(&2)
    {
        assert!(
            Instant::now() < deadline,
            "no reload: {:?}",
            mta.drain_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let r = send(
        &mta,
        "a@src.test",
        "u@loop.test",
        "Subject: loop\r\n\r\nround and round",
    );
    assert!(r.starts_with("250"), "{r}");
    assert_loop_bounce(
        dir.path(),
        "u@loop.test",
        "mail for loop.test loops back to myself",
    );
    // The sender is told, and the message never came back in.
    let got = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "one DSN");
    assert_eq!(got[0].from, "", "a DSN has the null sender");
    assert!(got[0].body.contains("Status: 5.4.6"), "{}", got[0].body);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        receptions(dir.path()),
        1,
        "the MTA received the message once"
    );
    assert!(mta.stop().success());
}

#[test]
fn an_mx_pointing_at_loopback_is_never_connected_to() {
    let fake = FakeDns::start(
        FakeZone::default()
            .mx("loopmx.test", 10, "mx.loopmx.test")
            .a("mx.loopmx.test", Ipv4Addr::LOCALHOST),
    )
    .unwrap();
    let sink = Scripted::start(false, 0);
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\n[dns]\nservers = [\"{}\"]\n{}",
            fake.addr(),
            route("src.test", sink.port)
        ),
    );
    let mut mta = Mta::start(dir.path(), &config);
    let r = send(&mta, "a@src.test", "u@loopmx.test", "Subject: mx\r\n\r\nhi");
    assert!(r.starts_with("250"), "{r}");
    assert_loop_bounce(dir.path(), "u@loopmx.test", "loops back to myself");
    assert!(mta.stop().success());
}

#[test]
fn bounces_of_mail_from_untrusted_clients_return_only_the_header() {
    let sink = Scripted::start(false, 0);
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\n[relay]\nrelay_domains = [\"dest.test\"]\ntrusted_networks = []\n{}{}",
            route("dest.test", sink.port),
            route("src.test", sink.port)
        ),
    );
    let mut mta = Mta::start(dir.path(), &config);
    // The client asks for the full message back; it is not trusted, so it gets the header.
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    c.send(b"MAIL FROM:<a@src.test> RET=FULL\r\nRCPT TO:<bad@dest.test>\r\nDATA\r\n");
    assert_eq!(c.codes(3), vec![250, 250, 354]);
    c.send(b"Subject: reflected\r\n\r\nSECRET-BODY-TEXT\r\n.\r\n");
    assert!(c.reply().unwrap().starts_with("250"));
    let got = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "one DSN");
    let dsn = &got[0].body;
    assert!(dsn.contains("Content-Type: text/rfc822-headers"), "{dsn}");
    assert!(dsn.contains("Subject: reflected"), "{dsn}");
    assert!(!dsn.contains("SECRET-BODY-TEXT"), "{dsn}");
    assert!(mta.stop().success());
}

#[test]
fn postmaster_without_a_domain_goes_to_the_configured_mailbox() {
    let sink = Scripted::start(false, 0);
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\n[relay]\npostmaster = \"ops@src.test\"\n{}",
            route("src.test", sink.port)
        ),
    );
    let mut mta = Mta::start(dir.path(), &config);
    let r = send(
        &mta,
        "",
        "Postmaster",
        "Subject: to the postmaster\r\n\r\nhello",
    );
    assert!(r.starts_with("250"), "{r}");
    let got = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, vec!["ops@src.test".to_owned()]);
    assert!(got[0].body.contains("Subject: to the postmaster"));
    assert!(mta.stop().success());
}

#[test]
fn an_unset_postmaster_is_a_warning() {
    let dir = tempdir();
    let config = write_config(dir.path(), "", "");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("relay.postmaster is not set") && err.contains("postmaster@mx.test"),
        "{err}"
    );
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap() + "[relay]\npostmaster = \"not a mailbox\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn queued_mail_with_too_many_hops_bounces_when_delivered() {
    let sink = Scripted::start(false, 0);
    let dir = tempdir();
    let routes = route("dest.test", sink.port) + &route("src.test", sink.port);
    // Queued by a configuration that allowed it (as mail queued before the limit existed),
    // delivery on hold.
    let config = write_config(
        dir.path(),
        "",
        &format!("[smtp]\nmax_received_headers = 1000\n[delivery]\nhold = true\n{routes}"),
    );
    let mut mta = Mta::start(dir.path(), &config);
    let (looped, within) = (hops(101), hops(100));
    let r = send(
        &mta,
        "a@src.test",
        "looped@dest.test",
        &format!("{looped}Subject: l\r\n\r\nx"),
    );
    assert!(r.starts_with("250"), "{r}");
    let r = send(
        &mta,
        "a@src.test",
        "fine@dest.test",
        &format!("{within}Subject: f\r\n\r\ny"),
    );
    assert!(r.starts_with("250"), "{r}");
    assert!(mta.stop().success());

    // Delivered under the default limit (100).
    write_config(dir.path(), "", &format!("[delivery]\n{routes}"));
    let mut mta = Mta::start(dir.path(), &config);
    assert_loop_bounce(dir.path(), "looped@dest.test", "Too many hops");
    wait_event(dir.path(), "Delivery", "fine@dest.test");
    // The sender gets the DSN; the looping message itself never left.
    let got = sink.wait_for(2, Duration::from_secs(20));
    assert!(
        got.iter()
            .all(|m| m.to != vec!["looped@dest.test".to_owned()])
    );
    assert!(
        got.iter()
            .any(|m| m.from.is_empty() && m.body.contains("Status: 5.4.6")),
        "{got:?}"
    );
    assert!(mta.stop().success());
}

#[test]
fn more_than_100_received_fields_are_refused_at_the_end_of_data() {
    let dir = tempdir();
    let config = write_config(dir.path(), "", "");
    let mut mta = Mta::start(dir.path(), &config);
    let r = send(
        &mta,
        "a@src.test",
        "u@dest.test",
        &format!("{}Subject: a\r\n\r\nx", hops(101)),
    );
    assert!(r.starts_with("554 5.4.6"), "{r}");
    let r = send(
        &mta,
        "a@src.test",
        "u@dest.test",
        &format!("{}Subject: b\r\n\r\nx", hops(100)),
    );
    assert!(r.starts_with("250"), "{r}");
    // The same through BDAT.
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    let body = format!("{}Subject: c\r\n\r\nx\r\n", hops(101));
    c.send(
        format!(
            "MAIL FROM:<a@src.test>\r\nRCPT TO:<u@dest.test>\r\nBDAT {} LAST\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.codes(2), vec![250, 250]);
    let r = c.reply().unwrap();
    assert!(r.starts_with("554 5.4.6"), "{r}");
    assert!(mta.stop().success());
    // Only the message within the limit was queued.
    let counts = common::queue_counts(&config);
    assert_eq!(counts.get("messages"), Some(&1), "{counts:?}");
}
