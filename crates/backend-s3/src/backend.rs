//! The store: one bucket and prefix shared by every memoized function, handing out their cores.

use std::fmt;
use std::sync::Arc;

use cachier_core::{Backend, Core, Error, Namespace};
use object_store::ObjectStore;

use crate::blocking::S3Core;
#[cfg(feature = "async")]
use crate::nonblocking::S3AsyncCore;
use crate::ops::{Entries, Shared};
use crate::runtime;

/// The backend's name in logs and errors.
pub(crate) const NAME: &str = "s3";

/// An S3 store: one object per entry under `{prefix}/{namespace}/` in one bucket. Cheap to
/// clone; clones share the client, its connections and what it measured of the server's
/// clock.
#[derive(Clone)]
pub struct S3Backend {
    shared: Arc<Shared>,
}

impl fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bucket and prefix only: credentials never reach a log.
        f.debug_struct("S3Backend")
            .field("bucket", &self.shared.bucket)
            .field("prefix", &self.shared.prefix.as_ref())
            .finish()
    }
}

impl S3Backend {
    pub(crate) fn new(shared: Shared) -> S3Backend {
        S3Backend {
            shared: Arc::new(shared),
        }
    }

    /// The client (for inspection, maintenance, or a raw request to compare with).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.shared.store
    }

    /// The folder holding every function's entries.
    pub fn prefix(&self) -> &object_store::path::Path {
        &self.shared.prefix
    }

    /// How many HTTP requests this backend's client has sent, retries included (for
    /// measurements: a hit is one, a miss three).
    pub fn requests_sent(&self) -> u64 {
        self.shared.clock.requests()
    }

    /// Runs `future` (typically a raw call on [`S3Backend::store`]) to completion on the
    /// runtime this backend's calls use, from synchronous code.
    ///
    /// # Errors
    /// Only if the runtime cannot be started; the future's own result is returned as is.
    pub fn block_on<F>(&self, future: F) -> Result<F::Output, Error>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        runtime::block_on("block_on", future)
    }
}

impl Backend for S3Backend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn core(&self, namespace: &Namespace) -> Result<Arc<dyn Core>, Error> {
        // Nothing is sent here: building a memoized function never fails or stalls because
        // the endpoint is down.
        Ok(Arc::new(S3Core::new(Entries::new(
            self.shared.clone(),
            namespace,
        ))))
    }

    /// The client's own futures, awaited on the caller's runtime; the same operations as the
    /// blocking core, which runs them on the backend's runtime.
    #[cfg(feature = "async")]
    fn async_core(
        &self,
        namespace: &Namespace,
        core: &Arc<dyn Core>,
    ) -> Result<Arc<dyn cachier_core::AsyncCore>, Error> {
        let _ = core;
        Ok(Arc::new(S3AsyncCore::new(Entries::new(
            self.shared.clone(),
            namespace,
        ))))
    }

    fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        let shared = self.shared.clone();
        runtime::block_on("namespaces", async move { shared.namespaces().await })?
    }
}
