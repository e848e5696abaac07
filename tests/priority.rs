//! Priority classes through real sockets: a transactional message overtakes a bulk backlog of
//! 100,000 recipients queued for one destination limited to 1 connection and 200 messages a
//! second, and the class is in the event log; a restart keeps the classes; the class header of
//! an untrusted client is ignored; a campaign label chooses a class.
//!
//! The backlog is 1,000 messages of 100 recipients, sent 10 recipients a transaction: 10,000
//! transactions, about 50 s at 200/s, so it is still far from drained when the transactional
//! message comes. The test does not wait for it to drain: it stops once the transactional
//! message has arrived. It asserts on positions in the receiver's arrival log, not on times:
//! without classes the message would arrive after every bulk transaction queued before it.
//! One shard, because each shard orders its own queue (docs/DELIVERY.md).

mod common;

use std::time::{Duration, Instant};

use common::receiver::Scripted;
use common::{Client, Mta, event_log, mta_cli, mta_cli_json, tempdir, write_config};

const MESSAGES: usize = 1000;
const RECIPIENTS: usize = 100;
const PER_TRANSACTION: usize = 10;

/// Sends `messages` messages of `RECIPIENTS` recipients from the bulk sender on one
/// pipelined connection.
fn submit_backlog(mta: &Mta, messages: usize) {
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    for m in 0..messages {
        let mut cmd = String::from("MAIL FROM:<list@news.test>\r\n");
        for r in 0..RECIPIENTS {
            cmd.push_str(&format!("RCPT TO:<m{m}r{r}@h.test>\r\n"));
        }
        cmd.push_str("DATA\r\n");
        c.send(cmd.as_bytes());
        let codes = c.codes(RECIPIENTS + 2);
        assert!(codes[..=RECIPIENTS].iter().all(|&c| c == 250), "{codes:?}");
        assert_eq!(codes[RECIPIENTS + 1], 354);
        c.send(format!("Subject: news {m}\r\n\r\nhello\r\n.\r\n").as_bytes());
        let r = c.reply().unwrap();
        assert!(r.starts_with("250"), "{r}");
    }
    c.send(b"QUIT\r\n");
}

/// Sends the password reset, its class named by the header (the client is on loopback, a
/// trusted network).
fn submit_reset(mta: &Mta) {
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO app.test\r\nMAIL FROM:<reset@app.test>\r\nRCPT TO:<user@h.test>\r\nDATA\r\n");
    assert_eq!(c.codes(4), [250, 250, 250, 354]);
    c.send(b"X-Priority-Class: transactional\r\nSubject: reset\r\n\r\nyour code\r\n.\r\n");
    let r = c.reply().unwrap();
    assert!(r.starts_with("250"), "{r}");
}

/// One shard; delivery held at start; bulk by sender domain, the class header honoured.
fn config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let cfg = write_config(
        dir,
        "",
        &format!(
            "[delivery]\nhold = true\nmax_recipients_per_transaction = {PER_TRANSACTION}\n\
             max_messages_per_connection = 100000\n\
             [[routes]]\ndomain = \"h.test\"\nhosts = [\"127.0.0.1:{port}\"]\n\
             max_connections = 1\nrate = \"200/s\"\n\
             [priority]\nheader = \"X-Priority-Class\"\n\
             senders = [{{ domain = \"news.test\", class = \"bulk\" }}]\n"
        ),
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replacen("shards = 2", "shards = 1", 1)).unwrap();
    cfg
}

#[test]
fn a_restart_keeps_the_class() {
    let rx = Scripted::start(false, 0);
    let dir = tempdir();
    let cfg = config(dir.path(), rx.port);
    let mut mta = Mta::start(dir.path(), &cfg);
    submit_backlog(&mta, 20);
    submit_reset(&mta);
    assert!(mta.stop().success());
    // Delivery on from the start: the spool is read back in arrival order.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replacen("hold = true", "hold = false", 1)).unwrap();
    let mut mta = Mta::start(dir.path(), &cfg);
    let total = 20 * RECIPIENTS / PER_TRANSACTION + 1;
    let got = rx.wait_for(total, Duration::from_secs(60));
    assert_eq!(got.len(), total);
    let position = got.iter().position(|m| m.from == "reset@app.test").unwrap();
    // Last of 201 in arrival order without its class; within the first round of picks
    // (share 10) with it, but for bulk handed out while the spool was still being read.
    assert!(position < 30, "the reset arrived {position}th of {total}");
    assert!(mta.stop().success());
}

#[test]
fn a_transactional_message_overtakes_a_bulk_backlog() {
    let rx = Scripted::start(false, 0);
    let dir = tempdir();
    let cfg = config(dir.path(), rx.port);
    let mut mta = Mta::start(dir.path(), &cfg);
    let admin = mta.admin.expect("admin endpoint");
    submit_backlog(&mta, MESSAGES);
    let (ok, out, err) = mta_cli(admin, &cfg, &["delivery", "resume"]);
    assert!(ok, "{out}{err}");
    // Let the bulk flow for a while, then look at the queue and send the reset.
    let before = rx.wait_for(100, Duration::from_secs(60)).len();
    assert!(before >= 100, "bulk did not flow: {before}");
    let shown = mta_cli_json(admin, &cfg, &["dest", "show", "h.test"]);
    let queued = &shown["shards"][0]["ready_by_class"];
    let queued_bulk = queued["bulk"].as_u64().expect("ready_by_class");
    assert!(queued_bulk > 1000, "{shown}");
    assert_eq!(queued["transactional"], 0, "{shown}");
    let sent_before = rx.got.lock().unwrap().len();
    submit_reset(&mta);
    let deadline = Instant::now() + Duration::from_secs(60);
    let position = loop {
        let got = rx.got.lock().unwrap().clone();
        if let Some(p) = got.iter().position(|m| m.from == "reset@app.test") {
            break p;
        }
        assert!(Instant::now() < deadline, "the reset never arrived");
        std::thread::sleep(Duration::from_millis(20));
    };
    let total = MESSAGES * RECIPIENTS / PER_TRANSACTION;
    let bulk_before_reset = position;
    // In arrival order, the reset came within 200 transactions (one second at the rate) of
    // being queued, while thousands of bulk transactions queued before it still waited.
    assert!(
        bulk_before_reset < sent_before + 200,
        "{bulk_before_reset} bulk transactions arrived before the reset, {sent_before} when it \
         was sent"
    );
    assert!(
        bulk_before_reset < total / 2,
        "{bulk_before_reset} of {total}"
    );
    // Bulk goes on after it.
    let after = rx.wait_for(position + 20, Duration::from_secs(30));
    assert!(after.len() >= position + 20);
    assert!(mta.stop().success());
    let events = event_log(dir.path());
    let reset = |e: &&serde_json::Value| e["sender"] == "reset@app.test";
    let reception = events
        .iter()
        .filter(reset)
        .find(|e| e["type"] == "Reception")
        .expect("reception of the reset");
    assert_eq!(reception["priority"], "transactional");
    let delivery = events
        .iter()
        .filter(reset)
        .find(|e| e["type"] == "Delivery")
        .expect("delivery of the reset");
    assert_eq!(delivery["priority"], "transactional");
    let bulk = events
        .iter()
        .find(|e| e["type"] == "Delivery" && e["sender"] == "list@news.test")
        .expect("a bulk delivery");
    assert_eq!(bulk["priority"], "bulk");
}

#[test]
fn the_class_header_of_an_untrusted_client_is_ignored() {
    let dir = tempdir();
    // Delivery held; the client (loopback) is not in a trusted network and does not log in.
    let cfg = write_config(
        dir.path(),
        "",
        "[relay]\nrelay_domains = [\"h.test\"]\ntrusted_networks = []\n\
         [delivery]\nhold = true\n[[routes]]\ndomain = \"h.test\"\nhosts = [\"127.0.0.1:9\"]\n\
         [priority]\nheader = \"X-Priority-Class\"\n\
         senders = [{ domain = \"news.test\", class = \"bulk\" }]\n",
    );
    let mut mta = Mta::start(dir.path(), &cfg);
    submit_reset(&mta);
    assert!(mta.stop().success());
    let events = event_log(dir.path());
    let reception = events
        .iter()
        .find(|e| e["type"] == "Reception")
        .expect("a reception");
    assert_eq!(reception["sender"], "reset@app.test");
    assert_eq!(
        reception["priority"], "",
        "the header was honoured: {reception}"
    );
}

#[test]
fn a_campaign_label_chooses_the_class() {
    let dir = tempdir();
    // Delivery held; the label is read from a trusted client (loopback) and names the class.
    let cfg = write_config(
        dir.path(),
        "",
        "[delivery]\nhold = true\n[[routes]]\ndomain = \"h.test\"\nhosts = [\"127.0.0.1:9\"]\n\
         [campaigns]\ncampaign_header = \"X-Campaign\"\n\
         [priority]\ncampaigns = [{ campaign = \"password-reset\", class = \"transactional\" }]\n\
         senders = [{ domain = \"app.test\", class = \"bulk\" }]\n",
    );
    let mut mta = Mta::start(dir.path(), &cfg);
    for campaign in ["password-reset", "spring-sale"] {
        let mut c = Client::connect(mta.addr);
        c.codes(1);
        c.send(b"EHLO app.test\r\nMAIL FROM:<news@app.test>\r\nRCPT TO:<user@h.test>\r\nDATA\r\n");
        assert_eq!(c.codes(4), [250, 250, 250, 354]);
        c.send(format!("X-Campaign: {campaign}\r\nSubject: s\r\n\r\nbody\r\n.\r\n").as_bytes());
        let r = c.reply().unwrap();
        assert!(r.starts_with("250"), "{r}");
    }
    assert!(mta.stop().success());
    let events = event_log(dir.path());
    let class_of = |campaign: &str| {
        events
            .iter()
            .find(|e| e["type"] == "Reception" && e["campaign"] == campaign)
            .map(|e| e["priority"].clone())
            .unwrap_or_else(|| panic!("no reception of {campaign}: {events:?}"))
    };
    assert_eq!(class_of("password-reset"), "transactional");
    assert_eq!(
        class_of("spring-sale"),
        "bulk",
        "the sender rule after the label"
    );
}
