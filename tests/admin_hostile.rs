//! The admin endpoint of a running binary against hostile or careless clients: values that
//! overflow time arithmetic, requests refused before their body is read, oversize heads and
//! bodies, clients that never read their answers, and reads without the token.
//!
//! Every socket has a read and write timeout and every loop a bound in count and time.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Client, Mta, tempdir, write_config};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s
}

/// Reads one response's status line and headers, and its body when it has a Content-Length;
/// returns (status, body).
fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(buf.len() < 64 * 1024, "head too long");
        let n = s.read(&mut chunk).expect("read response");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).expect("read body");
        assert!(n > 0, "closed inside a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    (status, body)
}

/// One request on a new connection; returns (status, body).
fn request(addr: SocketAddr, method: &str, path: &str, extra_headers: &str) -> (u16, String) {
    let mut s = connect(addr);
    let text = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{extra_headers}Content-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(text.as_bytes()).expect("write request");
    read_response(&mut s)
}

/// Opens `n` SMTP connections and requires each to be greeted with 220.
fn all_greet(addr: SocketAddr, n: usize) {
    for i in 0..n {
        let mut c = Client::connect(addr);
        let greeting = c.reply().unwrap_or_default();
        assert!(greeting.starts_with("220"), "connection {i}: {greeting:?}");
        c.send(b"QUIT\r\n");
        let _ = c.reply();
    }
}

#[test]
fn a_huge_suspension_is_refused_and_every_shard_keeps_serving() {
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "",
        "[delivery]\n[[routes]]\ndomain = \"dest.test\"\nhosts = [\"127.0.0.1:9\"]\n",
    );
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin endpoint");

    for duration in [
        "500000000000y",
        "1000000000y",
        "31days",
        "99999999999999999999s",
    ] {
        let (status, body) = request(
            admin,
            "POST",
            &format!("/destinations/route:dest.test/suspend?duration={duration}"),
            "",
        );
        assert_eq!(status, 400, "{duration}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("duration")),
            "{v}"
        );
    }
    // The longest allowed suspension is taken, on every shard.
    let (status, body) = request(
        admin,
        "POST",
        "/destinations/route:dest.test/suspend?duration=30days",
        "",
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["shards"].as_array().map(Vec::len), Some(2), "{v}");

    // With two shards each connection lands on a shard of the kernel's choosing: twenty
    // connections reach both with near certainty.
    all_greet(mta.addr, 20);
    let (status, body) = request(admin, "GET", "/destinations/route:dest.test", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("suspended by an administrator"), "{body}");
    assert!(
        mta.child.try_wait().expect("status").is_none(),
        "the MTA exited"
    );
    mta.stop();
}

const TOKEN: &str = "s3cret";

/// An MTA whose admin endpoint allows no address: only the token.
fn start_token_only(dir: &std::path::Path) -> Mta {
    let config = write_config(
        dir,
        "",
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\nallow = []\ntoken = \"{TOKEN}\"\n"),
    );
    Mta::start(dir, &config)
}

#[test]
fn a_refused_request_is_answered_without_its_body_being_read() {
    let dir = tempdir();
    let mut mta = start_token_only(dir.path());
    let admin = mta.admin.expect("admin endpoint");
    for length in [100_000_000u64, 1000] {
        let mut s = connect(admin);
        let head =
            format!("POST /queue/flush HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n");
        s.write_all(head.as_bytes()).expect("write head");
        // No body is sent: the answer must come from the head alone.
        let (status, body) = read_response(&mut s);
        assert_eq!(status, 403, "Content-Length {length}: {body}");
        assert!(body.contains("token"), "{body}");
    }
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let (status, body) = request(admin, "POST", "/queue/flush", &auth);
    assert_eq!(status, 200, "{body}");
    mta.stop();
}

#[test]
fn reads_need_the_token_too_and_the_cli_sends_it() {
    let dir = tempdir();
    let mut mta = start_token_only(dir.path());
    let admin = mta.admin.expect("admin endpoint");
    for path in [
        "/queue",
        "/metrics",
        "/queue/0123456789abcdef",
        "/destinations/x.test",
    ] {
        let (status, body) = request(admin, "GET", path, "");
        assert_eq!(status, 403, "{path}: {body}");
        let (status, _) = request(admin, "GET", path, "Authorization: Bearer wrong\r\n");
        assert_eq!(status, 403, "{path} with a wrong token");
    }
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let (status, body) = request(admin, "GET", "/queue", &auth);
    assert_eq!(status, 200, "{body}");
    let (status, _) = request(admin, "GET", "/metrics", &auth);
    assert_eq!(status, 200);
    // A liveness probe needs nothing.
    let (status, _) = request(admin, "GET", "/health", "");
    assert_eq!(status, 200);
    // The CLI takes the token from the configuration for reads.
    for args in [&["queue", "summary"][..], &["metrics"][..]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mta"))
            .args(args)
            .arg("--config")
            .arg(&mta.config)
            .arg("--url")
            .arg(format!("http://{admin}"))
            .output()
            .expect("mta runs");
        assert!(
            out.status.success(),
            "mta {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    mta.stop();
}

#[test]
fn oversize_heads_and_bodies_are_refused() {
    let dir = tempdir();
    let config = write_config(dir.path(), "", "");
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin endpoint");

    // A head of 20 KiB (over the 16 KiB limit).
    let big = format!("X-Filler: {}\r\n", "a".repeat(20 * 1024));
    let (status, _) = request(admin, "GET", "/health", &big);
    assert_eq!(status, 431);

    // A body of 70 000 bytes (over the 64 KiB limit), declared and sent.
    let mut s = connect(admin);
    let body = vec![b'x'; 70_000];
    let head = format!(
        "POST /queue/flush HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write head");
    let _ = s.write_all(&body);
    let (status, _) = read_response(&mut s);
    assert_eq!(status, 413);

    // Just under both limits is served.
    let mut s = connect(admin);
    let filler = "a".repeat(8 * 1024);
    let body = vec![b'x'; 60_000];
    let head = format!(
        "POST /queue/flush HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write head");
    s.write_all(&body).expect("write body");
    let (status, text) = read_response(&mut s);
    assert_eq!(status, 200, "{text}");

    let (status, _) = request(admin, "GET", "/health", "");
    assert_eq!(status, 200);
    mta.stop();
}

#[test]
fn excess_connections_are_closed_at_once() {
    let dir = tempdir();
    let config = write_config(dir.path(), "", "");
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin endpoint");
    // Sixty-four silent connections take every place (each would last until the 10 s head
    // timeout); a served request proves they were all accepted.
    let held: Vec<TcpStream> = (0..64).map(|_| connect(admin)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = connect(admin);
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    match extra.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the 65th connection was not closed at once: {other:?}"),
    }
    drop(held);
    // Places come back when connections end.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = connect(admin);
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut buf = [0u8; 12];
        if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "no place came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    mta.stop();
}

#[test]
fn a_client_that_never_reads_its_answers_is_disconnected() {
    let dir = tempdir();
    let config = write_config(dir.path(), "", "");
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin endpoint");

    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    socket
        .connect_timeout(&admin.into(), IO_TIMEOUT)
        .expect("connect");
    let mut s: TcpStream = socket.into();
    s.set_write_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let batch = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100);
    // Pipelined requests, never reading: the answers pile up until the server cannot write.
    // It must then drop the connection (its write timeout is 30 s), which shows here as a
    // reset or broken pipe.
    let deadline = Instant::now() + Duration::from_secs(90);
    let disconnected = loop {
        match s.write(&batch) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break true,
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    assert!(
        disconnected,
        "a client that reads nothing was kept for 90 s"
    );
    drop(s);
    let (status, _) = request(admin, "GET", "/health", "");
    assert_eq!(status, 200);
    mta.stop();
}

#[test]
fn slow_heads_and_bodies_are_cut() {
    let dir = tempdir();
    let config = write_config(dir.path(), "", "");
    let mut mta = Mta::start(dir.path(), &config);
    let admin = mta.admin.expect("admin endpoint");

    // A body that never arrives in full: 408 after the 10 s body timeout.
    let mut body = connect(admin);
    body.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    body.write_all(
        b"POST /queue/flush HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .expect("write");

    // A head trickled a byte every half second, so no read ever waits long: cut at the 10 s
    // head timeout anyway.
    let mut slow = connect(admin);
    slow.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let start = Instant::now();
    let head = b"GET /health HTTP/1.1\r\nX-Slow: "
        .iter()
        .chain(std::iter::repeat(&b'a'));
    let mut cut = false;
    for &b in head.take(120) {
        if slow.write_all(&[b]).is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        match slow.read(&mut buf) {
            Ok(0) => {
                cut = true;
                break;
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    let waited = start.elapsed();
    assert!(cut, "a trickled head was still open after {waited:?}");
    assert!(waited < Duration::from_secs(40), "{waited:?}");

    let (status, text) = read_response(&mut body);
    assert_eq!(status, 408, "{text}");
    mta.stop();
}
