//! The native async store: the blocking core's requests and decoders, sent on a multiplexed
//! connection of the caller's tokio runtime (no blocking pool, no `block_on`).

use std::fmt;
use std::time::Duration;

use cachier_core::{
    claim_then_get_async, AsyncCore, BoxFuture, CacheEntry, Claim, ClaimAndGet, ClaimToken, Error,
    Key,
};
use redis::Value;

use crate::{
    claimed, claimed_and_read, decode_get, duration_us, no_script, scan_step, RedisCore, Sweep,
};

/// One function's entries on the server, for async memoized functions (what
/// [`RedisBackend::async_core`](cachier_core::Backend::async_core) returns).
///
/// Each operation is the blocking [`RedisCore`]'s request, awaited on a multiplexed
/// connection opened on the caller's runtime: a hit is one awaited round trip. Same
/// timeouts, reconnection after a server restart and backoff after a failed connect as the
/// blocking path. Waiting for a computation in flight polls with tokio's timer.
#[derive(Clone)]
pub(crate) struct RedisAsyncCore {
    core: RedisCore,
}

impl RedisAsyncCore {
    pub(crate) fn new(core: RedisCore) -> RedisAsyncCore {
        RedisAsyncCore { core }
    }

    /// Walks this namespace's keys with `sweep`, as [`Sweep::run`] does, awaiting each step.
    async fn sweep(&self, operation: &'static str, mut sweep: Sweep) -> Result<Sweep, Error> {
        let pool = &self.core.shared.pool;
        let mut cursor = 0u64;
        loop {
            let step = scan_step(&self.core.pattern, cursor);
            let (next, keys): (u64, Vec<Vec<u8>>) = pool.run_async(operation, &step).await?;
            if !keys.is_empty() {
                let reply = match sweep.request(&keys) {
                    Some(request) => pool.run_async(operation, &request).await?,
                    None => Value::Nil,
                };
                sweep
                    .absorb(&keys, reply)
                    .map_err(|e| Error::backend("redis", operation, e))?;
            }
            if next == 0 {
                sweep.finish();
                return Ok(sweep);
            }
            cursor = next;
        }
    }
}

impl fmt::Debug for RedisAsyncCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAsyncCore")
            .field("server", &self.core.shared.shown)
            .field("keys", &self.core.base)
            .finish()
    }
}

impl AsyncCore for RedisAsyncCore {
    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<CacheEntry>, Error>> {
        Box::pin(async move {
            let entry_key = self.core.entry_key(key);
            let request = self.core.get_request(&entry_key);
            let reply = self.core.shared.pool.run_async("get", &request).await;
            decode_get(&entry_key, reply)
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a Key,
        value: &'a [u8],
        claim: Option<&'a ClaimToken>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let request = self
                .core
                .put_request(&self.core.entry_key(key), value, claim);
            self.core
                .shared
                .pool
                .run_async::<i64>("put", &request)
                .await?;
            Ok(())
        })
    }

    fn claim<'a>(&'a self, key: &'a Key, lease: Duration) -> BoxFuture<'a, Result<Claim, Error>> {
        Box::pin(async move {
            let token = ClaimToken::new();
            let request = self
                .core
                .claim_request(&self.core.entry_key(key), &token, lease);
            let reply = self.core.shared.pool.run_async("claim", &request).await?;
            Ok(claimed(reply, token))
        })
    }

    fn claim_and_get<'a>(
        &'a self,
        key: &'a Key,
        lease: Duration,
    ) -> BoxFuture<'a, Result<ClaimAndGet, Error>> {
        Box::pin(async move {
            let entry_key = self.core.entry_key(key);
            let token = ClaimToken::new();
            let request = self.core.claim_and_get_request(&entry_key, &token, lease);
            match self.core.shared.pool.run_async("claim", &request).await {
                Ok(reply) => Ok(claimed_and_read(&entry_key, reply, token)),
                // Nothing was claimed: claim as a script invocation (which loads it).
                Err(error) if no_script(&error) => claim_then_get_async(self, key, lease).await,
                Err(error) => Err(error),
            }
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a Key,
        claim: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let request = self.core.release_request(&self.core.entry_key(key), claim);
            self.core
                .shared
                .pool
                .run_async::<i64>("release", &request)
                .await?;
            Ok(())
        })
    }

    fn clear_cache(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.sweep("clear_cache", Sweep::Unlink).await.map(drop) })
    }

    fn clear_being_calculated(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            self.sweep("clear_being_calculated", Sweep::Unclaim)
                .await
                .map(drop)
        })
    }

    fn delete_stale_entries(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move {
            let sweep = Sweep::DeleteStale {
                limit_us: duration_us(older_than),
                deleted: 0,
            };
            match self.sweep("delete_stale_entries", sweep).await? {
                Sweep::DeleteStale { deleted, .. } => Ok(deleted),
                _ => unreachable!("the sweep stays what it was made"),
            }
        })
    }
}
