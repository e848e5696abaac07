//! SMTP clients that pipeline and never read: the server stops parsing while its replies are
//! unsent and cuts the connection after its write timeout (`smtp.timeouts.command`); other
//! clients are served meanwhile. (The admin endpoint's case is in `admin_hostile.rs`.)

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Client, Mta, tempdir, write_config};

/// A client socket with a tiny receive buffer, so that the server's replies back up quickly.
fn tiny_window(addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    let stream: TcpStream = sock.into();
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    stream
}

/// Writes `chunk` over and over without reading, for at most `limit`; returns how long it took
/// until the server cut the connection, or None if it never did.
fn push_until_cut(stream: &mut TcpStream, chunk: &[u8], limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        match stream.write(chunk) {
            // Written, or blocked for the socket's write timeout: the server still holds on.
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn an_smtp_client_that_never_reads_is_disconnected() {
    let dir = tempdir();
    let config = write_config(dir.path(), "[smtp.timeouts]\ncommand = \"1s\"\n", "");
    let mut mta = Mta::start(dir.path(), &config);
    let mut greedy = tiny_window(mta.addr);
    let noops = b"NOOP\r\n".repeat(2000);
    let cut = push_until_cut(&mut greedy, &noops, Duration::from_secs(30));
    assert!(cut.is_some(), "the server never cut the non-reading client");
    // Meanwhile and afterwards the server serves others.
    let mut c = Client::connect(mta.addr);
    assert_eq!(c.codes(1), vec![220]);
    c.send(b"NOOP\r\n");
    assert!(c.reply().unwrap().starts_with("250"));
    assert!(mta.stop().success());
}
