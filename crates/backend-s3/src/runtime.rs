//! The runtime that does this backend's I/O: the HTTP client's connections live on it, the
//! synchronous [`Core`](cachier_core::Core) calls run on it, and async callers' requests are
//! handed to it, so no caller needs a runtime of its own and a caller's runtime that shuts
//! down takes no pooled connection with it.

use std::future::Future;

use cachier_core::{DriverRuntime, Error};
use tokio::runtime::Runtime;

use crate::backend::NAME;

static RUNTIME: DriverRuntime = DriverRuntime::new(NAME, "cachier-s3");

/// The backend's runtime, started on first use.
pub(crate) fn runtime(operation: &'static str) -> Result<&'static Runtime, Error> {
    RUNTIME.runtime(operation)
}

/// Runs `future` to completion on the backend's runtime (see [`DriverRuntime::block_on`]).
pub(crate) fn block_on<F>(operation: &'static str, future: F) -> Result<F::Output, Error>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    RUNTIME.block_on(operation, future)
}
