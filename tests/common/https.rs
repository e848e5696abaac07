//! A small HTTPS server on 127.0.0.1 for MTA-STS policy fetches: answers each request by its
//! `Host` header from a fixed table (404 otherwise), one thread per connection. It also takes
//! POSTs (TLS report uploads): each is recorded whole and answered `200`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A running policy server.
pub struct PolicyServer {
    pub port: u16,
    /// Requests answered so far.
    pub requests: Arc<AtomicUsize>,
    /// The POSTs received.
    pub posts: Arc<Mutex<Vec<Post>>>,
}

/// A POST received.
#[derive(Clone, Debug)]
pub struct Post {
    pub host: String,
    pub path: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Serves `policies` (host name -> body) over TLS with the certificate chain and key given.
pub fn start(cert: &Path, key: &Path, policies: HashMap<String, String>) -> PolicyServer {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let posts: Arc<Mutex<Vec<Post>>> = Arc::default();
    let recorded = posts.clone();
    let policies = Arc::new(policies);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let (config, policies, counter) = (config.clone(), policies.clone(), counter.clone());
            let recorded = recorded.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head_end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let text = String::from_utf8_lossy(&req[..head_end]).to_string();
                let header = |name: &str| {
                    text.lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                        })
                        .unwrap_or_default()
                };
                let host = header("Host");
                if text.starts_with("POST ") {
                    let len: usize = header("Content-Length").parse().unwrap_or(0);
                    let mut body = req[head_end..].to_vec();
                    while body.len() < len {
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => body.extend_from_slice(&buf[..n]),
                        }
                    }
                    recorded.lock().unwrap().push(Post {
                        host,
                        path: text.split_whitespace().nth(1).unwrap_or("").to_owned(),
                        content_type: header("Content-Type"),
                        body,
                    });
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                    return;
                }
                let ok = text.starts_with("GET /.well-known/mta-sts.txt ");
                let answer = match (ok, policies.get(&host)) {
                    (true, Some(body)) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    ),
                    _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned(),
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = tls.write_all(answer.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    PolicyServer {
        port,
        requests,
        posts,
    }
}
