//! Receivers whose EHLO reply arrives in pieces: a long multi-line reply in many small writes is
//! read and the message delivered; an endless multi-line reply, sent fast (it passes the size
//! cap) or trickled (it passes the reply deadline), gets the delivery deferred instead of a hang
//! or an ever-growing buffer.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Mta, event_log, queue_counts, submit, tempdir, write_config};

/// How the receiver sends its EHLO reply.
#[derive(Clone, Copy)]
enum Ehlo {
    /// 300 lines, written 5 octets at a time.
    LongInPieces,
    /// Continuation lines as fast as the socket takes them, never a last line.
    EndlessFlood,
    /// Continuation lines one octet every 20 ms, never a last line.
    EndlessTrickle,
}

/// Longest a misbehaving receiver keeps writing (every loop in a test is bounded).
const WRITER_LIMIT: Duration = Duration::from_secs(60);

fn send_ehlo(stream: &mut TcpStream, how: Ehlo) -> bool {
    let started = Instant::now();
    match how {
        Ehlo::LongInPieces => {
            let mut wire = Vec::new();
            for i in 0..300 {
                wire.extend_from_slice(format!("250-X-EXTENSION-{i:03} some text\r\n").as_bytes());
            }
            wire.extend_from_slice(b"250-PIPELINING\r\n250 8BITMIME\r\n");
            for piece in wire.chunks(5) {
                if stream.write_all(piece).is_err() {
                    return false;
                }
                stream.flush().ok();
            }
            true
        }
        Ehlo::EndlessFlood => {
            // 100 octets a line: the 64 KiB cap comes before the line cap.
            let mut line = b"250-X-ENDLESS ".to_vec();
            line.resize(98, b'p');
            line.extend_from_slice(b"\r\n");
            while started.elapsed() < WRITER_LIMIT {
                if stream.write_all(&line).is_err() {
                    break;
                }
            }
            false
        }
        Ehlo::EndlessTrickle => {
            let line = b"250-X-SLOW\r\n";
            'out: while started.elapsed() < WRITER_LIMIT {
                for b in line.chunks(1) {
                    if stream.write_all(b).is_err() {
                        break 'out;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            false
        }
    }
}

/// A receiver on loopback; counts the messages it accepted.
fn receiver(how: Ehlo) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { break };
            let count = count.clone();
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let _ = stream.set_read_timeout(Some(WRITER_LIMIT));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let _ = stream.write_all(b"220 rx.test ESMTP\r\n");
                let mut line = String::new();
                for _ in 0..100 {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        if !send_ehlo(&mut stream, how) {
                            return;
                        }
                        continue;
                    } else if upper.starts_with("DATA") {
                        let _ = stream.write_all(b"354 go\r\n");
                        let mut body = String::new();
                        for _ in 0..10_000 {
                            body.clear();
                            if reader.read_line(&mut body).unwrap_or(0) == 0 {
                                return;
                            }
                            if body == ".\r\n" {
                                break;
                            }
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

/// Starts an MTA routing `dest.test` to a receiver that sends its EHLO reply `how`, submits
/// one message and returns the MTA, its directory and the receiver's count.
fn start(how: Ehlo) -> (Mta, tempfile::TempDir, Arc<AtomicUsize>) {
    let (port, accepted) = receiver(how);
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[delivery]\n[delivery.timeouts]\ncommand = \"3s\"\n\
             [[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:{port}\"]\n"
        ),
    );
    let mta = Mta::start(dir.path(), &config);
    submit(&mta, &["u@dest.test"], "slow reply");
    (mta, dir, accepted)
}

/// Waits (bounded) for the first event of `kind` in the event log.
fn wait_event(dir: &std::path::Path, kind: &str) -> Option<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        if let Some(e) = event_log(dir).into_iter().find(|e| e["type"] == kind) {
            return Some(e);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_long_ehlo_reply_in_small_writes_is_read_and_the_message_delivered() {
    let (mut mta, dir, accepted) = start(Ehlo::LongInPieces);
    let delivered = wait_event(dir.path(), "Delivery");
    assert!(delivered.is_some(), "{:?}", event_log(dir.path()));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert!(mta.stop().success());
    assert_eq!(queue_counts(&mta.config)["delivered"], 1);
}

/// The delivery is deferred with a reason containing `want`; nothing delivered.
fn deferred(how: Ehlo, want: &str) {
    let (mut mta, dir, accepted) = start(how);
    let failure = wait_event(dir.path(), "TransientFailure")
        .unwrap_or_else(|| panic!("not deferred: {:?}", event_log(dir.path())));
    let text = failure.to_string();
    assert!(text.contains(want), "{text}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    assert!(mta.stop().success());
    let count = queue_counts(&mta.config);
    assert_eq!((count["delivered"], count["queued"]), (0, 1), "{count:?}");
}

#[test]
fn an_endless_ehlo_reply_is_cut_at_the_size_cap_and_deferred() {
    deferred(Ehlo::EndlessFlood, "reply too long");
}

#[test]
fn a_trickled_endless_ehlo_reply_times_out_and_is_deferred() {
    deferred(Ehlo::EndlessTrickle, "timeout");
}
