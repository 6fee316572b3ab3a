//! The private tokio runtime of a backend whose driver is async only: its blocking store runs
//! the same async operations on it, so callers need no runtime of their own.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime};

use crate::Error;

/// A backend's own runtime, started on first use. Two worker threads: a driver's work is
/// I/O-bound, they only drive its sockets, pool and monitoring.
pub struct DriverRuntime {
    backend: &'static str,
    thread_name: &'static str,
    runtime: OnceLock<Result<Runtime, String>>,
}

impl DriverRuntime {
    /// The runtime of `backend` (its name in errors), with threads named `thread_name`.
    pub const fn new(backend: &'static str, thread_name: &'static str) -> DriverRuntime {
        DriverRuntime {
            backend,
            thread_name,
            runtime: OnceLock::new(),
        }
    }

    /// The runtime, started on first use.
    ///
    /// # Errors
    /// A backend error for `operation` when the runtime cannot start.
    pub fn runtime(&self, operation: &'static str) -> Result<&Runtime, Error> {
        let runtime = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(self.thread_name)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        });
        runtime.as_ref().map_err(|message| {
            Error::backend(
                self.backend,
                operation,
                format!("cannot start the driver's runtime: {message}"),
            )
        })
    }

    /// Runs `future` to completion on this runtime and returns its output.
    ///
    /// Outside any tokio runtime the calling thread drives the future itself (the fast path).
    /// Inside one (a synchronous call made from async code), `Runtime::block_on` would panic,
    /// so the future is spawned here and the calling thread waits for its answer.
    ///
    /// # Errors
    /// A backend error for `operation` when the runtime cannot start or shuts down first.
    pub fn block_on<F>(&self, operation: &'static str, future: F) -> Result<F::Output, Error>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let runtime = self.runtime(operation)?;
        if Handle::try_current().is_err() {
            return Ok(runtime.block_on(future));
        }
        let (send, receive) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = send.send(future.await);
        });
        receive.recv().map_err(|_| {
            Error::backend(
                self.backend,
                operation,
                "the driver's task ended without an answer (runtime shut down)",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_outside_and_inside_a_callers_runtime() {
        static RUNTIME: DriverRuntime = DriverRuntime::new("test", "cachier-test");
        assert_eq!(RUNTIME.block_on("op", async { 7 }).unwrap(), 7);
        let caller = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let inside = caller.block_on(async { RUNTIME.block_on("op", async { 8 }) });
        assert_eq!(inside.unwrap(), 8);
    }
}
