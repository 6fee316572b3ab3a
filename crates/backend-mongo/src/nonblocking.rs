//! The async core: the driver's own futures, awaited on the caller's runtime.

use std::time::Duration;

use cachier_core::{AsyncCore, BoxFuture, CacheEntry, Claim, ClaimToken, Error, Key};

use crate::ops::Entries;

/// The entries of one memoized function, for async memoized functions: each operation is the
/// driver's future, awaited on the caller's runtime (one round trip per hit, no blocking-pool
/// hop, nothing that blocks the executor). It runs the very operations
/// [`MongoCore`](crate::blocking::MongoCore) runs; leases are renewed through `MongoCore` by the engine's
/// heartbeat.
///
/// The caller's runtime needs its timer enabled (`enable_time`/`enable_all`), as every async
/// memoized function does. The client's background tasks (connection pool, server monitoring)
/// stay on the backend's runtime, so a current-thread runtime works too.
pub(crate) struct MongoAsyncCore {
    entries: Entries,
}

impl MongoAsyncCore {
    pub(crate) fn new(entries: Entries) -> MongoAsyncCore {
        MongoAsyncCore { entries }
    }
}

impl std::fmt::Debug for MongoAsyncCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.entries.describe(f, "MongoAsyncCore")
    }
}

impl AsyncCore for MongoAsyncCore {
    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<CacheEntry>, Error>> {
        Box::pin(self.entries.get(key))
    }

    fn put<'a>(
        &'a self,
        key: &'a Key,
        value: &'a [u8],
        claim: Option<&'a ClaimToken>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.entries.put(key, value.to_vec(), claim))
    }

    fn claim<'a>(&'a self, key: &'a Key, lease: Duration) -> BoxFuture<'a, Result<Claim, Error>> {
        Box::pin(self.entries.claim(key, lease))
    }

    fn release<'a>(
        &'a self,
        key: &'a Key,
        claim: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.entries.release(key, claim))
    }

    fn wait<'a>(&'a self, key: &'a Key, max: Duration) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(self.entries.wait(key, max))
    }

    fn remove<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(self.entries.remove(key))
    }
    fn clear_cache(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.entries.clear_cache())
    }

    fn clear_being_calculated(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.entries.clear_being_calculated())
    }

    fn delete_stale_entries(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(self.entries.delete_stale_entries(older_than))
    }
}
