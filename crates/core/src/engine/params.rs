//! The call parameters and their resolution: per-call option, else the builder's value, else
//! the global setting.

use std::time::{Duration, Instant, SystemTime};

use cachier_settings::{call_defaults, CallDefaults};

use super::Shared;
use crate::options::MaxAge;
use crate::{codec, CacheEntry, CallOptions};
use std::sync::Arc;

/// How a wait is sliced when `wait_for_calc_timeout` is 0, so that a global change is noticed.
pub(super) const WAIT_SLICE: Duration = Duration::from_secs(1);

/// The parameters a call resolves, each at three levels: the call's options, the function's
/// builder, the global settings. `None` leaves a parameter to the next level.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CallParams {
    pub(crate) stale_after: Option<Option<Duration>>,
    pub(crate) next_time: Option<bool>,
    pub(crate) allow_none: Option<bool>,
    pub(crate) cleanup_stale: Option<bool>,
    pub(crate) cleanup_interval: Option<Duration>,
    /// Resolved before each wait slice rather than once per call; not a per-call option.
    pub(crate) wait_for_calc_timeout: Option<Duration>,
}

impl CallParams {
    /// Nothing set: every parameter follows the next level.
    pub(crate) const UNSET: CallParams = CallParams {
        stale_after: None,
        next_time: None,
        allow_none: None,
        cleanup_stale: None,
        cleanup_interval: None,
        wait_for_calc_timeout: None,
    };

    /// These parameters, each one unset here taken from `fallback`.
    fn or(&self, fallback: &CallParams) -> CallParams {
        CallParams {
            stale_after: self.stale_after.or(fallback.stale_after),
            next_time: self.next_time.or(fallback.next_time),
            allow_none: self.allow_none.or(fallback.allow_none),
            cleanup_stale: self.cleanup_stale.or(fallback.cleanup_stale),
            cleanup_interval: self.cleanup_interval.or(fallback.cleanup_interval),
            wait_for_calc_timeout: self
                .wait_for_calc_timeout
                .or(fallback.wait_for_calc_timeout),
        }
    }

    /// The values of one call, each unset one taken from `globals`.
    fn resolved(&self, globals: &CallDefaults) -> Resolved {
        Resolved {
            stale_after: self.stale_after.unwrap_or(globals.stale_after),
            next_time: self.next_time.unwrap_or(globals.next_time),
            allow_none: self.allow_none.unwrap_or(globals.allow_none),
            cleanup_stale: self.cleanup_stale.unwrap_or(globals.cleanup_stale),
            cleanup_interval: self.cleanup_interval.unwrap_or(globals.cleanup_interval),
        }
    }
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
#[derive(Debug)]
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
        let bytes = entry.value.as_ref()?;
        let serves = self.seen != Some(entry.time)
            && self.fresh(entry.age)
            && (self.allow_none || !codec::encodes_none(bytes));
        serves.then_some(bytes)
    }
}

impl<A, R> Shared<A, R> {
    /// The call-time parameters of one call: per-call option, else builder value, else global.
    pub(super) fn resolve(&self, options: &CallOptions) -> Resolved {
        options.params.or(&self.params).resolved(&call_defaults())
    }

    /// The next slice of a wait for another caller's computation that began at `start`, or
    /// `None` once `wait_for_calc_timeout` has passed. The timeout is re-read on every slice:
    /// a global change applies to waits already running.
    pub(super) fn wait_slice(&self, start: Instant) -> Option<Duration> {
        let timeout = match self.params.wait_for_calc_timeout {
            Some(timeout) => timeout,
            None => call_defaults().wait_for_calc_timeout,
        };
        if timeout.is_zero() {
            return Some(WAIT_SLICE);
        }
        let left = timeout.checked_sub(start.elapsed())?;
        (!left.is_zero()).then(|| left.min(WAIT_SLICE))
    }
}
