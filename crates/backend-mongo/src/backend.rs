//! The store: one collection shared by every memoized function, handing out their cores.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cachier_core::{watch, Backend, Core, Error, Namespace};
use mongodb::bson::Document;
use mongodb::{Client, Collection};

use crate::blocking::MongoCore;
use crate::builder::{MongoBackendBuilder, Source};
#[cfg(feature = "async")]
use crate::nonblocking::MongoAsyncCore;
use crate::ops::{Entries, Shared};
use crate::runtime;

/// The backend's name in logs and errors.
pub(crate) const NAME: &str = "mongo";

/// A MongoDB store: one collection holding the entries of every memoized function, told apart
/// by their `func` field. Cheap to clone; clones share the client and its connection pool.
#[derive(Clone)]
pub struct MongoBackend {
    shared: Arc<Shared>,
}

impl fmt::Debug for MongoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The namespace only: the URL (and any credentials in it) never reaches a log.
        f.debug_struct("MongoBackend")
            .field("namespace", &self.shared.collection.namespace().to_string())
            .finish()
    }
}

impl MongoBackend {
    /// A builder over a client the caller already has (its pool is shared).
    ///
    /// The client's background tasks run on the runtime it was created in: that runtime must
    /// keep running (a multi-thread runtime, or [`MongoBackend::builder`] instead), because a
    /// synchronous cache call blocks its thread while it waits for the server.
    pub fn from_client(client: Client) -> MongoBackendBuilder {
        MongoBackendBuilder::new(Source::Client(client))
    }

    /// A backend over a collection the caller already has (see [`MongoBackend::from_client`]
    /// about its runtime), with the default heartbeat and wait poll.
    pub fn from_collection(collection: Collection<Document>) -> MongoBackend {
        MongoBackend::over(
            collection,
            watch::DEFAULT_HEARTBEAT,
            watch::DEFAULT_WAIT_POLL,
        )
    }

    pub(crate) fn over(
        collection: Collection<Document>,
        heartbeat: Duration,
        wait_poll: Duration,
    ) -> MongoBackend {
        MongoBackend {
            shared: Arc::new(Shared::new(collection, heartbeat, wait_poll)),
        }
    }

    /// The collection holding the entries (for inspection and maintenance).
    pub fn collection(&self) -> &Collection<Document> {
        &self.shared.collection
    }

    /// Runs `future` (typically a raw driver call on [`MongoBackend::collection`]) to
    /// completion on the runtime this backend's calls use, from synchronous code. Safe to call
    /// from inside another tokio runtime (the calling thread blocks until it finishes).
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

impl Backend for MongoBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn core(&self, namespace: &Namespace) -> Result<Arc<dyn Core>, Error> {
        // Nothing is sent here: the index is made on first use, so building a memoized
        // function never fails or stalls because the server is down.
        Ok(Arc::new(MongoCore::new(Entries::new(
            self.shared.clone(),
            namespace,
        ))))
    }

    /// The driver's own async API, awaited on the caller's runtime (no blocking-pool hop);
    /// the same operations as the blocking core, which runs them on the backend's runtime.
    #[cfg(feature = "async")]
    fn async_core(
        &self,
        namespace: &Namespace,
        core: &Arc<dyn Core>,
    ) -> Result<Arc<dyn cachier_core::AsyncCore>, Error> {
        let _ = core;
        Ok(Arc::new(MongoAsyncCore::new(Entries::new(
            self.shared.clone(),
            namespace,
        ))))
    }

    fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        let shared = self.shared.clone();
        runtime::block_on("namespaces", async move { shared.namespaces().await })?
    }
}
