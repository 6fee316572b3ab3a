//! The call engine: cachier's algorithm over any [`Core`], with its defects fixed (atomic
//! claims, leases, prompt wake-ups, placeholders never served, every `next_time` caller
//! served the stale value during a refresh).
//!
//! Single flight has two levels. In a process, one caller per key leads (the [`flight`]
//! module) and the others take its result the moment it has one, even while the store fails.
//! Across processes and machines, the leader claims the key in the store; a won claim is
//! followed by one more read, so that a claim that raced another caller's store serves that
//! value instead of computing it again. A refused `put` releases its claim at once.
//!
//! The algorithm is written once, as `async` code over a [`Driver`]: the blocking driver
//! ([`Memoized`]) runs it to completion on the caller's thread (it never suspends: its waits
//! block the thread), the async driver ([`AsyncMemoized`]) awaits the store and the function.

/// The accessors every kind of memoized function has (its `inner.shared` is a [`Shared`]).
macro_rules! shared_accessors {
    () => {
        /// The directory holding the cache for file backends, `None` for others.
        pub fn cache_dpath(&self) -> Option<std::path::PathBuf> {
            self.inner.shared.core.cache_dpath()
        }

        /// The function's namespace in its store.
        pub fn namespace(&self) -> &crate::Namespace {
            &self.inner.shared.namespace
        }

        /// The (blocking) store of this function, for inspection.
        pub fn core(&self) -> &std::sync::Arc<dyn crate::Core> {
            &self.inner.shared.core
        }

        /// The key `args` are cached under.
        pub fn key(&self, args: &A) -> Result<crate::Key, crate::Error> {
            self.inner.shared.key(args)
        }

        /// How many store failures calls have met (worked around, or returned by strict calls).
        pub fn backend_error_count(&self) -> u64 {
            self.inner
                .shared
                .stats
                .backend_errors
                .load(std::sync::atomic::Ordering::Relaxed)
        }

        /// This function's statistics: hits, misses, stale hits, recalculations, wait
        /// timeouts, size-limit rejections, backend errors, hit rate and latency histograms.
        pub fn stats(&self) -> crate::StatsSnapshot {
            self.inner.shared.stats.snapshot()
        }
    };
}

mod blocking;
mod flight;
#[cfg(feature = "async")]
mod nonblocking;

pub use blocking::Memoized;
#[cfg(feature = "async")]
pub use nonblocking::{memoize_async, memoize_async_fallible, Async, AsyncMemoized};

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cachier_settings::{caching_enabled, global_params, with_global_params, Settings, SizeSpec};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use self::flight::{Flight, Flights, Joined, Landing, Lead};
use crate::lease::Heartbeat;
use crate::options::MaxAge;
use crate::stats::{self, Stats};
use crate::{
    codec, pool, Backend, CacheEntry, CallOptions, Claim, ClaimToken, Core, Error, Key, Namespace,
};

/// How long a claim lives without a heartbeat unless the builder says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// How a wait is sliced when `wait_for_calc_timeout` is 0, so that a global change is noticed.
const WAIT_SLICE: Duration = Duration::from_secs(1);

/// A function logs store failures at most once per this long (with how many it did not log).
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Where the default (file) backend should keep its files; resolved when a function is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOptions {
    /// The cache directory.
    pub cache_dir: PathBuf,
    /// One file per entry.
    pub separate_files: bool,
}

/// Builds the backend a function uses when it names none: given the global backend
/// (`"pickle"`, `"memory"` or a backend URL) and the local options. The facade provides it.
pub type DefaultBackend = fn(&str, &LocalOptions) -> Result<Arc<dyn Backend>, Error>;

fn no_default_backend(name: &str, _: &LocalOptions) -> Result<Arc<dyn Backend>, Error> {
    Err(Error::config(
        "backend",
        format!("no backend given and cachier-core cannot build the default ({name:?}); use `cachier::memoize` or call `.backend(...)`"),
    ))
}

type KeyFn<A> = Arc<dyn Fn(&A) -> Result<Key, Error> + Send + Sync>;

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

/// How a function's result is cached: which part is stored, and how it is rebuilt.
/// The bytes to store for a result, `None` when it must not be cached.
type Encoded = Option<Result<Vec<u8>, Error>>;

pub(crate) struct ValueCodec<R> {
    /// `None` when the result must not be cached (an `Err`).
    encode: fn(&R) -> Encoded,
    decode: fn(&[u8]) -> Result<R, Error>,
}

impl<R> Clone for ValueCodec<R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R> Copy for ValueCodec<R> {}

impl<V: Serialize + DeserializeOwned> ValueCodec<V> {
    /// Every value is cached.
    pub(crate) fn plain() -> Self {
        ValueCodec {
            encode: encode_plain::<V>,
            decode: decode_plain::<V>,
        }
    }
}

impl<T: Serialize + DeserializeOwned, E> ValueCodec<Result<T, E>> {
    /// `Ok` values are cached, errors never.
    pub(crate) fn fallible() -> Self {
        ValueCodec {
            encode: encode_ok::<T, E>,
            decode: decode_ok::<T, E>,
        }
    }
}

fn encode_plain<V: Serialize>(value: &V) -> Encoded {
    Some(codec::encode(value))
}
fn decode_plain<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, Error> {
    codec::decode(bytes)
}
fn encode_ok<T: Serialize, E>(result: &Result<T, E>) -> Encoded {
    result.as_ref().ok().map(codec::encode)
}
fn decode_ok<T: DeserializeOwned, E>(bytes: &[u8]) -> Result<Result<T, E>, Error> {
    codec::decode(bytes).map(Ok)
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
    V: Serialize + DeserializeOwned + Send + 'static,
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
    T: Serialize + DeserializeOwned + Send + 'static,
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
}

/// The parameters resolved on every call (builder value, else global).
#[derive(Debug, Clone, Default)]
struct CallParams {
    stale_after: Option<Option<Duration>>,
    next_time: Option<bool>,
    wait_for_calc_timeout: Option<Duration>,
    allow_none: Option<bool>,
    cleanup_stale: Option<bool>,
    cleanup_interval: Option<Duration>,
}

impl<A, R, M> Memoize<A, R, M>
where
    A: Serialize + Send + 'static,
    R: Send + 'static,
    M: Kind<A, R>,
{
    pub(crate) fn new(name: &str, func: M::Func, codec: ValueCodec<R>) -> Self {
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
        self.key_fn = Some(Arc::new(move |args: &A| Key::of(&key(args))));
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
                let local = LocalOptions {
                    cache_dir: self
                        .cache_dir
                        .unwrap_or_else(|| settings.resolved_cache_dir()),
                    separate_files: self.separate_files.unwrap_or(settings.separate_files),
                };
                (self.default_backend)(settings.backend.as_str(), &local)?
            }
        };
        let core = backend.core(&namespace)?;
        let shared = Shared {
            namespace,
            backend_name: backend.name(),
            core,
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

/// Everything about a memoized function except how it is called: its store, key derivation,
/// codec and parameters. Shared by the blocking and async drivers.
#[doc(hidden)]
pub struct Shared<A, R> {
    namespace: Namespace,
    backend_name: &'static str,
    core: Arc<dyn Core>,
    codec: ValueCodec<R>,
    key_fn: Option<KeyFn<A>>,
    params: CallParams,
    entry_size_limit: Option<u64>,
    lease: Duration,
    last_cleanup: Mutex<Option<Instant>>,
    flights: Flights,
    failures: FailureLog,
    stats: Arc<Stats>,
    statistics: bool,
}

/// When store failures were last logged, and how many have not been since.
#[derive(Default)]
struct FailureLog {
    logged: Mutex<Option<Instant>>,
    unlogged: AtomicU64,
}

impl FailureLog {
    /// `Some(failures not logged since the last line)` when this failure is to be logged.
    fn due(&self) -> Option<u64> {
        let mut logged = self.logged.lock();
        if logged.is_some_and(|at| at.elapsed() < WARN_INTERVAL) {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *logged = Some(Instant::now());
        Some(self.unlogged.swap(0, Ordering::Relaxed))
    }
}

/// The staleness limit of one call.
#[derive(Clone, Copy)]
enum Threshold {
    Never,
    Within(Duration),
    Always,
}

fn threshold(stale_after: Option<Duration>, max_age: Option<MaxAge>) -> Threshold {
    match (stale_after, max_age) {
        (_, Some(MaxAge::AlwaysStale)) => Threshold::Always,
        (None, None) => Threshold::Never,
        (Some(a), None) | (None, Some(MaxAge::Within(a))) => Threshold::Within(a),
        (Some(a), Some(MaxAge::Within(b))) => Threshold::Within(a.min(b)),
    }
}

/// The call-time parameters of one call, resolved once.
struct Resolved {
    cleanup_stale: bool,
    stale_after: Option<Duration>,
    cleanup_interval: Duration,
    allow_none: bool,
    next_time: bool,
}

/// The decision trace of a verbose call (cachier's `cachier__verbose`), through `tracing`.
struct Trace<'a> {
    on: bool,
    namespace: &'a Namespace,
}

impl Trace<'_> {
    #[inline]
    fn note(&self, message: &str) {
        if self.on {
            tracing::info!(target: "cachier", namespace = %self.namespace, "{message}");
        }
    }
}

/// How a wait for another caller's claim ended.
enum WaitEnd {
    Released,
    TimedOut,
}

impl<A: Serialize, R> Shared<A, R> {
    fn key(&self, args: &A) -> Result<Key, Error> {
        match &self.key_fn {
            Some(key_fn) => key_fn(args),
            None => Key::of(args),
        }
    }
}

impl<A, R> Shared<A, R> {
    /// Counts one event, unless statistics are off.
    #[inline]
    fn count(&self, counter: impl FnOnce(&Stats) -> &AtomicU64) {
        if self.statistics {
            counter(&self.stats).fetch_add(1, Ordering::Relaxed);
        }
    }

    fn trace(&self, on: bool) -> Trace<'_> {
        Trace {
            on,
            namespace: &self.namespace,
        }
    }

    /// In strict mode returns the error; otherwise counts it and logs it (once per
    /// [`WARN_INTERVAL`], with the count of those not logged), and the caller goes on uncached.
    fn tolerate(&self, error: Error, strict: bool) -> Result<(), Error> {
        self.count(|s| &s.backend_errors);
        if strict {
            return Err(error);
        }
        if let Some(unlogged) = self.failures.due() {
            tracing::warn!(
                namespace = %self.namespace,
                backend = self.backend_name,
                %error,
                failures_since_last_warning = unlogged,
                "cachier: cache unavailable, computing uncached"
            );
        }
        Ok(())
    }

    fn warn_undecodable(&self, key: &Key, error: &Error) {
        tracing::warn!(
            namespace = %self.namespace,
            %key,
            %error,
            "cachier: stored value cannot be decoded; recomputing and overwriting it"
        );
    }

    /// The call-time parameters of one call: per-call option, else builder value, else global.
    fn resolve(&self, options: &CallOptions) -> Resolved {
        let p = &self.params;
        let pick = |call: Option<bool>, built: Option<bool>, global: fn(&Settings) -> bool| {
            move |s: Option<&Settings>| call.or(built).unwrap_or_else(|| s.is_some_and(global))
        };
        let stale_after = options.stale_after.or(p.stale_after);
        let cleanup_interval = options.cleanup_interval.or(p.cleanup_interval);
        let cleanup = pick(options.cleanup_stale, p.cleanup_stale, |s| s.cleanup_stale);
        let allow_none = pick(options.allow_none, p.allow_none, |s| s.allow_none);
        let next_time = pick(options.next_time, p.next_time, |s| s.next_time);
        let complete = |s: Option<&Settings>| Resolved {
            cleanup_stale: cleanup(s),
            stale_after: stale_after.unwrap_or_else(|| s.and_then(|s| s.stale_after)),
            cleanup_interval: cleanup_interval
                .or(s.map(|s| s.cleanup_interval))
                .unwrap_or_default(),
            allow_none: allow_none(s),
            next_time: next_time(s),
        };
        let needs_globals = stale_after.is_none()
            || cleanup_interval.is_none()
            || options.cleanup_stale.or(p.cleanup_stale).is_none()
            || options.allow_none.or(p.allow_none).is_none()
            || options.next_time.or(p.next_time).is_none();
        if needs_globals {
            with_global_params(|s| complete(Some(s)))
        } else {
            complete(None)
        }
    }

    /// The next slice of a wait for another caller's computation that began at `start`, or
    /// `None` once `wait_for_calc_timeout` has passed. The timeout is re-read on every slice:
    /// a global change applies to waits already running.
    fn wait_slice(&self, start: Instant) -> Option<Duration> {
        let timeout = match self.params.wait_for_calc_timeout {
            Some(timeout) => timeout,
            None => with_global_params(|s| s.wait_for_calc_timeout),
        };
        if timeout.is_zero() {
            return Some(WAIT_SLICE);
        }
        let left = timeout.checked_sub(start.elapsed())?;
        (!left.is_zero()).then(|| left.min(WAIT_SLICE))
    }

    /// `value` encoded, or `None` when it is not cached at all (an `Err`, or unencodable).
    fn encode(&self, value: &R) -> Option<Vec<u8>> {
        match (self.codec.encode)(value)? {
            Err(error) => {
                tracing::warn!(namespace = %self.namespace, %error, "cachier: result not cached");
                None
            }
            Ok(bytes) => Some(bytes),
        }
    }

    /// Whether `bytes` fit `entry_size_limit` (counting a rejection).
    fn storable(&self, bytes: &[u8], trace: &Trace<'_>) -> bool {
        match self.entry_size_limit {
            Some(limit) if bytes.len() as u64 > limit => {
                self.count(|s| &s.size_limit_rejections);
                trace.note("Result exceeds entry_size_limit; not cached");
                false
            }
            _ => true,
        }
    }

    /// The bytes to store for `value`, or `None` when it must not be stored (an `Err`, an
    /// unencodable value, or over the size limit).
    fn encode_for_store(&self, value: &R, trace: &Trace<'_>) -> Option<Vec<u8>> {
        self.encode(value)
            .filter(|bytes| self.storable(bytes, trace))
    }

    /// [`Shared::encode_for_store`], handing the encoded value to this process's followers
    /// first (whether or not the store will take it).
    fn encode_and_land(
        &self,
        value: &R,
        lead: Option<&Lead<'_>>,
        trace: &Trace<'_>,
    ) -> Option<Arc<[u8]>> {
        let bytes: Arc<[u8]> = self.encode(value)?.into();
        if let Some(lead) = lead {
            lead.land(bytes.clone());
        }
        self.storable(&bytes, trace).then_some(bytes)
    }

    /// `cleanup_stale`: at most once per `interval`, delete stale entries in the background.
    fn maybe_cleanup(&self, stale_after: Option<Duration>, interval: Duration) {
        let Some(age) = stale_after else {
            return; // nothing is ever stale
        };
        {
            let mut last = self.last_cleanup.lock();
            if last.is_some_and(|at| at.elapsed() < interval) {
                return;
            }
            *last = Some(Instant::now());
        }
        let core = self.core.clone();
        let namespace = self.namespace.clone();
        pool::submit(move || match core.delete_stale_entries(age) {
            Ok(n) => tracing::debug!(%namespace, deleted = n, "cachier: stale entries deleted"),
            Err(error) => tracing::warn!(%namespace, %error, "cachier: stale cleanup failed"),
        });
    }

    /// The store failed to start a background refresh: count and log, serve the stale value.
    fn refresh_not_started(&self, error: &Error) {
        self.count(|s| &s.backend_errors);
        tracing::warn!(namespace = %self.namespace, %error, "cachier: cannot start a background refresh");
    }
}

/// What the algorithm needs from a way of calling: the store's operations and the function,
/// blocking or async. Written as futures so that one algorithm serves both.
pub(crate) trait Driver<A, R>: Sync {
    fn shared(&self) -> &Shared<A, R>;
    fn get<'a>(
        &'a self,
        key: &'a Key,
    ) -> impl Future<Output = Result<Option<CacheEntry>, Error>> + Send + 'a;
    fn claim<'a>(&'a self, key: &'a Key) -> impl Future<Output = Result<Claim, Error>> + Send + 'a;
    fn put<'a>(
        &'a self,
        key: &'a Key,
        value: &'a [u8],
        claim: Option<&'a ClaimToken>,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a;
    fn release<'a>(
        &'a self,
        key: &'a Key,
        claim: &'a ClaimToken,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a;
    fn wait<'a>(
        &'a self,
        key: &'a Key,
        max: Duration,
    ) -> impl Future<Output = Result<bool, Error>> + Send + 'a;
    /// Waits at most `max` for this process's leader of a key.
    fn wait_flight<'a>(
        &'a self,
        flight: &'a Flight,
        max: Duration,
    ) -> impl Future<Output = Landing> + Send + 'a;
    fn compute(&self, args: A) -> impl Future<Output = R> + Send + '_;
    /// Recomputes `key` in the background while holding `claim` (`next_time`), unless a value
    /// `want` serves was stored since the caller's read.
    fn refresh_in_background(&self, args: A, key: Key, claim: ClaimToken, want: Want);
}

/// Releases a claim if the computation unwinds (a panic) or its future is dropped (a cancelled
/// async caller), so waiters take over at once.
struct ReleaseGuard {
    core: Arc<dyn Core>,
    key: Key,
    token: Option<ClaimToken>,
}

impl ReleaseGuard {
    fn token(&self) -> &ClaimToken {
        self.token.as_ref().expect("armed until disarmed")
    }
    fn disarm(mut self) {
        self.token = None;
    }
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        let (core, key) = (self.core.clone(), self.key);
        let release = move || {
            if let Err(error) = core.release(&key, &token) {
                tracing::warn!(%key, %error, "cachier: could not release an abandoned claim");
            }
        };
        // Inside an async runtime, do not block its thread on the store.
        #[cfg(feature = "async")]
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(release);
            return;
        }
        release();
    }
}

/// What a call serves of a value stored by someone else since its own read: a completed
/// value it has not already rejected, fresh by its own staleness limit.
#[derive(Clone, Copy)]
pub(crate) struct Want {
    /// The time of the stored value this call read and did not serve.
    seen: Option<SystemTime>,
    threshold: Threshold,
    allow_none: bool,
}

impl Want {
    fn fresh(&self, age: Duration) -> bool {
        match self.threshold {
            Threshold::Never => true,
            Threshold::Within(limit) => age <= limit,
            Threshold::Always => false,
        }
    }

    /// The value of `entry` if it was stored since this call's read and this call serves it.
    fn newer<'e>(&self, entry: &'e CacheEntry) -> Option<&'e Arc<[u8]>> {
        let bytes = entry.completed_value()?;
        let serves = self.seen != Some(entry.time)
            && self.fresh(entry.age)
            && (self.allow_none || !codec::encodes_none(bytes));
        serves.then_some(bytes)
    }
}

/// One memoized call.
async fn run<A, R, D>(d: &D, args: A, options: &CallOptions, strict: bool) -> Result<R, Error>
where
    A: Serialize + Send,
    R: Send,
    D: Driver<A, R>,
{
    let shared = d.shared();
    let resolved = shared.resolve(options);
    let stale_after = resolved.stale_after;
    if resolved.cleanup_stale {
        shared.maybe_cleanup(stale_after, resolved.cleanup_interval);
    }
    if options.skip_cache || !caching_enabled() {
        return Ok(d.compute(args).await);
    }
    let started = (shared.statistics && Stats::sample_this_call()).then(Instant::now);
    let trace = shared.trace(options.verbose);
    let key = match shared.key(&args) {
        Ok(key) => key,
        Err(error) => {
            shared.tolerate(error, strict)?;
            shared.count(|s| &s.misses);
            return Ok(compute_uncached(d, args, None).await);
        }
    };
    let mut want = Want {
        seen: None,
        threshold: threshold(stale_after, options.max_age),
        allow_none: resolved.allow_none,
    };
    let mut store_failed = false;
    if options.overwrite_cache {
        trace.note("Overwriting the cache.");
    } else {
        match d.get(&key).await {
            Err(error) => {
                shared.tolerate(error, strict)?;
                store_failed = true;
            }
            Ok(None) => trace.note("No entry found. No current calc. Calling like a boss."),
            Ok(Some(entry)) => {
                trace.note("Entry found.");
                if let Some(bytes) = entry.completed_value() {
                    want.seen = Some(entry.time);
                    if resolved.allow_none || !codec::encodes_none(bytes) {
                        trace.note("Cached result found.");
                        if let Threshold::Always = want.threshold {
                            trace.note("max_age is negative. Cached result considered stale.");
                        }
                        if want.fresh(entry.age) {
                            match (shared.codec.decode)(bytes) {
                                Ok(value) => {
                                    trace.note("And it is fresh!");
                                    shared.count(|s| &s.hits);
                                    if let Some(started) = started {
                                        shared.stats.hit_latency.record(started.elapsed());
                                    }
                                    return Ok(value);
                                }
                                Err(error) => shared.warn_undecodable(&key, &error),
                            }
                        } else {
                            trace.note("But it is stale... :(");
                            shared.count(|s| &s.stale_hits);
                            if resolved.next_time {
                                match (shared.codec.decode)(bytes) {
                                    Ok(stale) => {
                                        if entry.being_calculated {
                                            trace.note("Already calc. Returning stale.");
                                        } else {
                                            trace.note("Async calc and return stale");
                                            match d.claim(&key).await {
                                                Ok(Claim::Claimed(token)) => {
                                                    d.refresh_in_background(args, key, token, want)
                                                }
                                                Ok(Claim::Busy) => {}
                                                Err(error) => shared.refresh_not_started(&error),
                                            }
                                        }
                                        trace.note("Returning stale.");
                                        shared.count(|s| &s.misses);
                                        return Ok(stale);
                                    }
                                    Err(error) => shared.warn_undecodable(&key, &error),
                                }
                            }
                        }
                    }
                } else if entry.being_calculated {
                    trace.note("No value but being calculated. Waiting.");
                }
            }
        }
    }
    shared.count(|s| &s.misses);
    miss(
        d,
        args,
        key,
        want,
        options.overwrite_cache,
        store_failed,
        strict,
        &trace,
    )
    .await
}

/// The miss path. One caller per key and process leads: it goes to the store (or, when the
/// store just failed, computes uncached); the others follow and take its result.
#[allow(clippy::too_many_arguments)]
async fn miss<A, R, D>(
    d: &D,
    args: A,
    key: Key,
    want: Want,
    overwrite: bool,
    store_failed: bool,
    strict: bool,
    trace: &Trace<'_>,
) -> Result<R, Error>
where
    A: Send,
    R: Send,
    D: Driver<A, R>,
{
    let shared = d.shared();
    if overwrite {
        return from_store(d, args, key, want, true, strict, trace, None).await;
    }
    loop {
        let flight = match shared.flights.join(key) {
            Joined::Lead(lead) => {
                return if store_failed {
                    Ok(compute_uncached(d, args, Some(&lead)).await)
                } else {
                    from_store(d, args, key, want, false, strict, trace, Some(&lead)).await
                };
            }
            Joined::Follow(flight) => flight,
        };
        trace.note("Being calculated in this process. Waiting.");
        match wait_for_flight(d, &flight).await {
            Landing::Value(bytes) => match (shared.codec.decode)(&bytes) {
                Ok(value) => {
                    trace.note("Got the result of the computation waited on.");
                    return Ok(value);
                }
                Err(error) => {
                    shared.warn_undecodable(&key, &error);
                    return compute_unclaimed(d, args, key, strict, trace, None).await;
                }
            },
            Landing::Nothing => trace.note("That computation shared nothing. Trying again."),
            Landing::TimedOut => {
                shared.count(|s| &s.wait_timeouts);
                trace.note("wait_for_calc_timeout reached. Calculating.");
                return compute_unclaimed(d, args, key, strict, trace, None).await;
            }
        }
    }
}

/// Claims the key in the store and computes, or waits for whoever holds the claim.
#[allow(clippy::too_many_arguments)]
async fn from_store<A, R, D>(
    d: &D,
    args: A,
    key: Key,
    mut want: Want,
    overwrite: bool,
    strict: bool,
    trace: &Trace<'_>,
    lead: Option<&Lead<'_>>,
) -> Result<R, Error>
where
    A: Send,
    R: Send,
    D: Driver<A, R>,
{
    let shared = d.shared();
    loop {
        match d.claim(&key).await {
            Err(error) => {
                shared.tolerate(error, strict)?;
                return Ok(compute_uncached(d, args, lead).await);
            }
            Ok(Claim::Claimed(token)) => {
                let recheck = (!overwrite).then_some(&want);
                return compute_claimed(d, args, key, token, recheck, strict, trace, lead).await;
            }
            Ok(Claim::Busy) if overwrite => {
                trace.note("Already calc, but overwriting: computing too.");
                return compute_unclaimed(d, args, key, strict, trace, lead).await;
            }
            Ok(Claim::Busy) => {
                trace.note("Already calc. Waiting on change.");
                match wait_for_other(d, &key).await {
                    Err(error) => {
                        shared.tolerate(error, strict)?;
                        return Ok(compute_uncached(d, args, lead).await);
                    }
                    Ok(WaitEnd::TimedOut) => {
                        shared.count(|s| &s.wait_timeouts);
                        trace.note("wait_for_calc_timeout reached. Calculating.");
                        return compute_unclaimed(d, args, key, strict, trace, lead).await;
                    }
                    Ok(WaitEnd::Released) => match d.get(&key).await {
                        Err(error) => {
                            shared.tolerate(error, strict)?;
                            return Ok(compute_uncached(d, args, lead).await);
                        }
                        Ok(Some(entry)) => {
                            if let Some(bytes) = entry.completed_value() {
                                if want.seen != Some(entry.time) {
                                    match (shared.codec.decode)(bytes) {
                                        Ok(value) => {
                                            trace.note(
                                                "Got the result of the computation waited on.",
                                            );
                                            if let Some(lead) = lead {
                                                lead.land(bytes.clone());
                                            }
                                            return Ok(value);
                                        }
                                        Err(error) => shared.warn_undecodable(&key, &error),
                                    }
                                    want.seen = Some(entry.time);
                                }
                            }
                            // That computation stored nothing new (it failed): take over.
                        }
                        Ok(None) => {}
                    },
                }
            }
        }
    }
}

/// Waits for another caller's claim on `key` to end, in slices of at most [`WAIT_SLICE`].
async fn wait_for_other<A, R, D: Driver<A, R>>(d: &D, key: &Key) -> Result<WaitEnd, Error> {
    let start = Instant::now();
    while let Some(slice) = d.shared().wait_slice(start) {
        if d.wait(key, slice).await? {
            return Ok(WaitEnd::Released);
        }
    }
    Ok(WaitEnd::TimedOut)
}

/// Waits for this process's leader of a key, in slices of at most [`WAIT_SLICE`].
async fn wait_for_flight<A, R, D: Driver<A, R>>(d: &D, flight: &Flight) -> Landing {
    let start = Instant::now();
    while let Some(slice) = d.shared().wait_slice(start) {
        match d.wait_flight(flight, slice).await {
            Landing::TimedOut => {}
            landing => return landing,
        }
    }
    Landing::TimedOut
}

/// Computes while holding the claim, keeping its lease alive, then stores the result and
/// releases the claim in one step. With `recheck`, first serves a value stored since the
/// caller's read instead (its claim raced that value's store).
#[allow(clippy::too_many_arguments)]
async fn compute_claimed<A, R, D>(
    d: &D,
    args: A,
    key: Key,
    token: ClaimToken,
    recheck: Option<&Want>,
    strict: bool,
    trace: &Trace<'_>,
    lead: Option<&Lead<'_>>,
) -> Result<R, Error>
where
    A: Send,
    R: Send,
    D: Driver<A, R>,
{
    let shared = d.shared();
    let guard = ReleaseGuard {
        core: shared.core.clone(),
        key,
        token: Some(token),
    };
    if let Some(want) = recheck {
        if let Some(value) = stored_since_read(d, &key, want, lead).await {
            trace.note("A value was stored since this caller's read. Serving it.");
            let released = d.release(&key, guard.token()).await;
            guard.disarm();
            if let Err(error) = released {
                shared.tolerate(error, false)?;
            }
            return Ok(value);
        }
    }
    trace.note("Calling decorated function and waiting");
    let heartbeat = shared.core.needs_heartbeat().then(|| {
        Heartbeat::start(
            shared.core.clone(),
            key,
            guard.token().clone(),
            shared.lease,
        )
    });
    let started = Instant::now();
    shared.count(|s| &s.recalculations);
    let value = d.compute(args).await;
    let stored = match shared.encode_and_land(&value, lead, trace) {
        Some(bytes) => match d.put(&key, &bytes, Some(guard.token())).await {
            Ok(()) => Ok(()),
            Err(error) => {
                // The store refused the value: free the key now, so that waiters take over
                // at once instead of after the lease.
                if let Err(release_error) = d.release(&key, guard.token()).await {
                    tracing::debug!(%key, error = %release_error, "cachier: release after a failed put failed");
                }
                Err(error)
            }
        },
        None => d.release(&key, guard.token()).await,
    };
    guard.disarm();
    drop(heartbeat);
    if shared.statistics {
        shared.stats.compute_latency.record(started.elapsed());
    }
    if let Err(error) = stored {
        shared.tolerate(error, strict)?;
    }
    Ok(value)
}

/// After a won claim: the value another caller stored since this caller's read, if it
/// serves it. A store failure here is no reason to give up the claim: it computes.
async fn stored_since_read<A, R, D>(
    d: &D,
    key: &Key,
    want: &Want,
    lead: Option<&Lead<'_>>,
) -> Option<R>
where
    A: Send,
    R: Send,
    D: Driver<A, R>,
{
    let shared = d.shared();
    let entry = match d.get(key).await {
        Ok(entry) => entry?,
        Err(error) => {
            shared.tolerate(error, false).ok();
            return None;
        }
    };
    let bytes = want.newer(&entry)?;
    let value = (shared.codec.decode)(bytes).ok()?;
    if let Some(lead) = lead {
        lead.land(bytes.clone());
    }
    Some(value)
}

/// Computes while someone else holds the claim (after a wait timeout, or to overwrite),
/// storing the result without touching their claim.
async fn compute_unclaimed<A, R, D>(
    d: &D,
    args: A,
    key: Key,
    strict: bool,
    trace: &Trace<'_>,
    lead: Option<&Lead<'_>>,
) -> Result<R, Error>
where
    A: Send,
    R: Send,
    D: Driver<A, R>,
{
    let shared = d.shared();
    let started = Instant::now();
    shared.count(|s| &s.recalculations);
    let value = d.compute(args).await;
    let stored = match shared.encode_and_land(&value, lead, trace) {
        Some(bytes) => d.put(&key, &bytes, None).await,
        None => Ok(()),
    };
    if shared.statistics {
        shared.stats.compute_latency.record(started.elapsed());
    }
    if let Err(error) = stored {
        shared.tolerate(error, strict)?;
    }
    Ok(value)
}

/// Computes without the store, which just failed; the result still reaches this process's
/// followers of the key.
async fn compute_uncached<A, R, D>(d: &D, args: A, lead: Option<&Lead<'_>>) -> R
where
    A: Send,
    R: Send,
    D: Driver<A, R>,
{
    let shared = d.shared();
    let started = Instant::now();
    shared.count(|s| &s.recalculations);
    shared.count(|s| &s.uncached);
    let value = d.compute(args).await;
    if let Some(lead) = lead {
        if let Some(bytes) = shared.encode(&value) {
            lead.land(bytes.into());
        }
    }
    if shared.statistics {
        shared.stats.compute_latency.record(started.elapsed());
    }
    value
}
