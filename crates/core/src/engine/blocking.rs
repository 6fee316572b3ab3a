//! Blocking memoized functions: the algorithm runs on the caller's thread.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::call::{compute_claimed, near_hit, run, Held, Runner};
use super::flight::{Flight, Landing};
use super::params::Want;
use super::Shared;
use crate::{block_on, pool, CacheEntry, CallOptions, Claim, ClaimAndGet, ClaimToken, Error, Key};

/// A memoized function. Cheap to clone; share it between threads freely.
///
/// ```
/// use cachier_core::CallOptions;
///
/// let square = cachier_core::memoize("docs::square", |x: u64| x * x)
///     .backend(cachier_backend_memory::MemoryBackend::new())
///     .build()?;
/// assert_eq!(square.call(12), 144); // computed and stored
/// assert_eq!(square.call(12), 144); // served from the store
/// assert_eq!(square.call_with(12, &CallOptions::new().overwrite_cache(true)), 144); // recomputed
/// assert_eq!(square.try_call(3)?, 9); // a store failure would be an Err here
/// square.precache_value(&5, 25)?;
/// assert!(square.invalidate(&12)?); // one entry gone, the others stay
/// square.clear_cache()?;
/// let stats = square.stats();
/// assert_eq!((stats.hits, stats.recalculations), (1, 3));
/// # Ok::<(), cachier_core::Error>(())
/// ```
pub struct Memoized<A, R> {
    inner: Arc<Inner<A, R>>,
}

struct Inner<A, R> {
    shared: Shared<A, R>,
    func: Arc<dyn Fn(A) -> R + Send + Sync>,
}

impl<A, R> Clone for Memoized<A, R> {
    fn clone(&self) -> Self {
        Memoized {
            inner: self.inner.clone(),
        }
    }
}

impl<A, R> fmt::Debug for Memoized<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memoized")
            .field("namespace", &self.inner.shared.namespace)
            .field("backend", &self.inner.shared.backend_name)
            .finish_non_exhaustive()
    }
}

/// Drives the algorithm with the store's blocking operations: its futures never suspend.
struct Direct<'a, A, R>(&'a Arc<Inner<A, R>>);

impl<A, R> Runner<A, R> for Direct<'_, A, R>
where
    A: Serialize + Send + 'static,
    R: Send + 'static,
{
    fn shared(&self) -> &Shared<A, R> {
        &self.0.shared
    }
    fn get<'a>(
        &'a self,
        key: &'a Key,
    ) -> impl Future<Output = Result<Option<CacheEntry>, Error>> + Send + 'a {
        std::future::ready(self.0.shared.core.get(key))
    }
    fn claim<'a>(&'a self, key: &'a Key) -> impl Future<Output = Result<Claim, Error>> + Send + 'a {
        std::future::ready(self.0.shared.core.claim(key, self.0.shared.lease))
    }
    fn claim_and_get<'a>(
        &'a self,
        key: &'a Key,
    ) -> impl Future<Output = Result<ClaimAndGet, Error>> + Send + 'a {
        std::future::ready(self.0.shared.core.claim_and_get(key, self.0.shared.lease))
    }
    fn put<'a>(
        &'a self,
        key: &'a Key,
        value: &'a [u8],
        claim: Option<&'a ClaimToken>,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        std::future::ready(self.0.shared.core.put(key, value, claim))
    }
    fn release<'a>(
        &'a self,
        key: &'a Key,
        claim: &'a ClaimToken,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        std::future::ready(self.0.shared.core.release(key, claim))
    }
    fn wait<'a>(
        &'a self,
        key: &'a Key,
        max: Duration,
    ) -> impl Future<Output = Result<bool, Error>> + Send + 'a {
        std::future::ready(self.0.shared.core.wait(key, max))
    }
    fn wait_flight<'a>(
        &'a self,
        flight: &'a Flight,
        max: Duration,
    ) -> impl Future<Output = Landing> + Send + 'a {
        std::future::ready(flight.wait_blocking(max))
    }
    fn compute(&self, args: A) -> impl Future<Output = R> + Send + '_ {
        std::future::ready((self.0.func)(args))
    }
    fn refresh_in_background(&self, args: A, key: Key, claim: Held, want: Want) {
        let inner = self.0.clone();
        pool::submit(move || {
            let driver = Direct(&inner);
            let trace = inner.shared.trace(false);
            let entry = inner.shared.core.get(&key);
            let recheck = Some((&want, entry));
            let refresh = compute_claimed(&driver, args, key, claim, recheck, false, &trace, None);
            if let Err(error) = block_on(refresh) {
                tracing::warn!(%key, %error, "cachier: background refresh failed");
            }
        });
    }
}

impl<A, R> Memoized<A, R>
where
    A: Serialize + Send + 'static,
    R: Send + 'static,
{
    pub(super) fn new(shared: Shared<A, R>, func: Arc<dyn Fn(A) -> R + Send + Sync>) -> Self {
        Memoized {
            inner: Arc::new(Inner { shared, func }),
        }
    }

    /// Calls the memoized function. Never fails because of the cache: if the store fails, the
    /// error is logged through `tracing`, counted, and the function computed uncached.
    pub fn call(&self, args: A) -> R {
        self.call_with(args, &CallOptions::new())
    }

    /// [`Memoized::call`] with per-call options.
    pub fn call_with(&self, args: A, options: &CallOptions) -> R {
        if let Some(value) = near_hit(&self.inner.shared, &args, options) {
            return value;
        }
        match block_on(run(&Direct(&self.inner), args, options, false)) {
            Ok(value) => value,
            Err(_) => unreachable!("lenient calls handle every store error"),
        }
    }

    /// Strict mode: like [`Memoized::call`], but a store failure is returned as
    /// [`Error::Backend`] instead of being logged and worked around.
    pub fn try_call(&self, args: A) -> Result<R, Error> {
        self.try_call_with(args, &CallOptions::new())
    }

    /// [`Memoized::try_call`] with per-call options.
    pub fn try_call_with(&self, args: A, options: &CallOptions) -> Result<R, Error> {
        if let Some(value) = near_hit(&self.inner.shared, &args, options) {
            return Ok(value);
        }
        block_on(run(&Direct(&self.inner), args, options, true))
    }

    /// Stores `value` as the result for `args` (subject to the size limit) and returns it.
    pub fn precache_value(&self, args: &A, value: R) -> Result<R, Error> {
        let shared = &self.inner.shared;
        let key = shared.key(args)?;
        let preview = shared.preview(args);
        if let Some(bytes) =
            shared.encode_for_store(&value, preview.as_deref(), &shared.trace(false))
        {
            let stored = shared.core.put(&key, &bytes, None);
            shared.forget_near(Some(&key));
            stored?;
        }
        Ok(value)
    }

    /// Deletes the entry cached for `args` (in every process sharing the store); returns
    /// whether there was one, so the next call for `args` computes again. Other entries stay.
    ///
    /// A computation of `args` in flight is left alone: its claim stays, its result is stored
    /// when it ends, and the callers waiting for it get that result. Invalidating never
    /// starts a second computation of a key that is being computed.
    pub fn invalidate(&self, args: &A) -> Result<bool, Error> {
        let key = self.inner.shared.key(args)?;
        let removed = self.inner.shared.core.remove(&key);
        self.inner.shared.forget_near(Some(&key));
        removed
    }

    /// Deletes every entry of this function.
    pub fn clear_cache(&self) -> Result<(), Error> {
        let cleared = self.inner.shared.core.clear_cache();
        self.inner.shared.forget_near(None);
        cleared
    }

    /// Drops every claim of this function, so the next caller computes.
    pub fn clear_being_calculated(&self) -> Result<(), Error> {
        self.inner.shared.flights.detach_all();
        self.inner.shared.core.clear_being_calculated()
    }

    /// Deletes entries older than `older_than` now (what `cleanup_stale` does in the
    /// background); returns how many.
    pub fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        let deleted = self.inner.shared.core.delete_stale_entries(older_than);
        self.inner.shared.forget_near(None);
        deleted
    }

    shared_accessors!();
}
