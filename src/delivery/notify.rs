//! A single-waiter wake-up signal for one executor (no atomics, no locks).
//!
//! What it does: `notify()` sets a flag and wakes the waiting task; `wait()` resolves once the
//! flag is set and clears it.
//!
//! What it does not do: no fan-out (one waiter at a time), no cross-thread use.
//!
//! Invariants: a notification sent while nobody waits is remembered until the next `wait()`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// The signal.
#[derive(Default)]
pub struct Notify {
    flag: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    /// Wakes the waiter (or the next one).
    pub fn notify(&self) {
        self.flag.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves once notified.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        WaitFor { notify: self }
    }
}

struct WaitFor<'a> {
    notify: &'a Notify,
}

impl Future for WaitFor<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.flag.replace(false) {
            return Poll::Ready(());
        }
        *self.notify.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}
