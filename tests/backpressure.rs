//! Backpressure under a total egress stall: every receiver answers 451, mail keeps coming.
//! Resident memory stays bounded by the queue's memory budget (bodies are read back from the
//! spool), new mail is refused with 452 4.3.1 once the budget is reached, and nothing that got
//! a 250 is lost: the books balance.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Client, Mta, queue_counts, tempdir, write_config};

/// A receiver that refuses every recipient with 451; counts the connections it served.
fn refusing_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let _ = stream.write_all(b"220 stalled.test ESMTP\r\n");
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let reply: &[u8] =
                        match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
                            "EHLO" => b"250-stalled.test\r\n250 PIPELINING\r\n",
                            "RCPT" => b"451 4.3.0 try again later\r\n",
                            "DATA" => b"554 5.5.1 no valid recipients\r\n",
                            "QUIT" => {
                                let _ = stream.write_all(b"221 bye\r\n");
                                return;
                            }
                            _ => b"250 2.0.0 ok\r\n",
                        };
                    if stream.write_all(reply).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    (port, seen)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

/// Sends `n` messages of `size` bytes over one connection; returns (accepted, refused 452).
fn inject(mta: &Mta, n: usize, size: usize) -> (usize, usize) {
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO load.test\r\n");
    c.reply();
    let line = "x".repeat(76) + "\r\n";
    let mut body = String::from("Subject: stall\r\n\r\n");
    while body.len() < size {
        body.push_str(&line);
    }
    body.push_str(".\r\n");
    let (mut ok, mut refused) = (0, 0);
    for i in 0..n {
        c.send(b"MAIL FROM:<s@src.test>\r\n");
        let mail = c.reply().unwrap();
        if mail.starts_with("452 4.3.1") {
            refused += 1;
            continue;
        }
        assert!(mail.starts_with("250"), "{mail}");
        c.send(format!("RCPT TO:<u{i}@dest.test>\r\nDATA\r\n").as_bytes());
        c.reply().unwrap();
        let data = c.reply().unwrap();
        assert!(data.starts_with("354"), "{data}");
        c.send(body.as_bytes());
        let end = c.reply().unwrap();
        assert!(end.starts_with("250"), "{end}");
        ok += 1;
    }
    (ok, refused)
}

fn config(dir: &std::path::Path, port: u16, budget: &str) -> std::path::PathBuf {
    write_config(
        dir,
        "",
        &format!(
            "[delivery]\nmemory_budget = \"{budget}\"\nidle_timeout = \"1s\"\n\
             [delivery.retry]\nfirst = \"1s\"\nmax = \"2s\"\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{port}\"]\n\
             [[routes]]\ndomain = \"src.test\"\nhosts = [\"127.0.0.1:{port}\"]\n"
        ),
    )
}

fn books(config: &std::path::Path) -> (u64, u64) {
    let count = queue_counts(config);
    (count["accepted"], count["queued"])
}

#[test]
fn stalled_egress_keeps_memory_bounded_and_loses_nothing() {
    let (port, seen) = refusing_server();
    let dir = tempdir();
    let cfg = config(dir.path(), port, "8MiB");
    let mut mta = Mta::start(dir.path(), &cfg);
    let pid = mta.child.id();
    let before = rss_kib(pid);
    // 1,200 messages of 32 KiB: 37.5 MiB of bodies against an 8 MiB budget (4 MiB a shard).
    let (ok, refused) = inject(&mta, 1200, 32 * 1024);
    assert_eq!(refused, 0, "envelopes of 1,200 messages fit the budget");
    // Let retries run a while: bodies are read back from the spool for every attempt.
    let until = Instant::now() + Duration::from_secs(3);
    let mut peak = rss_kib(pid);
    while Instant::now() < until {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen.load(Ordering::SeqCst) > 0, "the receiver was tried");
    let grown_mib = peak.saturating_sub(before) / 1024;
    eprintln!("RSS {before} KiB before, peak {peak} KiB");
    assert!(
        grown_mib < 24,
        "RSS grew by {grown_mib} MiB for 37.5 MiB of queued bodies (budget 8 MiB)"
    );
    assert!(mta.stop().success());
    let (accepted, queued) = books(&cfg);
    assert_eq!(accepted, ok as u64);
    assert_eq!(queued, ok as u64, "nothing delivered, nothing lost");
}

#[test]
fn a_full_budget_refuses_new_mail_with_452() {
    let (port, _) = refusing_server();
    let dir = tempdir();
    let cfg = config(dir.path(), port, "256KiB");
    let mut mta = Mta::start(dir.path(), &cfg);
    let (ok, refused) = inject(&mta, 800, 512);
    assert!(refused > 0, "the budget was never reached ({ok} accepted)");
    assert!(ok > 0);
    assert!(mta.stop().success());
    let (accepted, queued) = books(&cfg);
    assert_eq!((accepted, queued), (ok as u64, ok as u64));
}
