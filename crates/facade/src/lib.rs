#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::sync::Arc;

use cachier_core::Backend;

#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use cachier_core::{Async, AsyncMemoized};
pub use cachier_core::{Blocking, CallOptions, MaxAge, Memoize, Memoized, DEFAULT_LEASE};
pub use cachier_settings::{
    default_cache_dir, disable_caching, enable_caching, get_global_params, reset_global_params,
    set_global_params, Error, ErrorKind, NearCache, ParamsUpdate, Result, Settings, SizeSpec,
    BACKEND_URL_ENV,
};

/// The stores, one module per backend, each behind its cargo feature. A memoized function
/// uses the global default backend unless [`Memoize::backend`] names one of these.
pub mod backends {
    /// The local file cache, shared by every process of the machine (feature `file`).
    #[cfg(feature = "file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "file")))]
    pub mod file {
        pub use cachier_backend_file::{
            file_stem, remove_unused_store, FileBackend, FileBackendBuilder, Removal,
        };
    }
    /// An in-process map (feature `memory`).
    #[cfg(feature = "memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
    pub mod memory {
        pub use cachier_backend_memory::MemoryBackend;
    }
    /// SQLite and PostgreSQL (features `sql-sqlite`, `sql-postgres`).
    #[cfg(any(feature = "sql-sqlite", feature = "sql-postgres"))]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(feature = "sql-sqlite", feature = "sql-postgres")))
    )]
    pub mod sql {
        pub use cachier_backend_sql::{SqlBackend, SqlBackendBuilder};
    }
    /// Redis (feature `redis`; `rediss://` with `redis-tls`).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub mod redis {
        pub use cachier_backend_redis::{RedisBackend, RedisBackendBuilder};
    }
    /// MongoDB (feature `mongo`).
    #[cfg(feature = "mongo")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mongo")))]
    pub mod mongo {
        pub use cachier_backend_mongo::{MongoBackend, MongoBackendBuilder};
    }
    /// S3 and S3-compatible object stores (feature `s3`).
    #[cfg(feature = "s3")]
    #[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
    pub mod s3 {
        pub use cachier_backend_s3::{S3Backend, S3BackendBuilder};
    }
}

/// For implementing a store: the traits the engine calls, what crosses them, and helpers for
/// their default behaviour. See docs/ARCHITECTURE.md in the repository for the contract.
pub mod store {
    /// How a store tells near caches of changes (`Core::watch`).
    pub use cachier_core::watch;
    pub use cachier_core::{
        block_on, claim_then_get, codec, poll_until_released, push_hex, Backend, Backoff,
        CacheEntry, Capabilities, Claim, ClaimAndGet, ClaimToken, Core, EntryInfo, Key, LiveClaim,
        Namespace,
    };
    #[cfg(feature = "async")]
    #[cfg_attr(docsrs, doc(cfg(feature = "async")))]
    pub use cachier_core::{claim_then_get_async, AsyncCore, BoxFuture, OffloadedCore};
    pub use cachier_settings::{BoxError, SharedError};
}

/// Per-function statistics (also on each memoized function: `f.stats()`).
pub mod stats {
    pub use cachier_core::{all_stats, FunctionStats, LatencySnapshot, StatsSnapshot};
}

#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
#[doc(inline)]
pub use cachier_macros::cachier;

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod url;
pub use url::{backend_from_url, shared_backend_from_url};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Starts memoizing `func` (one argument; use a tuple for several). `name` identifies the
/// function in its store: the module path and the function name are a good choice.
///
/// The store is the global default backend unless [`Memoize::backend`] names one.
///
/// ```
/// let square = cachier::memoize("docs::square", |x: u64| x * x)
///     .backend(cachier::backends::memory::MemoryBackend::new())
///     .build()?;
/// assert_eq!(square.call(4), 16);
/// # Ok::<(), cachier::Error>(())
/// ```
pub fn memoize<A, V, F>(name: &str, func: F) -> Memoize<A, V>
where
    A: Serialize + Send + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + 'static,
    F: Fn(A) -> V + Send + Sync + 'static,
{
    cachier_core::memoize(name, func).default_backend(default_backend)
}

/// Starts memoizing a function returning `Result`: `Ok` values are cached, errors are returned
/// and never cached.
///
/// ```
/// let parse = cachier::memoize_fallible("docs::parse", |text: String| text.parse::<u32>())
///     .backend(cachier::backends::memory::MemoryBackend::new())
///     .build()?;
/// assert_eq!(parse.call("42".into()), Ok(42));
/// assert!(parse.call("forty-two".into()).is_err()); // computed again on every call
/// assert_eq!(parse.stats().recalculations, 2);
/// # Ok::<(), cachier::Error>(())
/// ```
pub fn memoize_fallible<A, T, E, F>(name: &str, func: F) -> Memoize<A, Result<T, E>>
where
    A: Serialize + Send + 'static,
    T: Serialize + DeserializeOwned + Clone + Send + 'static,
    E: Send + 'static,
    F: Fn(A) -> Result<T, E> + Send + Sync + 'static,
{
    cachier_core::memoize_fallible(name, func).default_backend(default_backend)
}

/// Starts memoizing an async function; see [`memoize`]. Needs a tokio runtime.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() -> Result<(), cachier::Error> {
/// let fetch = cachier::memoize_async("docs::fetch", |id: u64| async move { format!("user {id}") })
///     .backend(cachier::backends::memory::MemoryBackend::new())
///     .build()?;
/// assert_eq!(fetch.call(7).await, "user 7"); // computed
/// assert_eq!(fetch.call(7).await, "user 7"); // served from the cache
/// assert_eq!(fetch.stats().hits, 1);
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub fn memoize_async<A, V, F, Fut>(name: &str, func: F) -> Memoize<A, V, Async>
where
    A: Serialize + Send + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = V> + Send + 'static,
{
    cachier_core::memoize_async(name, func).default_backend(default_backend)
}

/// Starts memoizing an async function returning `Result`; see [`memoize_fallible`].
///
/// ```
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() -> Result<(), cachier::Error> {
/// let lookup = cachier::memoize_async_fallible("docs::lookup", |id: u64| async move {
///     if id == 0 { Err("no user 0") } else { Ok(format!("user {id}")) }
/// })
/// .backend(cachier::backends::memory::MemoryBackend::new())
/// .build()?;
/// assert_eq!(lookup.call(7).await, Ok("user 7".to_string()));
/// assert_eq!(lookup.call(0).await, Err("no user 0")); // errors are never cached
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub fn memoize_async_fallible<A, T, E, F, Fut>(
    name: &str,
    func: F,
) -> Memoize<A, Result<T, E>, Async>
where
    A: Serialize + Send + 'static,
    T: Serialize + DeserializeOwned + Clone + Send + 'static,
    E: Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, E>> + Send + 'static,
{
    cachier_core::memoize_async_fallible(name, func).default_backend(default_backend)
}

/// Builds the global default backend (`"pickle"`, `"memory"` or a backend URL), for
/// functions that name none. URL backends are opened once and shared.
fn default_backend(settings: &Settings) -> Result<Arc<dyn Backend>> {
    if let Some(error) = settings.backend.error() {
        return Err(error.clone());
    }
    match settings.backend.as_str() {
        #[cfg(feature = "file")]
        cachier_settings::FILE_BACKEND => Ok(shared_file_backend(settings)),
        #[cfg(not(feature = "file"))]
        cachier_settings::FILE_BACKEND => Err(Error::config(
            "backend",
            "the default file backend is not compiled in; enable the `file` cargo feature of `cachier` or set the global backend to another",
        )),
        cachier_settings::MEMORY_BACKEND => shared_backend_from_url("memory:"),
        url => shared_backend_from_url(url),
    }
}

/// Checks, eagerly, what memoized functions on the global default backend will use: the global
/// backend (`CACHIER_BACKEND_URL` or [`set_global_params`]) names a backend that is compiled in,
/// and its store answers (one read; for the file backend, its cache directory exists or can be
/// created, and is writable). A service calls it at start-up to fail there, instead of running
/// every call uncached.
///
/// ```
/// cachier::set_global_params(cachier::ParamsUpdate::new().backend("memory"))?;
/// cachier::check()?;
/// # Ok::<(), cachier::Error>(())
/// ```
///
/// # Errors
/// [`Error::Config`] for a backend that is not one, or whose cargo feature is off; the store's
/// error ([`ErrorKind::Unavailable`], [`ErrorKind::Timeout`]...) when it cannot be reached.
pub fn check() -> Result<()> {
    let settings = get_global_params();
    let backend = default_backend(&settings)?;
    // The file backend opens a store for every function it is asked for: its directory is
    // checked instead, so that the check leaves no store behind.
    #[cfg(feature = "file")]
    {
        let dir = match settings.backend.as_str() {
            cachier_settings::FILE_BACKEND => Some(settings.resolved_cache_dir()),
            url => url::file_url_dir(url)?,
        };
        if let Some(dir) = dir {
            return check_cache_dir(&dir);
        }
    }
    let namespace = store::Namespace::new("cachier::check", None)?;
    let core = backend.core(&namespace)?;
    core.get(&store::Key::of(&())?).map(drop)
}

/// The file backend's directory is created on first use; creating it here is what that use
/// would do. A probe file tells whether it is writable (permissions alone do not: a read-only
/// mount, an ACL).
#[cfg(feature = "file")]
fn check_cache_dir(dir: &std::path::Path) -> Result<()> {
    let fail = |operation: &'static str, error: std::io::Error| {
        Error::backend(
            "file",
            operation,
            format!("cache directory {}: {error}", dir.display()),
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("check", e))?;
    let probe = dir.join(format!(".cachier-check-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| fail("check", e))?;
    std::fs::remove_file(&probe).map_err(|e| fail("check", e))
}

/// One [`FileBackend`](backends::file::FileBackend) per (directory, `separate_files`), so that the functions using the
/// default backend share its stores and connections.
#[cfg(feature = "file")]
fn shared_file_backend(settings: &Settings) -> Arc<dyn Backend> {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::{LazyLock, Mutex};
    type Shared = HashMap<(PathBuf, bool), Arc<dyn Backend>>;
    static BACKENDS: LazyLock<Mutex<Shared>> = LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut backends = BACKENDS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cache_dir = settings.resolved_cache_dir();
    backends
        .entry((cache_dir.clone(), settings.separate_files))
        .or_insert_with(|| {
            Arc::new(
                backends::file::FileBackend::builder()
                    .cache_dir(cache_dir)
                    .separate_files(settings.separate_files)
                    .build(),
            )
        })
        .clone()
}

/// Runtime support for the code `#[cachier]` generates; not a public API.
#[cfg(feature = "macros")]
#[doc(hidden)]
pub mod __private {
    use std::any::Any;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, OnceLock};

    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use crate::Error;

    /// The memoized handle of one `#[cachier]` function, built on first use.
    pub struct Slot {
        built: OnceLock<Result<Box<dyn Any + Send + Sync>, Error>>,
        mismatch_warned: AtomicBool,
    }

    impl Slot {
        #[allow(clippy::new_without_default)]
        pub const fn new() -> Self {
            Slot {
                built: OnceLock::new(),
                mismatch_warned: AtomicBool::new(false),
            }
        }

        /// The handle; the first call names (`derived`: from the module path, so checked for
        /// accidental sharing) and builds it. A failed build is logged once and returned as
        /// an error on every call (the function then runs uncached).
        pub fn get<M, N>(
            &'static self,
            derived: bool,
            name: impl FnOnce() -> N,
            build: impl FnOnce(&str) -> Result<M, Error>,
        ) -> Result<&'static M, Error>
        where
            M: Any + Send + Sync,
            N: AsRef<str>,
        {
            let built = self.built.get_or_init(|| {
                let name = name();
                let name = name.as_ref();
                let built = claim_name(self, name, derived).and_then(|()| build(name));
                match built {
                    Ok(handle) => Ok(Box::new(handle)),
                    Err(error) => {
                        tracing::warn!(namespace = name, %error, "cachier: cannot build this #[cachier] function's cache; it runs uncached");
                        cachier_core::eprint_if_unheard(format_args!(
                            "cannot build the cache of {name}; it runs uncached: {error}"
                        ));
                        Err(error)
                    }
                }
            });
            match built {
                Ok(handle) => handle.downcast_ref::<M>().ok_or_else(|| {
                    let message = "a #[cachier] method in a generic impl has one cache for every instantiation; memoize in a non-generic impl";
                    if !self.mismatch_warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!("cachier: {message}; it runs uncached");
                    }
                    Error::config("cachier", message)
                }),
                Err(error) => Err(error.clone()),
            }
        }
    }

    /// Refuses a derived namespace already taken by another function of this process (two
    /// same-named functions in blocks of one module), so they never share entries by accident.
    fn claim_name(slot: &'static Slot, name: &str, derived: bool) -> Result<(), Error> {
        static NAMES: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();
        if !derived {
            return Ok(());
        }
        let id = slot as *const Slot as usize;
        let mut names = NAMES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match *names.entry(name.to_owned()).or_insert(id) {
            owner if owner == id => Ok(()),
            _ => Err(Error::config(
                "name",
                format!("two #[cachier] functions are both named {name:?} (same-named functions in blocks of one module); give one of them `name = \"...\"`"),
            )),
        }
    }

    /// A method's receiver inside the memoized arguments: not part of the key (it encodes to
    /// nothing), so every instance shares the cache (`allow_non_static_methods`).
    pub struct Receiver<T>(pub T);

    impl<T> serde::Serialize for Receiver<T> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_unit()
        }
    }

    /// `module::Type::method` for a method of `T`.
    pub fn method_namespace<T: ?Sized>(module: &str, method: &str) -> String {
        let full = std::any::type_name::<T>();
        let path = full.split('<').next().unwrap_or(full);
        let ty = path.rsplit("::").next().unwrap_or(path);
        format!("{module}::{ty}::{method}")
    }

    /// Fixes a key closure's argument type, for inference.
    pub fn key_fn<A, K, F: Fn(&A) -> K>(key: F) -> F {
        key
    }

    /// What a `#[cachier]` function can store; named in the generated code at the return
    /// type, so that a missing derive is reported there, in these words.
    #[diagnostic::on_unimplemented(
        message = "the value of a #[cachier] function is stored and handed out again, so `{Self}` must implement `Serialize`, `Deserialize` and `Clone`",
        label = "derive `Deserialize`, `Serialize` and `Clone` for this type",
        note = "add `#[derive(Clone, serde::Serialize, serde::Deserialize)]` to `{Self}`, or return a type that has them"
    )]
    pub trait CachedValue: Serialize + DeserializeOwned + Clone + Send + 'static {}
    impl<T: Serialize + DeserializeOwned + Clone + Send + 'static> CachedValue for T {}

    /// [`crate::memoize`], with the value bound by [`CachedValue`].
    pub fn memoize<A, V, F>(name: &str, func: F) -> crate::Memoize<A, V>
    where
        A: Serialize + Send + 'static,
        V: CachedValue,
        F: Fn(A) -> V + Send + Sync + 'static,
    {
        crate::memoize(name, func)
    }

    /// [`crate::memoize_fallible`], with the value bound by [`CachedValue`].
    pub fn memoize_fallible<A, T, E, F>(name: &str, func: F) -> crate::Memoize<A, Result<T, E>>
    where
        A: Serialize + Send + 'static,
        T: CachedValue,
        E: Send + 'static,
        F: Fn(A) -> Result<T, E> + Send + Sync + 'static,
    {
        crate::memoize_fallible(name, func)
    }

    /// [`crate::memoize_async`], with the value bound by [`CachedValue`].
    #[cfg(feature = "async")]
    pub fn memoize_async<A, V, F, Fut>(name: &str, func: F) -> crate::Memoize<A, V, crate::Async>
    where
        A: Serialize + Send + 'static,
        V: CachedValue,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = V> + Send + 'static,
    {
        crate::memoize_async(name, func)
    }

    /// [`crate::memoize_async_fallible`], with the value bound by [`CachedValue`].
    #[cfg(feature = "async")]
    pub fn memoize_async_fallible<A, T, E, F, Fut>(
        name: &str,
        func: F,
    ) -> crate::Memoize<A, Result<T, E>, crate::Async>
    where
        A: Serialize + Send + 'static,
        T: CachedValue,
        E: Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<T, E>> + Send + 'static,
    {
        crate::memoize_async_fallible(name, func)
    }
}
