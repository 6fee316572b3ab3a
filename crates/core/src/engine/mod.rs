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
//! The algorithm is written once, as `async` code over a [`Runner`]: the blocking driver
//! ([`Memoized`]) runs it to completion on the caller's thread (it never suspends: its waits
//! block the thread), the async driver ([`AsyncMemoized`]) awaits the store and the function.
//!
//! Files by concern: [`builder`] (configuring a memoized function), [`params`] (the call
//! parameters and their resolution), [`value`] (what of a result is stored), [`call`] (the
//! algorithm), [`flight`] (single flight within a process), and the two drivers.

/// The accessors every kind of memoized function has (its `inner.shared` is a [`Shared`]).
macro_rules! shared_accessors {
    () => {
        /// The directory holding the cache for file backends, `None` for others.
        pub fn cache_dpath(&self) -> Option<std::path::PathBuf> {
            self.inner.shared.capabilities.cache_dir.clone()
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
mod builder;
mod call;
mod flight;
mod near;
#[cfg(feature = "async")]
mod nonblocking;
mod params;
mod value;

pub use blocking::Memoized;
pub use builder::{memoize, memoize_fallible, Blocking, DefaultBackend, Kind, Memoize};
#[cfg(feature = "async")]
pub use nonblocking::{memoize_async, memoize_async_fallible, Async, AsyncMemoized};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use self::builder::KeyFn;
use self::call::Trace;
use self::flight::{Flights, Lead};
use self::near::Near;
pub(crate) use self::params::CallParams;
use self::value::ValueCodec;
use crate::key::ArgBytes;
use crate::stats::Stats;
use crate::{pool, Capabilities, Core, Error, Key, Namespace};

/// How long a claim lives without a heartbeat unless the builder says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// A function logs store failures at most once per this long (with how many it did not log).
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Everything about a memoized function except how it is called: its store, key derivation,
/// codec and parameters. Shared by the blocking and async drivers.
#[doc(hidden)]
pub struct Shared<A, R> {
    namespace: Namespace,
    backend_name: &'static str,
    core: Arc<dyn Core>,
    /// The store's capabilities, read once when the function is built.
    capabilities: Capabilities,
    codec: ValueCodec<R>,
    key_fn: Option<KeyFn<A>>,
    /// The near cache, when the function keeps one.
    near: Option<Near<R>>,
    params: CallParams,
    entry_size_limit: Option<u64>,
    lease: Duration,
    last_cleanup: Mutex<Option<Instant>>,
    flights: Flights,
    failures: FailureLog,
    stats: Arc<Stats>,
    statistics: bool,
    /// Store a preview of the arguments with each value (`preview_args`).
    preview_args: bool,
}

/// When store failures were last logged, and how many have not been since.
#[derive(Default)]
struct FailureLog {
    logged: Mutex<Option<Instant>>,
    unlogged: AtomicU64,
    /// The first failure went to stderr (when nothing else would show it).
    shown: AtomicBool,
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

impl<A: Serialize, R> Shared<A, R> {
    fn key(&self, args: &A) -> Result<Key, Error> {
        let mut encoded = ArgBytes::new();
        self.encode_args(args, &mut encoded)?;
        Ok(encoded.key())
    }

    /// The preview of `args` to store with their value, when previews are on. Rendered on a
    /// miss only, before the function takes the arguments: a hit never pays for it.
    fn preview(&self, args: &A) -> Option<String> {
        self.preview_args
            .then(|| crate::codec::render_preview(args))
    }

    /// What the key hashes: the encoding of the arguments, or of the key function's result.
    /// Encoded into `out` in place (the hit path never moves the buffer).
    #[inline(always)]
    fn encode_args(&self, args: &A, out: &mut ArgBytes) -> Result<(), Error> {
        match &self.key_fn {
            Some(key_fn) => key_fn(args, out),
            None => out.encode(args),
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
            if !self.failures.shown.swap(true, Ordering::Relaxed) {
                crate::eprint_if_unheard(format_args!(
                    "cache unavailable for {} ({} backend), computing uncached: {error} (shown once; install a `tracing` subscriber or a `log` logger for every warning)",
                    self.namespace, self.backend_name
                ));
            }
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

    /// `value` encoded (with the arguments' `preview`, if any), or `None` when it is not
    /// cached at all (an `Err`, or unencodable).
    fn encode(&self, value: &R, preview: Option<&str>) -> Option<Vec<u8>> {
        match (self.codec.encode)(value, preview)? {
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
    fn encode_for_store(
        &self,
        value: &R,
        preview: Option<&str>,
        trace: &Trace<'_>,
    ) -> Option<Vec<u8>> {
        self.encode(value, preview)
            .filter(|bytes| self.storable(bytes, trace))
    }

    /// [`Shared::encode_for_store`], handing the encoded value to this process's followers
    /// first (whether or not the store will take it).
    fn encode_and_land(
        &self,
        value: &R,
        preview: Option<&str>,
        lead: Option<&Lead<'_>>,
        trace: &Trace<'_>,
    ) -> Option<Arc<[u8]>> {
        let bytes: Arc<[u8]> = self.encode(value, preview)?.into();
        if let Some(lead) = lead {
            lead.land(bytes.clone());
        }
        self.storable(&bytes, trace).then_some(bytes)
    }

    /// This process changed `key` (or, with `None`, any entry) in the store: its near cache
    /// drops what it kept (messages from the store may come later, or never).
    fn forget_near(&self, key: Option<&Key>) {
        if let Some(near) = &self.near {
            match key {
                Some(key) => near.forget(key),
                None => near.forget_all(),
            }
        }
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
