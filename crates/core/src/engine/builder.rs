//! Configuring a memoized function: the `memoize*` entry points and [`Memoize`], whose
//! `build` resolves the build-time parameters and opens the function's store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cachier_settings::{global_params, Settings, SizeSpec};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::flight::Flights;
use super::near::Near;
use super::params::CallParams;
use super::value::ValueCodec;
use super::{FailureLog, Memoized, Shared, DEFAULT_LEASE};
use crate::key::ArgBytes;
use crate::stats;
use crate::{Backend, Error, Namespace, NearCache};

/// Builds the backend of a function that names none, from the global settings with the
/// function's own `cache_dir` and `separate_files` applied. Core cannot build one itself (it
/// would depend on every backend); the `cachier` facade's `memoize*` functions provide it.
pub type DefaultBackend = fn(&Settings) -> Result<Arc<dyn Backend>, Error>;

pub(super) fn no_default_backend(settings: &Settings) -> Result<Arc<dyn Backend>, Error> {
    Err(Error::config(
        "backend",
        format!(
            "no backend given and cachier-rs-core cannot build the default ({:?}); use `cachier::memoize` or call `.backend(...)`",
            settings.backend.as_str()
        ),
    ))
}

/// A custom key function: the canonical encoding of what it returns for the arguments.
pub(super) type KeyFn<A> = Arc<dyn Fn(&A, &mut ArgBytes) -> Result<(), Error> + Send + Sync>;

/// How the memoized function is called: the blocking and the async kinds of [`Memoize`].
pub trait Kind<A, R>: Sized + 'static {
    /// The stored function.
    type Func: Clone + Send + Sync;
    /// What [`Memoize::build`] returns.
    type Built;
    #[doc(hidden)]
    fn finish(
        shared: Shared<A, R>,
        func: Self::Func,
        backend: &dyn Backend,
    ) -> Result<Self::Built, Error>;
}

/// [`Kind`] of functions called on the caller's thread.
#[derive(Debug, Clone, Copy)]
pub enum Blocking {}

impl<A, R> Kind<A, R> for Blocking
where
    A: Serialize + Send + 'static,
    R: Send + 'static,
{
    type Func = Arc<dyn Fn(A) -> R + Send + Sync>;
    type Built = Memoized<A, R>;
    fn finish(
        shared: Shared<A, R>,
        func: Self::Func,
        _: &dyn Backend,
    ) -> Result<Memoized<A, R>, Error> {
        Ok(Memoized::new(shared, func))
    }
}

/// Starts memoizing `func`, a function of one argument (use a tuple for several) whose every
/// result is cached. `name` identifies the function in the store: use the module path and the
/// function name (`"my_crate::pricing::quote"`).
///
/// A result that serializes as `None` is stored but served only with `allow_none`, as in
/// cachier. Prefer [`memoize_fallible`] for functions returning `Result`.
pub fn memoize<A, V, F>(name: &str, func: F) -> Memoize<A, V, Blocking>
where
    A: Serialize + Send + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + 'static,
    F: Fn(A) -> V + Send + Sync + 'static,
{
    let func: Arc<dyn Fn(A) -> V + Send + Sync> = Arc::new(func);
    Memoize::new(name, func, ValueCodec::plain())
}

/// Starts memoizing a fallible function: `Ok` values are cached, an `Err` is returned to the
/// caller and never cached (like an exception in cachier), and the claim is released.
pub fn memoize_fallible<A, T, E, F>(name: &str, func: F) -> Memoize<A, Result<T, E>, Blocking>
where
    A: Serialize + Send + 'static,
    T: Serialize + DeserializeOwned + Clone + Send + 'static,
    E: Send + 'static,
    F: Fn(A) -> Result<T, E> + Send + Sync + 'static,
{
    let func: Arc<dyn Fn(A) -> Result<T, E> + Send + Sync> = Arc::new(func);
    Memoize::new(name, func, ValueCodec::fallible())
}

/// A memoized function being configured (cachier's decorator parameters). Unset parameters
/// follow the global settings, read when [`Memoize::build`] runs or on every call (see
/// `cachier-settings` for which).
#[must_use]
pub struct Memoize<A, R, M: Kind<A, R> = Blocking> {
    name: String,
    version: Option<String>,
    func: M::Func,
    codec: ValueCodec<R>,
    key_fn: Option<KeyFn<A>>,
    backend: Option<Arc<dyn Backend>>,
    default_backend: DefaultBackend,
    params: CallParams,
    entry_size_limit: Option<Option<SizeSpec>>,
    cache_dir: Option<PathBuf>,
    separate_files: Option<bool>,
    lease: Duration,
    statistics: bool,
    near_cache: Option<NearCache>,
    preview_args: Option<bool>,
}

impl<A, R, M> Memoize<A, R, M>
where
    A: Serialize + Send + 'static,
    R: Send + 'static,
    M: Kind<A, R>,
{
    pub(super) fn new(name: &str, func: M::Func, codec: ValueCodec<R>) -> Self {
        Memoize {
            name: name.to_owned(),
            version: None,
            func,
            codec,
            key_fn: None,
            backend: None,
            default_backend: no_default_backend,
            params: CallParams::default(),
            entry_size_limit: None,
            cache_dir: None,
            separate_files: None,
            lease: DEFAULT_LEASE,
            statistics: true,
            near_cache: None,
            preview_args: None,
        }
    }

    /// Adds a version to the namespace: bump it when the function's code changes so that old
    /// entries are no longer served.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// The store to use (default: the global `backend`, the file backend unless changed).
    pub fn backend(mut self, backend: impl Backend + 'static) -> Self {
        self.backend = Some(Arc::new(backend));
        self
    }

    /// Like [`Memoize::backend`], for a backend already shared.
    pub fn shared_backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// How the default backend is built; the `cachier` facade sets this.
    #[doc(hidden)]
    pub fn default_backend(mut self, build: DefaultBackend) -> Self {
        self.default_backend = build;
        self
    }

    /// Replaces the key derivation (cachier's `hash_func`): the key is the hash of whatever
    /// `key` returns, so it can pick the arguments that matter or digest large ones.
    pub fn key<K, KF>(mut self, key: KF) -> Self
    where
        K: Serialize,
        KF: Fn(&A) -> K + Send + Sync + 'static,
    {
        self.key_fn = Some(Arc::new(move |args: &A, out: &mut ArgBytes| {
            out.encode(&key(args))
        }));
        self
    }

    /// Entries older than `age` are stale.
    pub fn stale_after(mut self, age: Duration) -> Self {
        self.params.stale_after = Some(Some(age));
        self
    }

    /// Entries never go stale, whatever the global says.
    pub fn never_stale(mut self) -> Self {
        self.params.stale_after = Some(None);
        self
    }

    /// On a stale hit, return the stale value at once and refresh it in the background.
    pub fn next_time(mut self, on: bool) -> Self {
        self.params.next_time = Some(on);
        self
    }

    /// How long a caller waits for another caller's computation before computing itself;
    /// zero = until it finishes or its lease lapses.
    pub fn wait_for_calc_timeout(mut self, timeout: Duration) -> Self {
        self.params.wait_for_calc_timeout = Some(timeout);
        self
    }

    /// Serve cached `None` results.
    pub fn allow_none(mut self, on: bool) -> Self {
        self.params.allow_none = Some(on);
        self
    }

    /// Delete stale entries in the background, at most once per `cleanup_interval`.
    pub fn cleanup_stale(mut self, on: bool) -> Self {
        self.params.cleanup_stale = Some(on);
        self
    }

    /// Minimum time between two stale cleanups.
    pub fn cleanup_interval(mut self, interval: Duration) -> Self {
        self.params.cleanup_interval = Some(interval);
        self
    }

    /// Values whose encoded size exceeds this are returned but not stored: bytes, or text
    /// such as `"10MB"` (checked by [`Memoize::build`]).
    pub fn entry_size_limit(mut self, limit: impl Into<SizeSpec>) -> Self {
        self.entry_size_limit = Some(Some(limit.into()));
        self
    }

    /// No size limit, whatever the global says.
    pub fn no_entry_size_limit(mut self) -> Self {
        self.entry_size_limit = Some(None);
        self
    }

    /// Directory of the default file backend (ignored by an explicit backend: an error).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Default file backend: one file per entry.
    pub fn separate_files(mut self, on: bool) -> Self {
        self.separate_files = Some(on);
        self
    }

    /// Keep statistics ([`Memoized::stats`]); on by default. Off saves the one relaxed atomic
    /// increment per call (and the sampled hit latency), for the hottest in-process caches.
    pub fn statistics(mut self, on: bool) -> Self {
        self.statistics = on;
        self
    }

    /// Keeps this function's values typed in this process too, in front of its store (see
    /// [`NearCache`]): a near hit costs a hash of the arguments' encoding, a lookup and a
    /// clone. Other processes' changes reach it through the store's notifications; a store
    /// without them has its near entries served for at most [`NearCache::unwatched_ttl`].
    /// Default: the global `near_cache`, which keeps one in front of in-process stores only.
    pub fn near_cache(mut self, near: NearCache) -> Self {
        self.near_cache = Some(near);
        self
    }

    /// No near cache, whatever the global says.
    pub fn no_near_cache(mut self) -> Self {
        self.near_cache = Some(NearCache::OFF);
        self
    }

    /// Store a short, readable preview of the arguments with each entry (at most 120 bytes,
    /// from their serialized form), which `cachier show` lists next to the key. Default: the
    /// global `preview_args`, on unless changed. Turn it off where the arguments carry
    /// secrets (tokens, passwords, personal data): whoever can read the store reads them.
    pub fn preview_args(mut self, on: bool) -> Self {
        self.preview_args = Some(on);
        self
    }

    /// How long a claim outlives its holder's last heartbeat (default 10 s): a crashed
    /// computation is taken over after at most this long.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Resolves the build-time parameters and opens the function's store.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid parameter (bad size text, empty name, zero lease,
    /// `cache_dir` with an explicit backend); the backend's error if its store cannot open.
    pub fn build(self) -> Result<M::Built, Error> {
        let namespace = Namespace::new(&self.name, self.version.as_deref())?;
        let settings = global_params();
        let entry_size_limit = match self.entry_size_limit {
            Some(limit) => limit.map(|l| l.to_bytes("entry_size_limit")).transpose()?,
            None => settings.entry_size_limit,
        };
        if self.lease.is_zero() {
            return Err(Error::config("lease", "must be longer than zero"));
        }
        let backend = match self.backend {
            Some(backend) => {
                if self.cache_dir.is_some() || self.separate_files.is_some() {
                    return Err(Error::config(
                        "cache_dir",
                        "cache_dir and separate_files configure the default file backend; set them on the backend you pass instead",
                    ));
                }
                backend
            }
            None => {
                let mut settings = Settings::clone(&settings);
                if let Some(dir) = self.cache_dir {
                    settings.cache_dir = Some(dir);
                }
                if let Some(separate_files) = self.separate_files {
                    settings.separate_files = separate_files;
                }
                (self.default_backend)(&settings)?
            }
        };
        let core = backend.core(&namespace)?;
        let capabilities = core.capabilities();
        let near = match self.near_cache.or(settings.near_cache) {
            Some(near) => near,
            None if capabilities.in_process => NearCache::unbounded(),
            None => NearCache::OFF,
        };
        let near = match near.is_on() {
            true => Some(Near::open(&near, &*core, self.codec.clone_stored)?),
            false => None,
        };
        let shared = Shared {
            namespace,
            backend_name: backend.name(),
            capabilities,
            core,
            near,
            codec: self.codec,
            key_fn: self.key_fn,
            params: self.params,
            entry_size_limit,
            lease: self.lease,
            last_cleanup: Mutex::new(None),
            flights: Flights::default(),
            failures: FailureLog::default(),
            stats: Arc::default(),
            statistics: self.statistics,
            preview_args: self.preview_args.unwrap_or(settings.preview_args),
        };
        stats::register(
            &shared.namespace,
            shared.backend_name,
            &shared.stats,
            &shared.core,
        );
        M::finish(shared, self.func, &*backend)
    }
}
