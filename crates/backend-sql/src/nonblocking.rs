//! The async store: [`SqlAsyncCore`] awaits each operation of [`Ops`] on the async PostgreSQL
//! pool, on the caller's runtime. SQLite has no async driver: its async store is core's
//! `OffloadedCore` (see `SqlBackend::async_core`).

use std::sync::Arc;
use std::time::Duration;

use cachier_core::{AsyncCore, Backoff, BoxFuture, CacheEntry, Claim, ClaimToken, Error, Key};

use crate::ops::Ops;
use crate::postgres::PgAsyncPool;

/// One function's rows through the async PostgreSQL pool.
#[derive(Debug)]
pub(crate) struct SqlAsyncCore {
    pool: Arc<PgAsyncPool>,
    function_id: String,
}

impl SqlAsyncCore {
    pub(crate) fn new(pool: Arc<PgAsyncPool>, function_id: &str) -> SqlAsyncCore {
        SqlAsyncCore {
            pool,
            function_id: function_id.to_owned(),
        }
    }

    fn ops(&self) -> Ops<'_, PgAsyncPool> {
        Ops::new(&*self.pool, &self.function_id)
    }
}

impl AsyncCore for SqlAsyncCore {
    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<CacheEntry>, Error>> {
        Box::pin(self.ops().get(key))
    }

    fn put<'a>(
        &'a self,
        key: &'a Key,
        value: &'a [u8],
        claim: Option<&'a ClaimToken>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.ops().put(key, value, claim))
    }

    fn claim<'a>(&'a self, key: &'a Key, lease: Duration) -> BoxFuture<'a, Result<Claim, Error>> {
        Box::pin(self.ops().claim(key, lease))
    }

    fn release<'a>(
        &'a self,
        key: &'a Key,
        claim: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.ops().release(key, claim))
    }

    /// Sleeps until the end of the key's claim is notified (the blocking store's wait,
    /// awaited); a namespace too long to be notified polls with a 1–25 ms backoff.
    fn wait<'a>(&'a self, key: &'a Key, max: Duration) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let released = || async {
                Ok(!self
                    .ops()
                    .get(key)
                    .await?
                    .is_some_and(|e| e.being_calculated()))
            };
            let server = self.pool.server();
            if let Some(outcome) = server
                .wait_async(&self.function_id, key, max, released)
                .await
            {
                return outcome;
            }
            let mut backoff = Backoff::until(max);
            loop {
                if released().await? {
                    return Ok(true);
                }
                match backoff.next_pause() {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => return Ok(false),
                }
            }
        })
    }

    fn remove<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(self.ops().remove(key))
    }
    fn clear_cache(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.ops().clear_cache())
    }

    fn clear_being_calculated(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.ops().clear_being_calculated())
    }

    fn delete_stale_entries(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(self.ops().delete_stale_entries(older_than))
    }
}
