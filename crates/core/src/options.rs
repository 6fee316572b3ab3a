//! Per-call options: cachier's `cachier__*` keyword arguments and `max_age`.

use std::time::Duration;

use crate::engine::CallParams;

/// How old a value this one call accepts, on top of `stale_after` (the stricter wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxAge {
    /// Accept values at most this old.
    Within(Duration),
    /// Treat every stored value as stale (cachier's negative `max_age`).
    AlwaysStale,
}

/// Options for one call; the defaults change nothing.
///
/// ```
/// use std::time::Duration;
/// use cachier_core::CallOptions;
/// let opts = CallOptions::new().max_age(Duration::from_secs(60)).verbose(true);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct CallOptions {
    pub(crate) skip_cache: bool,
    pub(crate) overwrite_cache: bool,
    pub(crate) verbose: bool,
    pub(crate) max_age: Option<MaxAge>,
    /// The function's parameters this call overrides.
    pub(crate) params: CallParams,
}

impl CallOptions {
    /// No overrides.
    pub const fn new() -> Self {
        CallOptions {
            skip_cache: false,
            overwrite_cache: false,
            verbose: false,
            max_age: None,
            params: CallParams::UNSET,
        }
    }
    /// Call the function directly: the cache is neither read nor written (`cachier__skip_cache`).
    pub fn skip_cache(mut self, on: bool) -> Self {
        self.skip_cache = on;
        self
    }
    /// Do not read the cache; compute and store (`cachier__overwrite_cache`).
    pub fn overwrite_cache(mut self, on: bool) -> Self {
        self.overwrite_cache = on;
        self
    }
    /// Log every decision of this call at INFO level through `tracing` (`cachier__verbose`).
    pub fn verbose(mut self, on: bool) -> Self {
        self.verbose = on;
        self
    }
    /// Override `stale_after` for this call (`cachier__stale_after`).
    pub fn stale_after(mut self, age: Duration) -> Self {
        self.params.stale_after = Some(Some(age));
        self
    }
    /// Accept values at most `age` old in this call; the stricter of this and `stale_after`
    /// wins (cachier's `max_age`).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(MaxAge::Within(age));
        self
    }
    /// Treat the stored value as stale in this call (cachier's negative `max_age`).
    pub fn always_stale(mut self) -> Self {
        self.max_age = Some(MaxAge::AlwaysStale);
        self
    }
    /// Override `next_time` for this call (`cachier__next_time`).
    pub fn next_time(mut self, on: bool) -> Self {
        self.params.next_time = Some(on);
        self
    }
    /// Override `allow_none` for this call (`cachier__allow_none`).
    pub fn allow_none(mut self, on: bool) -> Self {
        self.params.allow_none = Some(on);
        self
    }
    /// Override `cleanup_stale` for this call (`cachier__cleanup_stale`).
    pub fn cleanup_stale(mut self, on: bool) -> Self {
        self.params.cleanup_stale = Some(on);
        self
    }
    /// Override `cleanup_interval` for this call (`cachier__cleanup_interval`).
    pub fn cleanup_interval(mut self, interval: Duration) -> Self {
        self.params.cleanup_interval = Some(interval);
        self
    }
}
