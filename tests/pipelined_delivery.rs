//! Chained transactions on a pipelining receiver (RFC 2920 3.1): each message's content goes
//! out with the next envelope behind it, a refused message does not disturb the next, and a
//! connection closed with a chained envelope unanswered hands that message back without
//! counting an attempt.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, Mta, event_log, queue_counts, tempdir, write_config};

/// What the receiver saw of one transaction.
#[derive(Debug, Clone)]
struct Seen {
    connection: usize,
    subject: String,
    /// The next command was already there when the end of data arrived, before our reply.
    chained: bool,
}

/// A PIPELINING receiver: greets its first connection late (so the queue fills up), refuses
/// at end of data any message whose subject says REJECT, and closes its first connection
/// right after accepting a message whose subject says CLOSE.
fn receiver() -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { break };
            let log = log.clone();
            std::thread::spawn(move || {
                if n == 0 {
                    std::thread::sleep(Duration::from_millis(700));
                }
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let _ = stream.write_all(b"220 rx.test ESMTP\r\n");
                let mut line = String::new();
                let mut subject = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_ascii_uppercase();
                    if upper.starts_with("EHLO") {
                        let _ = stream.write_all(b"250-rx.test\r\n250 PIPELINING\r\n");
                    } else if upper.starts_with("DATA") {
                        let _ = stream.write_all(b"354 go\r\n");
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if let Some(s) = line.strip_prefix("Subject: ") {
                                subject = s.trim().to_owned();
                            }
                            if line == ".\r\n" {
                                break;
                            }
                        }
                        // Before answering: is the next command already here?
                        stream
                            .set_read_timeout(Some(Duration::from_millis(300)))
                            .unwrap();
                        let chained = reader.fill_buf().is_ok_and(|b| !b.is_empty());
                        stream.set_read_timeout(None).unwrap();
                        log.lock().unwrap().push(Seen {
                            connection: n,
                            subject: subject.clone(),
                            chained,
                        });
                        if subject.contains("REJECT") {
                            let _ = stream.write_all(b"554 5.7.1 rejected by content filter\r\n");
                        } else {
                            let _ = stream.write_all(b"250 2.0.0 queued\r\n");
                        }
                        if n == 0 && subject.contains("CLOSE") {
                            let _ = stream.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                    } else if upper.starts_with("QUIT") {
                        let _ = stream.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        let _ = stream.write_all(b"250 2.0.0 ok\r\n");
                    }
                }
            });
        }
    });
    (port, seen)
}

/// The receiver, an MTA routing `dest.test` to it over at most one connection, and one
/// client session that has said EHLO: every message it sends lands on the same shard, queued
/// in order.
fn setup() -> (
    Arc<Mutex<Vec<Seen>>>,
    tempfile::TempDir,
    std::path::PathBuf,
    Mta,
    Client,
) {
    let (port, seen) = receiver();
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\nmax_connections = 1\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{port}\"]\n"
        ),
    );
    let mta = Mta::start(dir.path(), &config);
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    (seen, dir, config, mta, c)
}

/// Sends one message with a null sender (no DSN can go anywhere) to u@dest.test.
fn send(c: &mut Client, subject: &str) {
    c.send(b"MAIL FROM:<>\r\nRCPT TO:<u@dest.test>\r\nDATA\r\n");
    assert_eq!(c.codes(3), vec![250, 250, 354]);
    c.send(format!("Subject: {subject}\r\n\r\nhello\r\n.\r\n").as_bytes());
    assert_eq!(c.codes(1), vec![250]);
}

#[test]
fn messages_are_chained_and_a_lost_chain_is_not_an_attempt() {
    let (seen, dir, config, mut mta, mut c) = setup();
    let subjects = ["m1", "m2 REJECT", "m3 CLOSE", "m4", "m5"];
    for s in subjects {
        send(&mut c, s);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < subjects.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(mta.stop().success());
    let seen = seen.lock().unwrap().clone();
    let mut order: Vec<&str> = seen.iter().map(|s| s.subject.as_str()).collect();
    // The handed-back m4 queues again behind m5.
    order[3..].sort_unstable();
    assert_eq!(order, subjects, "{seen:?}");
    // On the first connection m1, m2 and m3 each had the next envelope behind them.
    for s in &seen[..3] {
        assert_eq!(s.connection, 0, "{seen:?}");
        assert!(s.chained, "{} was sent in lock-step: {seen:?}", s.subject);
    }
    // m4's envelope was lost with the first connection: it went out on a second one.
    assert!(seen[3..].iter().all(|s| s.connection == 1), "{seen:?}");

    let events = event_log(dir.path());
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(!kinds.contains(&"TransientFailure"), "{events:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "Delivery").count(), 4);
    assert_eq!(kinds.iter().filter(|k| **k == "Bounce").count(), 1);
    for e in events.iter().filter(|e| e["type"] == "Delivery") {
        assert_eq!(
            e["attempt"], 1,
            "a handed-back message is not an attempt: {e}"
        );
    }
    let bounce = events.iter().find(|e| e["type"] == "Bounce").unwrap();
    assert!(
        bounce["reply"].as_str().unwrap().contains("content filter"),
        "{bounce}"
    );
    let count = queue_counts(&config);
    assert_eq!(
        (
            count["accepted"],
            count["delivered"],
            count["bounced"],
            count["queued"]
        ),
        (5, 4, 1, 0),
        "{count:?}"
    );
}

#[test]
fn an_idle_connection_takes_new_mail_of_its_destination() {
    let (seen, _dir, _config, mut mta, mut c) = setup();
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for (i, s) in ["first", "second"].into_iter().enumerate() {
        send(&mut c, s);
        wait_for(i + 1);
        // Long enough for the connection to sit idle before the next message arrives.
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(mta.stop().success());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter().all(|s| s.connection == 0),
        "the idle connection was reused: {seen:?}"
    );
}
