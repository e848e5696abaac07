//! The queue verbs operators reach for, through the `mta` command against a running binary:
//! list with filters (like mailq), hold and release that survive a restart (postsuper -h/-H),
//! bounce and delete by selection, show --body (postcat), shape by sender (qshape -s),
//! requeue after a route change (postsuper -r), the delivery pause, and the `Operator` events
//! that record who did what.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::receiver::Scripted;
use common::{Client, Mta, event_log, mta_cli, mta_cli_json, tempdir, write_config};
use serde_json::Value;

/// Sends one message from `from` to `to`; returns its queue id.
fn send(mta: &Mta, from: &str, to: &str, subject: &str) -> String {
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    c.send(format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n").as_bytes());
    assert_eq!(c.codes(3), [250, 250, 354]);
    c.send(format!("Subject: {subject}\r\n\r\nbody of {subject}\r\n.\r\n").as_bytes());
    let r = c.reply().unwrap();
    assert!(r.starts_with("250"), "{r}");
    r.split_whitespace().last().unwrap().to_owned()
}

/// The listed messages' (id, state) pairs.
fn listed(admin: SocketAddr, config: &Path, filter: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["queue", "list"];
    args.extend_from_slice(filter);
    let v = mta_cli_json(admin, config, &args);
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                m["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The sum over the shards of gauge `mta_<name>` in `mta metrics`.
fn gauge(admin: SocketAddr, config: &Path, name: &str) -> u64 {
    let (ok, text, err) = mta_cli(admin, config, &["metrics"]);
    assert!(ok, "{err}");
    text.lines()
        .filter(|l| l.starts_with(&format!("mta_{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Routes every test domain to `port` (nothing listens on 9: attempts are deferred for an
/// hour).
fn config_routing_to(dir: &Path, port: u16) -> std::path::PathBuf {
    write_config(
        dir,
        "",
        &format!(
            "[delivery]\n[delivery.retry]\nfirst = \"1h\"\nmax = \"2h\"\n\
             [[routes]]\ndomain = \"a.test\"\nhosts = [\"127.0.0.1:{port}\"]\n\
             [[routes]]\ndomain = \"b.test\"\nhosts = [\"127.0.0.1:{port}\"]\n"
        ),
    )
}

#[test]
fn list_hold_release_bounce_delete_and_show_body() {
    let dir = tempdir();
    let config = config_routing_to(dir.path(), 9);
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin endpoint");
    let news1 = send(&mta, "news@shop.test", "u1@a.test", "one");
    let news2 = send(&mta, "news@shop.test", "u2@b.test", "two");
    let other = send(&mta, "x@other.test", "u3@a.test", "three");
    wait_until("three deferred messages", Duration::from_secs(20), || {
        listed(admin, &config, &["--state", "deferred"]).len() == 3
    });

    // Filters: by recipient domain, by sender (address or @domain), by state.
    let ids = |v: Vec<(String, String)>| -> Vec<String> { v.into_iter().map(|x| x.0).collect() };
    let mut a = ids(listed(admin, &config, &["--domain", "a.test"]));
    a.sort();
    let mut want = vec![news1.clone(), other.clone()];
    want.sort();
    assert_eq!(a, want);
    let shop = ids(listed(admin, &config, &["--sender", "@shop.test"]));
    assert_eq!(shop.len(), 2);
    assert!(shop.contains(&news1) && shop.contains(&news2));
    assert_eq!(
        ids(listed(admin, &config, &["--sender", "x@other.test"])),
        std::slice::from_ref(&other)
    );
    assert!(listed(admin, &config, &["--state", "held"]).is_empty());
    // The table says the same.
    let (ok, table, _) = mta_cli(admin, &config, &["queue", "list", "--domain", "b.test"]);
    assert!(
        ok && table.contains(&news2) && table.contains("deferred"),
        "{table}"
    );
    assert!(table.contains("1 message(s)"), "{table}");

    // --limit shows the oldest and says how many matched.
    let v = mta_cli_json(admin, &config, &["queue", "list", "--limit", "1"]);
    assert_eq!(v["matched"], 3, "{v}");
    let rows = v["messages"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    let all = mta_cli_json(admin, &config, &["queue", "list"]);
    let oldest = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .min_by_key(|m| m["arrival_unix_ms"].as_u64())
        .unwrap();
    assert_eq!(
        rows[0]["arrival_unix_ms"], oldest["arrival_unix_ms"],
        "the oldest first: {v}"
    );
    // An action needs a selection.
    let (ok, _, err) = mta_cli(admin, &config, &["queue", "hold"]);
    assert!(!ok && err.contains("say which messages"), "{err}");

    // Hold the newsletter sender's mail.
    let v = mta_cli_json(admin, &config, &["queue", "hold", "--sender", "@shop.test"]);
    assert_eq!(v["messages"], 2, "{v}");
    let held = ids(listed(admin, &config, &["--state", "held"]));
    assert_eq!(held.len(), 2, "{held:?}");
    assert_eq!(gauge(admin, &config, "messages_held"), 2);
    // Holding again changes nothing.
    let v = mta_cli_json(admin, &config, &["queue", "hold", &news1]);
    assert_eq!(v["messages"], 0, "{v}");

    // show --body prints the message as stored.
    let (ok, body, err) = mta_cli(admin, &config, &["queue", "show", &news2, "--body"]);
    assert!(ok, "{err}");
    assert!(body.starts_with("Received: "), "{body}");
    assert!(
        body.contains("Subject: two\r\n") && body.contains("body of two"),
        "{body}"
    );
    let (ok, _, err) = mta_cli(
        admin,
        &config,
        &["queue", "show", "0000000000000001", "--body"],
    );
    assert!(!ok && err.contains("404"), "{err}");

    // Shape by sender domain.
    let v = mta_cli_json(admin, &config, &["queue", "shape", "--sender"]);
    let domains: Vec<&str> = v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["domain"].as_str().unwrap())
        .collect();
    assert_eq!(domains, ["shop.test", "other.test"], "{v}");

    // The hold survives a restart.
    assert!(mta.stop().success());
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin endpoint");
    let mut held = ids(listed(admin, &config, &["--state", "held"]));
    held.sort();
    let mut want = vec![news1.clone(), news2.clone()];
    want.sort();
    assert_eq!(held, want);
    // Offline, too.
    let (ok, text, _) = mta_cli(admin, &config, &["queue", "list", "--offline"]);
    assert!(ok && text.matches("held").count() >= 2, "{text}");

    // Release one: it is no longer held (it is tried again now, and deferred again).
    let v = mta_cli_json(admin, &config, &["queue", "release", &news1]);
    assert_eq!(v["messages"], 1, "{v}");
    assert_eq!(
        ids(listed(admin, &config, &["--state", "held"])),
        std::slice::from_ref(&news2)
    );

    // Bounce by domain: the other sender's a.test mail and news1 bounce with a DSN.
    let v = mta_cli_json(admin, &config, &["queue", "bounce", "--domain", "a.test"]);
    assert_eq!(v["messages"], 2, "{v}");
    // Delete the held one silently.
    let v = mta_cli_json(
        admin,
        &config,
        &["queue", "delete", "--state", "held", "--silent"],
    );
    assert_eq!(v["messages"], 1, "{v}");
    // What is left are the two DSNs to the senders (their domains have no route: deferred or
    // bounced without a further DSN, never looping).
    let left = listed(admin, &config, &[]);
    assert!(
        left.iter()
            .all(|(id, _)| ![&news1, &news2, &other].contains(&id)),
        "{left:?}"
    );
    assert!(mta.stop().success());

    // Every action is in the event log, with who asked.
    let ops: Vec<Value> = event_log(dir.path())
        .into_iter()
        .filter(|e| e["type"] == "Operator")
        .collect();
    let actions: Vec<&str> = ops.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for a in ["hold", "release", "bounce", "delete"] {
        assert!(actions.contains(&a), "{a} missing: {ops:?}");
    }
    let hold = ops
        .iter()
        .find(|e| e["action"] == "hold" && e["messages"].as_u64() > Some(0))
        .unwrap();
    assert_eq!(hold["target"], "sender=@shop.test", "{hold}");
    assert_eq!(hold["by"], "127.0.0.1 network", "{hold}");
}

#[test]
fn requeue_after_a_route_change_and_the_delivery_pause() {
    let dir = tempdir();
    let config = config_routing_to(dir.path(), 9);
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin endpoint");
    let first = send(&mta, "s@src.test", "u@a.test", "first");
    wait_until("a deferral", Duration::from_secs(20), || {
        listed(admin, &config, &["--state", "deferred"]).len() == 1
    });

    // The route now points at a live receiver; the retry is an hour away until requeued.
    let rx = Scripted::start(false, 0);
    config_routing_to(dir.path(), rx.port);
    mta.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    let v = mta_cli_json(admin, &config, &["queue", "requeue", "--all"]);
    assert_eq!(v["messages"], 1, "{v}");
    let got = rx.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "requeued mail was not delivered");
    assert!(got[0].body.contains("Subject: first"));
    wait_until("an empty queue", Duration::from_secs(10), || {
        listed(admin, &config, &[]).is_empty()
    });

    // Paused: mail is accepted and queued, nothing is sent.
    assert_eq!(gauge(admin, &config, "delivery_paused"), 0);
    let v = mta_cli_json(admin, &config, &["delivery", "pause"]);
    assert_eq!(v["paused"], true, "{v}");
    assert_eq!(
        gauge(admin, &config, "delivery_paused"),
        2,
        "both shards say paused"
    );
    let second = send(&mta, "s@src.test", "v@b.test", "second");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(rx.got.lock().unwrap().len(), 1, "sent while paused");
    assert_eq!(listed(admin, &config, &[]).len(), 1);
    let v = mta_cli_json(admin, &config, &["delivery", "resume"]);
    assert_eq!(v["paused"], false, "{v}");
    let got = rx.wait_for(2, Duration::from_secs(20));
    assert_eq!(got.len(), 2, "not delivered after the pause");
    assert!(mta.stop().success());
    let actions: Vec<String> = event_log(dir.path())
        .into_iter()
        .filter(|e| e["type"] == "Operator")
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for a in ["requeue", "pause", "unpause"] {
        assert!(actions.iter().any(|x| x == a), "{a}: {actions:?}");
    }
    let _ = (first, second);
}
