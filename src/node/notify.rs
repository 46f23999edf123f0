//! A single-waiter wake-up flag for tasks of one executor.
//!
//! `notify` may be called any number of times before the waiter runs; the
//! waiter sees one wake-up. Executor-local: `Cell`s, no atomics.

use std::{
    cell::Cell,
    future::poll_fn,
    task::{Poll, Waker},
};

/// See the module docs.
#[derive(Default)]
pub struct Notify {
    flag: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    /// Sets the flag and wakes the waiter, if any.
    pub fn notify(&self) {
        self.flag.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Waits for a notification and consumes it.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.flag.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}
