//! The admin endpoint and the `mta queue|dest|metrics` commands against a running binary:
//! metrics, the queue summary, one message, destination explanations, suspend/resume, flush,
//! delete, and the access policy for state changes.

mod common;

use std::time::{Duration, Instant};

use common::{
    Mta, http_status, mta_cli, mta_cli_json, queue_counts, submit, tempdir, write_config,
};

#[test]
fn queue_and_destination_operations() {
    let dir = tempdir();
    // Nothing listens on port 9: every attempt is deferred, and the retry is an hour away.
    let config = write_config(
        dir.path(),
        "",
        "[delivery]\n[delivery.retry]\nfirst = \"1h\"\nmax = \"2h\"\n\
         [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:9\"]\n\
         [[routes]]\ndomain = \"src.test\"\nhosts = [\"127.0.0.1:9\"]\n",
    );
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin endpoint");
    let first = submit(&mta, &["a@dest.test", "b@dest.test"], "admin");
    let second = submit(&mta, &["c@dest.test"], "admin");

    // Wait until both messages were tried once.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = mta_cli_json(admin, &config, &["queue", "show", &second]);
        if v["recipients"][0]["attempts"].as_u64() == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "no attempt: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let v = mta_cli_json(admin, &config, &["queue", "show", &first]);
    assert_eq!(v["sender"], "a@src.test");
    assert_eq!(v["recipients"].as_array().unwrap().len(), 2);
    assert!(
        !v["recipients"][0]["last_reply"]
            .as_str()
            .unwrap()
            .is_empty(),
        "{v}"
    );

    let v = mta_cli_json(admin, &config, &["queue", "summary"]);
    assert_eq!(v["recipients"], 3, "{v}");
    assert_eq!(v["domains"][0]["domain"], "dest.test");
    assert_eq!(
        v["domains"][0]["ages"][0], 3,
        "all younger than 5 minutes: {v}"
    );
    let (ok, table, _) = mta_cli(admin, &config, &["queue", "summary"]);
    assert!(ok && table.contains("dest.test"), "{table}");

    let (ok, metrics, _) = mta_cli(admin, &config, &["metrics"]);
    assert!(ok);
    let total = |name: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
            .sum()
    };
    assert_eq!(total("mta_messages_accepted_total"), 2, "{metrics}");
    assert_eq!(total("mta_recipients_accepted_total"), 3);
    assert!(total("mta_recipients_deferred_total") >= 2);
    assert_eq!(total("mta_queue_recipients"), 3);
    assert!(
        metrics.contains("mta_fdatasync_seconds_bucket"),
        "{metrics}"
    );

    let v = mta_cli_json(admin, &config, &["dest", "show", "dest.test"]);
    let shards = v["shards"].as_array().unwrap();
    assert!(
        shards.iter().any(|s| s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("127.0.0.1"))),
        "{v}"
    );
    mta_cli_json(
        admin,
        &config,
        &["dest", "suspend", "dest.test", "--for", "10m"],
    );
    let v = mta_cli_json(admin, &config, &["dest", "show", "dest.test"]);
    assert!(
        v["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["why"].as_str().unwrap().starts_with("suspended")),
        "{v}"
    );
    mta_cli_json(admin, &config, &["dest", "resume", "dest.test"]);
    let v = mta_cli_json(admin, &config, &["dest", "show", "dest.test"]);
    assert!(
        v["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| !s["why"].as_str().unwrap_or("").starts_with("suspended")),
        "{v}"
    );

    let v = mta_cli_json(admin, &config, &["queue", "flush"]);
    assert!(v["flushed"].as_u64().unwrap() >= 1, "{v}");

    let v = mta_cli_json(admin, &config, &["queue", "delete", &first, "--silent"]);
    assert_eq!(v["recipients"], 2, "{v}");
    let (ok, _, err) = mta_cli(admin, &config, &["queue", "show", &first]);
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, _, err) = mta_cli(admin, &config, &["queue", "show", "nothex"]);
    assert!(!ok && err.contains("400"), "{err}");

    assert!(mta.stop().success());
    // The books balance: 3 accepted = 2 bounced (deleted) + 1 queued.
    let count = queue_counts(&config);
    assert_eq!(
        (count["accepted"], count["bounced"], count["queued"]),
        (3, 2, 1),
        "{count:?}"
    );
}

#[test]
fn queue_commands_work_while_delivery_is_on_hold() {
    let dir = tempdir();
    // No [delivery] section: the test configuration holds delivery.
    let config = write_config(dir.path(), "", "");
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin endpoint");
    let first = submit(&mta, &["a@dest.test", "b@dest.test"], "held");
    let second = submit(&mta, &["c@other.test"], "held");

    let v = mta_cli_json(admin, &config, &["queue", "summary"]);
    assert_eq!(
        (v["messages"].as_u64(), v["recipients"].as_u64()),
        (Some(2), Some(3)),
        "{v}"
    );
    assert_eq!(v["domains"][0]["domain"], "dest.test", "{v}");
    let v = mta_cli_json(admin, &config, &["queue", "show", &second]);
    assert_eq!(v["recipients"][0]["address"], "c@other.test");
    assert_eq!(v["recipients"][0]["attempts"], 0, "held: never tried");
    let v = mta_cli_json(admin, &config, &["queue", "flush"]);
    assert_eq!(v["flushed"], 0, "nothing deferred: {v}");
    let v = mta_cli_json(admin, &config, &["queue", "delete", &first, "--silent"]);
    assert_eq!(v["recipients"], 2, "{v}");
    let (ok, _, err) = mta_cli(admin, &config, &["queue", "show", &first]);
    assert!(!ok && err.contains("404"), "{err}");
    let v = mta_cli_json(admin, &config, &["queue", "summary"]);
    assert_eq!(v["recipients"], 1, "{v}");
    assert!(mta.stop().success());

    // After a restart, still on hold, the queue is recovered and shown.
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin endpoint");
    let v = mta_cli_json(admin, &config, &["queue", "summary"]);
    assert_eq!(
        (v["messages"].as_u64(), v["recipients"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert!(mta.stop().success());
    let count = queue_counts(&config);
    assert_eq!(
        (count["accepted"], count["bounced"], count["queued"]),
        (3, 2, 1),
        "{count:?}"
    );
}

#[test]
fn requests_need_an_allowed_network_or_the_token() {
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        "[admin]\nlisten = \"127.0.0.1:0\"\nallow = []\ntoken = \"s3cret\"\n",
    );
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin endpoint");
    let post = "POST /queue/flush HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n";
    assert_eq!(http_status(admin, &format!("{post}\r\n")), 403);
    assert_eq!(
        http_status(admin, &format!("{post}Authorization: Bearer wrong\r\n\r\n")),
        403
    );
    assert_eq!(
        http_status(admin, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
        200
    );
    // Reads need the token too: they show senders, recipients and client addresses.
    for path in ["/queue", "/metrics", "/destinations/x.test", "/nothing"] {
        assert_eq!(
            http_status(admin, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")),
            403,
            "{path}"
        );
    }
    let with_token = "Host: x\r\nAuthorization: Bearer s3cret\r\n\r\n";
    assert_eq!(
        http_status(admin, &format!("GET /queue HTTP/1.1\r\n{with_token}")),
        200
    );
    assert_eq!(
        http_status(admin, &format!("GET /nothing HTTP/1.1\r\n{with_token}")),
        404
    );
    // A refused request's body is never read: the 403 comes without it.
    assert_eq!(
        http_status(
            admin,
            "POST /queue/flush HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"
        ),
        403
    );
    // The CLI sends the configured token (delivery is on hold here; the queue still answers).
    let (ok, out, err) = mta_cli(admin, &config, &["queue", "flush", "--json"]);
    assert!(ok, "{err}");
    assert!(out.contains("flushed"), "{out}");
    assert!(mta.stop().success());
}
