//! A minimal SMTP client connection for load generation, built on the MTA's own protocol
//! module (reply parsing, dot-stuffing) and its TLS stream.
//!
//! What it does: connect, read replies, write buffered commands (each write is flushed, which
//! TLS needs to put its records on the wire), with timeouts; upgrade to TLS in place after the
//! caller's STARTTLS got its 220.
//!
//! What it does not do: no retries, no interpretation of replies, no decision about when to
//! use STARTTLS (the caller sends it and checks the reply).
//!
//! Invariants: one reply is parsed per `reply()` call, in order; the read buffer grows only to
//! hold one reply; no byte read before the upgrade is ever used after it (the upgrade fails if
//! the server sent anything after its 220).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use mta::read_buffer::ReadBuffer;
use mta::smtp::Reply;
use mta::smtp::reply::ReplyParser;
use mta::tls::{Stream, TlsInfo};

/// One client connection.
pub struct Conn {
    stream: Stream,
    buf: ReadBuffer,
    parser: ReplyParser,
}

impl Conn {
    /// Connects with a timeout and sets TCP_NODELAY.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect_timeout(addr, timeout)
            .await
            .map_err(crate::gerr)?;
        stream.set_nodelay(true).map_err(crate::gerr)?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(crate::gerr)?;
        Ok(Conn {
            stream: Stream::Plain(stream),
            buf: ReadBuffer::new(16 * 1024),
            parser: ReplyParser::new(),
        })
    }

    /// Writes all of `data` and flushes it.
    pub async fn write(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(data).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Runs the TLS handshake; call it after STARTTLS was answered 220.
    pub async fn upgrade(
        self,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> anyhow::Result<Conn> {
        anyhow::ensure!(
            self.buf.is_empty(),
            "server sent data after its STARTTLS reply"
        );
        let stream = self.stream.connect_tls(config, name).await?;
        Ok(Conn { stream, ..self })
    }

    /// What TLS negotiated, or None on plain TCP.
    pub fn tls(&self) -> Option<TlsInfo> {
        self.stream.tls()
    }

    /// Reads one complete reply.
    pub async fn reply(&mut self) -> anyhow::Result<Reply> {
        loop {
            if let Some((reply, used)) = self.parser.parse(self.buf.data())? {
                self.buf.consume(used);
                return Ok(reply);
            }
            self.buf.compact();
            if self.buf.is_full() {
                // The parser refuses an over-long reply, so this stays within one reply.
                let grown = self.buf.capacity() * 2;
                self.buf.grow(grown);
            }
            let n = self.stream.read(self.buf.spare()).await?;
            if n == 0 {
                anyhow::bail!("connection closed by server");
            }
            self.buf.filled(n);
        }
    }

    /// Sends QUIT and closes (errors ignored; on TLS a close_notify goes out first).
    pub async fn close(mut self) {
        if self.write(b"QUIT\r\n").await.is_ok() {
            let _ = self.reply().await;
        }
        if self.stream.is_tls() {
            let _ = self.stream.close().await;
        }
        let _ = self.stream.tcp().shutdown(std::net::Shutdown::Both).await;
    }
}
