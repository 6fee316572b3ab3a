//! Async memoized functions: the same algorithm, awaiting the store and the function.
//!
//! Unlike cachier's async path, callers wait for a computation in flight (instead of
//! recomputing in parallel), `next_time` refreshes once per key, and a cancelled leader
//! releases its claim so that a waiter takes over.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::call::{compute_claimed, near_hit, run, Held, Runner};
use super::flight::{Flight, Landing};
use super::params::Want;
use super::value::ValueCodec;
use super::{Kind, Memoize, Shared};
use crate::{
    AsyncCore, Backend, BoxFuture, CacheEntry, CallOptions, Claim, ClaimAndGet, ClaimToken, Error,
    Key,
};

type AsyncFunc<A, R> = Arc<dyn Fn(A) -> BoxFuture<'static, R> + Send + Sync>;

/// [`Kind`] of async functions (built by [`memoize_async`]).
#[derive(Debug, Clone, Copy)]
pub enum Async {}

impl<A, R> Kind<A, R> for Async
where
    A: Serialize + Send + 'static,
    R: Send + 'static,
{
    type Func = AsyncFunc<A, R>;
    type Built = AsyncMemoized<A, R>;
    fn finish(
        shared: Shared<A, R>,
        func: Self::Func,
        backend: &dyn Backend,
    ) -> Result<AsyncMemoized<A, R>, Error> {
        let store = backend.async_core(&shared.namespace, &shared.core)?;
        Ok(AsyncMemoized {
            inner: Arc::new(Inner {
                shared,
                func,
                store,
            }),
        })
    }
}

fn boxed<A, R, F, Fut>(func: F) -> AsyncFunc<A, R>
where
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    Arc::new(move |args: A| -> BoxFuture<'static, R> { Box::pin(func(args)) })
}

/// Starts memoizing an async function (one argument; use a tuple for several). See
/// [`memoize`](crate::memoize) for the rules; the result is an [`AsyncMemoized`].
pub fn memoize_async<A, V, F, Fut>(name: &str, func: F) -> Memoize<A, V, Async>
where
    A: Serialize + Send + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = V> + Send + 'static,
{
    Memoize::new(name, boxed(func), ValueCodec::plain())
}

/// Starts memoizing an async function returning `Result`: `Ok` values are cached, errors are
/// returned and never cached.
pub fn memoize_async_fallible<A, T, E, F, Fut>(
    name: &str,
    func: F,
) -> Memoize<A, Result<T, E>, Async>
where
    A: Serialize + Send + 'static,
    T: Serialize + DeserializeOwned + Clone + Send + 'static,
    E: Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    Memoize::new(name, boxed(func), ValueCodec::fallible())
}

/// An async memoized function. Cheap to clone. Needs a tokio runtime.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() -> Result<(), cachier_core::Error> {
/// let fetch = cachier_core::memoize_async("docs::fetch", |id: u64| async move { id * 10 })
///     .backend(cachier_backend_memory::MemoryBackend::new())
///     .build()?;
/// assert_eq!(fetch.call(4).await, 40); // computed and stored
/// assert_eq!(fetch.call(4).await, 40); // served from the store
/// assert_eq!(fetch.try_call(5).await?, 50);
/// assert!(fetch.invalidate(&4).await?);
/// fetch.clear_cache().await?;
/// assert_eq!(fetch.stats().hits, 1);
/// # Ok(())
/// # }
/// ```
pub struct AsyncMemoized<A, R> {
    inner: Arc<Inner<A, R>>,
}

struct Inner<A, R> {
    shared: Shared<A, R>,
    func: AsyncFunc<A, R>,
    store: Arc<dyn AsyncCore>,
}

impl<A, R> Clone for AsyncMemoized<A, R> {
    fn clone(&self) -> Self {
        AsyncMemoized {
            inner: self.inner.clone(),
        }
    }
}

impl<A, R> fmt::Debug for AsyncMemoized<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncMemoized")
            .field("namespace", &self.inner.shared.namespace)
            .field("backend", &self.inner.shared.backend_name)
            .finish_non_exhaustive()
    }
}

/// Drives the algorithm with the store's async operations.
struct Awaiting<'a, A, R>(&'a Arc<Inner<A, R>>);

impl<A, R> Runner<A, R> for Awaiting<'_, A, R>
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
        self.0.store.get(key)
    }
    fn claim<'a>(&'a self, key: &'a Key) -> impl Future<Output = Result<Claim, Error>> + Send + 'a {
        self.0.store.claim(key, self.0.shared.lease)
    }
    fn claim_and_get<'a>(
        &'a self,
        key: &'a Key,
    ) -> impl Future<Output = Result<ClaimAndGet, Error>> + Send + 'a {
        self.0.store.claim_and_get(key, self.0.shared.lease)
    }
    fn put<'a>(
        &'a self,
        key: &'a Key,
        value: &'a [u8],
        claim: Option<&'a ClaimToken>,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        self.0.store.put(key, value, claim)
    }
    fn release<'a>(
        &'a self,
        key: &'a Key,
        claim: &'a ClaimToken,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        self.0.store.release(key, claim)
    }
    fn wait<'a>(
        &'a self,
        key: &'a Key,
        max: Duration,
    ) -> impl Future<Output = Result<bool, Error>> + Send + 'a {
        self.0.store.wait(key, max)
    }
    async fn wait_flight(&self, flight: &Flight, max: Duration) -> Landing {
        tokio::time::timeout(max, flight.landed())
            .await
            .unwrap_or(Landing::TimedOut)
    }
    fn compute(&self, args: A) -> impl Future<Output = R> + Send + '_ {
        (self.0.func)(args)
    }
    fn refresh_in_background(&self, args: A, key: Key, claim: Held, want: Want) {
        let inner = self.0.clone();
        tokio::spawn(async move {
            let driver = Awaiting(&inner);
            let trace = inner.shared.trace(false);
            let entry = inner.store.get(&key).await;
            let recheck = Some((&want, entry));
            let refresh = compute_claimed(&driver, args, key, claim, recheck, false, &trace, None);
            if let Err(error) = refresh.await {
                tracing::warn!(%key, %error, "cachier: background refresh failed");
            }
        });
    }
}

impl<A, R> AsyncMemoized<A, R>
where
    A: Serialize + Send + 'static,
    R: Send + 'static,
{
    /// Calls the memoized function. Never fails because of the cache (see
    /// [`Memoized::call`](crate::Memoized::call)).
    pub async fn call(&self, args: A) -> R {
        self.call_with(args, &CallOptions::new()).await
    }

    /// [`AsyncMemoized::call`] with per-call options.
    pub async fn call_with(&self, args: A, options: &CallOptions) -> R {
        if let Some(value) = near_hit(&self.inner.shared, &args, options) {
            return value;
        }
        match run(&Awaiting(&self.inner), args, options, false).await {
            Ok(value) => value,
            Err(_) => unreachable!("lenient calls handle every store error"),
        }
    }

    /// Strict mode: a store failure is returned as [`Error::Backend`].
    pub async fn try_call(&self, args: A) -> Result<R, Error> {
        self.try_call_with(args, &CallOptions::new()).await
    }

    /// [`AsyncMemoized::try_call`] with per-call options.
    pub async fn try_call_with(&self, args: A, options: &CallOptions) -> Result<R, Error> {
        if let Some(value) = near_hit(&self.inner.shared, &args, options) {
            return Ok(value);
        }
        run(&Awaiting(&self.inner), args, options, true).await
    }

    /// Stores `value` as the result for `args` (subject to the size limit) and returns it.
    pub async fn precache_value(&self, args: &A, value: R) -> Result<R, Error> {
        let shared = &self.inner.shared;
        let key = shared.key(args)?;
        let preview = shared.preview(args);
        if let Some(bytes) =
            shared.encode_for_store(&value, preview.as_deref(), &shared.trace(false))
        {
            let stored = self.inner.store.put(&key, &bytes, None).await;
            self.inner.shared.forget_near(Some(&key));
            stored?;
        }
        Ok(value)
    }

    /// Deletes the entry cached for `args` (in every process sharing the store); returns
    /// whether there was one. Other entries stay, and so does a computation of `args` in
    /// flight: its result is stored when it ends, and its waiters get it (see
    /// [`Memoized::invalidate`](crate::Memoized::invalidate)).
    pub async fn invalidate(&self, args: &A) -> Result<bool, Error> {
        let key = self.inner.shared.key(args)?;
        let removed = self.inner.store.remove(&key).await;
        self.inner.shared.forget_near(Some(&key));
        removed
    }

    /// Deletes every entry of this function.
    pub async fn clear_cache(&self) -> Result<(), Error> {
        let cleared = self.inner.store.clear_cache().await;
        self.inner.shared.forget_near(None);
        cleared
    }

    /// Drops every claim of this function, so the next caller computes.
    pub async fn clear_being_calculated(&self) -> Result<(), Error> {
        self.inner.shared.flights.detach_all();
        self.inner.store.clear_being_calculated().await
    }

    /// Deletes entries older than `older_than` now; returns how many.
    pub async fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        let deleted = self.inner.store.delete_stale_entries(older_than).await;
        self.inner.shared.forget_near(None);
        deleted
    }

    shared_accessors!();
}
