//! Receivers that misbehave in the data phase: one that is slow to answer the end of data (past
//! the client's timeout), one that drops the connection in the middle of DATA. Each first
//! attempt is deferred and retried; the retry delivers; the books balance.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Client, Mta, queue_counts, tempdir, write_config};

#[derive(Clone, Copy)]
enum Fault {
    /// Waits this long before answering the end of data, on the first connection.
    SlowEnd(Duration),
    /// Closes the connection after reading a few octets of message data, on the first one.
    DropMidData,
}

/// A receiver that misbehaves on its first connection only; counts messages it accepted.
fn receiver(fault: Fault) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { break };
            let count = count.clone();
            let first = n == 0;
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let _ = stream.write_all(b"220 rx.test ESMTP\r\n");
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250 rx.test\r\n"
                    } else if upper.starts_with("DATA") {
                        let _ = stream.write_all(b"354 go\r\n");
                        if first && matches!(fault, Fault::DropMidData) {
                            let mut some = [0u8; 8];
                            let _ = reader.read_exact(&mut some);
                            let _ = stream.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        let mut body = String::new();
                        loop {
                            body.clear();
                            if reader.read_line(&mut body).unwrap_or(0) == 0 {
                                return;
                            }
                            if body == ".\r\n" {
                                break;
                            }
                        }
                        if first && let Fault::SlowEnd(wait) = fault {
                            std::thread::sleep(wait);
                            // Too late: the client gave up. Count nothing.
                            let _ = stream.write_all(b"250 2.0.0 late\r\n");
                            return;
                        }
                        count.fetch_add(1, Ordering::SeqCst);
                        b"250 2.0.0 queued\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = stream.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 2.0.0 ok\r\n"
                    };
                    if stream.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

fn run(fault: Fault) -> String {
    let (port, accepted) = receiver(fault);
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\n[delivery.retry]\nfirst = \"1s\"\nmax = \"1s\"\njitter = 0.0\n\
             [delivery.timeouts]\ndata_termination = \"1s\"\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{port}\"]\n"
        ),
    );
    let mut mta = Mta::start(dir.path(), &config);
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\nMAIL FROM:<a@src.test>\r\nRCPT TO:<u@dest.test>\r\nDATA\r\n");
    assert_eq!(c.codes(4), vec![250, 250, 250, 354]);
    c.send(b"Subject: fault\r\n\r\nsome text for the receiver to read\r\n.\r\n");
    assert_eq!(c.codes(1), vec![250]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "delivered on the retry");
    // Let the stage record the delivery, then stop.
    std::thread::sleep(Duration::from_millis(300));
    assert!(mta.stop().success());
    let log: String = (0..2)
        .map(|i| {
            std::fs::read_to_string(dir.path().join(format!("log/delivery-{i}.jsonl")))
                .unwrap_or_default()
        })
        .collect();
    let count = queue_counts(&config);
    assert_eq!((count["delivered"], count["queued"]), (1, 0), "{count:?}");
    log
}

#[test]
fn a_receiver_slow_at_end_of_data_is_timed_out_and_retried() {
    let log = run(Fault::SlowEnd(Duration::from_secs(3)));
    let failure = log
        .lines()
        .find(|l| l.contains("\"type\":\"TransientFailure\""))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(failure.contains("timeout"), "{failure}");
    assert_eq!(log.matches("\"type\":\"Delivery\"").count(), 1, "{log}");
}

#[test]
fn a_connection_dropped_mid_data_is_retried() {
    let log = run(Fault::DropMidData);
    assert!(log.contains("\"type\":\"TransientFailure\""), "{log}");
    assert_eq!(log.matches("\"type\":\"Delivery\"").count(), 1, "{log}");
}
