//! A scripted receiving SMTP server on loopback for delivery tests: it records what it
//! accepts, refuses recipients whose local part starts with `bad` (550 5.1.1) and defers those
//! starting with `slow` (451) a given number of times.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A received message.
#[derive(Clone, Debug)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub body: String,
    /// When its end of data arrived.
    pub at: Instant,
    /// The EHLO name the sender gave on that connection.
    pub helo: String,
    /// The sender's address (its source address).
    pub client: String,
}

/// A scripted receiving server: recipients whose local part starts with `bad` get 550,
/// `slow` get 451 on their first `defer_times` attempts; everything else is accepted.
pub struct Scripted {
    pub port: u16,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub connections: Arc<AtomicUsize>,
    /// The most connections that were open at once.
    pub max_open: Arc<AtomicUsize>,
}

impl Scripted {
    pub fn start(chunking: bool, defer_times: usize) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let deferred = Arc::new(AtomicUsize::new(0));
        let max_open = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (g, c, m) = (got.clone(), connections.clone(), max_open.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                c.fetch_add(1, Ordering::SeqCst);
                let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now_open, Ordering::SeqCst);
                let (g, d, o) = (g.clone(), deferred.clone(), open.clone());
                std::thread::spawn(move || {
                    // A session that ends with QUIT stops counting before its 221 is sent (the
                    // client may count it closed once it has the 221); any other end, when
                    // this thread notices it.
                    if !serve(stream, &g, &d, chunking, defer_times, &o) {
                        o.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Scripted {
            port,
            got,
            connections,
            max_open,
        }
    }

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
}

fn serve(
    stream: TcpStream,
    got: &Mutex<Vec<Received>>,
    deferred: &AtomicUsize,
    chunking: bool,
    defer_times: usize,
    open: &AtomicUsize,
) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // Each reply goes out at once: with Nagle, a reply to a pipelined command would wait for
    // the client's acknowledgement of the one before.
    let _ = stream.set_nodelay(true);
    let client = stream
        .peer_addr()
        .map_or(String::new(), |a| a.ip().to_string());
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let _ = w.write_all(b"220 scripted.test ESMTP\r\n");
    let (mut from, mut to, mut helo) = (String::new(), Vec::new(), String::new());
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            helo = line[4..].trim().to_owned();
            let mut e = "250-scripted.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n".to_owned();
            if chunking {
                e.push_str("250-CHUNKING\r\n");
            }
            e + "250 8BITMIME\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = path_after(&line, "MAIL FROM:");
            to.clear();
            "250 2.1.0 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = path_after(&line, "RCPT TO:");
            if rcpt.starts_with("bad") {
                "550 5.1.1 no such user\r\n".into()
            } else if rcpt.starts_with("slow")
                && deferred.fetch_add(1, Ordering::SeqCst) < defer_times
            {
                "451 4.3.0 try later\r\n".into()
            } else {
                to.push(rcpt);
                "250 2.1.5 ok\r\n".into()
            }
        } else if upper.starts_with("DATA") {
            if to.is_empty() {
                "554 5.5.1 no valid recipients\r\n".into()
            } else {
                let _ = w.write_all(b"354 go\r\n");
                let mut body = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).unwrap_or(0) == 0 {
                        return false;
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    let l = if l.starts_with(b"..") {
                        l[1..].to_vec()
                    } else {
                        l
                    };
                    body.extend_from_slice(&l);
                }
                got.lock().unwrap().push(Received {
                    from: from.clone(),
                    to: to.clone(),
                    body: String::from_utf8_lossy(&body).into(),
                    at: Instant::now(),
                    helo: helo.clone(),
                    client: client.clone(),
                });
                "250 2.0.0 queued\r\n".into()
            }
        } else if upper.starts_with("BDAT") {
            let n: usize = upper.split_whitespace().nth(1).unwrap().parse().unwrap();
            let mut body = vec![0; n];
            r.read_exact(&mut body).unwrap();
            if to.is_empty() {
                "554 5.5.1 no valid recipients\r\n".into()
            } else {
                got.lock().unwrap().push(Received {
                    from: from.clone(),
                    to: to.clone(),
                    body: String::from_utf8_lossy(&body).into(),
                    at: Instant::now(),
                    helo: helo.clone(),
                    client: client.clone(),
                });
                "250 2.0.0 queued\r\n".into()
            }
        } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
            "250 2.0.0 ok\r\n".into()
        } else if upper.starts_with("QUIT") {
            open.fetch_sub(1, Ordering::SeqCst);
            let _ = w.write_all(b"221 2.0.0 bye\r\n");
            return true;
        } else {
            "500 5.5.1 what\r\n".into()
        };
        if w.write_all(reply.as_bytes()).is_err() {
            return false;
        }
    }
}

/// The path of a `MAIL FROM:<...>` or `RCPT TO:<...>` line, without its brackets.
pub fn path_after(line: &str, verb: &str) -> String {
    line[verb.len()..]
        .trim()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or_default()
        .to_owned()
}
