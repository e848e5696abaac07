//! Start-up recovery stays within the memory budget: after a kill -9 with more queued bodies
//! than the budget holds, the restarted process reads back only what the budget allows (the
//! other bodies stay in the spool until they are sent).

mod common;

use std::time::{Duration, Instant};

use common::receiver::Scripted;
use common::{Client, Mta, event_log, queue_counts, tempdir, write_config};

const MESSAGES: usize = 40;
/// Under the receiver's `SIZE 1000000`.
const MESSAGE_KIB: usize = 900;

/// Peak resident memory of a process, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM")
}

fn send_big(mta: &Mta, n: usize) {
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    let line = format!("{}\r\n", "x".repeat(998));
    let body = line.repeat(MESSAGE_KIB * 1024 / line.len());
    c.send(b"MAIL FROM:<a@src.test>\r\nRCPT TO:<slow@dest.test>\r\nDATA\r\n");
    assert_eq!(c.codes(3), vec![250, 250, 354]);
    c.send(format!("Subject: big {n}\r\n\r\n").as_bytes());
    c.send(body.as_bytes());
    c.send(b".\r\n");
    let r = c.reply().unwrap();
    assert!(r.starts_with("250"), "{r}");
}

#[test]
fn recovery_reads_no_more_bodies_than_the_budget_holds() {
    let dir = tempdir();
    // The receiver answers 451 to every `slow...` recipient: each attempt is deferred for an
    // hour, and the mail stays queued.
    let sink = Scripted::start(false, usize::MAX);
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\nmemory_budget = \"16MiB\"\n[delivery.retry]\nfirst = \"1h\"\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{}\"]\n",
            sink.port
        ),
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[spool]\n", "[spool]\nsegment_size = \"4MiB\"\n");
    std::fs::write(&config, text).unwrap();

    let mut mta = Mta::start(dir.path(), &config);
    let idle_peak = peak_kib(mta.child.id());
    for n in 0..MESSAGES {
        send_big(&mta, n);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    // Every recipient has had its (deferred) first attempt: nothing is due at the restart.
    let deferred = || {
        event_log(dir.path())
            .iter()
            .filter(|e| e["type"] == "TransientFailure")
            .count()
    };
    while deferred() < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "{} deferred: {:#?}",
            deferred(),
            mta.drain_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    mta.kill();

    let mut again = Mta::start(dir.path(), &config);
    std::thread::sleep(Duration::from_millis(500));
    let peak = peak_kib(again.child.id());
    let queued_kib = (MESSAGES * MESSAGE_KIB) as u64;
    // Budget (16 MiB, all shards) + one 4 MiB piece + slack for the allocator and noise.
    // Loading every body (36 MiB of them, plus whole segments) lands far above.
    let allowed = idle_peak + 16 * 1024 + 4 * 1024 + 12 * 1024;
    eprintln!("peak after recovery {peak} KiB, idle {idle_peak} KiB, allowed {allowed} KiB");
    assert!(
        peak < allowed,
        "peak after recovery {peak} KiB, idle {idle_peak} KiB, queued bodies {queued_kib} KiB"
    );
    assert_eq!(
        queue_counts(&config).get("queued"),
        Some(&(MESSAGES as u64)),
        "nothing lost"
    );
    assert!(again.stop().success());
}
