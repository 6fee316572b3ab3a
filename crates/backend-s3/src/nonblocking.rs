//! The async core: the client's own futures, awaited on the caller's runtime.

use std::time::Duration;

use cachier_core::{AsyncCore, BoxFuture, CacheEntry, Claim, ClaimAndGet, ClaimToken, Error, Key};

use crate::ops::Entries;

/// The entries of one memoized function, for async memoized functions: each operation is the
/// client's future, awaited on the caller's runtime (one request per hit, no blocking-pool
/// hop, nothing that blocks the executor). It runs the very operations
/// [`S3Core`](crate::blocking::S3Core) runs; leases are renewed through `S3Core` by the
/// engine's heartbeat.
///
/// The HTTP connections stay on the backend's runtime, so any runtime works, a
/// current-thread one too; the caller's runtime needs its timer for waits.
pub(crate) struct S3AsyncCore {
    entries: Entries,
}

impl S3AsyncCore {
    pub(crate) fn new(entries: Entries) -> S3AsyncCore {
        S3AsyncCore { entries }
    }
}

impl std::fmt::Debug for S3AsyncCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.entries.describe(f, "S3AsyncCore")
    }
}

impl AsyncCore for S3AsyncCore {
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

    fn claim_and_get<'a>(
        &'a self,
        key: &'a Key,
        lease: Duration,
    ) -> BoxFuture<'a, Result<ClaimAndGet, Error>> {
        Box::pin(self.entries.claim_and_get(key, lease))
    }

    fn release<'a>(
        &'a self,
        key: &'a Key,
        claim: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.entries.release(key, claim))
    }

    fn remove<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(self.entries.remove(key))
    }

    fn wait<'a>(&'a self, key: &'a Key, max: Duration) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(self.entries.wait(key, max))
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
