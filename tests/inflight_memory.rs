//! Messages being received count toward the memory budget (with delivery on hold, so that
//! nothing leaves; the bodies the queue holds are a cache that gives way): near the budget new
//! transactions get `452 4.3.1`, a transfer that would pass it is read to its end and refused
//! with `452 4.3.1`, and once the transfers end mail is accepted again.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Mta, tempdir, write_config};

const MIB: usize = 1024 * 1024;

/// A connection with a transaction open and DATA answered `354`.
fn open_data(mta: &Mta) -> Client {
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\nMAIL FROM:<a@src.test>\r\nRCPT TO:<u@dest.test>\r\nDATA\r\n");
    let ehlo = c.reply().unwrap();
    assert!(ehlo.starts_with("250"), "{ehlo}");
    assert_eq!(c.codes(3), vec![250, 250, 354]);
    c.send(b"Subject: big\r\n\r\n");
    c
}

fn send_body(c: &mut Client, bytes: usize) {
    let line = format!("{}\r\n", "y".repeat(1022));
    c.send(line.repeat(bytes / line.len()).as_bytes());
}

/// The reply to MAIL on a fresh connection.
fn try_mail(mta: &Mta) -> String {
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\nMAIL FROM:<a@src.test>\r\n");
    c.reply().unwrap();
    c.reply().unwrap()
}

/// Waits until MAIL on a fresh connection gets a reply starting with `want`.
fn wait_mail(mta: &Mta, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = try_mail(mta);
        if r.starts_with(want) {
            return;
        }
        assert!(Instant::now() < deadline, "MAIL kept answering {r}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn mail_being_received_counts_toward_the_memory_budget() {
    let dir = tempdir();
    // One shard, so that every connection shares one budget: 4 MiB.
    let config = write_config(
        dir.path(),
        "",
        "[delivery]\nhold = true\nmemory_budget = \"4MiB\"\n",
    );
    let text =
        std::fs::read_to_string(&config)
            .unwrap()
            .replacen("shards = 2\n", "shards = 1\n", 1);
    std::fs::write(&config, text).unwrap();
    let mut mta = Mta::start(dir.path(), &config);

    let mut a = open_data(&mta);
    send_body(&mut a, 2 * MIB);
    assert!(
        try_mail(&mta).starts_with("250"),
        "half the budget: still accepting"
    );
    let mut b = open_data(&mta);
    send_body(&mut b, 17 * MIB / 10);
    // 3.7 MiB of 4 being received: new transactions wait.
    wait_mail(&mta, "452 4.3.1");
    // B passes the budget: it is read to its end and refused; A, within it, is accepted.
    send_body(&mut b, MIB / 2);
    b.send(b".\r\n");
    let r = b.reply().unwrap();
    assert!(r.starts_with("452 4.3.1"), "{r}");
    a.send(b".\r\n");
    let r = a.reply().unwrap();
    assert!(r.starts_with("250"), "{r}");
    // Both transfers are over: mail is accepted again.
    wait_mail(&mta, "250");
    assert!(mta.stop().success());
    let counts = common::queue_counts(&config);
    assert_eq!(counts.get("messages"), Some(&1), "{counts:?}");
}
