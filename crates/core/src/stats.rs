//! Per-function statistics (what cachier 4.3 calls metrics), always on and cheap: a hit
//! costs one relaxed atomic increment; latencies go into fixed log-scale histograms (every
//! computing call, and one hit in [`HIT_LATENCY_SAMPLING`]).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::{Core, Namespace};

/// One hit in this many has its latency recorded (the others only count).
pub const HIT_LATENCY_SAMPLING: u64 = 64;

/// Sub-buckets per power of two: bucket bounds grow by 2^(1/4), about 19 %.
const SUB_BUCKETS: usize = 4;
const BUCKETS: usize = 64 * SUB_BUCKETS;

/// A latency histogram with fixed log-scale buckets (nanoseconds), lock-free to record.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }
}

fn bucket_of(ns: u64) -> usize {
    if ns < 2 {
        return 0;
    }
    let log = 63 - ns.leading_zeros() as usize; // floor(log2)
    let fraction = if log >= 2 {
        (ns >> (log - 2)) & 0b11
    } else {
        (ns << (2 - log)) & 0b11
    } as usize;
    (log * SUB_BUCKETS + fraction).min(BUCKETS - 1)
}

/// The upper bound of bucket `i`, in nanoseconds.
fn bucket_upper(i: usize) -> u64 {
    let (log, fraction) = (i / SUB_BUCKETS, (i % SUB_BUCKETS) as u64);
    let base = 1u128 << log;
    let upper = base + base * (fraction as u128 + 1) / SUB_BUCKETS as u128;
    upper.min(u64::MAX as u128) as u64
}

impl Histogram {
    /// Records one latency.
    pub fn record(&self, latency: Duration) {
        let ns = latency.as_nanos().min(u64::MAX as u128) as u64;
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// A copy of the counts.
    pub fn snapshot(&self) -> LatencySnapshot {
        let buckets: Vec<(u64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| (bucket_upper(i), b.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        LatencySnapshot {
            count: buckets.iter().map(|(_, n)| n).sum(),
            sum: Duration::from_nanos(self.sum_ns.load(Ordering::Relaxed)),
            buckets,
        }
    }
}

/// A latency histogram's contents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencySnapshot {
    /// Latencies recorded.
    pub count: u64,
    /// Their sum.
    pub sum: Duration,
    /// Non-empty buckets: (upper bound in nanoseconds, count), ascending.
    pub buckets: Vec<(u64, u64)>,
}

impl LatencySnapshot {
    /// The latency below which a fraction `q` (0.0–1.0) of the recorded ones fall, to the
    /// precision of a bucket (about 19 %); `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let target = ((self.count as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (upper, n) in &self.buckets {
            seen += n;
            if seen >= target {
                return Some(Duration::from_nanos(*upper));
            }
        }
        None
    }
}

/// The counters of one memoized function.
#[derive(Default)]
pub struct Stats {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) stale_hits: AtomicU64,
    pub(crate) recalculations: AtomicU64,
    pub(crate) wait_timeouts: AtomicU64,
    pub(crate) size_limit_rejections: AtomicU64,
    pub(crate) backend_errors: AtomicU64,
    pub(crate) uncached: AtomicU64,
    pub(crate) hit_latency: Histogram,
    pub(crate) compute_latency: Histogram,
}

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

impl Stats {
    /// Whether this call's hit latency is sampled (a thread-local counter, no shared state).
    #[inline]
    pub(crate) fn sample_this_call() -> bool {
        CALLS.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n % HIT_LATENCY_SAMPLING == 0
        })
    }

    /// A consistent-enough copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (hits, misses) = (load(&self.hits), load(&self.misses));
        StatsSnapshot {
            hits,
            misses,
            stale_hits: load(&self.stale_hits),
            recalculations: load(&self.recalculations),
            wait_timeouts: load(&self.wait_timeouts),
            size_limit_rejections: load(&self.size_limit_rejections),
            backend_errors: load(&self.backend_errors),
            uncached: load(&self.uncached),
            hit_rate: if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            },
            hit_latency: self.hit_latency.snapshot(),
            compute_latency: self.compute_latency.snapshot(),
        }
    }
}

/// What [`Stats::snapshot`] returns (cachier's `MetricSnapshot`, with histograms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    /// Calls served a fresh value from the cache at once.
    pub hits: u64,
    /// Every other cached call: no entry, a stale one (even when `next_time` serves it, as in
    /// cachier), a wait for another caller's computation, `overwrite_cache`.
    pub misses: u64,
    /// Calls that found a stale value (counted also as misses).
    pub stale_hits: u64,
    /// Computations run (in the foreground or as `next_time` refreshes).
    pub recalculations: u64,
    /// Waits for another caller's computation that ran out (`wait_for_calc_timeout`).
    pub wait_timeouts: u64,
    /// Results not stored because of `entry_size_limit`.
    pub size_limit_rejections: u64,
    /// Store failures worked around (lenient calls) or returned (strict calls).
    pub backend_errors: u64,
    /// Computations run without the cache because the store failed (counted also as
    /// recalculations); of the callers of one process missing one key, one computes.
    pub uncached: u64,
    /// `hits / (hits + misses)`, 0.0 before any call.
    pub hit_rate: f64,
    /// Latency of hits, one sampled in [`HIT_LATENCY_SAMPLING`].
    pub hit_latency: LatencySnapshot,
    /// Latency of calls that computed (the function included).
    pub compute_latency: LatencySnapshot,
}

struct Registration {
    namespace: Namespace,
    backend: &'static str,
    stats: Weak<Stats>,
    core: Weak<dyn Core>,
}

/// Every live memoized function, for exporters.
static REGISTRY: LazyLock<Mutex<Vec<Registration>>> = LazyLock::new(Default::default);

pub(crate) fn register(
    namespace: &Namespace,
    backend: &'static str,
    stats: &Arc<Stats>,
    core: &Arc<dyn Core>,
) {
    let mut registry = REGISTRY.lock();
    registry.retain(|r| r.stats.strong_count() > 0);
    registry.push(Registration {
        namespace: namespace.clone(),
        backend,
        stats: Arc::downgrade(stats),
        core: Arc::downgrade(core),
    });
}

/// A live memoized function as [`all_stats`] lists it.
#[derive(Clone)]
pub struct FunctionStats {
    /// Its namespace.
    pub namespace: Namespace,
    /// Its backend's name.
    pub backend: &'static str,
    /// Its counters and histograms.
    pub stats: StatsSnapshot,
    /// Its store, to count entries and bytes ([`Core::entries`]).
    pub core: Arc<dyn Core>,
}

/// Every live memoized function of this process (built twice under one name: listed twice).
pub fn all_stats() -> Vec<FunctionStats> {
    let registry = REGISTRY.lock();
    registry
        .iter()
        .filter_map(|r| {
            Some(FunctionStats {
                namespace: r.namespace.clone(),
                backend: r.backend,
                stats: r.stats.upgrade()?.snapshot(),
                core: r.core.upgrade()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for i in 0..BUCKETS - 1 {
            let upper = bucket_upper(i);
            assert!(upper >= last, "bucket {i}");
            last = upper;
        }
        for ns in [1u64, 2, 3, 7, 100, 1_000, 12_345, 1_000_000, 3_000_000_000] {
            let b = bucket_of(ns);
            assert!(bucket_upper(b) >= ns, "{ns} fits under its bucket's bound");
            assert!(
                bucket_upper(b) <= ns * 2,
                "{ns}: bound {} within a factor of 2",
                bucket_upper(b)
            );
        }
    }

    #[test]
    fn quantiles() {
        let h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        let p50 = s.quantile(0.5).unwrap();
        assert!(
            p50 >= Duration::from_millis(50) && p50 <= Duration::from_millis(64),
            "{p50:?}"
        );
        let p99 = s.quantile(0.99).unwrap();
        assert!(
            p99 >= Duration::from_millis(99) && p99 <= Duration::from_millis(120),
            "{p99:?}"
        );
        assert_eq!(Histogram::default().snapshot().quantile(0.5), None);
    }
}
