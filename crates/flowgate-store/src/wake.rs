//! Commit wake-ups delivered through the thread that waits.
//!
//! A task that awaits a [`crate::Committed`] is woken by the writer thread
//! once its write committed. Waking a task of another thread's runtime from
//! outside costs a system call each time (the HTTP workers' runtimes write
//! their event fd on every remote wake-up, even while busy). A commit holds
//! the writes of many waiting requests, so waking each of them directly
//! costs one system call per request.
//!
//! A thread that runs many such tasks (an HTTP worker) runs a [`WakeHub`]
//! on its runtime. A write awaited on that thread leaves its task's waker
//! with the hub; the writer hands the wakers of committed writes to the hub
//! and wakes the hub's task once for all that arrive before it runs. The hub
//! then wakes each task from its own thread, which costs no system call.
//! Waits on other threads are woken directly, as before.
//!
//! No wake-up is lost: while the hub lives it is polled by its runtime
//! (woken for every waker it is handed), and once it is dropped every waker it
//! still holds, and every one handed to it after, is woken directly.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

thread_local! {
    /// The hub running on this thread, if any.
    static HUB: RefCell<Option<Arc<Hub>>> = const { RefCell::new(None) };
}

/// A thread's hub, shared with the writer.
pub(crate) struct Hub {
    state: Mutex<State>,
}

struct State {
    /// False once the hub's future was dropped: wakers are woken directly.
    alive: bool,
    /// Wakers of committed writes, waiting for the hub to run.
    ready: Vec<Waker>,
    /// The hub task's waker; taken by the first waker handed over after the
    /// hub last ran (the others join it without another wake-up).
    task: Option<Waker>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hub of the calling thread, if one runs there.
    pub(crate) fn current() -> Option<Arc<Hub>> {
        HUB.try_with(|h| h.borrow().clone()).ok().flatten()
    }

    /// Has `waker` woken on the hub's thread (at once, when the hub is gone).
    pub(crate) fn wake(&self, waker: Waker) {
        let task = {
            let mut s = self.lock();
            if !s.alive {
                drop(s);
                waker.wake();
                return;
            }
            s.ready.push(waker);
            s.task.take()
        };
        if let Some(t) = task {
            t.wake();
        }
    }
}

/// Runs this thread's hub (see the module docs) while it is polled; never
/// completes. Dropping it ends the hub: what it holds is woken directly.
#[must_use = "the hub only forwards wake-ups while its runtime polls it"]
pub struct WakeHub {
    hub: Arc<Hub>,
}

/// A hub for the calling thread, to be spawned on the runtime of that thread
/// (a current-thread runtime, whose tasks never move to another thread);
/// `None` when one already runs there.
pub fn wake_hub() -> Option<WakeHub> {
    HUB.try_with(|h| {
        let mut h = h.borrow_mut();
        if h.is_some() {
            return None;
        }
        let hub = Arc::new(Hub {
            state: Mutex::new(State {
                alive: true,
                ready: Vec::new(),
                task: None,
            }),
        });
        *h = Some(Arc::clone(&hub));
        Some(WakeHub { hub })
    })
    .ok()
    .flatten()
}

impl Future for WakeHub {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let ready = {
            let mut s = self.hub.lock();
            if !s.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                s.task = Some(cx.waker().clone());
            }
            std::mem::take(&mut s.ready)
        };
        for w in ready {
            w.wake();
        }
        Poll::Pending
    }
}

impl Drop for WakeHub {
    fn drop(&mut self) {
        let ready = {
            let mut s = self.hub.lock();
            s.alive = false;
            s.task = None;
            std::mem::take(&mut s.ready)
        };
        let _ = HUB.try_with(|h| {
            let mut h = h.borrow_mut();
            if h.as_ref().is_some_and(|x| Arc::ptr_eq(x, &self.hub)) {
                *h = None;
            }
        });
        for w in ready {
            w.wake();
        }
    }
}
