//! The small tokio runtime that does this backend's I/O: the HTTP client's connections live
//! on it, the synchronous [`Core`](cachier_core::Core) calls run on it, and async callers'
//! requests are handed to it, so no caller needs a runtime of its own and a caller's runtime
//! that shuts down takes no pooled connection with it.

use std::future::Future;
use std::sync::LazyLock;

use cachier_core::Error;
use tokio::runtime::{Handle, Runtime};

use crate::backend::NAME;

/// Two worker threads: the work is I/O-bound, they only drive sockets and the connection pool.
static RUNTIME: LazyLock<Result<Runtime, String>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cachier-s3")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
});

pub(crate) fn runtime(operation: &'static str) -> Result<&'static Runtime, Error> {
    RUNTIME.as_ref().map_err(|message| {
        Error::backend(
            NAME,
            operation,
            format!("cannot start the client's runtime: {message}"),
        )
    })
}

/// Runs `future` to completion on the backend's runtime and returns its output.
///
/// Outside any tokio runtime the calling thread drives the future itself (the fast path).
/// Inside one (a synchronous call made from async code), `block_on` would panic, so the
/// future is spawned on the backend's runtime and the calling thread waits for its answer.
pub(crate) fn block_on<F>(operation: &'static str, future: F) -> Result<F::Output, Error>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = runtime(operation)?;
    if Handle::try_current().is_err() {
        return Ok(runtime.block_on(future));
    }
    let (send, receive) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = send.send(future.await);
    });
    receive.recv().map_err(|_| {
        Error::backend(
            NAME,
            operation,
            "the client's task ended without an answer (runtime shut down)",
        )
    })
}
