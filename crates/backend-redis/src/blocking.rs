//! The blocking store: each operation of [`ops`] completed on the caller's thread with
//! [`block_on`] over the pool of synchronous connections.

use std::fmt;
use std::future::{ready, Future};
use std::sync::Arc;
use std::time::Duration;

use cachier_core::watch::{ChangeSink, Watch};
use cachier_core::{
    block_on, CacheEntry, Capabilities, Claim, ClaimAndGet, ClaimToken, Core, EntryInfo, Error, Key,
};
use redis::FromRedisValue;

use crate::backend::Shared;
use crate::ops::{self, Conn, Scope};
use crate::pool::{Pool, Request};

/// The pool of synchronous connections as the operations' connection: [`Pool::run`] sends
/// each request when its future is made, so the future is ready at once and [`block_on`]
/// completes a whole operation in one poll, with no runtime.
#[derive(Clone, Copy)]
pub(crate) struct SyncConn<'p>(pub(crate) &'p Pool);

impl Conn for SyncConn<'_> {
    fn cluster(self) -> bool {
        self.0.is_cluster()
    }

    fn query<T: FromRedisValue + Send>(
        self,
        operation: &'static str,
        request: &Request<'_>,
    ) -> impl Future<Output = Result<T, Error>> + Send {
        ready(self.0.run(operation, |con| request.send(con)))
    }
}

/// One function's entries on the server.
pub(crate) struct RedisCore {
    shared: Arc<Shared>,
    scope: Scope,
}

impl RedisCore {
    pub(crate) fn new(shared: Arc<Shared>, scope: Scope) -> RedisCore {
        RedisCore { shared, scope }
    }

    fn con(&self) -> SyncConn<'_> {
        SyncConn(&self.shared.pool)
    }
}

impl fmt::Debug for RedisCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCore")
            .field("server", &self.shared.shown)
            .field("keys", &self.scope.base())
            .finish()
    }
}

impl Core for RedisCore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            leases: true,
            listing: true,
            cache_dir: None,
            in_process: false,
        }
    }

    fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        block_on(ops::get(self.con(), &self.scope, key))
    }

    fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error> {
        block_on(ops::put(self.con(), &self.scope, key, value, claim))
    }

    fn claim(&self, key: &Key, lease: Duration) -> Result<Claim, Error> {
        block_on(ops::claim(self.con(), &self.scope, key, lease))
    }

    fn claim_and_get(&self, key: &Key, lease: Duration) -> Result<ClaimAndGet, Error> {
        block_on(ops::claim_and_get(self.con(), &self.scope, key, lease))
    }

    fn renew(&self, key: &Key, claim: &ClaimToken, lease: Duration) -> Result<bool, Error> {
        block_on(ops::renew(self.con(), &self.scope, key, claim, lease))
    }

    fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
        block_on(ops::release(self.con(), &self.scope, key, claim))
    }

    /// Every write announces its change on the prefix's channel, which the backend's listener
    /// hears (see `listen.rs`).
    fn watch(&self, sink: Arc<dyn ChangeSink>) -> Result<Watch, Error> {
        let hub = crate::listen::hub(&self.shared.listener, &self.shared);
        Ok(Watch::Pushed(hub.subscribe(self.scope.namespace(), sink)))
    }

    /// Sleeps until the key's end of claim is announced, looking at the store every
    /// `wait_poll` meanwhile (and every 25 ms at most while the channel is down).
    fn wait(&self, key: &Key, max: Duration) -> Result<bool, Error> {
        let hub = crate::listen::hub(&self.shared.listener, &self.shared);
        hub.wait_key(
            self.scope.namespace(),
            key,
            max,
            self.shared.wait_poll,
            || Ok(!self.get(key)?.is_some_and(|entry| entry.being_calculated())),
        )
    }

    fn remove(&self, key: &Key) -> Result<bool, Error> {
        block_on(ops::remove(self.con(), &self.scope, key))
    }

    fn clear_cache(&self) -> Result<(), Error> {
        block_on(ops::clear_cache(self.con(), &self.scope))
    }

    fn clear_being_calculated(&self) -> Result<(), Error> {
        block_on(ops::clear_being_calculated(self.con(), &self.scope))
    }

    fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        block_on(ops::delete_stale_entries(
            self.con(),
            &self.scope,
            older_than,
        ))
    }

    fn len(&self) -> Result<u64, Error> {
        block_on(ops::len(self.con(), &self.scope))
    }

    fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
        block_on(ops::entries(self.con(), &self.scope))
    }
}
