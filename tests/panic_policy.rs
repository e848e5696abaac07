//! The panic policy through the real binary: a panic in one shard ends the whole process with
//! status 70 (no half-serving process), and a restart finds every acknowledged message.
//!
//! One test in this file: it sets the fault-injection variable for the processes it starts.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Client, Mta, tempdir, write_config};

/// Sends one message on a fresh connection; its queue id if it got a `250`. Any failure (the
/// process may be gone) is `None`.
fn try_submit(mta: &Mta, n: usize) -> Option<String> {
    let stream = TcpStream::connect_timeout(&mta.addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut writer = stream;
    let mut reply = |want: &str| -> Option<String> {
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                break;
            }
        }
        line.starts_with(want).then(|| line.clone())
    };
    reply("220")?;
    writer
        .write_all(
            b"EHLO panic.test\r\nMAIL FROM:<a@src.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n",
        )
        .ok()?;
    for want in ["250", "250", "250", "354"] {
        reply(want)?;
    }
    writer
        .write_all(format!("Subject: panic {n}\r\n\r\nbody {n}\r\n.\r\n").as_bytes())
        .ok()?;
    let r = reply("250")?;
    r.strip_prefix("250 2.0.0 Ok: queued as ")
        .map(|id| id.trim().to_owned())
}

#[test]
fn a_shard_panic_exits_the_process_and_loses_nothing() {
    let dir = tempdir();
    let config = write_config(dir.path(), "", "");
    // SAFETY: the only test in this binary; no other thread reads the environment now.
    unsafe { std::env::set_var(mta::crash::FAULT_PANIC_AFTER, "3") };
    let mut mta = Mta::start(dir.path(), &config);
    // SAFETY: as above.
    unsafe { std::env::remove_var(mta::crash::FAULT_PANIC_AFTER) };

    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0..200 {
        if Instant::now() > deadline || mta.child.try_wait().ok().flatten().is_some() {
            break;
        }
        if let Some(id) = try_submit(&mta, n) {
            acked.push(id);
        }
    }
    let status = mta
        .wait(Duration::from_secs(10))
        .expect("the process exits after a shard panic");
    assert_eq!(status.code(), Some(mta::crash::EXIT_PANIC), "{status}");
    assert!(acked.len() >= 3, "acknowledged before the panic: {acked:?}");
    let log = mta.drain_log().join("\n");
    assert!(log.contains("fault injection"), "{log}");
    assert!(log.contains("exiting the whole process"), "{log}");

    // The spool as the crash left it: every acknowledged message is queued.
    let list = Command::new(env!("CARGO_BIN_EXE_mta"))
        .args(["queue", "list", "--config"])
        .arg(&config)
        .output()
        .expect("mta queue list");
    let list = String::from_utf8_lossy(&list.stdout);
    for id in &acked {
        assert!(list.contains(id.as_str()), "{id} missing from:\n{list}");
    }

    // A restart (as systemd would) serves on every shard again with the same queue.
    let mut again = Mta::start(dir.path(), &config);
    for _ in 0..8 {
        let mut c = Client::connect(again.addr);
        assert!(c.reply().is_some_and(|r| r.starts_with("220")));
    }
    assert!(again.stop().success());
    let counts = common::queue_counts(&config);
    assert!(
        counts["queued"] >= acked.len() as u64,
        "{counts:?} {acked:?}"
    );
}
