//! PROXY protocol listeners and per-address connection limits through real sockets on
//! loopback: v1 and v2 headers set the client address (relay policy, Received header, spool
//! record), bad headers close silently, plain listeners treat PROXY as a command, and the
//! per-address limits count the PROXY source.

mod common;

use std::net::{Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Client, Mta, tempdir, write_config};

/// A proxy_protocol listener after the plain one: `mta.addrs[1]`.
const PROXY_LISTENER: &str = "[[listeners]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = true\n";

fn start(shards: u32, extra: &str) -> (tempfile::TempDir, Mta) {
    let dir = tempdir();
    let config = write_config(dir.path(), "", extra);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("shards = 2\n", &format!("shards = {shards}\n"), 1),
    )
    .unwrap();
    let mta = Mta::start(dir.path(), &config);
    (dir, mta)
}

fn v2_tcp6(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V6(s), SocketAddr::V6(d)) = (source, destination) else {
        panic!("IPv6 addresses");
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x21]);
    h.extend_from_slice(&36u16.to_be_bytes());
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(&d.ip().octets());
    h.extend_from_slice(&s.port().to_be_bytes());
    h.extend_from_slice(&d.port().to_be_bytes());
    h
}

/// Sends one message to `rcpt` and returns the RCPT reply code (and queues it when 250).
fn send_message(c: &mut Client, rcpt: &str) -> u16 {
    c.send(b"EHLO client.test\r\n");
    assert!(c.reply().unwrap().starts_with("250"));
    c.send(format!("MAIL FROM:<a@client.test>\r\nRCPT TO:<{rcpt}>\r\n").as_bytes());
    let codes = c.codes(2);
    assert_eq!(codes[0], 250);
    if codes[1] != 250 {
        c.send(b"QUIT\r\n");
        return codes[1];
    }
    c.send(b"DATA\r\nSubject: proxied\r\n\r\nhello\r\n.\r\nQUIT\r\n");
    assert_eq!(c.codes(3), [354, 250, 221]);
    250
}

fn spooled(dir: &std::path::Path) -> Vec<mta::spool::RecoveredMessage> {
    mta::spool::read_offline(&dir.join("spool"))
        .expect("read spool")
        .messages
}

#[test]
fn v1_header_sets_the_client_address() {
    let extra = format!("[relay]\ntrusted_networks = [\"192.0.2.0/24\"]\n{PROXY_LISTENER}");
    let (dir, mut mta) = start(2, &extra);
    let proxy = mta.addrs[1];

    // The header and the first command in one segment: the command is not lost.
    let mut c = Client::connect(proxy);
    c.send(b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 25\r\n");
    let greeting = c.reply().unwrap();
    assert!(greeting.starts_with("220 mx.test"), "{greeting}");
    assert_eq!(send_message(&mut c, "u@dest.test"), 250);

    // An untrusted source may not relay, though the socket peer is loopback.
    let mut c = Client::connect(proxy);
    c.send(b"PROXY TCP4 198.51.100.7 127.0.0.1 40001 25\r\n");
    assert_eq!(c.codes(1), [220]);
    assert_eq!(send_message(&mut c, "u@dest.test"), 554);

    // Loopback itself is not trusted in this configuration either.
    let mut c = Client::connect(mta.addr);
    assert_eq!(c.codes(1), [220]);
    assert_eq!(send_message(&mut c, "u@dest.test"), 554);

    mta.stop();
    let messages = spooled(dir.path());
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.message.client_addr, "192.0.2.10:40000");
    let body = String::from_utf8_lossy(&m.message.body);
    let received = body.lines().next().unwrap();
    assert!(
        received.starts_with("Received:") && body.contains("[192.0.2.10]"),
        "{body}"
    );
    assert!(!body.contains("127.0.0.1"), "{body}");
}

#[test]
fn v2_header_with_an_ipv6_source() {
    let extra = format!("[relay]\ntrusted_networks = [\"2001:db8::/32\"]\n{PROXY_LISTENER}");
    let (dir, mut mta) = start(2, &extra);
    let source = SocketAddr::from(("2001:db8::7".parse::<Ipv6Addr>().unwrap(), 50123));
    let destination = SocketAddr::from(("2001:db8::1".parse::<Ipv6Addr>().unwrap(), 25));
    let mut c = Client::connect(mta.addrs[1]);
    // Sent in two pieces: the server waits for the rest of the header.
    let header = v2_tcp6(source, destination);
    c.send(&header[..10]);
    std::thread::sleep(Duration::from_millis(50));
    c.send(&header[10..]);
    assert_eq!(c.codes(1), [220]);
    assert_eq!(send_message(&mut c, "u@dest.test"), 250);
    mta.stop();
    let messages = spooled(dir.path());
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].message.client_addr, "[2001:db8::7]:50123");
    let body = String::from_utf8_lossy(&messages[0].message.body);
    assert!(body.contains("2001:db8::7"), "{body}");
}

#[test]
fn bad_header_closes_without_a_reply() {
    let (_dir, mta) = start(2, PROXY_LISTENER);
    let proxy = mta.addrs[1];
    for bad in [
        &b"EHLO client.test\r\n"[..],
        b"PROXY TCP4 300.1.1.1 127.0.0.1 1 2\r\n",
        b"PROXY TCP5 192.0.2.1 127.0.0.1 1 2\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
    ] {
        let mut c = Client::connect(proxy);
        c.send(bad);
        assert!(c.closed(), "{}", String::from_utf8_lossy(bad));
    }
    // A client that sends nothing is not greeted either (the balancer speaks first).
    let mut silent = Client::connect(proxy);
    silent
        .stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let r = std::io::Read::read(&mut silent.stream, &mut byte);
    assert!(r.is_err(), "nothing before the header: {r:?}");
    // The server keeps serving, on both listeners; v1 UNKNOWN keeps the peer's address.
    let mut c = Client::connect(proxy);
    c.send(b"PROXY UNKNOWN\r\n");
    assert_eq!(c.codes(1), [220]);
    c.send(b"EHLO client.test\r\n");
    let ehlo = c.reply().unwrap();
    assert!(ehlo.contains("[127.0.0.1]"), "{ehlo}");
    let mut c = Client::connect(mta.addr);
    assert_eq!(c.codes(1), [220]);
}

#[test]
fn header_before_implicit_tls() {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    use std::io::{Read, Write};

    let dir = tempdir();
    let certs = common::certs::make_certs(dir.path(), &[&["mx.test"]]);
    let users = dir.path().join("users");
    std::fs::write(&users, "# nobody\n").unwrap();
    let (cert, key) = &certs.leaves[0];
    let extra = format!(
        "[tls]\n[[tls.certificates]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
         [auth]\nusers_file = \"{}\"\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nmode = \"submissions\"\nproxy_protocol = true\n",
        cert.display(),
        key.display(),
        users.display()
    );
    let config = write_config(dir.path(), "", &extra);
    let mta = Mta::start(dir.path(), &config);

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&certs.ca).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("mx.test").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(tls), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(mta.addrs[1]).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The header and the ClientHello go out back to back; neither may swallow the other.
    tcp.write_all(b"PROXY TCP4 192.0.2.20 127.0.0.1 40000 465\r\n")
        .unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let mut text = String::new();
    let mut buf = [0u8; 1024];
    while !text.contains("\r\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(text.starts_with("220 mx.test"), "{text}");
    stream.write_all(b"EHLO client.test\r\n").unwrap();
    text.clear();
    while !text.contains("250 ") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(text.contains("[192.0.2.20]"), "{text}");
}

#[test]
fn plain_listener_treats_proxy_as_a_command() {
    let (_dir, mta) = start(2, "");
    let mut c = Client::connect(mta.addr);
    assert_eq!(c.codes(1), [220]);
    c.send(b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 25\r\nEHLO client.test\r\n");
    let r = c.reply().unwrap();
    assert!(r.starts_with("500"), "{r}");
    let ehlo = c.reply().unwrap();
    assert!(ehlo.contains("[127.0.0.1]"), "{ehlo}");
}

/// Opens connections until one is refused; returns the greeted ones and the refusal.
fn open_until_refused(n: usize, mut connect: impl FnMut() -> Client) -> (Vec<Client>, String) {
    let mut open = Vec::new();
    for _ in 0..n {
        let mut c = connect();
        let r = c.reply().unwrap();
        if r.starts_with("421") {
            assert!(c.closed());
            return (open, r);
        }
        assert!(r.starts_with("220"), "{r}");
        open.push(c);
    }
    panic!("no connection was refused");
}

#[test]
fn per_address_limit_refuses_the_extra_connection() {
    let (_dir, mta) = start(
        1,
        "[relay]\ntrusted_networks = []\n[smtp]\nmax_connections_per_ip = 3\n",
    );
    let (mut open, refusal) = open_until_refused(6, || Client::connect(mta.addr));
    assert_eq!(open.len(), 3);
    assert_eq!(
        refusal,
        "421 4.7.0 mx.test too many connections from your address\r\n"
    );
    // A closed connection frees its slot (once the server has seen the close).
    let mut gone = open.pop().unwrap();
    gone.send(b"QUIT\r\n");
    assert_eq!(gone.codes(1), [221]);
    assert!(gone.closed());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Client::connect(mta.addr);
        let r = c.reply().unwrap();
        if r.starts_with("220") {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed: {r}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn trusted_networks_are_exempt_from_per_address_limits() {
    let (_dir, mta) = start(1, "[smtp]\nmax_connections_per_ip = 2\n");
    let open: Vec<Client> = (0..5)
        .map(|_| {
            let mut c = Client::connect(mta.addr);
            let r = c.reply().unwrap();
            assert!(r.starts_with("220"), "loopback is trusted by default: {r}");
            c
        })
        .collect();
    assert_eq!(open.len(), 5);
}

#[test]
fn proxied_clients_count_per_their_own_address() {
    let extra = format!(
        "[relay]\ntrusted_networks = []\n[smtp]\nmax_connections_per_ip = 2\n{PROXY_LISTENER}"
    );
    let (_dir, mta) = start(1, &extra);
    let proxy = mta.addrs[1];
    let via = |source: &'static str| {
        move || {
            let mut c = Client::connect(proxy);
            c.send(format!("PROXY TCP4 {source} 127.0.0.1 40000 25\r\n").as_bytes());
            c
        }
    };
    let (a, refusal) = open_until_refused(5, via("192.0.2.10"));
    assert_eq!(a.len(), 2);
    assert!(refusal.starts_with("421 4.7.0"), "{refusal}");
    // Another source behind the same balancer, and the balancer's own address, are apart.
    let (b, _) = open_until_refused(5, via("192.0.2.11"));
    assert_eq!(b.len(), 2);
    let (direct, _) = open_until_refused(5, || Client::connect(mta.addr));
    assert_eq!(direct.len(), 2);
}

#[test]
fn per_address_rate_refuses_a_burst() {
    let (_dir, mta) = start(
        1,
        "[relay]\ntrusted_networks = []\n[smtp]\nmax_connections_per_ip = 0\nmax_connection_rate_per_ip = 2\n",
    );
    let started = Instant::now();
    let (open, refusal) = open_until_refused(10, || Client::connect(mta.addr));
    if started.elapsed() < Duration::from_millis(400) {
        assert_eq!(open.len(), 2);
    }
    assert!(
        refusal.ends_with("too many connections from your address\r\n"),
        "{refusal}"
    );
    // The bucket refills: a connection a second later is greeted.
    std::thread::sleep(Duration::from_millis(1100));
    let mut c = Client::connect(mta.addr);
    assert_eq!(c.codes(1), [220]);
}

#[test]
fn a_proxy_header_from_outside_proxy_from_is_refused() {
    // Only 192.0.2.0/24 (not us, on loopback) may send the header to the second listener;
    // the third one names loopback explicitly.
    let (_dir, mut mta) = start(
        1,
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = true\n\
         proxy_from = [\"192.0.2.0/24\"]\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = true\n\
         proxy_from = [\"127.0.0.1/32\", \"2001:db8::/32\"]\n",
    );
    // A peer claiming to be 127.0.0.9 (trusted, so it could relay) is closed unanswered.
    let mut c = Client::connect(mta.addrs[1]);
    c.send(b"PROXY TCP4 127.0.0.9 127.0.0.1 4000 25\r\n");
    assert!(c.closed(), "no greeting for a peer outside proxy_from");
    // From an allowed network the header is honoured as usual.
    let mut c = Client::connect(mta.addrs[2]);
    c.send(b"PROXY TCP4 198.51.100.7 127.0.0.1 4000 25\r\n");
    assert!(c.reply().unwrap().starts_with("220"));
    assert_eq!(
        send_message(&mut c, "u@elsewhere.test"),
        554,
        "not trusted: no relay"
    );
    assert!(mta.stop().success());
}
