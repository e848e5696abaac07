//! The admin endpoint's HTTP/1.1 server on one glommio executor.
//!
//! What it does: accepts connections until a stop future completes, at most
//! [`MAX_CONNECTIONS`] at a time (one more is closed at once), serves each on its own local
//! task with hyper (keep-alive, a head cut at [`HEADER_READ_TIMEOUT`], a read and a write
//! timeout of [`IDLE_TIMEOUT`] on the socket), asks the [`Handler`] whether to admit the
//! request from its head alone ([`Handler::admit`]), then reads the body up to [`MAX_BODY`]
//! bytes within [`BODY_READ_TIMEOUT`] (larger: `413`; slower: `408`), decodes the query
//! string, and hands a [`Request`] to the handler, whose [`Response`] it writes back. A head
//! over [`MAX_HEAD`] bytes is answered `431` by hyper.
//!
//! What it does not do: no HTTP parsing of its own (hyper does it and answers malformed
//! requests with `400`), no routing, no access policy of its own (the handler's `admit`), no
//! TLS, no HTTP/2, and it does not close connections already open when stop completes (they
//! end on their own timeouts or with the executor).
//!
//! Invariants: nothing here is `Send`; the handler runs on the serving shard; connection
//! errors are logged at debug level and never panic; a body is never buffered past `MAX_BODY`
//! and the body of a request that `admit` refuses is never read.

use std::cell::Cell;
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
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};

pub use hyper::{HeaderMap, Method};

use super::rt::{GlommioIo, GlommioTimer};
use crate::server::listener::accept_or_stop;

/// The largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// The largest request head (request line and headers) accepted, in bytes.
pub const MAX_HEAD: usize = 16 * 1024;

/// Connections served at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read may wait for a byte, or a write for room, before the connection is
/// dropped (a silent client, or one that does not read its answers).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

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

/// What the handler sees of a request before its body is read.
#[derive(Debug)]
pub struct Head<'a> {
    /// The method.
    pub method: &'a Method,
    /// The path, as sent (not percent-decoded).
    pub path: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The peer's address.
    pub peer: SocketAddr,
}

impl Head<'_> {
    /// The value of header `name`, when present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Answers requests; runs on the serving shard (not `Send`).
pub trait Handler {
    /// Whether to go on with a request, from its head alone: `Some(response)` refuses it with
    /// that response, and its body is never read. The default admits everything.
    fn admit(&self, head: &Head<'_>) -> Option<Response> {
        let _ = head;
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
    let open = Rc::new(Cell::new(0usize));
    while let Some(stream) = accept_or_stop(&listener, stop.as_mut(), "admin").await {
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        if open.get() >= MAX_CONNECTIONS {
            tracing::debug!(%peer, "admin connection refused: {MAX_CONNECTIONS} already open");
            drop(stream);
            continue;
        }
        let slot = Slot::take(&open);
        let handler = handler.clone();
        glommio::spawn_local(async move {
            connection(stream, peer, handler).await;
            drop(slot);
        })
        .detach();
    }
}

/// One of the [`MAX_CONNECTIONS`] places, given back when dropped.
struct Slot(Rc<Cell<usize>>);

impl Slot {
    fn take(open: &Rc<Cell<usize>>) -> Slot {
        open.set(open.get() + 1);
        Slot(open.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// Serves one connection to its end.
async fn connection(stream: TcpStream, peer: SocketAddr, handler: Rc<dyn Handler>) {
    let _ = stream.set_nodelay(true);
    if let Err(e) = stream.set_read_timeout(Some(IDLE_TIMEOUT)) {
        tracing::debug!(%peer, error = %e, "admin connection: cannot set read timeout");
    }
    if let Err(e) = stream.set_write_timeout(Some(IDLE_TIMEOUT)) {
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
    let head = Head {
        method: &parts.method,
        path: parts.uri.path(),
        headers: &parts.headers,
        peer,
    };
    if let Some(refusal) = handler.admit(&head) {
        return Ok(closing(to_hyper(refusal)));
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Ok(closing(to_hyper(too_large())));
    }
    let read = futures_lite::future::or(
        async { Some(Limited::new(body, MAX_BODY).collect().await) },
        async {
            glommio::timer::sleep(BODY_READ_TIMEOUT).await;
            None
        },
    );
    let body = match read.await {
        None => {
            let slow = Response::text(408, "request body not sent in time\n".to_string());
            return Ok(closing(to_hyper(slow)));
        }
        Some(Ok(collected)) => collected.to_bytes().to_vec(),
        Some(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Ok(closing(to_hyper(too_large())));
        }
        Some(Err(e)) => {
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

/// Marks a response as the connection's last (its request's body was not read to the end).
fn closing(mut response: hyper::Response<Full<Bytes>>) -> hyper::Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
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
