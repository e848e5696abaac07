//! Graceful shutdown: process signals and the per-shard "stop now" notice.
//!
//! What it does: a signal thread turns the first SIGTERM/SIGINT into a process-wide request
//! that every shard polls ([`SignalWatch`]); a second signal exits the process at once (the
//! spool is append-only and checksummed, so it is consistent at any instant). SIGHUP bumps a
//! reload generation that every shard polls too, to reload what can change live. Inside a shard,
//! [`Shutdown`] wakes every task waiting for the stop (accept loops, idle sessions).
//!
//! What it does not do: no draining policy (the connection decides what to answer), no locks
//! inside a shard (the cross-thread part is one atomic read by a timer task).
//!
//! Invariants: once started, a [`Shutdown`] stays started and its deadline never moves.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The process-wide stop request and reload generation, set by the signal thread.
#[derive(Clone, Default)]
pub struct SignalWatch {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicU64>,
}

impl SignalWatch {
    /// Installs SIGTERM and SIGINT handlers: the first sets the request, the second exits the
    /// process with status 130.
    pub fn install() -> std::io::Result<SignalWatch> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let watch = SignalWatch::default();
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        let flag = watch.stop.clone();
        let reload = watch.reload.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if signal == SIGHUP {
                        tracing::info!("SIGHUP: reloading");
                        reload.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    if flag.swap(true, Ordering::SeqCst) {
                        tracing::warn!(signal, "second signal: exiting at once");
                        std::process::exit(130);
                    }
                    tracing::info!(
                        signal,
                        "stopping: no new connections, finishing transactions"
                    );
                }
            })?;
        Ok(watch)
    }

    /// True once a stop was requested.
    pub fn requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Requests a stop (as a signal would).
    pub fn request(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The reload generation: grows by one with every SIGHUP (or [`SignalWatch::request_reload`]).
    pub fn reload_generation(&self) -> u64 {
        self.reload.load(Ordering::SeqCst)
    }

    /// Requests a reload (as SIGHUP would).
    pub fn request_reload(&self) {
        self.reload.fetch_add(1, Ordering::SeqCst);
    }
}

/// A shard's stop notice: started once, with a deadline for transactions in progress.
#[derive(Default)]
pub struct Shutdown {
    deadline: Cell<Option<Instant>>,
    waiters: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl Shutdown {
    /// Starts the shutdown (idempotent): transactions may run until now + `grace`.
    pub fn start(&self, grace: Duration) {
        if self.deadline.get().is_some() {
            return;
        }
        self.deadline.set(Some(Instant::now() + grace));
        let wakers: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    /// True once started.
    pub fn started(&self) -> bool {
        self.deadline.get().is_some()
    }

    /// The instant after which transactions in progress are cut off.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.get()
    }

    /// Resolves once the shutdown has started.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            shutdown: self,
            slot: None,
        }
    }

    fn register(&self, slot: &mut Option<usize>, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        match *slot {
            Some(i) => match &mut waiters[i] {
                Some(w) if w.will_wake(waker) => {}
                entry => *entry = Some(waker.clone()),
            },
            None => {
                let i = match self.free.borrow_mut().pop() {
                    Some(i) => {
                        waiters[i] = Some(waker.clone());
                        i
                    }
                    None => {
                        waiters.push(Some(waker.clone()));
                        waiters.len() - 1
                    }
                };
                *slot = Some(i);
            }
        }
    }
}

/// The future of [`Shutdown::wait`]; it deregisters itself when dropped.
pub struct Wait<'a> {
    shutdown: &'a Shutdown,
    slot: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.shutdown.started() {
            return Poll::Ready(());
        }
        this.shutdown.register(&mut this.slot, cx.waker());
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot.take() {
            self.shutdown.waiters.borrow_mut()[i] = None;
            self.shutdown.free.borrow_mut().push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_wake_and_slots_are_reused() {
        let s = Shutdown::default();
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| {
            Poll::Ready(cx.waker().clone())
        }));
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            let mut w = Box::pin(s.wait());
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(
            s.waiters.borrow().len(),
            1,
            "dropped waiters free their slot"
        );
        let mut w = Box::pin(s.wait());
        assert!(w.as_mut().poll(&mut cx).is_pending());
        s.start(Duration::from_secs(1));
        assert!(w.as_mut().poll(&mut cx).is_ready());
        assert!(s.deadline().is_some());
    }
}
