//! The blocking core: each operation of [`Entries`] driven to completion on the backend's
//! runtime. The driver is async only and its I/O needs a tokio runtime, so the operations go
//! through [`runtime::block_on`] rather than `cachier_core::block_on`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cachier_core::watch::{ChangeSink, Watch};
use cachier_core::{CacheEntry, Capabilities, Claim, ClaimToken, Core, EntryInfo, Error, Key};

use crate::ops::Entries;
use crate::runtime;

/// The entries of one memoized function in a [`MongoBackend`](crate::MongoBackend)'s
/// collection, for synchronous callers.
///
/// Each operation is the same future the async core awaits, run to completion on the
/// backend's own runtime.
pub(crate) struct MongoCore {
    entries: Entries,
}

impl std::fmt::Debug for MongoCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.entries.describe(f, "MongoCore")
    }
}

impl MongoCore {
    pub(crate) fn new(entries: Entries) -> MongoCore {
        MongoCore { entries }
    }

    /// Runs one operation of [`Entries`] to completion on the backend's runtime.
    fn block<T, F, Fut>(&self, operation: &'static str, make: F) -> Result<T, Error>
    where
        F: FnOnce(Entries) -> Fut,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
        T: Send + 'static,
    {
        runtime::block_on(operation, make(self.entries.clone()))?
    }
}

impl Core for MongoCore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            leases: true,
            listing: true,
            cache_dir: None,
            in_process: false,
        }
    }

    fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        let key = *key;
        self.block("get", |e| async move { e.get(&key).await })
    }

    fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error> {
        let (key, value, claim) = (*key, value.to_vec(), claim.cloned());
        self.block("put", |e| async move {
            e.put(&key, value, claim.as_ref()).await
        })
    }

    fn claim(&self, key: &Key, lease: Duration) -> Result<Claim, Error> {
        let key = *key;
        self.block("claim", |e| async move { e.claim(&key, lease).await })
    }

    fn renew(&self, key: &Key, claim: &ClaimToken, lease: Duration) -> Result<bool, Error> {
        let (key, claim) = (*key, claim.clone());
        self.block(
            "renew",
            |e| async move { e.renew(&key, &claim, lease).await },
        )
    }

    fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
        let (key, claim) = (*key, claim.clone());
        self.block("release", |e| async move { e.release(&key, &claim).await })
    }

    fn watch(&self, sink: Arc<dyn ChangeSink>) -> Result<Watch, Error> {
        Ok(self.entries.watch(sink))
    }

    fn wait(&self, key: &Key, max: Duration) -> Result<bool, Error> {
        let key = *key;
        self.block("wait", |e| async move { e.wait(&key, max).await })
    }

    fn remove(&self, key: &Key) -> Result<bool, Error> {
        let key = *key;
        self.block("remove", move |e| async move { e.remove(&key).await })
    }

    fn clear_cache(&self) -> Result<(), Error> {
        self.block("clear_cache", |e| async move { e.clear_cache().await })
    }

    fn clear_being_calculated(&self) -> Result<(), Error> {
        self.block("clear_being_calculated", |e| async move {
            e.clear_being_calculated().await
        })
    }

    fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        self.block("delete_stale_entries", |e| async move {
            e.delete_stale_entries(older_than).await
        })
    }

    fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
        self.block("entries", |e| async move { e.entries().await })
    }

    fn len(&self) -> Result<u64, Error> {
        self.block("len", |e| async move { e.len().await })
    }
}
