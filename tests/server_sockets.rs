//! The server through real sockets on loopback: pipelining, smuggling attempts, limits,
//! timeouts, the connection limit and graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Mta, tempdir, write_config};

fn start(extra: &str) -> (tempfile::TempDir, Mta) {
    let dir = tempdir();
    let config = write_config(dir.path(), "", extra);
    let mta = Mta::start(dir.path(), &config);
    (dir, mta)
}

#[test]
fn pipelined_group_is_answered_in_one_write() {
    let (_dir, mta) = start("");
    let mut c = Client::connect(mta.addr);
    assert_eq!(c.codes(1), [220]);
    c.send(b"EHLO client.test\r\n");
    let ehlo = c.reply().unwrap();
    assert!(ehlo.contains("PIPELINING"), "{ehlo}");
    c.send(
        b"MAIL FROM:<a@client.test>\r\nRCPT TO:<u1@dest.test>\r\nRCPT TO:<u2@dest.test>\r\nDATA\r\n",
    );
    // All four replies arrive together: read once after a pause and find them all.
    std::thread::sleep(Duration::from_millis(300));
    let mut raw = [0u8; 4096];
    let n = std::io::Read::read(&mut c.stream, &mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw[..n]);
    assert_eq!(text.matches("\r\n").count(), 4, "{text}");
    assert!(
        text.starts_with("250 2.1.0") && text.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"),
        "{text}"
    );
    c.send(b"Subject: t\r\n\r\nhello\r\n.\r\nQUIT\r\n");
    let r = c.reply().unwrap();
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert!(c.reply().unwrap().starts_with("221 2.0.0"));
}

#[test]
fn smuggling_attempts_are_refused() {
    let (_dir, mta) = start("");
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c.test\r\n");
    c.reply();
    for payload in [
        &b"a\r\n\n.\nMAIL FROM:<x@evil.test>\r\nRCPT TO:<v@dest.test>\r\nDATA\r\nsmuggled\r\n.\r\n"
            [..],
        &b"a\r\n\r.\rMAIL FROM:<x@evil.test>\r\n.\r\n"[..],
        &b"a\r\n.\nRSET\r\n.\r\n"[..],
    ] {
        c.send(b"MAIL FROM:<a@c.test>\r\nRCPT TO:<u@dest.test>\r\nDATA\r\n");
        assert_eq!(c.codes(3), [250, 250, 354]);
        c.send(payload);
        let r = c.reply().unwrap();
        assert!(r.starts_with("550 5.6.0"), "{r}");
        c.send(b"NOOP\r\n");
        assert_eq!(c.codes(1), [250], "session in sync after {payload:?}");
    }
}

#[test]
fn limits_have_exact_replies() {
    let (_dir, mta) =
        start("[smtp]\nmax_message_size = \"4KiB\"\nmax_recipients = 2\nmax_errors = 5\n");
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(format!("NOOP {}\r\n", "x".repeat(600)).as_bytes());
    assert!(c.reply().unwrap().starts_with("500 5.5.2"));
    c.send(b"NO\0OP\r\n");
    assert!(c.reply().unwrap().starts_with("500 5.5.2"));
    c.send(b"EHLO c.test\r\nMAIL FROM:<a@c.test> SIZE=100000\r\n");
    c.reply();
    assert!(c.reply().unwrap().starts_with("552 5.3.4"));
    c.send(b"MAIL FROM:<a@c.test>\r\nRCPT TO:<1@d.test>\r\nRCPT TO:<2@d.test>\r\nRCPT TO:<3@d.test>\r\nDATA\r\n");
    assert_eq!(c.codes(5), [250, 250, 250, 452, 354]);
    let line = format!("{}\r\n", "y".repeat(998));
    for _ in 0..8 {
        c.send(line.as_bytes());
    }
    c.send(b".\r\n");
    assert!(c.reply().unwrap().starts_with("552 5.3.4"));
    // Error limit: four errors so far (500, 500, 552 at MAIL, 552 at the end of data); the
    // fifth closes the session.
    c.send(b"BOGUS\r\n");
    assert!(c.reply().unwrap().starts_with("500 5.5.1"));
    let last = c.reply().unwrap();
    assert!(last.starts_with("421 4.7.0"), "{last}");
    assert!(c.closed());
}

#[test]
fn idle_client_times_out_with_421() {
    let (_dir, mta) = start("[smtp.timeouts]\ncommand = \"1s\"\ngreeting = \"1s\"\n");
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    let started = Instant::now();
    let r = c.reply().unwrap();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(c.closed());
}

#[test]
fn slow_data_times_out() {
    let (_dir, mta) = start("[smtp.timeouts]\ndata_block = \"1s\"\n");
    let mut c = Client::connect(mta.addr);
    c.codes(1);
    c.send(b"EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<u@d.test>\r\nDATA\r\npartial");
    assert_eq!(c.codes(4), [250, 250, 250, 354]);
    let r = c.reply().unwrap();
    assert!(r.starts_with("421 4.4.2"), "{r}");
}

#[test]
fn connection_limit_refuses_with_421() {
    let (_dir, mta) = start("[smtp]\nmax_connections = 2\n");
    // Two shards with two connections each: keep opening until one is refused.
    let mut open = Vec::new();
    let mut refused = None;
    for _ in 0..8 {
        let mut c = Client::connect(mta.addr);
        let r = c.reply().unwrap();
        if r.starts_with("421") {
            refused = Some(r);
            break;
        }
        open.push(c);
    }
    let r = refused.expect("a connection over the limit is refused");
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert!(open.len() >= 2 && open.len() <= 4, "{}", open.len());
}

#[test]
fn sigterm_drains_sessions_and_exits_zero() {
    let (_dir, mut mta) = start("[shutdown]\ngrace = \"5s\"\n");
    let mut idle = Client::connect(mta.addr);
    idle.codes(1);
    let mut busy = Client::connect(mta.addr);
    busy.codes(1);
    busy.send(b"EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<u@d.test>\r\n");
    busy.codes(3);
    std::thread::sleep(Duration::from_millis(100));
    mta.signal(libc::SIGTERM);
    let r = idle.reply().unwrap();
    assert!(r.starts_with("421 4.3.2"), "{r}");
    // The transaction in progress may finish.
    busy.send(b"DATA\r\n");
    assert_eq!(busy.codes(1), [354]);
    busy.send(b"hi\r\n.\r\n");
    let r = busy.reply().unwrap();
    assert!(r.starts_with("250 2.0.0 Ok: queued"), "{r}");
    let r = busy.reply().unwrap();
    assert!(r.starts_with("421 4.3.2"), "{r}");
    let status = mta.wait(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{status}");
}
