//! The admin HTTP server end to end over loopback.
//!
//! Each test starts `admin::serve` on its own glommio executor in a std thread, bound to
//! 127.0.0.1:0, with a small test handler (`GET /metrics`, `GET /query`, `POST /echo` behind
//! the access policy), talks to it with `admin::client` and raw `std::net::TcpStream`s, then
//! stops it through the stop future and joins the thread. Every wait is bounded; one test
//! waits out the 10 s header read timeout.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use mta::admin::{self, AccessPolicy, Handler, Request, Response, client};
use mta::metrics::{self, ShardMetrics};

const TOKEN: &str = "t0ken";
const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct TestHandler {
    policy: AccessPolicy,
    metrics: ShardMetrics,
}

impl Handler for TestHandler {
    fn handle(&self, req: Request) -> Pin<Box<dyn Future<Output = Response> + '_>> {
        Box::pin(async move {
            self.metrics.connections_accepted.inc();
            match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/metrics") => Response {
                    status: 200,
                    content_type: metrics::CONTENT_TYPE,
                    body: metrics::encode(&[(0, self.metrics.snapshot())]).into_bytes(),
                },
                ("GET", "/query") => Response::json(200, &req.query),
                ("POST", "/echo") => {
                    if self
                        .policy
                        .permits_change(req.peer.ip(), req.header("authorization"))
                    {
                        Response {
                            status: 200,
                            content_type: "application/octet-stream",
                            body: req.body,
                        }
                    } else {
                        Response::text(403, "forbidden\n".to_string())
                    }
                }
                _ => Response::not_found(),
            }
        })
    }
}

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts a server whose policy allows no address, only the token.
    fn start() -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let ex = LocalExecutorBuilder::new(Placement::Unbound)
                .io_memory(1 << 20)
                .make()
                .expect("executor");
            ex.run(async move {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                tx.send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                let handler = Rc::new(TestHandler {
                    policy: AccessPolicy {
                        allow: vec![],
                        token: Some(TOKEN.into()),
                    },
                    metrics: ShardMetrics::new(),
                });
                let stopped = async move {
                    while !flag.load(Ordering::Acquire) {
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                };
                let serving = admin::serve(listener, handler, stopped);
                glommio::timer::timeout(Duration::from_secs(60), async {
                    serving.await;
                    Ok(())
                })
                .await
                .expect("server ran past its 60 s bound");
            });
        });
        let addr = rx.recv_timeout(IO_TIMEOUT).expect("server address");
        Server {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Completes the stop future and joins the server thread (bounded).
    fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        let thread = self.thread.take().expect("running");
        let deadline = Instant::now() + IO_TIMEOUT;
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "server did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().expect("server thread");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s
}

/// Reads one response (status, headers, `Content-Length` body) from `s`.
fn read_response(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read head");
        assert_eq!(
            n,
            1,
            "connection closed in the head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).expect("ascii head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("read body");
    (status, head, body)
}

#[test]
fn metrics_query_and_access_policy_through_the_client() {
    let server = Server::start();
    let base = server.base();

    let (status, body) = client::get(&base, "/metrics", None).expect("get");
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE mta_connections_accepted_total counter"),
        "{body}"
    );
    assert!(
        body.contains("mta_connections_accepted_total{shard=\"0\"} 1"),
        "{body}"
    );
    assert!(body.contains("mta_fdatasync_seconds_bucket{shard=\"0\",le=\"+Inf\"} 0"));

    let (status, body) = client::get(&base, "/query?a=b%20c&x=1+2&a=%E2%9C%93", None).expect("q");
    assert_eq!(status, 200);
    assert_eq!(body, r#"[["a","b c"],["x","1 2"],["a","✓"]]"#);

    let (status, _) = client::get(&base, "/nowhere", None).expect("404");
    assert_eq!(status, 404);

    let (status, _) = client::post(&base, "/echo", None, b"{}").expect("post");
    assert_eq!(status, 403, "loopback is not in this policy's allow list");
    let (status, _) = client::post(&base, "/echo", Some("wrong"), b"{}").expect("post");
    assert_eq!(status, 403);
    let (status, body) = client::post(&base, "/echo", Some(TOKEN), b"{\"n\":1}").expect("post");
    assert_eq!(status, 200);
    assert_eq!(body, "{\"n\":1}");

    server.stop();
}

#[test]
fn bad_input_is_answered_and_the_server_keeps_serving() {
    let server = Server::start();

    // Not HTTP at all.
    let mut s = connect(server.addr);
    s.write_all(b"GARBAGE\x00\x01 nonsense\r\n\r\n")
        .expect("write");
    let (status, _, _) = read_response(&mut s);
    assert_eq!(status, 400);

    // A header line without a colon.
    let mut s = connect(server.addr);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost x\r\n\r\n")
        .expect("write");
    let (status, _, _) = read_response(&mut s);
    assert_eq!(status, 400);

    // A declared body over 1 MiB: refused before it is sent.
    let mut s = connect(server.addr);
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
        .expect("write");
    let (status, _, body) = read_response(&mut s);
    assert_eq!(status, 413);
    assert!(String::from_utf8_lossy(&body).contains("over"));

    // A slow client sending half a head does not hold up others.
    let mut slow = connect(server.addr);
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHo")
        .expect("write");

    let (status, _) = client::get(&server.base(), "/metrics", None).expect("still serving");
    assert_eq!(status, 200);
    drop(slow);
    server.stop();
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let server = Server::start();
    let mut s = connect(server.addr);
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let first = format!("POST /echo HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\n\r\nhello");
    s.write_all(first.as_bytes()).expect("write");
    let (status, head, body) = read_response(&mut s);
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, b"hello");

    s.write_all(b"GET /query?k=v HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let (status, head, body) = read_response(&mut s);
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    assert_eq!(body, br#"[["k","v"]]"#);

    // Pipelined: two requests in one write.
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /query?z=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    assert_eq!(read_response(&mut s).0, 404);
    assert_eq!(read_response(&mut s).2, br#"[["z","1"]]"#);

    drop(s);
    server.stop();
}

#[test]
fn a_head_not_finished_in_time_ends_the_connection() {
    let server = Server::start();
    let mut s = connect(server.addr);
    s.set_read_timeout(Some(
        admin::http::HEADER_READ_TIMEOUT + Duration::from_secs(10),
    ))
    .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHo").expect("write");
    let started = Instant::now();
    let mut rest = Vec::new();
    // Ends with EOF (or a reset), possibly after a 408: not with the read timeout.
    let result = s.read_to_end(&mut rest);
    let waited = started.elapsed();
    if let Err(e) = &result {
        assert_ne!(
            e.kind(),
            std::io::ErrorKind::WouldBlock,
            "server never timed the head out"
        );
        assert_ne!(
            e.kind(),
            std::io::ErrorKind::TimedOut,
            "server never timed the head out"
        );
    }
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
        "{rest:?}"
    );
    assert!(waited >= admin::http::HEADER_READ_TIMEOUT - Duration::from_secs(1));
    assert!(waited < admin::http::HEADER_READ_TIMEOUT + Duration::from_secs(5));
    server.stop();
}
