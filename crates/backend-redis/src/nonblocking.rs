//! The native async store: each operation of [`ops`] awaited on a multiplexed connection of
//! the caller's tokio runtime (no blocking pool, no `block_on`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cachier_core::{AsyncCore, BoxFuture, CacheEntry, Claim, ClaimAndGet, ClaimToken, Error, Key};
use redis::FromRedisValue;

use crate::backend::Shared;
use crate::ops::{self, Conn, Scope};
use crate::pool::{Pool, Request};

/// The pool's multiplexed connection of the current runtime as the operations' connection
/// ([`Pool::run_async`]).
#[derive(Clone, Copy)]
struct AsyncConn<'p>(&'p Pool);

impl Conn for AsyncConn<'_> {
    fn cluster(self) -> bool {
        self.0.is_cluster()
    }

    fn query<T: FromRedisValue + Send>(
        self,
        operation: &'static str,
        request: &Request<'_>,
    ) -> impl Future<Output = Result<T, Error>> + Send {
        self.0.run_async(operation, request)
    }
}

/// One function's entries on the server, for async memoized functions (what
/// [`RedisBackend::async_core`](cachier_core::Backend::async_core) returns).
///
/// Each operation is the blocking store's, awaited on a multiplexed connection opened on the
/// caller's runtime: a hit is one awaited round trip. Same timeouts, reconnection after a
/// server restart and backoff after a failed connect as the blocking path. Waiting for a
/// computation in flight sleeps on the backend's change channel, as the blocking path does.
pub(crate) struct RedisAsyncCore {
    shared: Arc<Shared>,
    scope: Scope,
}

impl RedisAsyncCore {
    pub(crate) fn new(shared: Arc<Shared>, scope: Scope) -> RedisAsyncCore {
        RedisAsyncCore { shared, scope }
    }

    fn con(&self) -> AsyncConn<'_> {
        AsyncConn(&self.shared.pool)
    }
}

impl fmt::Debug for RedisAsyncCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAsyncCore")
            .field("server", &self.shared.shown)
            .field("keys", &self.scope.base())
            .finish()
    }
}

impl AsyncCore for RedisAsyncCore {
    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<CacheEntry>, Error>> {
        Box::pin(ops::get(self.con(), &self.scope, key))
    }

    fn put<'a>(
        &'a self,
        key: &'a Key,
        value: &'a [u8],
        claim: Option<&'a ClaimToken>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(ops::put(self.con(), &self.scope, key, value, claim))
    }

    fn claim<'a>(&'a self, key: &'a Key, lease: Duration) -> BoxFuture<'a, Result<Claim, Error>> {
        Box::pin(ops::claim(self.con(), &self.scope, key, lease))
    }

    fn claim_and_get<'a>(
        &'a self,
        key: &'a Key,
        lease: Duration,
    ) -> BoxFuture<'a, Result<ClaimAndGet, Error>> {
        Box::pin(ops::claim_and_get(self.con(), &self.scope, key, lease))
    }

    fn release<'a>(
        &'a self,
        key: &'a Key,
        claim: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(ops::release(self.con(), &self.scope, key, claim))
    }

    /// Sleeps until the key's end of claim is announced (the blocking store's wait, awaited).
    fn wait<'a>(&'a self, key: &'a Key, max: Duration) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let hub = crate::listen::hub(&self.shared.listener, &self.shared);
            let released = || async {
                Ok(!ops::get(self.con(), &self.scope, key)
                    .await?
                    .is_some_and(|entry| entry.being_calculated()))
            };
            hub.wait_key_async(
                self.scope.namespace(),
                key,
                max,
                self.shared.wait_poll,
                released,
            )
            .await
        })
    }

    fn remove<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(ops::remove(self.con(), &self.scope, key))
    }
    fn clear_cache(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(ops::clear_cache(self.con(), &self.scope))
    }

    fn clear_being_calculated(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(ops::clear_being_calculated(self.con(), &self.scope))
    }

    fn delete_stale_entries(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(ops::delete_stale_entries(
            self.con(),
            &self.scope,
            older_than,
        ))
    }
}
