//! Campaigns and tenants through real sockets: the header fields are read at reception and
//! stripped when configured, every event of the message names them, a tenant's hard bounce
//! suppresses for that tenant only, and the labels survive a restart.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::receiver::Scripted;
use common::{Mta, event_log, mta_cli, mta_cli_json, tempdir, wait_log, write_config};
use serde_json::Value;

fn config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    config_with(dir, port, "", extra)
}

/// With `delivery` added to the `[delivery]` section.
fn config_with(dir: &Path, port: u16, delivery: &str, extra: &str) -> PathBuf {
    write_config(
        dir,
        "",
        &format!(
            "[delivery]\nidle_timeout = \"1s\"\n{delivery}\n[delivery.retry]\nfirst = \"1s\"\nmax = \"2s\"\n\
             [suppression]\nmode = \"delivery\"\n{extra}\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{port}\"]\n\
             [[routes]]\ndomain = \"src.test\"\nhosts = [\"127.0.0.1:{port}\"]\n"
        ),
    )
}

/// Sends one message from loopback (a trusted network) with the given labels; panics unless
/// it is accepted.
fn send(mta: &Mta, campaign: Option<&str>, tenant: Option<&str>, rcpts: &[&str]) {
    let mut head = String::from("Subject: news\r\n");
    if let Some(x) = campaign {
        head.push_str(&format!("X-Campaign: {x}\r\n"));
    }
    if let Some(x) = tenant {
        head.push_str(&format!("X-Tenant: {x}\r\n"));
    }
    send_message(mta, rcpts, &format!("{head}\r\nhello\r\n"));
}

/// Sends `message` (CRLF lines, not dot-stuffed) from loopback; panics unless it is accepted.
fn send_message(mta: &Mta, rcpts: &[&str], message: &str) {
    common::submit_message(mta, "news@src.test", rcpts, message);
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
    let m = got
        .iter()
        .find(|m| m.to == ["ok1@dest.test"])
        .expect("delivered");
    assert!(!m.body.contains("X-Campaign"), "{}", m.body);
    assert!(!m.body.contains("X-Tenant"), "{}", m.body);
    assert!(m.body.contains("Subject: news"));
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
    // (The logs of two shards: the events are not in time order.)
    let bounces = events(&log, "Bounce", "bad1@dest.test");
    assert!(
        bounces
            .iter()
            .any(|e| e.get("campaign").is_none() && e.get("tenant").is_none()),
        "{bounces:?}"
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

/// Polls `mta <args> --json` until `pred` holds of the answer.
fn wait_cli(mta: &Mta, args: &[&str], pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = mta_cli_json(mta.admin.unwrap(), &mta.config, args);
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "mta {args:?} never matched: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn row<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == name))
        .unwrap_or(&Value::Null)
}

#[test]
fn stats_by_campaign_match_what_was_sent() {
    let dir = tempdir();
    let sink = Scripted::start(false, 0);
    let cfg = config(dir.path(), sink.port, "");
    let mut mta = Mta::start(dir.path(), &cfg);
    for i in 0..3 {
        send(
            &mta,
            Some("alpha"),
            Some("acme"),
            &[&format!("a{i}@dest.test")],
        );
    }
    send(&mta, Some("alpha"), Some("acme"), &["bad-a@dest.test"]);
    send(&mta, Some("beta"), None, &["b0@dest.test", "b1@dest.test"]);
    send(&mta, None, None, &["plain@dest.test"]);
    let v = wait_cli(&mta, &["stats", "--by", "campaign"], |v| {
        row(v, "alpha")["delivered"] == 3
            && row(v, "alpha")["bounced"] == 1
            && row(v, "beta")["delivered"] == 2
    });
    let alpha = row(&v, "alpha");
    assert_eq!(alpha["accepted"], 4, "{v:#}");
    assert_eq!(alpha["bounced_by_class"]["bad_mailbox"], 1, "{v:#}");
    assert_eq!(alpha["delivery_rate"], 0.75, "{v:#}");
    assert_eq!(alpha["bounce_rate"], 0.25, "{v:#}");
    let beta = row(&v, "beta");
    assert_eq!(
        (beta["accepted"].as_u64(), beta["bounced"].as_u64()),
        (Some(2), Some(0)),
        "{v:#}"
    );
    // Mail without a campaign has no row; nothing went to "other".
    assert_eq!(v["rows"].as_array().unwrap().len(), 2, "{v:#}");
    // The same by tenant, over the last hour, and by provider and source (no shaping
    // file, no source address: "default"), where nothing is accepted but every outcome is.
    let t = mta_cli_json(
        mta.admin.unwrap(),
        &cfg,
        &["stats", "--by", "tenant", "--since", "1h"],
    );
    assert_eq!(
        (
            row(&t, "acme")["accepted"].as_u64(),
            row(&t, "acme")["delivered"].as_u64()
        ),
        (Some(4), Some(3)),
        "{t:#}"
    );
    // (The DSN of the bounce is delivered through the same provider.)
    let p = wait_cli(&mta, &["stats", "--by", "provider"], |p| {
        row(p, "default")["delivered"].as_u64() >= Some(6)
    });
    assert_eq!(
        (
            row(&p, "default")["accepted"].as_u64(),
            row(&p, "default")["bounced"].as_u64()
        ),
        (Some(0), Some(1)),
        "{p:#}"
    );
    let (ok, table, err) = mta_cli(mta.admin.unwrap(), &cfg, &["stats", "--by", "campaign"]);
    assert!(ok, "{err}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("alpha") && l.contains("75.00%") && l.contains("25.00%")),
        "{table}"
    );
    let (ok, _, err) = mta_cli(mta.admin.unwrap(), &cfg, &["stats", "--by", "sender"]);
    assert!(!ok && err.contains("400"), "{err}");
    let (ok, metrics, _) = mta_cli(mta.admin.unwrap(), &cfg, &["metrics"]);
    assert!(ok);
    assert!(
        metrics.contains("mta_campaign_messages_total{campaign=\"alpha\",event=\"delivered\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mta_tenant_messages_total{tenant=\"acme\",event=\"accepted\"} 4"),
        "{metrics}"
    );
    mta.stop();
}

#[test]
fn a_campaign_past_its_bounce_threshold_is_paused_until_resumed() {
    let dir = tempdir();
    let sink = Scripted::start(false, 0);
    let shaping = dir.path().join("shaping.toml");
    std::fs::write(
        &shaping,
        "[campaign.bulk]\nbounce_rate = \"20%\"\nmin_messages = 4\n",
    )
    .unwrap();
    let delivery = format!("shaping_file = \"{}\"", shaping.display());
    let cfg = config_with(dir.path(), sink.port, &delivery, "");
    let mut mta = Mta::start(dir.path(), &cfg);
    // Half of the first four bounce: 50% is over 20%.
    send(
        &mta,
        Some("bulk"),
        None,
        &[
            "k0@dest.test",
            "k1@dest.test",
            "bad-k2@dest.test",
            "bad-k3@dest.test",
        ],
    );
    let log = wait_log(dir.path(), "CampaignPaused", |l| {
        !events(l, "CampaignPaused", "").is_empty()
    });
    let p = events(&log, "CampaignPaused", "")[0];
    assert_eq!(
        (p["kind"].as_str(), p["name"].as_str(), p["by"].as_str()),
        (Some("campaign"), Some("bulk"), Some("threshold"))
    );
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .starts_with("bounce rate 50.00% over 20.00%"),
        "{p}"
    );
    // The rest of the campaign stays queued; another campaign flows.
    send(&mta, Some("bulk"), None, &["k4@dest.test", "k5@dest.test"]);
    send(&mta, Some("bulk"), None, &["k6@dest.test"]);
    send(&mta, Some("news"), None, &["n0@dest.test"]);
    let delivered = |r: &str| {
        sink.got
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.to.iter().any(|t| t == r))
            .count()
    };
    let shown = wait_cli(&mta, &["dest", "show", "dest.test"], |v| {
        v["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["parked_paused"].as_u64().unwrap_or(0))
            .sum::<u64>()
            == 3
    });
    wait_log(dir.path(), "news delivery", |l| {
        !events(l, "Delivery", "n0@dest.test").is_empty()
    });
    assert_eq!(
        delivered("k4@dest.test") + delivered("k5@dest.test") + delivered("k6@dest.test"),
        0,
        "{shown:#}"
    );
    // Each shard hands its counts over once a second: wait for the last three receptions.
    let bulk_of = |list: &Value| {
        list["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["name"] == "bulk"))
            .cloned()
            .unwrap_or_default()
    };
    let list = wait_cli(&mta, &["campaign", "list"], |l| {
        bulk_of(l)["total"]["accepted"] == 7
    });
    assert_eq!(bulk_of(&list)["paused"]["by"], "threshold", "{list:#}");
    let counts = common::queue_counts(&cfg);
    assert_eq!(counts.get("queued"), Some(&3), "{counts:?}");
    // The pause survives a restart.
    mta.stop();
    let mut mta = Mta::start(dir.path(), &cfg);
    let admin = mta.admin.unwrap();
    let show = mta_cli_json(admin, &cfg, &["campaign", "show", "bulk"]);
    assert_eq!(show["paused"]["by"], "threshold", "{show:#}");
    send(&mta, Some("news"), None, &["n1@dest.test"]);
    wait_log(dir.path(), "news delivery", |l| {
        !events(l, "Delivery", "n1@dest.test").is_empty()
    });
    wait_cli(&mta, &["dest", "show", "dest.test"], |v| {
        v["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["parked_paused"].as_u64().unwrap_or(0))
            .sum::<u64>()
            == 3
    });
    assert_eq!(
        delivered("k4@dest.test") + delivered("k5@dest.test") + delivered("k6@dest.test"),
        0
    );
    // Resumed by hand: the rest is delivered, and a second resume changes nothing.
    let r = mta_cli_json(admin, &cfg, &["campaign", "resume", "bulk"]);
    assert_eq!(r["changed"], true, "{r}");
    for rcpt in ["k4@dest.test", "k5@dest.test", "k6@dest.test"] {
        wait_log(dir.path(), rcpt, |l| {
            !events(l, "Delivery", rcpt).is_empty()
        });
    }
    assert_eq!(
        mta_cli_json(admin, &cfg, &["campaign", "resume", "bulk"])["changed"],
        false
    );
    let log = event_log(dir.path());
    assert_eq!(events(&log, "CampaignResumed", "").len(), 1);
    let counts = common::queue_counts(&cfg);
    assert_eq!(counts.get("queued"), Some(&0), "{counts:?}");
    // By hand: a pause and its resume.
    let p = mta_cli_json(
        admin,
        &cfg,
        &["campaign", "pause", "news", "--reason", "checking"],
    );
    assert_eq!(p["changed"], true, "{p}");
    let (ok, metrics, _) = mta_cli(admin, &cfg, &["metrics"]);
    assert!(
        ok && metrics.contains("mta_campaign_paused{kind=\"campaign\",name=\"news\"} 1"),
        "{metrics}"
    );
    mta.stop();
}

#[test]
fn signed_campaign_mail_without_one_click_unsubscribe_is_counted_and_reported() {
    let dir = tempdir();
    let sink = Scripted::start(false, 0);
    let keys = common::dkim::make_keys(dir.path());
    let dkim = format!(
        "[dkim]\nenabled = true\n[[dkim.keys]]\ndomain = \"example.com\"\nselector = \"rsa\"\n\
         key_file = \"{}\"\n",
        keys.rsa_file.display()
    );
    let cfg = config(dir.path(), sink.port, &dkim);
    let mut mta = Mta::start(dir.path(), &cfg);
    let head = "From: News <news@example.com>\r\nSubject: s\r\n";
    // A campaign without one-click unsubscription: reported.
    send_message(
        &mta,
        &["p0@dest.test", "p1@dest.test"],
        &format!("{head}X-Campaign: promo\r\n\r\nhi\r\n"),
    );
    // With it: not reported.
    send_message(
        &mta,
        &["p2@dest.test"],
        &format!(
            "{head}X-Campaign: promo\r\nList-Unsubscribe: <https://example.com/u/1>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nhi\r\n"
        ),
    );
    // One recipient and no campaign: not bulk-looking.
    send_message(
        &mta,
        &["t0@dest.test"],
        &format!("{head}\r\nyour receipt\r\n"),
    );
    let v = wait_cli(&mta, &["stats", "--by", "campaign"], |v| {
        row(v, "promo")["accepted"] == 3
    });
    assert_eq!(row(&v, "promo")["no_one_click"], 2, "{v:#}");
    let f = wait_cli(
        &mta,
        &["stats", "--by", "from_domain", "--since", "10m"],
        |v| row(v, "example.com")["accepted"] == 4,
    );
    assert_eq!(row(&f, "example.com")["no_one_click"], 2, "{f:#}");
    let log = wait_log(dir.path(), "BulkWithoutUnsubscribe", |l| {
        !events(l, "BulkWithoutUnsubscribe", "").is_empty()
    });
    let e = events(&log, "BulkWithoutUnsubscribe", "");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (
            e[0]["from_domain"].as_str(),
            e[0]["campaign"].as_str(),
            e[0]["recipients"].as_u64()
        ),
        (Some("example.com"), Some("promo"), Some(2))
    );
    let (ok, metrics, _) = mta_cli(mta.admin.unwrap(), &cfg, &["metrics"]);
    assert!(
        ok && metrics.contains(
            "mta_from_domain_messages_total{from_domain=\"example.com\",event=\"no_one_click\"} 2"
        ),
        "{metrics}"
    );
    mta.stop();
}

#[test]
fn figures_survive_a_restart() {
    let dir = tempdir();
    let sink = Scripted::start(false, 0);
    let cfg = config(dir.path(), sink.port, "");
    let mut mta = Mta::start(dir.path(), &cfg);
    send(
        &mta,
        Some("gamma"),
        Some("initech"),
        &["g0@dest.test", "g1@dest.test"],
    );
    wait_cli(&mta, &["stats", "--by", "campaign"], |v| {
        row(v, "gamma")["delivered"] == 2
    });
    mta.stop();
    // Saved at shutdown, read at start: the figures are there before anything new happens.
    let mut mta = Mta::start(dir.path(), &cfg);
    for window in [
        &["stats", "--by", "campaign"][..],
        &["stats", "--by", "campaign", "--since", "1h"],
    ] {
        let v = mta_cli_json(mta.admin.unwrap(), &cfg, window);
        assert_eq!(
            (
                row(&v, "gamma")["accepted"].as_u64(),
                row(&v, "gamma")["delivered"].as_u64()
            ),
            (Some(2), Some(2)),
            "{v:#}"
        );
    }
    let t = mta_cli_json(mta.admin.unwrap(), &cfg, &["stats", "--by", "tenant"]);
    assert_eq!(row(&t, "initech")["delivered"], 2, "{t:#}");
    // And they go on from there.
    send(&mta, Some("gamma"), None, &["g2@dest.test"]);
    wait_cli(&mta, &["stats", "--by", "campaign"], |v| {
        row(v, "gamma")["delivered"] == 3
    });
    mta.stop();
}
