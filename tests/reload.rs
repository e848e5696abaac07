//! SIGHUP reloads the configuration file's relay policy and routes without dropping sessions.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Mta, tempdir, write_config};

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
