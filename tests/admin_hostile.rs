//! The admin endpoint of a running binary against hostile or careless clients: values that
//! overflow time arithmetic, requests refused before their body is read, oversize heads and
//! bodies, clients that never read their answers, and reads without the token.
//!
//! Every socket has a read and write timeout and every loop a bound in count and time.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

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
