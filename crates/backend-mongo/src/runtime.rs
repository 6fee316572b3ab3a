//! The runtime the synchronous [`Core`](cachier_core::Core) calls run the async driver on, so
//! callers need no runtime of their own.

use std::future::Future;

use cachier_core::{DriverRuntime, Error};

use crate::backend::NAME;

static RUNTIME: DriverRuntime = DriverRuntime::new(NAME, "cachier-mongo");

/// Runs `future` to completion on the backend's runtime (see [`DriverRuntime::block_on`]).
pub(crate) fn block_on<F>(operation: &'static str, future: F) -> Result<F::Output, Error>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    RUNTIME.block_on(operation, future)
}
