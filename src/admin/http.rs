//! The admin endpoint's HTTP/1.1 server on one glommio executor.
//!
//! What it does: accepts connections until a stop future completes, serves each on its own
//! local task with hyper (keep-alive, a header read timeout, an idle read timeout), reads the
//! request body up to [`MAX_BODY`] bytes (larger: `413`), decodes the query string, and hands
//! a [`Request`] to the [`Handler`], whose [`Response`] it writes back.
//!
//! What it does not do: no HTTP parsing of its own (hyper does it and answers malformed
//! requests with `400`), no routing, no access control (see `access`), no TLS, no HTTP/2, and
//! it does not close connections already open when stop completes (they end on their own
//! timeouts or with the executor).
//!
//! Invariants: nothing here is `Send`; the handler runs on the serving shard; connection
//! errors are logged at debug level and never panic; a body is never buffered past `MAX_BODY`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::net::{TcpListener, TcpStream};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};

pub use hyper::{HeaderMap, Method};

use super::rt::{GlommioIo, GlommioTimer};
use crate::server::listener::accept_or_stop;

/// The largest request body accepted (no endpoint takes a body today).
pub const MAX_BODY: usize = 64 * 1024;

/// The largest request head (request line and headers) accepted; over it: `431`.
pub const MAX_HEAD: usize = 16 * 1024;

/// Admin connections served at once per process (the endpoint runs on one shard); more are
/// closed at once.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a response may wait for a client that does not read it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may stay silent before it is dropped.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One request, body read in full.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, as sent (not percent-decoded).
    pub path: String,
    /// The query's `name=value` pairs, percent-decoded (`+` is a space), in order.
    pub query: Vec<(String, String)>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The body (at most [`MAX_BODY`] bytes).
    pub body: Vec<u8>,
    /// The peer's address.
    pub peer: SocketAddr,
}

impl Request {
    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of header `name`, when present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the handler answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (an invalid one is sent as `500`).
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON body.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response {
                status,
                content_type: "application/json",
                body,
            },
            Err(e) => Response::text(500, format!("cannot encode response: {e}\n")),
        }
    }

    /// A plain-text body.
    pub fn text(status: u16, body: String) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into_bytes(),
        }
    }

    /// `404 Not Found`.
    pub fn not_found() -> Self {
        Response::text(404, "not found\n".to_string())
    }
}

/// Answers requests; runs on the serving shard (not `Send`).
pub trait Handler {
    /// Decides from the request line and headers alone, before any of the body is read,
    /// whether `peer` may make this request: `Some(refusal)` if not.
    fn refuses(
        &self,
        _method: &Method,
        _path: &str,
        _headers: &HeaderMap,
        _peer: SocketAddr,
    ) -> Option<Response> {
        None
    }
    /// Answers one request.
    fn handle(&self, req: Request) -> Pin<Box<dyn Future<Output = Response> + '_>>;
}

/// Serves HTTP on `listener` until `stop` completes; each connection runs on its own task.
pub async fn serve(
    listener: TcpListener,
    handler: Rc<dyn Handler>,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    let open = Rc::new(std::cell::Cell::new(0usize));
    while let Some(stream) = accept_or_stop(&listener, stop.as_mut(), "admin").await {
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        if open.get() >= MAX_CONNECTIONS {
            tracing::info!(%peer, "admin connection over the limit of {MAX_CONNECTIONS}; closed");
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let open = open.clone();
        let handler = handler.clone();
        glommio::spawn_local(async move {
            connection(stream, peer, handler).await;
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// Serves one connection to its end.
async fn connection(stream: TcpStream, peer: SocketAddr, handler: Rc<dyn Handler>) {
    let _ = stream.set_nodelay(true);
    if let Err(e) = stream.set_read_timeout(Some(IDLE_TIMEOUT)) {
        tracing::debug!(%peer, error = %e, "admin connection: cannot set read timeout");
    }
    if let Err(e) = stream.set_write_timeout(Some(WRITE_TIMEOUT)) {
        tracing::debug!(%peer, error = %e, "admin connection: cannot set write timeout");
    }
    let service = hyper::service::service_fn(move |req| respond(handler.clone(), peer, req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(GlommioTimer)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(true)
        .serve_connection(GlommioIo(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "admin connection ended");
    }
}

/// Reads one request's body, calls the handler and converts its answer.
async fn respond(
    handler: Rc<dyn Handler>,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    // The access check comes first: a refused request's body is never read.
    if let Some(refusal) = handler.refuses(&parts.method, parts.uri.path(), &parts.headers, peer) {
        return Ok(to_hyper(refusal));
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Ok(to_hyper(too_large()));
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Ok(to_hyper(too_large()));
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "admin request body unreadable");
            return Ok(to_hyper(Response::text(
                400,
                "unreadable body\n".to_string(),
            )));
        }
    };
    let query = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let request = Request {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query,
        headers: parts.headers,
        body,
        peer,
    };
    let response = handler.handle(request).await;
    Ok(to_hyper(response))
}

fn too_large() -> Response {
    Response::text(413, format!("request body over {MAX_BODY} bytes\n"))
}

fn to_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = hyper::StatusCode::from_u16(response.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(ct) = HeaderValue::from_str(response.content_type) {
        out.headers_mut().insert(CONTENT_TYPE, ct);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_helpers() {
        let r = Response::json(200, &serde_json::json!({"ok": true}));
        assert_eq!(r.content_type, "application/json");
        assert_eq!(r.body, br#"{"ok":true}"#);
        assert_eq!(Response::not_found().status, 404);
        let h = to_hyper(Response {
            status: 1000,
            content_type: "bad\nvalue",
            body: vec![],
        });
        assert_eq!(h.status(), 500);
        assert!(h.headers().get(CONTENT_TYPE).is_none());
    }
}
