//! The HTTPS fetch of an MTA-STS policy (RFC 8461 3.3).
//!
//! What it does: GETs `https://mta-sts.<domain>/.well-known/mta-sts.txt` over glommio TCP and
//! rustls with the certificate verified for `mta-sts.<domain>` (the system's roots or
//! `tls.ca_file`), within one deadline for everything (DNS, connect, handshake, request,
//! body) and a cap on the bytes read; accepts only a `200` answer with a `text/plain` body
//! (redirects are not followed, as the RFC says), plain or chunked.
//!
//! What it does not do: no caching, no retries, no keep-alive, no HTTP/2, no proxies.
//!
//! Invariants: never reads more than the body cap plus 16 KiB of headers; never waits past the
//! deadline; a certificate that does not verify is an error (never a policy).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::pki_types::ServerName;

use super::policy::{Policy, PolicyError, parse};
use crate::dns::Resolver;

/// How a fetch is made.
#[derive(Clone)]
pub struct FetchSettings {
    /// The HTTPS port (443).
    pub port: u16,
    /// The deadline of the whole fetch.
    pub timeout: Duration,
    /// The largest body accepted.
    pub max_size: usize,
    /// The verifying client configuration.
    pub tls: Arc<rustls::ClientConfig>,
}

/// Why no policy was fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The policy host has no address.
    #[error("mta-sts.{domain}: {reason}")]
    Dns {
        /// The policy domain.
        domain: String,
        /// The DNS error.
        reason: String,
    },
    /// Connecting, the handshake (certificate included) or the transfer failed.
    #[error("{0}")]
    Io(String),
    /// The fetch took longer than its deadline.
    #[error("no policy within {0:?}")]
    Timeout(Duration),
    /// The answer is too large.
    #[error("policy larger than {0} bytes")]
    TooLarge(usize),
    /// The answer is not a `200` with a `text/plain` body.
    #[error("HTTP: {0}")]
    Http(String),
    /// The body is not a valid policy.
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
}

const HEADER_ALLOWANCE: usize = 16 * 1024;

/// Fetches and parses the policy of `domain`.
pub async fn fetch(
    resolver: &Resolver,
    domain: &str,
    s: &FetchSettings,
) -> Result<Policy, FetchError> {
    let work = async { Ok(fetch_unbounded(resolver, domain, s).await) };
    match glommio::timer::timeout(s.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout(s.timeout)),
    }
}

async fn fetch_unbounded(
    resolver: &Resolver,
    domain: &str,
    s: &FetchSettings,
) -> Result<Policy, FetchError> {
    let host = format!("mta-sts.{domain}");
    let addrs = resolver
        .host_addrs(&host)
        .await
        .map_err(|e| FetchError::Dns {
            domain: domain.to_owned(),
            reason: e.to_string(),
        })?;
    let mut last = String::from("no address");
    let mut tcp = None;
    for ip in addrs {
        let addr = SocketAddr::new(ip, s.port);
        match TcpStream::connect(addr).await {
            Ok(t) => {
                tcp = Some(t);
                break;
            }
            Err(e) => last = format!("connect to {addr}: {e}"),
        }
    }
    let tcp = tcp.ok_or(FetchError::Io(last))?;
    let name = ServerName::try_from(host.clone()).map_err(|e| FetchError::Io(e.to_string()))?;
    let mut tls = futures_rustls::TlsConnector::from(s.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| FetchError::Io(format!("TLS with {host}: {e}")))?;
    let request = format!(
        "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: mta\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| FetchError::Io(e.to_string()))?;
    tls.flush()
        .await
        .map_err(|e| FetchError::Io(e.to_string()))?;
    let cap = s.max_size + HEADER_ALLOWANCE;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        match tls.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > cap {
                    return Err(FetchError::TooLarge(s.max_size));
                }
            }
            // Servers often close without close_notify once the body is sent.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(FetchError::Io(e.to_string())),
        }
    }
    let body = response_body(&buf, s.max_size)?;
    let text =
        std::str::from_utf8(&body).map_err(|_| FetchError::Http("body is not UTF-8".into()))?;
    Ok(parse(text)?)
}

/// The body of a complete HTTP/1.1 response, checked (200, text/plain, within `max`).
pub fn response_body(buf: &[u8], max: usize) -> Result<Vec<u8>, FetchError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(FetchError::Http("truncated response".into())),
        Err(e) => return Err(FetchError::Http(e.to_string())),
    };
    let code = resp.code.unwrap_or(0);
    if code != 200 {
        return Err(FetchError::Http(format!("status {code}")));
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let ctype = header("content-type").unwrap_or_default();
    if !ctype.starts_with("text/plain") {
        return Err(FetchError::Http(format!(
            "content type {ctype:?}, not text/plain"
        )));
    }
    let rest = &buf[head..];
    let body = if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        dechunk(rest, max)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| FetchError::Http("bad content-length".into()))?;
        if len > max {
            return Err(FetchError::TooLarge(max));
        }
        rest.get(..len)
            .ok_or_else(|| FetchError::Http("body shorter than content-length".into()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    if body.len() > max {
        return Err(FetchError::TooLarge(max));
    }
    Ok(body)
}

/// Decodes a chunked body (RFC 9112 7.1), at most `max` bytes.
fn dechunk(mut rest: &[u8], max: usize) -> Result<Vec<u8>, FetchError> {
    let bad = || FetchError::Http("bad chunked encoding".into());
    let mut out = Vec::new();
    loop {
        let line_end = memchr::memmem::find(rest, b"\r\n").ok_or_else(bad)?;
        let line = std::str::from_utf8(&rest[..line_end]).map_err(|_| bad())?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad())?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if out.len().saturating_add(size) > max {
            return Err(FetchError::TooLarge(max));
        }
        let data = rest.get(..size).ok_or_else(bad)?;
        out.extend_from_slice(data);
        rest = rest.get(size + 2..).ok_or_else(bad)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(response_body(ok, 100).unwrap(), b"hello");
        let chunked = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        assert_eq!(response_body(chunked, 100).unwrap(), b"hello");
        let redirect = b"HTTP/1.1 301 Moved\r\nLocation: x\r\n\r\n";
        assert!(matches!(
            response_body(redirect, 100),
            Err(FetchError::Http(_))
        ));
        let html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nx";
        assert!(matches!(response_body(html, 100), Err(FetchError::Http(_))));
        let big = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 500\r\n\r\n";
        assert!(matches!(
            response_body(big, 100),
            Err(FetchError::TooLarge(_))
        ));
        let eof = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nabc";
        assert_eq!(response_body(eof, 100).unwrap(), b"abc");
    }
}
