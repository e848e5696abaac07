//! A TCP stream that is plaintext or TLS, upgraded in place (STARTTLS) or from the start.
//!
//! What it does: forwards reads and writes to the plain socket or through rustls, exposes the
//! socket for timeouts, and performs the server or client handshake that turns a plain stream
//! into a TLS one.
//!
//! What it does not do: no buffering of its own (rustls keeps its records; the caller owns the
//! read buffer), no decision about when to upgrade.
//!
//! Invariants: a stream is upgraded at most once; after a failed handshake the stream is gone
//! (the connection must be closed), so no plaintext byte is ever read after a STARTTLS reply.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::TlsInfo;

/// A connection's byte stream.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS, this side the server.
    Server(Box<futures_rustls::server::TlsStream<TcpStream>>),
    /// TLS, this side the client.
    Client(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The socket underneath (for timeouts and addresses).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Server(s) => s.get_ref().0,
            Stream::Client(s) => s.get_ref().0,
        }
    }

    /// What TLS negotiated, or None on plain TCP.
    pub fn tls(&self) -> Option<TlsInfo> {
        match self {
            Stream::Plain(_) => None,
            Stream::Server(s) => Some(TlsInfo::of(s.get_ref().1)),
            Stream::Client(s) => Some(TlsInfo::of(s.get_ref().1)),
        }
    }

    /// The certificate chain the server presented (client side, after the handshake).
    pub fn peer_certificates(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        match self {
            Stream::Client(s) => s
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// True when TLS is on.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// Runs the server side of a handshake on a plain stream.
    pub async fn accept_tls(self, config: Arc<rustls::ServerConfig>) -> io::Result<Stream> {
        let Stream::Plain(tcp) = self else {
            return Err(io::Error::other("TLS is already on"));
        };
        let tls = futures_rustls::TlsAcceptor::from(config)
            .accept(tcp)
            .await?;
        Ok(Stream::Server(Box::new(tls)))
    }

    /// Runs the client side of a handshake on a plain stream.
    pub async fn connect_tls(
        self,
        config: Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<Stream> {
        let Stream::Plain(tcp) = self else {
            return Err(io::Error::other("TLS is already on"));
        };
        let tls = futures_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await?;
        Ok(Stream::Client(Box::new(tls)))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Server(s) => Pin::new(s.as_mut()).poll_close(cx),
            Stream::Client(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
