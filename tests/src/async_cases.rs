//! The async path: cachier's async behaviour, with its fixes (async callers wait for a
//! computation in flight, `next_time` refreshes once per key, and a cancelled leader
//! releases its claim).

use std::future::Future;
use std::time::{Duration, Instant};

use cachier::{AsyncMemoized, CallOptions, Memoize};

use crate::{backend_from_spec, unique_name, Counter};

const MS: fn(u64) -> Duration = Duration::from_millis;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `body` on a fresh multi-threaded runtime.
pub fn block_on<F: Future>(body: F) -> F::Output {
    runtime().block_on(body)
}

/// `f(x) = x * 1000 + n` after an async sleep of `pause`, where `n` counts calls.
fn numbered(
    spec: &str,
    case: &str,
    calls: &Counter,
    pause: Duration,
) -> Memoize<u64, u64, cachier::Async> {
    let calls = calls.clone();
    cachier::memoize_async(&unique_name(case), move |x: u64| {
        let calls = calls.clone();
        async move {
            tokio::time::sleep(pause).await;
            x * 1000 + calls.bump() as u64
        }
    })
    .shared_backend(backend_from_spec(spec))
}

fn built(builder: Memoize<u64, u64, cachier::Async>) -> AsyncMemoized<u64, u64> {
    builder.build().expect("build")
}

/// The second await is a hit.
pub fn async_hit_after_miss(spec: &str) {
    block_on(async {
        let calls = Counter::new();
        let f = built(numbered(spec, "async_hit", &calls, Duration::ZERO));
        let first = f.call(3).await;
        assert_eq!(f.call(3).await, first);
        assert_eq!(calls.get(), 1);
        assert_ne!(f.call(4).await, first);
        assert_eq!(calls.get(), 2);
    });
}

/// `skip_cache` and `overwrite_cache` in async.
pub fn async_skip_and_overwrite(spec: &str) {
    block_on(async {
        let calls = Counter::new();
        let f = built(numbered(spec, "async_skip", &calls, Duration::ZERO));
        let cached = f.call(1).await;
        let skipped = f.call_with(1, &CallOptions::new().skip_cache(true)).await;
        assert_ne!(skipped, cached);
        assert_eq!(f.call(1).await, cached);
        let overwritten = f
            .call_with(1, &CallOptions::new().overwrite_cache(true))
            .await;
        assert_ne!(overwritten, cached);
        assert_eq!(f.call(1).await, overwritten);
        assert_eq!(calls.get(), 3);
    });
}

/// `stale_after` and `max_age` in async.
pub fn async_stale_and_max_age(spec: &str) {
    block_on(async {
        let calls = Counter::new();
        let f = built(numbered(spec, "async_stale", &calls, Duration::ZERO).stale_after(MS(300)));
        let first = f.call(1).await;
        assert_eq!(f.call(1).await, first);
        assert_ne!(
            f.call_with(1, &CallOptions::new().always_stale()).await,
            first
        );
        tokio::time::sleep(MS(400)).await;
        let third = f.call(1).await;
        assert_eq!(calls.get(), 3);
        assert_eq!(f.call(1).await, third);
    });
}

/// Concurrent async misses compute once (cachier's recompute in parallel), and the waiters
/// get the leader's value.
pub fn async_concurrent_misses_compute_once(spec: &str) {
    block_on(async {
        let calls = Counter::new();
        let f = built(numbered(spec, "async_single_flight", &calls, MS(300)));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let f = f.clone();
                tokio::spawn(async move { f.call(2).await })
            })
            .collect();
        let mut values = Vec::new();
        for t in tasks {
            values.push(t.await.expect("task"));
        }
        assert!(values.iter().all(|v| *v == values[0]), "{values:?}");
        assert_eq!(calls.get(), 1);
    });
}

/// `next_time` refreshes once per key, and every stale caller gets the stale value
/// at once (cachier spawns one task per stale call).
pub fn async_next_time_refreshes_once(spec: &str) {
    block_on(async {
        let calls = Counter::new();
        let f = built(
            // The refresh takes 2 s, so that callers who waited for it cannot be mistaken
            // for callers served at once even on a slow store under load.
            numbered(spec, "async_next_time", &calls, MS(2000))
                .stale_after(MS(200))
                .next_time(true),
        );
        let first = f.call(1).await;
        tokio::time::sleep(MS(300)).await;
        let started = Instant::now();
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let f = f.clone();
                tokio::spawn(async move { f.call(1).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task"), first, "stale value served");
        }
        assert!(
            started.elapsed() < MS(1500),
            "stale callers waited for the refresh"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = f.call(1).await;
            if v != first {
                assert_eq!(v, 1002);
                break;
            }
            assert!(Instant::now() < deadline, "no refresh within 10 s");
            tokio::time::sleep(MS(20)).await;
        }
        assert_eq!(
            calls.get(),
            2,
            "one background refresh for five stale callers"
        );
    });
}

/// A cancelled leader releases its claim and a waiter takes
/// over instead of waiting forever.
pub fn async_cancelled_leader_releases_claim(spec: &str) {
    block_on(async {
        let started = Counter::new();
        let s = started.clone();
        let f = cachier::memoize_async(&unique_name("async_cancel"), move |x: u64| {
            let first = s.bump() == 1;
            async move {
                if first {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                x
            }
        })
        .shared_backend(backend_from_spec(spec))
        .lease(Duration::from_secs(60))
        .build()
        .expect("build");
        let leader = {
            let f = f.clone();
            tokio::spawn(async move { f.call(5).await })
        };
        // Wait until the leader computes (it holds the claim by then), however slow the store.
        tokio::time::timeout(Duration::from_secs(10), async {
            while started.get() == 0 {
                tokio::time::sleep(MS(10)).await;
            }
        })
        .await
        .expect("the leader starts computing");
        assert_eq!(started.get(), 1, "one leader computes");
        leader.abort();
        assert!(leader.await.is_err(), "the leader was cancelled");
        let waited = Instant::now();
        let value = tokio::time::timeout(Duration::from_secs(10), f.call(5))
            .await
            .expect("the waiter did not hang");
        assert_eq!(value, 5);
        assert_eq!(started.get(), 2, "the waiter computed itself");
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "taken over long before the 60 s lease"
        );
    });
}

/// Errors are not cached in async.
pub fn async_errors_not_cached(spec: &str) {
    block_on(async {
        let calls = Counter::new();
        let c = calls.clone();
        let f = cachier::memoize_async_fallible(&unique_name("async_errors"), move |x: u64| {
            let c = c.clone();
            async move {
                c.bump();
                Err::<u64, String>(format!("no {x}"))
            }
        })
        .shared_backend(backend_from_spec(spec))
        .build()
        .expect("build");
        assert!(f.call(1).await.is_err());
        assert!(f.call(1).await.is_err());
        assert_eq!(calls.get(), 2);
    });
}

/// `TestAsyncWrapperMaintenanceMethods`: async management calls.
pub fn async_management_calls(spec: &str) {
    block_on(async {
        let calls = Counter::new();
        let f = built(numbered(spec, "async_management", &calls, Duration::ZERO));
        assert_eq!(f.precache_value(&9, 42).await.unwrap(), 42);
        assert_eq!(f.call(9).await, 42);
        f.clear_being_calculated().await.unwrap();
        f.clear_cache().await.unwrap();
        assert_eq!(f.call(9).await, 9001);
        tokio::time::sleep(MS(5)).await;
        assert_eq!(f.delete_stale_entries(Duration::ZERO).await.unwrap(), 1);
        assert_eq!(calls.get(), 1);
    });
}

/// `invalidate` on an async function: the argument computes again, others stay; an
/// invalidation while the argument is being computed leaves that computation alone, and a
/// caller arriving after it gets its value.
pub fn async_invalidate(spec: &str) {
    block_on(async {
        let calls = Counter::new();
        let f = built(numbered(spec, "async_invalidate", &calls, MS(400)));
        let one = f.call(1).await;
        let two = f.call(2).await;
        assert!(f.invalidate(&1).await.unwrap());
        assert!(!f.invalidate(&1).await.unwrap(), "already gone");
        assert_eq!(f.call(2).await, two, "other entries stay");
        let in_flight = tokio::spawn({
            let f = f.clone();
            async move { f.call(1).await }
        });
        tokio::time::sleep(MS(150)).await;
        assert!(
            !f.invalidate(&1).await.unwrap(),
            "being computed: nothing stored yet"
        );
        let waiter = f.call(1).await;
        let recomputed = in_flight.await.unwrap();
        assert_ne!(recomputed, one, "1 was computed again");
        assert_eq!(
            waiter, recomputed,
            "the caller after the invalidation waited for it"
        );
        assert_eq!(calls.get(), 3);
    });
}
