//! Uploading a report by HTTPS POST (RFC 8460 3, `https:` addresses).
//!
//! What it does: POSTs the gzipped report with `Content-Type: application/tlsrpt+gzip` to the
//! URL, over glommio TCP and rustls with the server's certificate verified (the system's roots
//! or `tls.ca_file`), the host looked up through the MTA's resolver; one deadline covers
//! everything; only the answer's status line and header are read (at most 16 KiB). A 2xx
//! answer is success.
//!
//! What it does not do: no retries (the sender retries), no redirects, no keep-alive, no
//! proxies.
//!
//! Invariants: never waits past the deadline; never reads more than 16 KiB of answer; runs in
//! a task of its own, so that a slow server holds up nothing but its upload.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::pki_types::ServerName;

use crate::dns::Resolver;

const ANSWER_CAP: usize = 16 * 1024;

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The URL is not `https://host[:port][/path]`.
    #[error("bad URL {0:?}")]
    Url(String),
    /// The host has no address.
    #[error("{host}: {reason}")]
    Dns {
        /// The host.
        host: String,
        /// The DNS error.
        reason: String,
    },
    /// Connecting, TLS or the transfer failed.
    #[error("{0}")]
    Io(String),
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with something else than 2xx.
    #[error("HTTP {0}")]
    Status(String),
}

/// The parts of an `https:` URL: host, port, path.
pub fn parse_url(url: &str) -> Result<(String, u16, String), PostError> {
    let bad = || PostError::Url(url.to_owned());
    let rest = url
        .get(8..)
        .filter(|_| url[..8].eq_ignore_ascii_case("https://"))
        .ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') || authority.is_empty() {
        return Err(bad());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !authority.ends_with(']') => (h, p.parse::<u16>().map_err(|_| bad())?),
        _ => (authority, 443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || path.contains([' ', '\r', '\n']) {
        return Err(bad());
    }
    Ok((host.to_ascii_lowercase(), port, path.to_owned()))
}

/// POSTs `body` to `url` within `timeout`.
pub async fn post(
    resolver: &Resolver,
    tls: Arc<rustls::ClientConfig>,
    url: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<(), PostError> {
    let work = async { Ok(post_unbounded(resolver, tls, url, body).await) };
    match glommio::timer::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(PostError::Timeout(timeout)),
    }
}

async fn post_unbounded(
    resolver: &Resolver,
    tls: Arc<rustls::ClientConfig>,
    url: &str,
    body: &[u8],
) -> Result<(), PostError> {
    let (host, port, path) = parse_url(url)?;
    let addrs = resolver
        .host_addrs(&host)
        .await
        .map_err(|e| PostError::Dns {
            host: host.clone(),
            reason: e.to_string(),
        })?;
    let mut last = String::from("no address");
    let mut tcp = None;
    for ip in addrs {
        let addr = SocketAddr::new(ip, port);
        match TcpStream::connect(addr).await {
            Ok(t) => {
                tcp = Some(t);
                break;
            }
            Err(e) => last = format!("connect to {addr}: {e}"),
        }
    }
    let tcp = tcp.ok_or(PostError::Io(last))?;
    let name = ServerName::try_from(host.clone()).map_err(|e| PostError::Io(e.to_string()))?;
    let mut stream = futures_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| PostError::Io(format!("TLS with {host}: {e}")))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/tlsrpt+gzip\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: mta\r\n\r\n",
        body.len()
    );
    let io = |e: std::io::Error| PostError::Io(e.to_string());
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut answer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&answer) {
            Ok(httparse::Status::Complete(_)) => {
                let code = resp.code.unwrap_or(0);
                return match (200..300).contains(&code) {
                    true => Ok(()),
                    false => Err(PostError::Status(format!(
                        "{code} {}",
                        resp.reason.unwrap_or("")
                    ))),
                };
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(PostError::Status(e.to_string())),
        }
        if answer.len() >= ANSWER_CAP {
            return Err(PostError::Status("answer header too large".into()));
        }
        match stream.read(&mut chunk).await {
            Ok(0) => return Err(PostError::Io("connection closed before an answer".into())),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |u: &str| parse_url(u).unwrap();
        assert_eq!(
            ok("https://r.test/tlsrpt"),
            ("r.test".into(), 443, "/tlsrpt".into())
        );
        assert_eq!(
            ok("HTTPS://R.test:8443"),
            ("r.test".into(), 8443, "/".into())
        );
        assert_eq!(ok("https://[::1]:9/x"), ("::1".into(), 9, "/x".into()));
        assert_eq!(ok("https://[::1]"), ("::1".into(), 443, "/".into()));
        for bad in [
            "http://r.test/",
            "https://",
            "https://u@r.test/",
            "https://r.test:x/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
