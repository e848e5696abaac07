//! hyper's runtime traits on glommio: an I/O adapter and a timer.
//!
//! What it does: `GlommioIo` implements `hyper::rt::Read` / `Write` over any futures-io stream
//! (here `glommio::net::TcpStream`); `GlommioTimer` implements `hyper::rt::Timer` with a
//! glommio task per sleep that fires a oneshot channel.
//!
//! What it does not do: no HTTP; no use outside a glommio executor (the timer spawns on the
//! current one).
//!
//! Invariants: reads copy through a stack buffer, so no uninitialised memory is ever exposed;
//! a dropped sleep ends its timer task early (the channel's cancellation); these are used on
//! the admin path only, where one small allocation per request is fine.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use futures_lite::io::{AsyncRead, AsyncWrite};

/// Size of the stack buffer one read goes through.
const READ_CHUNK: usize = 8 * 1024;

/// A futures-io stream seen through hyper's I/O traits.
#[derive(Debug)]
pub(crate) struct GlommioIo<S>(pub(crate) S);

impl<S: AsyncRead + Unpin> hyper::rt::Read for GlommioIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let mut chunk = [0u8; READ_CHUNK];
        let want = buf.remaining().min(READ_CHUNK);
        match Pin::new(&mut self.get_mut().0).poll_read(cx, &mut chunk[..want]) {
            Poll::Ready(Ok(n)) => {
                buf.put_slice(&chunk[..n.min(want)]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for GlommioIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
}

/// hyper's timer on the current glommio executor.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GlommioTimer;

impl hyper::rt::Timer for GlommioTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let (mut tx, rx) = oneshot::channel::<()>();
        glommio::spawn_local(async move {
            let fired = futures_lite::future::or(
                async {
                    glommio::timer::sleep(duration).await;
                    true
                },
                async {
                    tx.cancellation().await;
                    false
                },
            )
            .await;
            if fired {
                let _ = tx.send(());
            }
        })
        .detach();
        Box::pin(GlommioSleep(rx))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }
}

/// One pending sleep: ready when its timer task fires (or is gone).
struct GlommioSleep(oneshot::Receiver<()>);

impl Future for GlommioSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Canceled means the task was dropped with its executor: treat it as expired.
        Pin::new(&mut self.get_mut().0).poll(cx).map(|_| ())
    }
}

impl hyper::rt::Sleep for GlommioSleep {}
