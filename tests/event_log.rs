//! The event log through a running binary: a message accepted, a recipient refused by the
//! relay policy, a message refused at the end of data, and the delivery attempts, each as one
//! JSON line with the documented fields (docs/LOG_SCHEMA.md).

mod common;

use std::time::{Duration, Instant};

use common::{Client, Mta, event_log, tempdir, write_config};

fn has(v: &serde_json::Value, fields: &[&str]) {
    for f in fields {
        assert!(v.get(*f).is_some(), "{} lacks {f}: {v}", v["type"]);
    }
}

#[test]
fn receptions_rejections_and_attempts_are_logged_with_their_fields() {
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        "[relay]\nlocal_domains = [\"dest.test\"]\ntrusted_networks = []\n\
         [smtp]\nbare_line_ending = \"reject\"\n\
         [delivery]\n[delivery.retry]\nfirst = \"1h\"\n\
         [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:9\"]\n",
    );
    let mut mta = Mta::start(dir.path(), &config);
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    c.send(b"MAIL FROM:<a@src.test>\r\nRCPT TO:<u@dest.test>\r\nRCPT TO:<x@elsewhere.test>\r\nDATA\r\n");
    assert_eq!(c.codes(4), vec![250, 250, 554, 354]);
    c.send(b"Subject: log\r\n\r\nhello\r\n.\r\n");
    assert_eq!(c.codes(1), vec![250]);
    c.send(b"MAIL FROM:<a@src.test>\r\nRCPT TO:<u@dest.test>\r\nDATA\r\n");
    assert_eq!(c.codes(3), vec![250, 250, 354]);
    c.send(b"Subject: bare\r\n\r\nbare\nLF\r\n.\r\n");
    assert_eq!(c.codes(1), vec![550]);

    let deadline = Instant::now() + Duration::from_secs(20);
    let all = loop {
        let all = event_log(dir.path());
        // Rejections are written within a second, maybe after the attempt's line.
        let rejections = all.iter().filter(|v| v["type"] == "Rejection").count();
        if (rejections == 2 && all.iter().any(|v| v["type"] == "TransientFailure"))
            || Instant::now() > deadline
        {
            break all;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(mta.stop().success());
    for v in &all {
        has(v, &["type", "time"]);
        assert!(v["time"].as_u64().unwrap() > 1_700_000_000_000);
    }
    let of = |kind: &str| all.iter().filter(|v| v["type"] == kind).collect::<Vec<_>>();
    let rec = of("Reception");
    assert_eq!(rec.len(), 1, "{all:?}");
    has(
        rec[0],
        &[
            "queue_id",
            "sender",
            "recipients",
            "size",
            "client",
            "helo",
            "tls",
            "auth",
        ],
    );
    assert_eq!(rec[0]["recipients"], serde_json::json!(["u@dest.test"]));
    assert_eq!(rec[0]["client"], "127.0.0.1");
    let rej = of("Rejection");
    assert_eq!(rej.len(), 2, "{all:?}");
    let rcpt = rej.iter().find(|v| v["stage"] == "rcpt").unwrap();
    assert_eq!(rcpt["recipient"], "x@elsewhere.test");
    assert!(
        rcpt["reply"].as_str().unwrap().starts_with("554 5.7.1"),
        "{rcpt}"
    );
    let data = rej.iter().find(|v| v["stage"] == "data").unwrap();
    assert!(
        data["reply"].as_str().unwrap().starts_with("550 5.6.0"),
        "{data}"
    );
    let attempt = of("TransientFailure");
    has(
        attempt[0],
        &[
            "queue_id",
            "sender",
            "recipient",
            "destination",
            "host",
            "tls",
            "reply",
            "status",
            "class",
            "attempt",
            "duration_ms",
            "size",
        ],
    );
    assert_eq!(attempt[0]["queue_id"], rec[0]["queue_id"]);
    assert_eq!(attempt[0]["attempt"], 1);
}
