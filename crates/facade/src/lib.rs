#![doc = include_str!("../../../README.md")]
#![warn(missing_docs)]

use std::sync::Arc;

pub use cachier_core::{
    codec, poll_until_released, Backend, CacheEntry, CallOptions, Claim, ClaimToken, Core, Key,
    LocalOptions, MaxAge, Memoize, Memoized, Namespace, DEFAULT_LEASE,
};
pub use cachier_settings::{
    default_cache_dir, disable_caching, enable_caching, get_global_params, parse_bytes,
    parse_duration, redact_url, reset_global_params, set_global_params, BackendSpec, BoxError,
    Error, ParamsUpdate, Result, Settings, SizeSpec, BACKEND_URL_ENV,
};

#[cfg(feature = "memory")]
pub use cachier_backend_memory::MemoryBackend;
#[cfg(feature = "pickle")]
pub use cachier_backend_pickle::{file_stem, FileBackend, FileBackendBuilder, FileCore};
#[cfg(feature = "redis")]
pub use cachier_backend_redis::{RedisBackend, RedisBuilder};
pub use cachier_core::{all_stats, EntryInfo, FunctionStats, LatencySnapshot, StatsSnapshot};
#[cfg(feature = "async")]
pub use cachier_core::{Async, AsyncCore, AsyncMemoized, BoxFuture, OffloadedCore};

#[cfg(feature = "metrics")]
pub mod metrics;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Starts memoizing `func` (one argument; use a tuple for several). `name` identifies the
/// function in its store: the module path and the function name are a good choice.
///
/// The store is the global default backend unless [`Memoize::backend`] names one.
///
/// ```
/// let square = cachier::memoize("docs::square", |x: u64| x * x)
///     .backend(cachier::MemoryBackend::new())
///     .build()?;
/// assert_eq!(square.call(4), 16);
/// # Ok::<(), cachier::Error>(())
/// ```
pub fn memoize<A, V, F>(name: &str, func: F) -> Memoize<A, V>
where
    A: Serialize + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(A) -> V + Send + Sync + 'static,
{
    cachier_core::memoize(name, func).default_backend(default_backend)
}

/// Starts memoizing a function returning `Result`: `Ok` values are cached, errors are returned
/// and never cached.
pub fn memoize_fallible<A, T, E, F>(name: &str, func: F) -> Memoize<A, Result<T, E>>
where
    A: Serialize + Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Send + 'static,
    F: Fn(A) -> Result<T, E> + Send + Sync + 'static,
{
    cachier_core::memoize_fallible(name, func).default_backend(default_backend)
}

/// Starts memoizing an async function; see [`memoize`]. Needs a tokio runtime.
#[cfg(feature = "async")]
pub fn memoize_async<A, V, F, Fut>(name: &str, func: F) -> Memoize<A, V, Async>
where
    A: Serialize + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = V> + Send + 'static,
{
    cachier_core::memoize_async(name, func).default_backend(default_backend)
}

/// Starts memoizing an async function returning `Result`; see [`memoize_fallible`].
#[cfg(feature = "async")]
pub fn memoize_async_fallible<A, T, E, F, Fut>(
    name: &str,
    func: F,
) -> Memoize<A, Result<T, E>, Async>
where
    A: Serialize + Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, E>> + Send + 'static,
{
    cachier_core::memoize_async_fallible(name, func).default_backend(default_backend)
}

/// Builds the global default backend by name, for functions that name none.
pub fn default_backend(name: &str, local: &LocalOptions) -> Result<Arc<dyn Backend>> {
    let _ = local;
    match name {
        #[cfg(feature = "memory")]
        cachier_settings::MEMORY_BACKEND => Ok(Arc::new(MemoryBackend::global())),
        #[cfg(feature = "pickle")]
        cachier_settings::FILE_BACKEND => Ok(shared_file_backend(local)),
        other => Err(Error::config(
            "backend",
            format!("the default backend {other:?} is not compiled in; enable its cargo feature of `cachier` or set the global backend to one that is"),
        )),
    }
}

/// One [`FileBackend`] per (directory, `separate_files`), so that the functions using the
/// default backend share its stores and connections.
#[cfg(feature = "pickle")]
fn shared_file_backend(local: &LocalOptions) -> Arc<dyn Backend> {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::{LazyLock, Mutex};
    type Shared = HashMap<(PathBuf, bool), Arc<dyn Backend>>;
    static BACKENDS: LazyLock<Mutex<Shared>> = LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut backends = BACKENDS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    backends
        .entry((local.cache_dir.clone(), local.separate_files))
        .or_insert_with(|| {
            Arc::new(
                FileBackend::builder()
                    .cache_dir(local.cache_dir.clone())
                    .separate_files(local.separate_files)
                    .build(),
            )
        })
        .clone()
}
