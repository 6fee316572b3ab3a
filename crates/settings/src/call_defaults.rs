//! The global parameters every call resolves, kept apart in atomics behind a sequence lock:
//! a call reads them with a handful of loads, no lock, no thread-local copy and no
//! reference count, and never sees half of a change.

use std::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use crate::Settings;

/// The global parameters a call resolves (what it does not set itself or through its
/// function's builder), as one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallDefaults {
    /// See [`Settings::stale_after`].
    pub stale_after: Option<Duration>,
    /// See [`Settings::next_time`].
    pub next_time: bool,
    /// See [`Settings::allow_none`].
    pub allow_none: bool,
    /// See [`Settings::cleanup_stale`].
    pub cleanup_stale: bool,
    /// See [`Settings::cleanup_interval`].
    pub cleanup_interval: Duration,
    /// See [`Settings::wait_for_calc_timeout`].
    pub wait_for_calc_timeout: Duration,
}

impl CallDefaults {
    pub(crate) fn of(settings: &Settings) -> CallDefaults {
        CallDefaults {
            stale_after: settings.stale_after,
            next_time: settings.next_time,
            allow_none: settings.allow_none,
            cleanup_stale: settings.cleanup_stale,
            cleanup_interval: settings.cleanup_interval,
            wait_for_calc_timeout: settings.wait_for_calc_timeout,
        }
    }
}

const NEXT_TIME: u8 = 1;
const ALLOW_NONE: u8 = 2;
const CLEANUP_STALE: u8 = 4;
const STALE_AFTER_SET: u8 = 8;

/// [`CallDefaults`] in atomics. Durations are kept in nanoseconds, saturating at `u64::MAX`
/// (584 years, longer than any cache lives).
pub(crate) struct Published {
    /// Odd while a change is being written.
    sequence: AtomicU64,
    flags: AtomicU8,
    stale_after: AtomicU64,
    cleanup_interval: AtomicU64,
    wait_for_calc_timeout: AtomicU64,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Published {
    pub(crate) const fn new() -> Published {
        Published {
            sequence: AtomicU64::new(0),
            flags: AtomicU8::new(0),
            stale_after: AtomicU64::new(0),
            cleanup_interval: AtomicU64::new(0),
            wait_for_calc_timeout: AtomicU64::new(0),
        }
    }

    /// Publishes `values`. Writers must not overlap (the settings' write lock is held).
    pub(crate) fn store(&self, values: &CallDefaults) {
        let flags = [
            (values.next_time, NEXT_TIME),
            (values.allow_none, ALLOW_NONE),
            (values.cleanup_stale, CLEANUP_STALE),
            (values.stale_after.is_some(), STALE_AFTER_SET),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |flags, (_, bit)| flags | bit);
        self.sequence.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.flags.store(flags, Ordering::Relaxed);
        self.stale_after
            .store(values.stale_after.map_or(0, nanos), Ordering::Relaxed);
        self.cleanup_interval
            .store(nanos(values.cleanup_interval), Ordering::Relaxed);
        self.wait_for_calc_timeout
            .store(nanos(values.wait_for_calc_timeout), Ordering::Relaxed);
        self.sequence.fetch_add(1, Ordering::Release);
    }

    /// The values of one complete [`Published::store`].
    pub(crate) fn load(&self) -> CallDefaults {
        loop {
            let before = self.sequence.load(Ordering::Acquire);
            if !before.is_multiple_of(2) {
                std::hint::spin_loop();
                continue;
            }
            let flags = self.flags.load(Ordering::Relaxed);
            let stale_after = self.stale_after.load(Ordering::Relaxed);
            let cleanup_interval = self.cleanup_interval.load(Ordering::Relaxed);
            let wait_for_calc_timeout = self.wait_for_calc_timeout.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.sequence.load(Ordering::Relaxed) != before {
                continue;
            }
            return CallDefaults {
                stale_after: (flags & STALE_AFTER_SET != 0)
                    .then(|| Duration::from_nanos(stale_after)),
                next_time: flags & NEXT_TIME != 0,
                allow_none: flags & ALLOW_NONE != 0,
                cleanup_stale: flags & CLEANUP_STALE != 0,
                cleanup_interval: Duration::from_nanos(cleanup_interval),
                wait_for_calc_timeout: Duration::from_nanos(wait_for_calc_timeout),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    fn values(n: u64) -> CallDefaults {
        CallDefaults {
            stale_after: n.is_multiple_of(2).then(|| Duration::from_millis(n)),
            next_time: n.is_multiple_of(3),
            allow_none: n.is_multiple_of(5),
            cleanup_stale: n.is_multiple_of(7),
            cleanup_interval: Duration::from_millis(n),
            wait_for_calc_timeout: Duration::from_millis(n),
        }
    }

    #[test]
    fn round_trips_and_saturates() {
        let published = Published::new();
        for n in 0..10 {
            published.store(&values(n));
            assert_eq!(published.load(), values(n));
        }
        let mut huge = values(0);
        huge.cleanup_interval = Duration::MAX;
        published.store(&huge);
        assert_eq!(
            published.load().cleanup_interval,
            Duration::from_nanos(u64::MAX)
        );
    }

    /// A reader racing a writer sees one whole change or another, never a mix.
    #[test]
    fn readers_never_see_half_a_change() {
        let published = Arc::new(Published::new());
        published.store(&values(0));
        let writer = {
            let published = published.clone();
            thread::spawn(move || {
                for n in 1..20_000 {
                    published.store(&values(n));
                }
            })
        };
        let mut seen = 0;
        while !writer.is_finished() || seen == 0 {
            let read = published.load();
            let n = read.cleanup_interval.as_millis() as u64;
            assert_eq!(read, values(n), "a mixed read");
            seen += 1;
        }
        writer.join().unwrap();
    }
}
