//! Outbound STARTTLS through real sockets: one `mta` relays to others acting as receivers,
//! under each TLS policy (opportunistic, required, verify), and to a scripted server whose
//! handshake breaks (plaintext fallback).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::certs::make_certs;
use common::{Mta, event_log, submit, tempdir, write_config};

/// A receiving `mta` (delivery on hold) for `dest.test`, with the given certificates.
fn receiver(dir: &Path, certs: &[(std::path::PathBuf, std::path::PathBuf)]) -> Mta {
    let mut extra = String::from(
        "[relay]\nlocal_domains = [\"dest.test\"]\n[[routes]]\ndomain = \"dest.test\"\n\
         hosts = [\"127.0.0.1:9\"]\n[tls]\n",
    );
    for (cert, key) in certs {
        extra.push_str(&format!(
            "[[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    let config = write_config(dir, "", &extra);
    Mta::start(dir, &config)
}

/// Waits until the event log has a delivery event for `rcpt` (bounded) and returns it.
fn wait_for(dir: &Path, rcpt: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(v) = event_log(dir).into_iter().find(|v| v["recipient"] == rcpt) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no delivery record for {rcpt}: {:?}", event_log(dir));
}

/// Answers like an SMTP server that offers STARTTLS and then breaks the handshake; without
/// STARTTLS it takes the message. Counts messages received.
fn broken_tls_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { break };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let _ = stream.write_all(b"220 broken.test ESMTP\r\n");
                let mut line = String::new();
                let mut in_data = false;
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let reply: &[u8] = if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            count.fetch_add(1, Ordering::SeqCst);
                            b"250 2.0.0 queued\r\n"
                        } else {
                            b""
                        }
                    } else {
                        match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
                            "EHLO" => b"250-broken.test\r\n250 STARTTLS\r\n",
                            "STAR" => {
                                let _ = stream.write_all(b"220 2.0.0 go ahead\r\n");
                                // Not a TLS record: the client's handshake fails.
                                let _ = stream.write_all(b"this is not TLS\r\n");
                                return;
                            }
                            "DATA" => {
                                in_data = true;
                                b"354 go\r\n"
                            }
                            "QUIT" => {
                                let _ = stream.write_all(b"221 bye\r\n");
                                return;
                            }
                            _ => b"250 2.0.0 ok\r\n",
                        }
                    };
                    let _ = stream.write_all(reply);
                    line.clear();
                }
            });
        }
    });
    (port, received)
}

#[test]
fn policies_opportunistic_required_verify_and_fallback() {
    let certs_dir = tempdir();
    let certs = make_certs(
        certs_dir.path(),
        &[&["mx.test", "127.0.0.1"], &["other.test"]],
    );
    let good_dir = tempdir();
    let mut good = receiver(good_dir.path(), &certs.leaves[..1]);
    let wrong_dir = tempdir();
    let mut wrong_name = receiver(wrong_dir.path(), &certs.leaves[1..]);
    let plain_dir = tempdir();
    let mut plain = receiver(plain_dir.path(), &[]);
    let (broken, broken_count) = broken_tls_server();

    let dir = tempdir();
    let route = |domain: &str, port: u16, tls: &str| {
        format!(
            "[[routes]]\ndomain = \"{domain}\"\nhosts = [\"127.0.0.1:{port}\"]\ntls = \"{tls}\"\n"
        )
    };
    let extra = format!(
        "[delivery]\nidle_timeout = \"1s\"\n[delivery.retry]\nfirst = \"1h\"\n\
         [tls]\nca_file = \"{}\"\n{}{}{}{}{}{}",
        certs.ca.display(),
        route("opportunistic.test", good.addr.port(), "opportunistic"),
        route("verify.test", good.addr.port(), "verify"),
        route("mismatch.test", wrong_name.addr.port(), "verify"),
        route("required.test", plain.addr.port(), "required"),
        route("none.test", good.addr.port(), "none"),
        route("broken.test", broken, "opportunistic"),
    );
    let config = write_config(dir.path(), "", &extra);
    let mut sender = Mta::start(dir.path(), &config);
    submit(
        &sender,
        &[
            "u@opportunistic.test",
            "u@verify.test",
            "u@mismatch.test",
            "u@required.test",
            "u@none.test",
            "u@broken.test",
        ],
        "tls",
    );

    let v = wait_for(dir.path(), "u@opportunistic.test");
    assert_eq!(v["type"], "Delivery", "{v}");
    assert!(v["tls"].as_str().unwrap().starts_with("TLSv1."), "{v}");
    let v = wait_for(dir.path(), "u@verify.test");
    assert_eq!(v["type"], "Delivery", "{v}");
    assert!(v["tls"].as_str().unwrap().starts_with("TLSv1."), "{v}");
    let v = wait_for(dir.path(), "u@mismatch.test");
    assert_eq!(
        v["type"], "TransientFailure",
        "certificate not valid for the host: {v}"
    );
    let v = wait_for(dir.path(), "u@required.test");
    assert_eq!(v["type"], "TransientFailure", "no STARTTLS offered: {v}");
    assert!(v["reply"].as_str().unwrap().contains("STARTTLS"), "{v}");
    let v = wait_for(dir.path(), "u@none.test");
    assert_eq!(v["type"], "Delivery", "{v}");
    assert_eq!(v["tls"], "", "policy none stays plaintext: {v}");
    let v = wait_for(dir.path(), "u@broken.test");
    assert_eq!(v["type"], "Delivery", "fallback to plaintext: {v}");
    assert_eq!(v["tls"], "");
    assert_eq!(broken_count.load(Ordering::SeqCst), 1);

    assert!(sender.stop().success());
    for m in [&mut good, &mut wrong_name, &mut plain] {
        assert!(m.stop().success());
    }
    // The receiver got both TLS messages with ESMTPS in its trace header.
    let queue = mta::spool::read_offline(&good_dir.path().join("spool")).expect("spool");
    let bodies: Vec<String> = queue
        .messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.message.body).into_owned())
        .collect();
    assert_eq!(bodies.len(), 3, "opportunistic, verify, none");
    assert_eq!(
        bodies.iter().filter(|b| b.contains("with ESMTPS")).count(),
        2
    );
}
