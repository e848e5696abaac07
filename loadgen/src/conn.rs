//! A minimal SMTP client connection for load generation, built on the MTA's own protocol
//! module (reply parsing, dot-stuffing).
//!
//! What it does: connect, read replies, write buffered commands, with timeouts.
//!
//! What it does not do: no retries, no TLS yet, no interpretation of replies.
//!
//! Invariants: one reply is parsed per `reply()` call, in order; the read buffer grows only to
//! hold one reply.

use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use mta::smtp::Reply;
use mta::smtp::reply::ReplyParser;

/// One client connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
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
            stream,
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
            parser: ReplyParser::new(),
        })
    }

    /// Writes all of `data`.
    pub async fn write(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(data).await?;
        Ok(())
    }

    /// Reads one complete reply.
    pub async fn reply(&mut self) -> anyhow::Result<Reply> {
        loop {
            if let Some((reply, used)) = self.parser.parse(&self.buf[self.start..self.end])? {
                self.start += used;
                if self.start == self.end {
                    (self.start, self.end) = (0, 0);
                }
                return Ok(reply);
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self.stream.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                anyhow::bail!("connection closed by server");
            }
            self.end += n;
        }
    }

    /// Sends QUIT and closes (errors ignored).
    pub async fn close(mut self) {
        if self.write(b"QUIT\r\n").await.is_ok() {
            let _ = self.reply().await;
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both).await;
    }
}
