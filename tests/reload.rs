//! SIGHUP through a running binary: the relay policy and routes, inbound limits and timeouts,
//! the admin endpoint's token and networks, the retry schedule and destination limits, the
//! outbound EHLO name and the greeting take effect without a restart; a key that needs one is
//! named in a warning.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::receiver::Scripted;
use common::{Client, Mta, closed_port, http_status, mta_cli_json, submit, tempdir, write_config};

fn rcpt(c: &mut Client, to: &str) -> String {
    c.send(format!("MAIL FROM:<a@src.test>\r\nRCPT TO:<{to}>\r\nRSET\r\n").as_bytes());
    let mail = c.reply().unwrap();
    assert!(mail.starts_with("250"), "{mail}");
    let r = c.reply().unwrap();
    c.reply().unwrap();
    r
}

#[test]
fn sighup_reloads_relay_domains_and_routes() {
    let dir = tempdir();
    let first = "[relay]\nlocal_domains = [\"a.test\"]\ntrusted_networks = []\n\
                 [[routes]]\ndomain = \"a.test\"\nhosts = [\"127.0.0.1:9\"]\n";
    let config = write_config(dir.path(), "", first);
    let mut mta = Mta::start(dir.path(), &config);
    let mut old = Client::connect(mta.addr);
    old.codes(1);
    old.send(b"EHLO c.test\r\n");
    old.reply();
    assert!(rcpt(&mut old, "u@b.test").starts_with("554 5.7.1"));

    let second = "[relay]\nlocal_domains = [\"a.test\", \"b.test\"]\ntrusted_networks = []\n\
                  [[routes]]\ndomain = \"a.test\"\nhosts = [\"127.0.0.1:9\"]\n\
                  [[routes]]\ndomain = \"b.test\"\nhosts = [\"127.0.0.1:9\"]\n";
    write_config(dir.path(), "", second);
    mta.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Client::connect(mta.addr);
        c.codes(1);
        c.send(b"EHLO c.test\r\n");
        c.reply();
        if rcpt(&mut c, "u@b.test").starts_with("250") {
            break;
        }
        assert!(Instant::now() < deadline, "relay policy not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The session opened before the reload is still served (with the policy it started with).
    assert!(rcpt(&mut old, "u@a.test").starts_with("250"));
    // A broken file is refused and the running configuration stays.
    std::fs::write(&config, "this is = = not toml").unwrap();
    mta.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    assert!(rcpt(&mut c, "u@b.test").starts_with("250"));
    assert!(mta.stop().success());
    assert!(
        mta.drain_log()
            .iter()
            .any(|l| l.contains("configuration reload failed")),
        "the failed reload is logged"
    );
}

/// The first reply of a new connection.
fn first_reply(mta: &Mta) -> (Client, String) {
    let mut c = Client::connect(mta.addr);
    let r = c.reply().unwrap_or_default();
    (c, r)
}

#[test]
fn sighup_lowers_inbound_limits_and_timeouts_for_new_connections() {
    let dir = tempdir();
    // Loopback is not trusted here, so the per-address limits apply to the test's client.
    let config = write_config(dir.path(), "", "[relay]\ntrusted_networks = []\n");
    let mut mta = Mta::start(dir.path(), &config);
    let before: Vec<(Client, String)> = (0..3).map(|_| first_reply(&mta)).collect();
    for (_, r) in &before {
        assert!(r.starts_with("220"), "{r}");
    }
    drop(before);

    write_config(
        dir.path(),
        "",
        "[relay]\ntrusted_networks = []\n[smtp]\nmax_connections_per_ip = 1\n\
         [smtp.timeouts]\ngreeting = \"1s\"\n",
    );
    mta.reload();
    // Two shards, one connection each from this address: of three at once, one at least is
    // refused (the connections closed above may take a moment to be counted out).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open: Vec<(Client, String)> = (0..3).map(|_| first_reply(&mta)).collect();
        if open
            .iter()
            .any(|(_, r)| r.starts_with("421") && r.contains("too many connections from your"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal: {open:?}",
            open = open.iter().map(|(_, r)| r).collect::<Vec<_>>()
        );
        drop(open);
        std::thread::sleep(Duration::from_millis(200));
    }
    // The new greeting timeout: a client that says nothing is told so after a second, not
    // after the five minutes it started with.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut c, greeting) = loop {
        std::thread::sleep(Duration::from_millis(200));
        let (c, r) = first_reply(&mta);
        if r.starts_with("220") {
            break (c, r);
        }
        assert!(Instant::now() < deadline, "not greeted: {r}");
    };
    assert!(greeting.contains("mx.test"), "{greeting}");
    let started = Instant::now();
    let r = c.reply().expect("a timeout reply");
    assert!(r.starts_with("421 4.4.2") && r.contains("Timeout"), "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(mta.stop().success());
}

/// `GET /queue` with an optional bearer token; the status code.
fn get_queue(mta: &Mta, token: Option<&str>) -> u16 {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    http_status(
        mta.admin.expect("admin endpoint"),
        &format!("GET /queue HTTP/1.1\r\nHost: mta\r\n{auth}Connection: close\r\n\r\n"),
    )
}

#[test]
fn sighup_replaces_the_admin_token_and_networks_and_names_restart_only_keys() {
    let dir = tempdir();
    let admin = |listen: &str, allow: &str, token: &str| {
        format!("[admin]\nlisten = \"{listen}\"\nallow = [{allow}]\ntoken = \"{token}\"\n")
    };
    let config = write_config(dir.path(), "", &admin("127.0.0.1:0", "", "old-token"));
    let mut mta = Mta::start(dir.path(), &config);
    assert_eq!(get_queue(&mta, Some("old-token")), 200);
    assert_eq!(get_queue(&mta, Some("new-token")), 403);
    assert_eq!(get_queue(&mta, None), 403);

    // A new token, and two keys that only a restart applies.
    write_config(
        dir.path(),
        "io_memory = \"4MiB\"",
        &admin("127.0.0.1:1", "", "new-token"),
    );
    mta.reload();
    assert_eq!(get_queue(&mta, Some("old-token")), 403);
    assert_eq!(get_queue(&mta, Some("new-token")), 200);
    let warnings = |mta: &mut Mta, key: &str| {
        let line = format!("{key} changed: takes effect at the next restart");
        mta.drain_log().iter().filter(|l| l.contains(&line)).count()
    };
    assert_eq!(warnings(&mut mta, "admin.listen"), 1, "{:?}", mta.log_lines);
    assert_eq!(warnings(&mut mta, "io_memory"), 1);
    assert_eq!(
        warnings(&mut mta, "admin.token"),
        0,
        "the token was reloaded"
    );

    // Loopback allowed: no token needed. The endpoint is still where it was started.
    write_config(
        dir.path(),
        "io_memory = \"4MiB\"",
        &admin("127.0.0.1:1", "\"127.0.0.0/8\"", "new-token"),
    );
    mta.reload();
    assert_eq!(get_queue(&mta, None), 200);
    assert!(mta.stop().success());
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Waits until the first recipient of message `id` had `attempts` attempts and a retry is
/// waiting; returns how long until that retry, in seconds.
fn retry_in(mta: &Mta, id: &str, attempts: u64) -> u64 {
    let admin = mta.admin.expect("admin endpoint");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = mta_cli_json(admin, &mta.config, &["queue", "show", id]);
        let r = &v["recipients"][0];
        if r["attempts"].as_u64() >= Some(attempts)
            && let Some(next) = r["next_attempt_unix_ms"].as_u64()
        {
            return next.saturating_sub(now_ms()) / 1000;
        }
        assert!(Instant::now() < deadline, "no retry scheduled: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The largest `max_connections` any shard shows for destination `key`.
fn max_connections(mta: &Mta, key: &str) -> u64 {
    let v = mta_cli_json(mta.admin.unwrap(), &mta.config, &["dest", "show", key]);
    v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["limits"]["max_connections"].as_u64())
        .max()
        .unwrap_or_else(|| panic!("no shard knows {key}: {v}"))
}

#[test]
fn sighup_changes_the_retry_schedule_and_the_limits_of_destinations_in_use() {
    let dir = tempdir();
    let port = closed_port();
    let delivery = |first: &str, connections: u32| {
        format!(
            "[delivery]\n[delivery.retry]\nfirst = \"{first}\"\nmax = \"{first}\"\n\
             multiplier = 1.0\njitter = 0.0\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{port}\"]\n\
             max_connections = {connections}\n"
        )
    };
    let config = write_config(dir.path(), "", &delivery("1h", 4));
    let mut mta = Mta::start(dir.path(), &config);
    let id = submit(&mta, &["u@dest.test"], "retry");
    let wait = retry_in(&mta, &id, 1);
    assert!((3540..=3600).contains(&wait), "first retry in {wait} s");
    assert_eq!(max_connections(&mta, "route:dest.test"), 4);

    write_config(dir.path(), "", &delivery("10m", 2));
    mta.reload();
    // The destination in use has the new limit at once, without new mail.
    assert_eq!(max_connections(&mta, "route:dest.test"), 2);
    // The retry already scheduled keeps its time; once tried again, the new schedule holds.
    assert!((3500..=3600).contains(&retry_in(&mta, &id, 1)));
    let flushed = mta_cli_json(mta.admin.unwrap(), &config, &["queue", "flush"]);
    assert_eq!(flushed["flushed"], 1, "{flushed}");
    let wait = retry_in(&mta, &id, 2);
    assert!(
        (540..=600).contains(&wait),
        "retry after the reload in {wait} s"
    );
    assert!(mta.stop().success());
}

#[test]
fn sighup_changes_the_outbound_ehlo_name_and_the_greeting() {
    let rx = Scripted::start(false, 0);
    let dir = tempdir();
    let delivery = |helo: &str| {
        format!(
            "[delivery]\nhelo_name = \"{helo}\"\nmax_messages_per_connection = 1\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{}\"]\n",
            rx.port
        )
    };
    let config = write_config(dir.path(), "", &delivery("one.mta.test"));
    let mut mta = Mta::start(dir.path(), &config);
    submit(&mta, &["u@dest.test"], "before");
    let got = rx.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].helo, "one.mta.test");

    write_config(dir.path(), "", &delivery("two.mta.test"));
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"mx.test\"", "\"mx2.test\"")).unwrap();
    mta.reload();
    let (_c, greeting) = first_reply(&mta);
    assert!(greeting.starts_with("220 mx2.test"), "{greeting}");
    submit(&mta, &["u@dest.test"], "after");
    let got = rx.wait_for(2, Duration::from_secs(20));
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].helo, "two.mta.test");
    assert!(
        got[1].body.contains("by mx2.test"),
        "the trace header names the new host: {}",
        got[1].body
    );
    assert!(mta.stop().success());
}

/// The selector (`s=`) of each DKIM-Signature field of a message.
fn selectors(message: &str) -> Vec<String> {
    let unfolded = message.replace("\r\n\t", " ").replace("\r\n ", " ");
    unfolded
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.to_ascii_lowercase().starts_with("dkim-signature:"))
        .flat_map(|l| {
            l.split(';')
                .filter_map(|tag| tag.trim().strip_prefix("s=").map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn sighup_reloads_the_dkim_keys() {
    let rx = Scripted::start(false, 0);
    let dir = tempdir();
    let key = dir.path().join("ed.pem");
    common::dkim::make_ed25519_key(&key);
    let section = |selector: &str| {
        format!(
            "[dkim]\nenabled = true\n[[dkim.keys]]\ndomain = \"example.com\"\n\
             selector = \"{selector}\"\nalgorithm = \"ed25519-sha256\"\nkey_file = \"{}\"\n\
             [delivery]\n[[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{}\"]\n",
            key.display(),
            rx.port
        )
    };
    let config = write_config(dir.path(), "", &section("one"));
    let mut mta = Mta::start(dir.path(), &config);
    let send = |mta: &Mta, subject: &str| {
        let mut c = Client::connect(mta.addr);
        assert_eq!(c.codes(1), [220]);
        c.send(b"EHLO c.test\r\nMAIL FROM:<news@example.com>\r\nRCPT TO:<u@dest.test>\r\nDATA\r\n");
        assert_eq!(c.codes(4), [250, 250, 250, 354]);
        c.send(
            format!("From: <news@example.com>\r\nSubject: {subject}\r\n\r\nhi\r\n.\r\n").as_bytes(),
        );
        assert_eq!(c.codes(1), [250]);
    };
    send(&mta, "first");
    let got = rx.wait_for(1, Duration::from_secs(20));
    assert_eq!(selectors(&got[0].body), ["one"], "{}", got[0].body);

    // A rotated key: a new selector (and a new key file) after the reload.
    common::dkim::make_ed25519_key(&key);
    write_config(dir.path(), "", &section("two"));
    mta.reload();
    send(&mta, "second");
    let got = rx.wait_for(2, Duration::from_secs(20));
    assert_eq!(selectors(&got[1].body), ["two"], "{}", got[1].body);
    assert!(mta.stop().success());
}
