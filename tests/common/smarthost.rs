//! A scripted smarthost on loopback for outbound AUTH tests: it offers STARTTLS (or not),
//! offers AUTH with the mechanisms it is given (inside TLS, or in plaintext when it has no
//! STARTTLS, to tempt the client), checks the credentials against one user and password, and
//! refuses MAIL before a successful AUTH (`530 5.7.0`). It records every command line with
//! whether TLS was up, every octet read in plaintext, every AUTH attempt (decoded) and every
//! message it accepts.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mta::tls::{CertificateConfig, ServerTls};

use super::receiver::{Received, path_after};

/// What the smarthost offers and expects.
#[derive(Clone, Copy)]
pub struct Offer {
    /// STARTTLS is offered (and AUTH only inside TLS); without it AUTH is offered in plaintext.
    pub starttls: bool,
    /// The AUTH keyword's mechanisms, e.g. `"PLAIN LOGIN"`.
    pub mechanisms: &'static str,
    /// The user it accepts.
    pub user: &'static str,
    /// Its password.
    pub password: &'static str,
}

/// One AUTH attempt as the smarthost decoded it.
#[derive(Clone, Debug)]
pub struct AuthSeen {
    /// The connection it came on (1 for the first).
    pub connection: usize,
    pub mechanism: String,
    pub user: String,
    pub password: String,
    pub tls: bool,
    pub ok: bool,
}

/// A running scripted smarthost.
pub struct Smarthost {
    pub port: u16,
    /// Every command line read, with whether TLS was up.
    pub lines: Arc<Mutex<Vec<(bool, String)>>>,
    /// Every octet read before TLS (or on a connection without it).
    pub plaintext: Arc<Mutex<Vec<u8>>>,
    pub auths: Arc<Mutex<Vec<AuthSeen>>>,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub connections: Arc<AtomicUsize>,
    /// Connections that ended (QUIT or close).
    pub closed: Arc<AtomicUsize>,
}

struct Shared {
    offer: Offer,
    tls: Option<Arc<rustls::ServerConfig>>,
    lines: Arc<Mutex<Vec<(bool, String)>>>,
    plaintext: Arc<Mutex<Vec<u8>>>,
    auths: Arc<Mutex<Vec<AuthSeen>>>,
    got: Arc<Mutex<Vec<Received>>>,
    closed: Arc<AtomicUsize>,
}

impl Smarthost {
    /// Starts a smarthost with the certificate `(cert, key)`.
    pub fn start(offer: Offer, cert: &Path, key: &Path) -> Smarthost {
        let tls = ServerTls::load(&[CertificateConfig {
            cert_file: cert.to_owned(),
            key_file: key.to_owned(),
        }])
        .expect("smarthost certificate");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            offer,
            tls: Some(tls.config()),
            lines: Arc::default(),
            plaintext: Arc::default(),
            auths: Arc::default(),
            got: Arc::default(),
            closed: Arc::default(),
        });
        let connections = Arc::new(AtomicUsize::new(0));
        let host = Smarthost {
            port,
            lines: shared.lines.clone(),
            plaintext: shared.plaintext.clone(),
            auths: shared.auths.clone(),
            got: shared.got.clone(),
            connections: connections.clone(),
            closed: shared.closed.clone(),
        };
        std::thread::spawn(move || {
            for stream in listener.incoming().take(100) {
                let Ok(stream) = stream else { break };
                let n = connections.fetch_add(1, Ordering::SeqCst) + 1;
                let shared = shared.clone();
                std::thread::spawn(move || {
                    serve(stream, n, &shared);
                    shared.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        host
    }

    /// Waits (bounded) until `n` messages were accepted; returns what was.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every AUTH attempt so far.
    pub fn auths(&self) -> Vec<AuthSeen> {
        self.auths.lock().unwrap().clone()
    }

    /// True when some command line read starts with `verb` (case-insensitive).
    pub fn saw(&self, verb: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|(_, l)| l.to_ascii_uppercase().starts_with(verb))
    }
}

/// A connection, plaintext or inside TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// One connection's reader: lines out of a bounded buffer.
struct Session<'a> {
    conn: Conn,
    buf: Vec<u8>,
    shared: &'a Shared,
}

impl Session<'_> {
    fn tls(&self) -> bool {
        matches!(self.conn, Conn::Tls(_))
    }

    /// One line without its CRLF; None at EOF, on an error or past 64 KiB.
    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line);
                return Some(text.trim_end_matches(['\r', '\n']).to_owned());
            }
            if self.buf.len() > 64 * 1024 {
                return None;
            }
            let mut chunk = [0u8; 4096];
            let n = match self.conn.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => n,
            };
            if !self.tls() {
                self.shared
                    .plaintext
                    .lock()
                    .unwrap()
                    .extend_from_slice(&chunk[..n]);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn send(&mut self, reply: &str) -> bool {
        self.conn.write_all(reply.as_bytes()).is_ok() && self.conn.flush().is_ok()
    }

    /// A command line, recorded.
    fn command(&mut self) -> Option<String> {
        let line = self.line()?;
        let tls = self.tls();
        self.shared.lines.lock().unwrap().push((tls, line.clone()));
        Some(line)
    }

    /// The AUTH exchange of `line`; true when it succeeded.
    fn auth(&mut self, line: &str, connection: usize) -> bool {
        let offer = self.shared.offer;
        let mut words = line.split_whitespace().skip(1);
        let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
        let initial = words.next().map(str::to_owned);
        let offered = offer.mechanisms.split_whitespace().any(|m| m == mechanism);
        if !offered {
            self.send("504 5.5.4 mechanism not offered\r\n");
            return false;
        }
        let decode =
            |s: &str| String::from_utf8_lossy(&STANDARD.decode(s).unwrap_or_default()).into_owned();
        let (user, password) = if mechanism == "PLAIN" {
            let response = match initial {
                Some(r) => r,
                None => {
                    self.send("334 \r\n");
                    match self.line() {
                        Some(l) => l,
                        None => return false,
                    }
                }
            };
            let message = decode(&response);
            let mut fields = message.split('\0');
            let _authzid = fields.next();
            (
                fields.next().unwrap_or_default().to_owned(),
                fields.next().unwrap_or_default().to_owned(),
            )
        } else {
            self.send("334 VXNlcm5hbWU6\r\n");
            let Some(user) = self.line() else {
                return false;
            };
            self.send("334 UGFzc3dvcmQ6\r\n");
            let Some(password) = self.line() else {
                return false;
            };
            (decode(&user), decode(&password))
        };
        let ok = user == offer.user && password == offer.password;
        self.shared.auths.lock().unwrap().push(AuthSeen {
            connection,
            mechanism,
            user,
            password,
            tls: self.tls(),
            ok,
        });
        match ok {
            true => self.send("235 2.7.0 Authentication successful\r\n"),
            false => self.send("535 5.7.8 Authentication credentials invalid\r\n"),
        };
        ok
    }
}

fn serve(stream: TcpStream, connection: usize, shared: &Shared) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut s = Session {
        conn: Conn::Plain(stream),
        buf: Vec::new(),
        shared,
    };
    let offer = shared.offer;
    let mut authenticated = false;
    let (mut from, mut to) = (String::new(), Vec::new());
    if !s.send("220 smarthost.test ESMTP\r\n") {
        return;
    }
    for _ in 0..10_000 {
        let Some(line) = s.command() else { return };
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let mut e = "250-smarthost.test\r\n250-PIPELINING\r\n".to_owned();
            if offer.starttls && !s.tls() {
                e.push_str("250-STARTTLS\r\n");
            }
            if s.tls() || !offer.starttls {
                e.push_str(&format!("250-AUTH {}\r\n", offer.mechanisms));
            }
            e + "250 8BITMIME\r\n"
        } else if upper == "STARTTLS" && offer.starttls && !s.tls() {
            if !s.send("220 2.0.0 go ahead\r\n") {
                return;
            }
            let Conn::Plain(tcp) = s.conn else { return };
            let config = shared.tls.clone().expect("TLS configured");
            let server = rustls::ServerConnection::new(config).expect("TLS session");
            s.conn = Conn::Tls(Box::new(rustls::StreamOwned::new(server, tcp)));
            // Nothing sent before the handshake counts (RFC 3207 4.2).
            s.buf.clear();
            continue;
        } else if upper.starts_with("AUTH ") {
            if authenticated {
                "503 5.5.1 already authenticated\r\n".into()
            } else {
                authenticated = s.auth(&line, connection);
                continue;
            }
        } else if upper.starts_with("MAIL FROM:") {
            if !authenticated {
                "530 5.7.0 Authentication required\r\n".into()
            } else {
                from = path_after(&line, "MAIL FROM:");
                to.clear();
                "250 2.1.0 ok\r\n".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            to.push(path_after(&line, "RCPT TO:"));
            "250 2.1.5 ok\r\n".into()
        } else if upper == "DATA" {
            if !s.send("354 go\r\n") {
                return;
            }
            let mut body = String::new();
            loop {
                let Some(l) = s.line() else { return };
                if l == "." {
                    break;
                }
                body.push_str(l.strip_prefix('.').unwrap_or(&l));
                body.push_str("\r\n");
            }
            shared.got.lock().unwrap().push(Received {
                from: from.clone(),
                to: to.clone(),
                body,
                at: Instant::now(),
                helo: String::new(),
                client: String::new(),
            });
            "250 2.0.0 queued\r\n".into()
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 ok\r\n".into()
        } else if upper == "QUIT" {
            s.send("221 2.0.0 bye\r\n");
            return;
        } else {
            "500 5.5.1 what\r\n".into()
        };
        if !s.send(&reply) {
            return;
        }
    }
}
