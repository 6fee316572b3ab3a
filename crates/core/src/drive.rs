//! Running a store operation written once, as async code, on the blocking path.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Runs `future` to completion on this thread.
///
/// A backend writes each store operation once, as an `async fn` over its connection: the async
/// store awaits it on an async connection, and the blocking store passes it here with a
/// blocking connection, whose futures are ready when created, so one poll completes it and
/// nothing waits. Should the future suspend anyway, the thread parks until it is woken. The
/// engine drives its own algorithm the same way for blocking memoized functions.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    if let Poll::Ready(out) = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        return out;
    }
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_ready_and_suspending_futures() {
        assert_eq!(block_on(async { 7 }), 7);
        // Suspends once; another thread wakes it.
        let mut polled = false;
        let out = block_on(std::future::poll_fn(|cx| {
            if polled {
                return Poll::Ready(1);
            }
            polled = true;
            let waker = cx.waker().clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(5));
                waker.wake();
            });
            Poll::Pending
        }));
        assert_eq!(out, 1);
    }
}
