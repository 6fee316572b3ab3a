//! The call engine: cachier's algorithm (reference §2) over any [`Core`], with DESIGN §4's
//! fixes (atomic claims, leases, prompt wake-ups, placeholders never served, every `next_time`
//! caller served the stale value during a refresh).

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cachier_settings::{caching_enabled, global_params, with_global_params, Settings, SizeSpec};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::lease::Heartbeat;
use crate::options::MaxAge;
use crate::{codec, pool, Backend, CallOptions, Claim, ClaimToken, Core, Error, Key, Namespace};

/// How long a claim lives without a heartbeat unless the builder says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// How a wait is sliced when `wait_for_calc_timeout` is 0, so that a global change is noticed.
const WAIT_SLICE: Duration = Duration::from_secs(1);

/// Where the default (file) backend should keep its files; resolved when a function is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOptions {
    /// The cache directory.
    pub cache_dir: PathBuf,
    /// One file per entry.
    pub separate_files: bool,
}

/// Builds the backend a function uses when it names none: given the global backend name
/// (`"pickle"` or `"memory"`) and the local options. The facade provides it.
pub type DefaultBackend = fn(&str, &LocalOptions) -> Result<Arc<dyn Backend>, Error>;

fn no_default_backend(name: &str, _: &LocalOptions) -> Result<Arc<dyn Backend>, Error> {
    Err(Error::config(
        "backend",
        format!("no backend given and cachier-core cannot build the default ({name:?}); use `cachier::memoize` or call `.backend(...)`"),
    ))
}

type KeyFn<A> = Arc<dyn Fn(&A) -> Result<Key, Error> + Send + Sync>;
type Func<A, R> = Arc<dyn Fn(A) -> R + Send + Sync>;

/// How a function's result is cached: which part is stored, and how it is rebuilt.
struct ValueCodec<R> {
    /// `None` when the result must not be cached (an `Err`).
    encode: fn(&R) -> Option<Result<Vec<u8>, Error>>,
    decode: fn(&[u8]) -> Result<R, Error>,
}

impl<R> Clone for ValueCodec<R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R> Copy for ValueCodec<R> {}

fn encode_plain<V: Serialize>(value: &V) -> Option<Result<Vec<u8>, Error>> {
    Some(codec::encode(value))
}
fn decode_plain<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, Error> {
    codec::decode(bytes)
}
fn encode_ok<T: Serialize, E>(result: &Result<T, E>) -> Option<Result<Vec<u8>, Error>> {
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
pub fn memoize<A, V, F>(name: &str, func: F) -> Memoize<A, V>
where
    A: Serialize + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(A) -> V + Send + Sync + 'static,
{
    Memoize::new(
        name,
        Arc::new(func),
        ValueCodec {
            encode: encode_plain::<V>,
            decode: decode_plain::<V>,
        },
    )
}

/// Starts memoizing a fallible function: `Ok` values are cached, an `Err` is returned to the
/// caller and never cached (like an exception in cachier), and the claim is released.
pub fn memoize_fallible<A, T, E, F>(name: &str, func: F) -> Memoize<A, Result<T, E>>
where
    A: Serialize + Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Send + 'static,
    F: Fn(A) -> Result<T, E> + Send + Sync + 'static,
{
    Memoize::new(
        name,
        Arc::new(func),
        ValueCodec {
            encode: encode_ok::<T, E>,
            decode: decode_ok::<T, E>,
        },
    )
}

/// A memoized function being configured (cachier's decorator parameters). Unset parameters
/// follow the global settings, read when [`Memoize::build`] runs or on every call (see
/// `cachier-settings` for which).
#[must_use]
pub struct Memoize<A, R> {
    name: String,
    version: Option<String>,
    func: Func<A, R>,
    codec: ValueCodec<R>,
    key_fn: Option<KeyFn<A>>,
    backend: Option<Arc<dyn Backend>>,
    default_backend: DefaultBackend,
    params: CallParams,
    entry_size_limit: Option<Option<SizeSpec>>,
    cache_dir: Option<PathBuf>,
    separate_files: Option<bool>,
    lease: Duration,
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

impl<A, R> Memoize<A, R>
where
    A: Serialize + Send + 'static,
    R: Send + 'static,
{
    fn new(name: &str, func: Func<A, R>, codec: ValueCodec<R>) -> Self {
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
    pub fn build(self) -> Result<Memoized<A, R>, Error> {
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
                (self.default_backend)(&settings.backend, &local)?
            }
        };
        let core = backend.core(&namespace)?;
        Ok(Memoized {
            inner: Arc::new(Inner {
                namespace,
                backend_name: backend.name(),
                core,
                func: self.func,
                codec: self.codec,
                key_fn: self.key_fn,
                params: self.params,
                entry_size_limit,
                lease: self.lease,
                last_cleanup: Mutex::new(None),
                backend_errors: AtomicU64::new(0),
            }),
        })
    }
}

/// A memoized function. Cheap to clone; share it between threads freely.
pub struct Memoized<A, R> {
    inner: Arc<Inner<A, R>>,
}

struct Inner<A, R> {
    namespace: Namespace,
    backend_name: &'static str,
    core: Arc<dyn Core>,
    func: Func<A, R>,
    codec: ValueCodec<R>,
    key_fn: Option<KeyFn<A>>,
    params: CallParams,
    entry_size_limit: Option<u64>,
    lease: Duration,
    last_cleanup: Mutex<Option<Instant>>,
    backend_errors: AtomicU64,
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
            .field("namespace", &self.inner.namespace)
            .field("backend", &self.inner.backend_name)
            .finish_non_exhaustive()
    }
}

/// The staleness limit of one call.
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

/// How a wait for another caller's computation ended.
enum WaitEnd {
    Released,
    TimedOut,
}

/// Releases a claim if the computation unwinds (a panic), so waiters take over at once.
struct ReleaseOnUnwind<'a> {
    core: &'a dyn Core,
    key: Key,
    token: Option<ClaimToken>,
}

impl ReleaseOnUnwind<'_> {
    fn disarm(mut self) -> ClaimToken {
        self.token.take().expect("armed")
    }
}

impl Drop for ReleaseOnUnwind<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            if let Err(error) = self.core.release(&self.key, &token) {
                tracing::warn!(key = %self.key, %error, "cachier: could not release a claim after a panic");
            }
        }
    }
}

impl<A, R> Memoized<A, R>
where
    A: Serialize + Send + 'static,
    R: Send + 'static,
{
    /// Calls the memoized function. Never fails because of the cache: if the store fails, the
    /// error is logged through `tracing`, counted, and the function computed uncached.
    pub fn call(&self, args: A) -> R {
        self.call_with(args, &CallOptions::new())
    }

    /// [`Memoized::call`] with per-call options.
    pub fn call_with(&self, args: A, options: &CallOptions) -> R {
        match self.run(args, options, false) {
            Ok(value) => value,
            Err(_) => unreachable!("lenient calls handle every store error"),
        }
    }

    /// Strict mode: like [`Memoized::call`], but a store failure is returned as
    /// [`Error::Backend`] instead of being logged and worked around.
    pub fn try_call(&self, args: A) -> Result<R, Error> {
        self.run(args, &CallOptions::new(), true)
    }

    /// [`Memoized::try_call`] with per-call options.
    pub fn try_call_with(&self, args: A, options: &CallOptions) -> Result<R, Error> {
        self.run(args, options, true)
    }

    /// Stores `value` as the result for `args` (subject to the size limit) and returns it.
    pub fn precache_value(&self, args: &A, value: R) -> Result<R, Error> {
        let key = self.key(args)?;
        if let Some(bytes) = self.encode_for_store(&value, &self.trace(false)) {
            self.inner.core.put(&key, &bytes, None)?;
        }
        Ok(value)
    }

    /// Deletes every entry of this function.
    pub fn clear_cache(&self) -> Result<(), Error> {
        self.inner.core.clear_cache()
    }

    /// Drops every claim of this function, so the next caller computes.
    pub fn clear_being_calculated(&self) -> Result<(), Error> {
        self.inner.core.clear_being_calculated()
    }

    /// Deletes entries older than `older_than` now (what `cleanup_stale` does in the
    /// background); returns how many.
    pub fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        self.inner.core.delete_stale_entries(older_than)
    }

    /// The directory holding the cache for file backends, `None` for others.
    pub fn cache_dpath(&self) -> Option<PathBuf> {
        self.inner.core.cache_dpath()
    }

    /// The function's namespace in its store.
    pub fn namespace(&self) -> &Namespace {
        &self.inner.namespace
    }

    /// The store of this function, for inspection.
    pub fn core(&self) -> &Arc<dyn Core> {
        &self.inner.core
    }

    /// The key `args` are cached under.
    pub fn key(&self, args: &A) -> Result<Key, Error> {
        match &self.inner.key_fn {
            Some(key_fn) => key_fn(args),
            None => Key::of(args),
        }
    }

    /// How many store failures lenient calls have worked around.
    pub fn backend_error_count(&self) -> u64 {
        self.inner.backend_errors.load(Ordering::Relaxed)
    }

    fn trace(&self, on: bool) -> Trace<'_> {
        Trace {
            on,
            namespace: &self.inner.namespace,
        }
    }

    /// In strict mode returns the error; otherwise logs and counts it, and the caller goes on
    /// uncached.
    fn tolerate(&self, error: Error, strict: bool) -> Result<(), Error> {
        if strict {
            return Err(error);
        }
        self.inner.backend_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            namespace = %self.inner.namespace,
            backend = self.inner.backend_name,
            %error,
            "cachier: cache unavailable, computing uncached"
        );
        Ok(())
    }

    /// The call-time parameters of one call: per-call option, else builder value, else global.
    fn resolve(&self, options: &CallOptions) -> Resolved {
        let p = &self.inner.params;
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

    fn run(&self, args: A, options: &CallOptions, strict: bool) -> Result<R, Error> {
        let inner = &*self.inner;
        let resolved = self.resolve(options);
        let stale_after = resolved.stale_after;
        if resolved.cleanup_stale {
            self.maybe_cleanup(stale_after, resolved.cleanup_interval);
        }
        if options.skip_cache || !caching_enabled() {
            return Ok((inner.func)(args));
        }
        let trace = self.trace(options.verbose);
        let key = match self.key(&args) {
            Ok(key) => key,
            Err(error) => {
                self.tolerate(error, strict)?;
                return Ok((inner.func)(args));
            }
        };
        // The time of a stored value we decided not to serve: a wait must bring a newer one.
        let mut seen = None;
        if options.overwrite_cache {
            trace.note("Overwriting the cache.");
        } else {
            let entry = match inner.core.get(&key) {
                Ok(entry) => entry,
                Err(error) => {
                    self.tolerate(error, strict)?;
                    return Ok((inner.func)(args));
                }
            };
            match entry {
                None => trace.note("No entry found. No current calc. Calling like a boss."),
                Some(entry) => {
                    trace.note("Entry found.");
                    if let Some(bytes) = entry.completed_value() {
                        seen = Some(entry.time);
                        if resolved.allow_none || !codec::encodes_none(bytes) {
                            trace.note("Cached result found.");
                            let fresh = match threshold(stale_after, options.max_age) {
                                Threshold::Never => true,
                                Threshold::Within(limit) => entry.age <= limit,
                                Threshold::Always => {
                                    trace.note(
                                        "max_age is negative. Cached result considered stale.",
                                    );
                                    false
                                }
                            };
                            if fresh {
                                match (inner.codec.decode)(bytes) {
                                    Ok(value) => {
                                        trace.note("And it is fresh!");
                                        return Ok(value);
                                    }
                                    Err(error) => self.warn_undecodable(&key, &error),
                                }
                            } else {
                                trace.note("But it is stale... :(");
                                if resolved.next_time {
                                    match (inner.codec.decode)(bytes) {
                                        Ok(stale) => {
                                            if entry.being_calculated {
                                                trace.note("Already calc. Returning stale.");
                                            } else {
                                                trace.note("Async calc and return stale");
                                                self.refresh_in_background(args, key);
                                            }
                                            trace.note("Returning stale.");
                                            return Ok(stale);
                                        }
                                        Err(error) => self.warn_undecodable(&key, &error),
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
        self.compute(args, key, seen, options.overwrite_cache, strict, &trace)
    }

    fn warn_undecodable(&self, key: &Key, error: &Error) {
        tracing::warn!(
            namespace = %self.inner.namespace,
            %key,
            %error,
            "cachier: stored value cannot be decoded; recomputing and overwriting it"
        );
    }

    /// The miss path: claim the key and compute, or wait for whoever holds the claim.
    fn compute(
        &self,
        args: A,
        key: Key,
        mut seen: Option<SystemTime>,
        overwrite: bool,
        strict: bool,
        trace: &Trace<'_>,
    ) -> Result<R, Error> {
        let inner = &*self.inner;
        loop {
            match inner.core.claim(&key, inner.lease) {
                Err(error) => {
                    self.tolerate(error, strict)?;
                    return Ok((inner.func)(args));
                }
                Ok(Claim::Claimed(token)) => {
                    trace.note("Calling decorated function and waiting");
                    return self.compute_claimed(args, key, token, strict, trace);
                }
                Ok(Claim::Busy) if overwrite => {
                    trace.note("Already calc, but overwriting: computing too.");
                    return self.compute_unclaimed(args, key, strict, trace);
                }
                Ok(Claim::Busy) => {
                    trace.note("Already calc. Waiting on change.");
                    match self.wait_for_other(&key) {
                        Err(error) => {
                            self.tolerate(error, strict)?;
                            return Ok((inner.func)(args));
                        }
                        Ok(WaitEnd::TimedOut) => {
                            trace.note("wait_for_calc_timeout reached. Calculating.");
                            return self.compute_unclaimed(args, key, strict, trace);
                        }
                        Ok(WaitEnd::Released) => {
                            match inner.core.get(&key) {
                                Err(error) => {
                                    self.tolerate(error, strict)?;
                                    return Ok((inner.func)(args));
                                }
                                Ok(Some(entry)) => {
                                    if let Some(bytes) = entry.completed_value() {
                                        if seen != Some(entry.time) {
                                            match (inner.codec.decode)(bytes) {
                                                Ok(value) => {
                                                    trace.note("Got the result of the computation waited on.");
                                                    return Ok(value);
                                                }
                                                Err(error) => self.warn_undecodable(&key, &error),
                                            }
                                            seen = Some(entry.time);
                                        }
                                    }
                                    // That computation stored nothing new (it failed): take over.
                                }
                                Ok(None) => {}
                            }
                        }
                    }
                }
            }
        }
    }

    fn wait_for_other(&self, key: &Key) -> Result<WaitEnd, Error> {
        let start = Instant::now();
        loop {
            // Re-read on every slice: a global change applies to waits already running.
            let timeout = match self.inner.params.wait_for_calc_timeout {
                Some(timeout) => timeout,
                None => with_global_params(|s| s.wait_for_calc_timeout),
            };
            let slice = if timeout.is_zero() {
                WAIT_SLICE
            } else {
                let elapsed = start.elapsed();
                if elapsed >= timeout {
                    return Ok(WaitEnd::TimedOut);
                }
                (timeout - elapsed).min(WAIT_SLICE)
            };
            if self.inner.core.wait(key, slice)? {
                return Ok(WaitEnd::Released);
            }
        }
    }

    fn compute_claimed(
        &self,
        args: A,
        key: Key,
        token: ClaimToken,
        strict: bool,
        trace: &Trace<'_>,
    ) -> Result<R, Error> {
        let inner = &*self.inner;
        let heartbeat = inner
            .core
            .needs_heartbeat()
            .then(|| Heartbeat::start(inner.core.clone(), key, token.clone(), inner.lease));
        let guard = ReleaseOnUnwind {
            core: &*inner.core,
            key,
            token: Some(token),
        };
        let value = (inner.func)(args);
        let token = guard.disarm();
        let stored = match self.encode_for_store(&value, trace) {
            Some(bytes) => inner.core.put(&key, &bytes, Some(&token)),
            None => inner.core.release(&key, &token),
        };
        drop(heartbeat);
        if let Err(error) = stored {
            self.tolerate(error, strict)?;
        }
        Ok(value)
    }

    /// Computes while someone else holds the claim (after a wait timeout, or to overwrite),
    /// storing the result without touching their claim.
    fn compute_unclaimed(
        &self,
        args: A,
        key: Key,
        strict: bool,
        trace: &Trace<'_>,
    ) -> Result<R, Error> {
        let value = (self.inner.func)(args);
        if let Some(bytes) = self.encode_for_store(&value, trace) {
            if let Err(error) = self.inner.core.put(&key, &bytes, None) {
                self.tolerate(error, strict)?;
            }
        }
        Ok(value)
    }

    /// The bytes to store for `value`, or `None` when it must not be stored (an `Err`, an
    /// unencodable value, or over the size limit).
    fn encode_for_store(&self, value: &R, trace: &Trace<'_>) -> Option<Vec<u8>> {
        match (self.inner.codec.encode)(value)? {
            Err(error) => {
                tracing::warn!(namespace = %self.inner.namespace, %error, "cachier: result not cached");
                None
            }
            Ok(bytes) => match self.inner.entry_size_limit {
                Some(limit) if bytes.len() as u64 > limit => {
                    trace.note("Result exceeds entry_size_limit; not cached");
                    None
                }
                _ => Some(bytes),
            },
        }
    }

    /// `next_time`: claim the key and recompute it on the background pool, once per key.
    fn refresh_in_background(&self, args: A, key: Key) {
        match self.inner.core.claim(&key, self.inner.lease) {
            Ok(Claim::Claimed(token)) => {
                let this = self.clone();
                pool::submit(move || {
                    let trace = this.trace(false);
                    if let Err(error) = this.compute_claimed(args, key, token, false, &trace) {
                        tracing::warn!(%key, %error, "cachier: background refresh failed");
                    }
                });
            }
            Ok(Claim::Busy) => {}
            Err(error) => {
                self.inner.backend_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(namespace = %self.inner.namespace, %error, "cachier: cannot start a background refresh");
            }
        }
    }

    /// `cleanup_stale`: at most once per `interval`, delete stale entries in the background.
    fn maybe_cleanup(&self, stale_after: Option<Duration>, interval: Duration) {
        let Some(age) = stale_after else {
            return; // nothing is ever stale
        };
        {
            let mut last = self.inner.last_cleanup.lock();
            if last.is_some_and(|at| at.elapsed() < interval) {
                return;
            }
            *last = Some(Instant::now());
        }
        let core = self.inner.core.clone();
        let namespace = self.inner.namespace.clone();
        pool::submit(move || match core.delete_stale_entries(age) {
            Ok(n) => tracing::debug!(%namespace, deleted = n, "cachier: stale entries deleted"),
            Err(error) => tracing::warn!(%namespace, %error, "cachier: stale cleanup failed"),
        });
    }
}
