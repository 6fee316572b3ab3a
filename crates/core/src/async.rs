//! The asynchronous face of a store, for async memoized functions.
//!
//! Backends with native async drivers implement [`AsyncCore`] directly; every other backend
//! gets [`OffloadedCore`], which runs the blocking [`Core`] operations on tokio's blocking pool
//! so that they never block the executor.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::{Backoff, CacheEntry, Claim, ClaimAndGet, ClaimToken, Core, Error, Key};

/// A boxed, `Send` future (what [`AsyncCore`]'s methods return, so that it stays object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Core`]'s operations as futures. Same contract, method for method; leases are renewed
/// through the blocking [`Core::renew`] by the engine's heartbeat thread.
pub trait AsyncCore: Send + Sync {
    /// See [`Core::get`].
    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<CacheEntry>, Error>>;
    /// See [`Core::put`].
    fn put<'a>(
        &'a self,
        key: &'a Key,
        value: &'a [u8],
        claim: Option<&'a ClaimToken>,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// See [`Core::claim`].
    fn claim<'a>(&'a self, key: &'a Key, lease: Duration) -> BoxFuture<'a, Result<Claim, Error>>;
    /// See [`Core::claim_and_get`].
    fn claim_and_get<'a>(
        &'a self,
        key: &'a Key,
        lease: Duration,
    ) -> BoxFuture<'a, Result<ClaimAndGet, Error>> {
        Box::pin(claim_then_get_async(self, key, lease))
    }
    /// See [`Core::release`].
    fn release<'a>(
        &'a self,
        key: &'a Key,
        claim: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// See [`Core::wait`]. The default polls [`AsyncCore::get`] with a short backoff, sleeping
    /// on the runtime's timer.
    fn wait<'a>(&'a self, key: &'a Key, max: Duration) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            let mut backoff = Backoff::until(max);
            loop {
                match self.get(key).await? {
                    Some(entry) if entry.being_calculated() => {}
                    _ => return Ok(true),
                }
                match backoff.next_pause() {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => return Ok(false),
                }
            }
        })
    }
    /// See [`Core::remove`]; the default is [`Error::Unsupported`], like `Core::remove`'s.
    fn remove<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<bool, Error>> {
        let _ = key;
        Box::pin(std::future::ready(Err(Error::Unsupported {
            backend: "custom",
            operation: "removing an entry",
        })))
    }
    /// See [`Core::clear_cache`].
    fn clear_cache(&self) -> BoxFuture<'_, Result<(), Error>>;
    /// See [`Core::clear_being_calculated`].
    fn clear_being_calculated(&self) -> BoxFuture<'_, Result<(), Error>>;
    /// See [`Core::delete_stale_entries`].
    fn delete_stale_entries(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, Error>>;
}

/// A blocking [`Core`] made async: every operation runs on tokio's blocking pool.
#[derive(Clone)]
pub struct OffloadedCore(pub Arc<dyn Core>);

impl OffloadedCore {
    fn offload<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn Core) -> Result<T, Error> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, Error>> {
        let core = self.0.clone();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || op(&*core)).await {
                Ok(result) => result,
                Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                Err(join) => Err(Error::backend("async", "offload", join)),
            }
        })
    }
}

impl AsyncCore for OffloadedCore {
    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<CacheEntry>, Error>> {
        let key = *key;
        self.offload(move |core| core.get(&key))
    }
    fn put<'a>(
        &'a self,
        key: &'a Key,
        value: &'a [u8],
        claim: Option<&'a ClaimToken>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let (key, value, claim) = (*key, value.to_vec(), claim.cloned());
        self.offload(move |core| core.put(&key, &value, claim.as_ref()))
    }
    fn claim<'a>(&'a self, key: &'a Key, lease: Duration) -> BoxFuture<'a, Result<Claim, Error>> {
        let key = *key;
        self.offload(move |core| core.claim(&key, lease))
    }
    fn claim_and_get<'a>(
        &'a self,
        key: &'a Key,
        lease: Duration,
    ) -> BoxFuture<'a, Result<ClaimAndGet, Error>> {
        let key = *key;
        self.offload(move |core| core.claim_and_get(&key, lease))
    }
    fn release<'a>(
        &'a self,
        key: &'a Key,
        claim: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let (key, claim) = (*key, claim.clone());
        self.offload(move |core| core.release(&key, &claim))
    }
    fn remove<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<bool, Error>> {
        let key = *key;
        self.offload(move |core| core.remove(&key))
    }
    fn clear_cache(&self) -> BoxFuture<'_, Result<(), Error>> {
        self.offload(|core| core.clear_cache())
    }
    fn clear_being_calculated(&self) -> BoxFuture<'_, Result<(), Error>> {
        self.offload(|core| core.clear_being_calculated())
    }
    fn delete_stale_entries(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, Error>> {
        self.offload(move |core| core.delete_stale_entries(older_than))
    }
}

/// [`AsyncCore::claim_and_get`] in two steps: a claim, then (once claimed) a read.
pub async fn claim_then_get_async<C: AsyncCore + ?Sized>(
    core: &C,
    key: &Key,
    lease: Duration,
) -> Result<ClaimAndGet, Error> {
    let claim = core.claim(key, lease).await?;
    let entry = match claim {
        Claim::Claimed(_) => core.get(key).await,
        Claim::Busy => Ok(None),
    };
    Ok(ClaimAndGet { claim, entry })
}
