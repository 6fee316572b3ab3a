//! The call parameters and their resolution: per-call option, else the builder's value, else
//! the global setting.

use std::time::{Duration, Instant, SystemTime};

use cachier_settings::{with_global_params, Settings};

use super::Shared;
use crate::options::MaxAge;
use crate::{codec, CacheEntry, CallOptions};
use std::sync::Arc;

/// How a wait is sliced when `wait_for_calc_timeout` is 0, so that a global change is noticed.
pub(super) const WAIT_SLICE: Duration = Duration::from_secs(1);

/// The parameters resolved on every call (builder value, else global).
#[derive(Debug, Clone, Default)]
pub(super) struct CallParams {
    pub(super) stale_after: Option<Option<Duration>>,
    pub(super) next_time: Option<bool>,
    pub(super) wait_for_calc_timeout: Option<Duration>,
    pub(super) allow_none: Option<bool>,
    pub(super) cleanup_stale: Option<bool>,
    pub(super) cleanup_interval: Option<Duration>,
}

/// The staleness limit of one call.
#[derive(Clone, Copy)]
pub(super) enum Threshold {
    Never,
    Within(Duration),
    Always,
}

pub(super) fn threshold(stale_after: Option<Duration>, max_age: Option<MaxAge>) -> Threshold {
    match (stale_after, max_age) {
        (_, Some(MaxAge::AlwaysStale)) => Threshold::Always,
        (None, None) => Threshold::Never,
        (Some(a), None) | (None, Some(MaxAge::Within(a))) => Threshold::Within(a),
        (Some(a), Some(MaxAge::Within(b))) => Threshold::Within(a.min(b)),
    }
}

/// The call-time parameters of one call, resolved once.
pub(super) struct Resolved {
    pub(super) cleanup_stale: bool,
    pub(super) stale_after: Option<Duration>,
    pub(super) cleanup_interval: Duration,
    pub(super) allow_none: bool,
    pub(super) next_time: bool,
}

/// What a call serves of a value stored by someone else since its own read: a completed
/// value it has not already rejected, fresh by its own staleness limit.
#[derive(Clone, Copy)]
pub(super) struct Want {
    /// The time of the stored value this call read and did not serve.
    pub(super) seen: Option<SystemTime>,
    pub(super) threshold: Threshold,
    pub(super) allow_none: bool,
}

impl Want {
    pub(super) fn fresh(&self, age: Duration) -> bool {
        match self.threshold {
            Threshold::Never => true,
            Threshold::Within(limit) => age <= limit,
            Threshold::Always => false,
        }
    }

    /// The value of `entry` if it was stored since this call's read and this call serves it.
    pub(super) fn newer<'e>(&self, entry: &'e CacheEntry) -> Option<&'e Arc<[u8]>> {
        let bytes = entry.completed_value()?;
        let serves = self.seen != Some(entry.time)
            && self.fresh(entry.age)
            && (self.allow_none || !codec::encodes_none(bytes));
        serves.then_some(bytes)
    }
}

impl<A, R> Shared<A, R> {
    /// The call-time parameters of one call: per-call option, else builder value, else global.
    pub(super) fn resolve(&self, options: &CallOptions) -> Resolved {
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
    pub(super) fn wait_slice(&self, start: Instant) -> Option<Duration> {
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
}
