//! The behaviour cases. Each takes a backend spec (see `backend_from_spec`); most port a
//! behaviour of the Python library, and say which.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use cachier::{CallOptions, Error, Memoize, Memoized};

use crate::faults::{Fault, Faulty};
use crate::{backend_from_spec, eventually, unique_name, Counter};

const MS: fn(u64) -> Duration = Duration::from_millis;

/// `f(x) = x * 1000 + n` where `n` counts calls: every computation returns a new value.
pub(crate) fn numbered(spec: &str, case: &str, calls: &Counter) -> Memoize<u64, u64> {
    let calls = calls.clone();
    cachier::memoize(&unique_name(case), move |x: u64| {
        x * 1000 + calls.bump() as u64
    })
    .shared_backend(backend_from_spec(spec))
}

/// [`numbered`], sleeping `pause` first.
fn slow(spec: &str, case: &str, calls: &Counter, pause: Duration) -> Memoize<u64, u64> {
    slow_memoize(&unique_name(case), calls, pause).shared_backend(backend_from_spec(spec))
}

/// `f(x) = x * 1000 + n` after `pause`, where `n` counts calls; on no backend yet.
fn slow_memoize(name: &str, calls: &Counter, pause: Duration) -> Memoize<u64, u64> {
    let calls = calls.clone();
    cachier::memoize(name, move |x: u64| {
        thread::sleep(pause);
        x * 1000 + calls.bump() as u64
    })
}

fn built<A, R>(builder: Memoize<A, R>) -> Memoized<A, R>
where
    A: serde::Serialize + Send + 'static,
    R: Send + 'static,
{
    builder.build().expect("build")
}

/// The second identical call is a hit.
pub fn hit_after_miss(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "hit_after_miss", &calls));
    let first = f.call(7);
    assert_eq!(f.call(7), first);
    assert_eq!(f.call(7), first);
    assert_eq!(calls.get(), 1);
}

/// Different arguments are different entries.
pub fn different_args_are_different_entries(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "different_args", &calls));
    let a = f.call(1);
    let b = f.call(2);
    assert_ne!(a, b);
    assert_eq!(f.call(1), a);
    assert_eq!(f.call(2), b);
    assert_eq!(calls.get(), 2);
}

/// Several arguments as a tuple, and list arguments (unhashable in Python), make keys.
pub fn tuple_and_list_arguments(spec: &str) {
    let calls = Counter::new();
    let c = calls.clone();
    let f = built(
        cachier::memoize(
            &unique_name("tuple_and_list"),
            move |(a, b, list): (u32, String, Vec<i64>)| {
                c.bump();
                format!("{a}-{b}-{}", list.iter().sum::<i64>())
            },
        )
        .shared_backend(backend_from_spec(spec)),
    );
    let args = || (1u32, "x".to_string(), vec![1i64, 2, 3]);
    assert_eq!(f.call(args()), "1-x-6");
    assert_eq!(f.call(args()), "1-x-6");
    assert_eq!(calls.get(), 1);
    assert_eq!(f.call((1, "x".into(), vec![3, 2, 1])), "1-x-6");
    assert_eq!(calls.get(), 2, "list order is part of the key");
}

/// Two functions called with the same arguments never share entries.
pub fn functions_do_not_share_entries(spec: &str) {
    let backend = backend_from_spec(spec);
    let plus = built(
        cachier::memoize(&unique_name("plus"), |x: u64| x + 1).shared_backend(backend.clone()),
    );
    let minus =
        built(cachier::memoize(&unique_name("minus"), |x: u64| x - 1).shared_backend(backend));
    assert_eq!(plus.call(5), 6);
    assert_eq!(minus.call(5), 4);
    assert_eq!(plus.call(5), 6);
}

/// Two functions built with one name on one store share entries (as one function built in
/// two processes must).
pub fn same_name_shares_entries(spec: &str) {
    let name = unique_name("same_name");
    let backend = backend_from_spec(spec);
    let first = built(cachier::memoize(&name, |x: u64| x + 1).shared_backend(backend.clone()));
    let second = built(cachier::memoize(&name, |x: u64| x + 100).shared_backend(backend));
    assert_eq!(first.call(1), 2);
    assert_eq!(second.call(1), 2, "same namespace, same entry");
}

/// A new `version` invalidates old entries.
pub fn version_invalidates(spec: &str) {
    let name = unique_name("version");
    let backend = backend_from_spec(spec);
    let v1 = built(
        cachier::memoize(&name, |x: u64| x + 1)
            .shared_backend(backend.clone())
            .version("1"),
    );
    let v2 = built(
        cachier::memoize(&name, |x: u64| x + 2)
            .shared_backend(backend)
            .version("2"),
    );
    assert_eq!(v1.call(1), 2);
    assert_eq!(v2.call(1), 3);
    assert_eq!(v1.call(1), 2);
}

/// Functions whose `version = "auto"` the next case reads: the same function before and
/// after an edit of its body, and an unchanged copy (as another build or process compiles it).
#[cfg(feature = "macros")]
mod auto_versions {
    use cachier::cachier;

    #[cachier(version = "auto", backend = cachier::backends::memory::MemoryBackend::new())]
    fn as_written(x: u64) -> u64 {
        x + 1
    }

    #[cachier(version = "auto", backend = cachier::backends::memory::MemoryBackend::new())]
    fn edited(x: u64) -> u64 {
        x + 2
    }

    #[cachier(version = "auto", backend = cachier::backends::memory::MemoryBackend::new())]
    fn unchanged(x: u64) -> u64 {
        x + 1
    }

    fn version(namespace: &cachier::store::Namespace) -> String {
        let (_, version) = namespace
            .as_str()
            .rsplit_once('@')
            .expect("a versioned namespace");
        version.to_owned()
    }

    /// The derived versions of the three.
    pub(super) fn versions() -> [String; 3] {
        [
            version(as_written_cache().expect("cache").namespace()),
            version(edited_cache().expect("cache").namespace()),
            version(unchanged_cache().expect("cache").namespace()),
        ]
    }
}

/// `#[cachier(version = "auto")]`: the version the macro derives from a function's tokens
/// keeps an edited function from being served its old entries on this store, while an
/// unchanged function (another build, another process) finds its entries again.
#[cfg(feature = "macros")]
pub fn auto_version_hides_entries_of_an_edited_function(spec: &str) {
    let [as_written, edited, unchanged] = auto_versions::versions();
    assert!(as_written.starts_with("auto-"), "{as_written}");
    assert_ne!(as_written, edited, "an edited body is a new version");
    assert_eq!(as_written, unchanged, "identical tokens, identical version");
    let name = unique_name("auto_version");
    let backend = backend_from_spec(spec);
    let build = |version: &str, add: u64| {
        built(
            cachier::memoize(&name, move |x: u64| x + add)
                .shared_backend(backend.clone())
                .version(version),
        )
    };
    assert_eq!(build(&as_written, 1).call(1), 2);
    assert_eq!(
        build(&edited, 2).call(1),
        3,
        "the edited function computes: the old entry is not served"
    );
    assert_eq!(
        build(&unchanged, 100).call(1),
        2,
        "the unchanged function is served the entry stored under its version"
    );
}

/// A key function (cachier's `hash_func`) decides which calls share an entry.
pub fn custom_key_function(spec: &str) {
    let calls = Counter::new();
    let c = calls.clone();
    let f = built(
        cachier::memoize(
            &unique_name("custom_key"),
            move |(id, _noise): (u32, u64)| {
                c.bump();
                id * 2
            },
        )
        .shared_backend(backend_from_spec(spec))
        .key(|(id, _): &(u32, u64)| *id),
    );
    assert_eq!(f.call((3, 1)), 6);
    assert_eq!(f.call((3, 999)), 6);
    assert_eq!(calls.get(), 1);
    assert_eq!(f.key(&(3, 1)).unwrap(), f.key(&(3, 2)).unwrap());
}

/// `skip_cache`: the value is computed and not stored.
pub fn skip_cache(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "skip_cache", &calls));
    let cached = f.call(1);
    let skipped = f.call_with(1, &CallOptions::new().skip_cache(true));
    assert_ne!(skipped, cached);
    assert_eq!(f.call(1), cached, "the skipped result was not stored");
    assert_eq!(calls.get(), 2);
}

/// `overwrite_cache`: the value is recomputed and stored.
pub fn overwrite_cache(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "overwrite_cache", &calls));
    let old = f.call(1);
    let new = f.call_with(1, &CallOptions::new().overwrite_cache(true));
    assert_ne!(new, old);
    assert_eq!(f.call(1), new);
    assert_eq!(calls.get(), 2);
}

/// `clear_cache` empties the store: the next call computes again.
pub fn clear_cache(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "clear_cache", &calls));
    let old = f.call(1);
    f.call(2);
    f.clear_cache().unwrap();
    assert_eq!(f.core().len().unwrap(), 0);
    assert_ne!(f.call(1), old);
    assert_eq!(calls.get(), 3);
}

/// `invalidate` deletes the entry of one argument, for every instance of the function (as
/// for every process): that argument computes again, other arguments are still hits.
pub fn invalidate_recomputes_one_entry(spec: &str) {
    let calls = Counter::new();
    let name = unique_name("invalidate");
    let backend = backend_from_spec(spec);
    let instance = || {
        let calls = calls.clone();
        built(
            cachier::memoize(&name, move |x: u64| x * 1000 + calls.bump() as u64)
                .shared_backend(backend.clone()),
        )
    };
    let (f, elsewhere) = (instance(), instance());
    let one = f.call(1);
    let two = f.call(2);
    assert_eq!(elsewhere.call(1), one, "one store, one entry");
    assert!(
        elsewhere.invalidate(&1).unwrap(),
        "the entry of 1 was there"
    );
    assert_eq!(f.call(2), two, "other entries stay");
    assert_eq!(calls.get(), 2);
    let recomputed = f.call(1);
    assert_ne!(recomputed, one, "1 is computed again");
    assert_eq!(calls.get(), 3);
    assert_eq!(elsewhere.call(1), recomputed);
    assert!(!f.invalidate(&99).unwrap(), "nothing cached for 99");
    assert!(f.invalidate(&1).unwrap());
    assert!(!f.invalidate(&1).unwrap(), "already gone");
    assert_eq!(f.core().len().unwrap(), 1);
}

/// `invalidate` while the argument is being computed leaves the computation alone: a caller
/// arriving after it (another instance, as another process) waits for that computation and
/// gets its value, with no second computation; the value is then stored.
pub fn invalidate_during_a_computation_keeps_single_flight(spec: &str) {
    let calls = Counter::new();
    let name = unique_name("invalidate_in_flight");
    let backend = backend_from_spec(spec);
    let twin = || built(slow_memoize(&name, &calls, MS(600)).shared_backend(backend.clone()));
    let (a, b) = (twin(), twin());
    let first = thread::spawn(move || a.call(4));
    thread::sleep(MS(200)); // the first caller holds the claim and computes
    assert!(
        !b.invalidate(&4).unwrap(),
        "nothing stored yet: the claim is not a value"
    );
    let second = b.call(4);
    let first = first.join().unwrap();
    assert_eq!(second, first, "the waiter got the computation in flight");
    assert_eq!(calls.get(), 1, "one computation");
    assert_eq!(b.call(4), first, "and it was stored");
    assert!(b.invalidate(&4).unwrap());
}

/// A precached value is served without computing, until the cache is cleared.
pub fn precache_value(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "precache", &calls));
    assert_eq!(f.precache_value(&2, 5).unwrap(), 5);
    assert_eq!(f.call(2), 5);
    assert_eq!(calls.get(), 0);
    f.clear_cache().unwrap();
    assert_eq!(f.call(2), 2001);
}

/// `stale_after`: a hit within it, a recomputation after.
pub fn stale_after(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "stale_after", &calls).stale_after(MS(600)));
    let first = f.call(1);
    assert_eq!(f.call(1), first);
    thread::sleep(MS(800));
    let second = f.call(1);
    assert_ne!(second, first);
    assert_eq!(f.call(1), second);
    assert_eq!(calls.get(), 2);
}

/// `stale_after = 0` recomputes on every call.
pub fn stale_after_zero_always_recomputes(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "stale_zero", &calls).stale_after(Duration::ZERO));
    f.call(1);
    thread::sleep(MS(2));
    f.call(1);
    thread::sleep(MS(2));
    f.call(1);
    assert_eq!(calls.get(), 3);
}

/// `next_time`: the stale value is returned at once and refreshed in the background.
pub fn next_time_returns_stale_then_refreshes(spec: &str) {
    let calls = Counter::new();
    let f = built(
        numbered(spec, "next_time", &calls)
            .stale_after(MS(300))
            .next_time(true),
    );
    let first = f.call(1);
    thread::sleep(MS(400));
    assert_eq!(f.call(1), first, "stale value served");
    let refreshed = eventually(|| {
        let v = f.call(1);
        (v != first).then_some(v)
    });
    assert_eq!(refreshed, 1002);
    assert_eq!(calls.get(), 2);
}

/// `next_time` with concurrent stale callers: every one gets the stale value at once, and one
/// refresh runs (see docs/ARCHITECTURE.md, "Single flight").
pub fn next_time_refreshes_once_and_serves_stale_to_all(spec: &str) {
    // Long enough that a stale caller's few store round trips, however slow the store, stay
    // well under it.
    const REFRESH: Duration = Duration::from_secs(2);
    let calls = Counter::new();
    let f = built(
        slow(spec, "next_time_once", &calls, REFRESH)
            .stale_after(MS(200))
            .next_time(true),
    );
    let first = f.call(1);
    thread::sleep(MS(300));
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let f = f.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let started = Instant::now();
                (f.call(1), started.elapsed())
            })
        })
        .collect();
    for h in handles {
        let (value, took) = h.join().unwrap();
        assert_eq!(
            value, first,
            "every caller gets the stale value during the refresh"
        );
        assert!(
            took < REFRESH / 2,
            "stale callers do not wait for the refresh ({took:?})"
        );
    }
    let refreshed = eventually(|| {
        let v = f.call(1);
        (v != first).then_some(v)
    });
    assert_eq!(refreshed, 1002);
    assert_eq!(calls.get(), 2, "one refresh for six stale callers");
}

/// A failed background refresh keeps the stale value; the next stale call tries again.
pub fn next_time_failed_refresh_keeps_stale(spec: &str) {
    let calls = Counter::new();
    let c = calls.clone();
    let f = built(
        cachier::memoize_fallible(&unique_name("next_time_error"), move |x: u64| {
            let n = c.bump();
            if n == 2 {
                Err(format!("refresh {n} failed"))
            } else {
                Ok(x * 1000 + n as u64)
            }
        })
        .shared_backend(backend_from_spec(spec))
        .stale_after(MS(200))
        .next_time(true),
    );
    assert_eq!(f.call(1), Ok(1001));
    thread::sleep(MS(300));
    assert_eq!(f.call(1), Ok(1001), "stale served while refreshing");
    eventually(|| (calls.get() >= 2).then_some(()));
    thread::sleep(MS(50));
    assert_eq!(f.call(1), Ok(1001), "failed refresh kept the stale value");
    let refreshed = eventually(|| match f.call(1) {
        Ok(1001) => None,
        other => Some(other),
    });
    assert_eq!(refreshed, Ok(1003));
}

/// A per-call `max_age` stricter than `stale_after` makes a value stale sooner.
pub fn max_age_stricter_than_stale_after(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "max_age_stricter", &calls).stale_after(Duration::from_secs(60)));
    let first = f.call(1);
    thread::sleep(MS(300));
    assert_eq!(
        f.call_with(1, &CallOptions::new().max_age(MS(10_000))),
        first
    );
    assert_ne!(f.call_with(1, &CallOptions::new().max_age(MS(100))), first);
    assert_eq!(calls.get(), 2);
}

/// A per-call `max_age` looser than `stale_after` does not extend it: the stricter limit wins.
pub fn max_age_looser_than_stale_after(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "max_age_looser", &calls).stale_after(MS(200)));
    let first = f.call(1);
    thread::sleep(MS(300));
    assert_ne!(
        f.call_with(1, &CallOptions::new().max_age(Duration::from_secs(60))),
        first
    );
    assert_eq!(calls.get(), 2);
}

/// `max_age` without `stale_after`: no `max_age` means `stale_after` (here never) applies; a
/// `max_age` limits this call alone; zero accepts no stored value.
pub fn max_age_alone(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "max_age_alone", &calls));
    let first = f.call(1);
    thread::sleep(MS(300));
    assert_eq!(f.call(1), first, "no max_age: stale_after (never) applies");
    let second = f.call_with(1, &CallOptions::new().max_age(MS(100)));
    assert_ne!(second, first);
    thread::sleep(MS(5));
    assert_ne!(
        f.call_with(1, &CallOptions::new().max_age(Duration::ZERO)),
        second
    );
    assert_eq!(calls.get(), 3);
}

/// `always_stale` (cachier's negative `max_age`) recomputes once; the next plain call is a hit.
pub fn always_stale_recomputes(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "always_stale", &calls));
    let first = f.call(1);
    let second = f.call_with(1, &CallOptions::new().always_stale().verbose(true));
    assert_ne!(second, first);
    assert_eq!(f.call(1), second);
    assert_eq!(calls.get(), 2);
}

/// A value stale by `max_age` alone, with `next_time`: served stale, refreshed in the background.
pub fn max_age_with_next_time(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "max_age_next_time", &calls).next_time(true));
    let first = f.call(1);
    thread::sleep(MS(200));
    assert_eq!(
        f.call_with(1, &CallOptions::new().max_age(MS(50))),
        first,
        "stale value returned"
    );
    let refreshed = eventually(|| {
        let v = f.call(1);
        (v != first).then_some(v)
    });
    assert_eq!(refreshed, 1002);
}

fn none_fn(spec: &str, case: &str, calls: &Counter, pause: Duration) -> Memoize<u64, Option<u64>> {
    let calls = calls.clone();
    cachier::memoize(&unique_name(case), move |_: u64| {
        calls.bump();
        thread::sleep(pause);
        None
    })
    .shared_backend(backend_from_spec(spec))
}

/// A `None` result is not served without `allow_none`: every call computes.
pub fn none_not_served_by_default(spec: &str) {
    let calls = Counter::new();
    let f = built(none_fn(spec, "none_default", &calls, Duration::ZERO));
    assert_eq!(f.call(1), None);
    assert_eq!(f.call(1), None);
    assert_eq!(calls.get(), 2);
}

/// With `allow_none`, a stored `None` is a hit.
pub fn allow_none_serves_none(spec: &str) {
    let calls = Counter::new();
    let f = built(none_fn(spec, "allow_none", &calls, Duration::ZERO).allow_none(true));
    assert_eq!(f.call(1), None);
    assert_eq!(f.call(1), None);
    assert_eq!(calls.get(), 1);
}

/// A stored `None` is served to a call that allows it, not to one that does not.
pub fn per_call_allow_none(spec: &str) {
    let calls = Counter::new();
    let f = built(none_fn(spec, "per_call_allow_none", &calls, Duration::ZERO).allow_none(false));
    assert_eq!(f.call(1), None);
    assert_eq!(f.call_with(1, &CallOptions::new().allow_none(true)), None);
    assert_eq!(calls.get(), 1, "the stored None was served");
    f.call(1);
    assert_eq!(calls.get(), 2);
}

/// With `allow_none`, a caller arriving during the first computation gets the real value, never
/// the placeholder (cachier serves it as a `None`).
pub fn placeholder_never_served(spec: &str) {
    let calls = Counter::new();
    let c = calls.clone();
    let f = built(
        cachier::memoize(&unique_name("placeholder"), move |x: u64| {
            c.bump();
            thread::sleep(MS(400));
            Some(x)
        })
        .shared_backend(backend_from_spec(spec))
        .allow_none(true),
    );
    let first = {
        let f = f.clone();
        thread::spawn(move || f.call(9))
    };
    thread::sleep(MS(100));
    assert_eq!(f.call(9), Some(9));
    assert_eq!(first.join().unwrap(), Some(9));
    assert_eq!(calls.get(), 1);
}

/// An `Err` (cachier: an exception) is returned every time, never cached, and the claim is
/// released.
pub fn errors_are_not_cached(spec: &str) {
    let calls = Counter::new();
    let c = calls.clone();
    let f = built(
        cachier::memoize_fallible(
            &unique_name("errors"),
            move |x: u64| -> Result<u64, String> {
                c.bump();
                Err(format!("no {x}"))
            },
        )
        .shared_backend(backend_from_spec(spec))
        .allow_none(true)
        .wait_for_calc_timeout(Duration::from_secs(5)),
    );
    let started = Instant::now();
    assert_eq!(f.call(1), Err("no 1".into()));
    assert_eq!(f.call(1), Err("no 1".into()));
    assert_eq!(calls.get(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the claim was released, nobody waited"
    );
    assert!(f
        .core()
        .get(&f.key(&1).unwrap())
        .unwrap()
        .is_none_or(|e| !e.being_calculated()));
}

/// A panic in the function propagates and releases the claim at once.
pub fn panic_releases_claim(spec: &str) {
    let calls = Counter::new();
    let c = calls.clone();
    let f = built(
        cachier::memoize(&unique_name("panic"), move |x: u64| {
            if c.bump() == 1 {
                panic!("first call fails");
            }
            x
        })
        .shared_backend(backend_from_spec(spec)),
    );
    let g = f.clone();
    let panicked = thread::spawn(move || g.call(4)).join();
    assert!(panicked.is_err(), "the panic propagates");
    let started = Instant::now();
    assert_eq!(f.call(4), 4);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no wait for a dead claim"
    );
    assert_eq!(calls.get(), 2);
}

/// Of eight threads missing one key at once, exactly one computes.
pub fn concurrent_misses_compute_once(spec: &str) {
    let calls = Counter::new();
    let f = built(slow(spec, "single_flight", &calls, MS(300)));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let f = f.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                f.call(3)
            })
        })
        .collect();
    let values: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(values.iter().all(|v| *v == 3001), "{values:?}");
    assert_eq!(calls.get(), 1);
}

/// A caller arriving during a computation waits for it and wakes promptly when the value
/// lands.
pub fn waiter_gets_in_flight_value_promptly(spec: &str) {
    let calls = Counter::new();
    let f = built(slow(spec, "waiter", &calls, MS(600)));
    let started = Instant::now();
    let first = {
        let f = f.clone();
        thread::spawn(move || (f.call(5), Instant::now()))
    };
    thread::sleep(MS(150));
    let value = f.call(5);
    let woke = Instant::now();
    let (first_value, finished) = first.join().unwrap();
    assert_eq!(value, first_value);
    assert_eq!(calls.get(), 1);
    let lag = woke.saturating_duration_since(finished);
    assert!(lag < MS(250), "waiter woke {lag:?} after the result landed");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Two instances of one function over `backend` (as two processes would have), each
/// computing `x * 1000 + n` after `pause`, where `n` counts computations of both.
fn twins(
    backend: Faulty,
    case: &str,
    calls: &Counter,
    pause: Duration,
) -> (Memoized<u64, u64>, Memoized<u64, u64>) {
    let name = unique_name(case);
    let twin = || built(slow_memoize(&name, calls, pause).backend(backend.clone()));
    (twin(), twin())
}

/// A caller that misses, then wins its claim after another caller stored the value (its
/// claim was slow to arrive), serves that value instead of computing again.
pub fn claim_after_another_stored_serves_it(spec: &str) {
    let calls = Counter::new();
    let faulty = Faulty::new(backend_from_spec(spec), Fault::SlowClaims(MS(200)));
    let (a, b) = twins(faulty, "claim_after_store", &calls, MS(20));
    let first = thread::spawn(move || a.call(1));
    thread::sleep(MS(60)); // b misses before a stores, and claims after a stored
    let second = b.call(1);
    let first = first.join().unwrap();
    assert_eq!(second, first, "the value stored meanwhile is served");
    assert_eq!(calls.get(), 1, "one computation");
    assert_eq!(b.call(1), first);
}

/// A `next_time` refresh keeps its claim while it waits in the background pool's queue: with
/// every worker busy for longer than the lease, another caller (another instance, as in
/// another process) that finds the value stale does not start a second refresh.
pub fn queued_refresh_keeps_its_claim(spec: &str) {
    let backend = backend_from_spec(spec);
    let workers = cachier::get_global_params().max_workers.max(1);
    let blockers = Counter::new();
    let busy = built(
        slow_memoize(&unique_name("queued_refresh_busy"), &blockers, MS(1500))
            .shared_backend(backend.clone())
            .stale_after(MS(1))
            .next_time(true),
    );
    let calls = Counter::new();
    let name = unique_name("queued_refresh");
    let twin = || {
        built(
            slow_memoize(&name, &calls, MS(10))
                .shared_backend(backend.clone())
                .stale_after(MS(100))
                .next_time(true)
                .lease(MS(300)),
        )
    };
    let (a, b) = (twin(), twin());
    for x in 0..workers as u64 {
        busy.precache_value(&x, 0).unwrap();
    }
    a.precache_value(&1, 0).unwrap();
    thread::sleep(MS(150));
    for x in 0..workers as u64 {
        assert_eq!(
            busy.call(x),
            0,
            "stale, and a refresh takes a worker for 1.5 s"
        );
    }
    assert_eq!(a.call(1), 0, "stale; its refresh waits for a worker");
    thread::sleep(MS(700)); // more than two leases
    assert_eq!(b.call(1), 0, "stale, and a refresh is already claimed");
    let refreshed = eventually(|| {
        let v = a.call(1); // fresh for 100 ms once refreshed: polled every 20 ms
        (v != 0).then_some(v)
    });
    assert_eq!(refreshed, 1001);
    thread::sleep(MS(300)); // a second refresh, if one was started, has run by now
    assert_eq!(calls.get(), 1, "one refresh");
}

/// A value the store refuses releases its claim at once: a waiter takes over without waiting
/// for the lease to lapse, and later callers never stall on a claim nobody holds.
pub fn refused_put_releases_claim(spec: &str) {
    let calls = Counter::new();
    let faulty = Faulty::new(backend_from_spec(spec), Fault::RefusedPuts);
    let (a, b) = twins(faulty, "refused_put", &calls, MS(300));
    let started = Instant::now();
    let first = {
        let a = a.clone();
        thread::spawn(move || a.call(1))
    };
    thread::sleep(MS(100));
    let second = b.call(1); // waits for a's claim, then computes its own value
    let first = first.join().unwrap();
    assert_ne!(first, second, "the waiter computed (nothing was stored)");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the waiter took over after {took:?}: the refused put kept its claim"
    );
    let later = Instant::now();
    assert_eq!(a.call(1) % 1000, 3, "a later caller computes");
    assert!(
        later.elapsed() < Duration::from_secs(2),
        "a later caller stalled {:?} on a claim nobody holds",
        later.elapsed()
    );
    assert_eq!(calls.get(), 3);
}

/// `wait_for_calc_timeout`: a computation that ends within the timeout is waited for (one
/// computation).
pub fn wait_for_calc_timeout_ok(spec: &str) {
    let calls = Counter::new();
    let f = built(
        slow(spec, "timeout_ok", &calls, MS(300)).wait_for_calc_timeout(Duration::from_secs(3)),
    );
    let first = {
        let f = f.clone();
        thread::spawn(move || f.call(1))
    };
    thread::sleep(MS(100));
    assert_eq!(f.call(1), first.join().unwrap());
    assert_eq!(calls.get(), 1);
}

/// `wait_for_calc_timeout`: past the timeout the waiter computes itself.
pub fn wait_for_calc_timeout_slow(spec: &str) {
    let calls = Counter::new();
    let f = built(slow(spec, "timeout_slow", &calls, MS(1500)).wait_for_calc_timeout(MS(300)));
    let first = {
        let f = f.clone();
        thread::spawn(move || f.call(1))
    };
    thread::sleep(MS(100));
    let started = Instant::now();
    let second = f.call(1);
    let first = first.join().unwrap();
    assert_ne!(first, second, "the waiter computed its own value");
    assert!(started.elapsed() >= MS(300));
    assert_eq!(calls.get(), 2);
    assert!([first, second].contains(&f.call(1)));
}

/// Clearing the claim mid-computation lets the next caller compute its own value.
pub fn clear_being_calculated_lets_next_caller_compute(spec: &str) {
    let calls = Counter::new();
    let f = built(slow(spec, "clear_being_calculated", &calls, MS(800)));
    let first = {
        let f = f.clone();
        thread::spawn(move || f.call(1))
    };
    thread::sleep(MS(200));
    f.clear_being_calculated().unwrap();
    let second = f.call(1);
    let first = first.join().unwrap();
    assert_ne!(first, second);
    assert_eq!(calls.get(), 2);
}

/// `clear_being_calculated` on an empty cache is harmless.
pub fn clear_being_calculated_empty(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "clear_being_calculated_empty", &calls));
    f.clear_being_calculated().unwrap();
    f.clear_cache().unwrap();
    assert_eq!(f.call(1), 1001);
}

fn text_fn(spec: &str, case: &str, calls: &Counter) -> Memoize<u64, String> {
    let calls = calls.clone();
    cachier::memoize(&unique_name(case), move |_: u64| {
        calls.bump();
        "x".repeat(50)
    })
    .shared_backend(backend_from_spec(spec))
}

/// A value over `entry_size_limit` is returned, not stored.
pub fn entry_size_limit_not_cached(spec: &str) {
    let calls = Counter::new();
    let f = built(text_fn(spec, "size_limit_over", &calls).entry_size_limit("10B"));
    assert_eq!(f.call(1).len(), 50);
    assert_eq!(f.call(1).len(), 50);
    assert_eq!(calls.get(), 2);
}

/// A value within `entry_size_limit` is stored.
pub fn entry_size_limit_cached(spec: &str) {
    let calls = Counter::new();
    let f = built(text_fn(spec, "size_limit_under", &calls).entry_size_limit("1KB"));
    f.call(1);
    f.call(1);
    assert_eq!(calls.get(), 1);
}

/// A size text that does not parse is a configuration error naming the parameter.
pub fn invalid_entry_size_limit(spec: &str) {
    let calls = Counter::new();
    let err = text_fn(spec, "size_limit_bad", &calls)
        .entry_size_limit("10XB")
        .build()
        .unwrap_err();
    match err {
        Error::Config { param, ref message } => {
            assert_eq!(param, "entry_size_limit");
            assert!(message.contains("10XB"), "{message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

/// `cleanup_stale`: stale entries are deleted in the background.
pub fn cleanup_stale_deletes_old_entries(spec: &str) {
    let calls = Counter::new();
    let stale_after = MS(1000);
    let f = built(
        numbered(spec, "cleanup", &calls)
            .stale_after(stale_after)
            .cleanup_stale(true)
            .cleanup_interval(Duration::ZERO),
    );
    let started = Instant::now();
    f.call(1);
    f.call(2);
    let len = f.core().len().unwrap();
    // On a machine stalled past `stale_after`, the second call's cleanup rightly takes both.
    if started.elapsed() < stale_after {
        assert_eq!(len, 2, "fresh entries survive a cleanup");
    }
    thread::sleep(stale_after + MS(100));
    f.call(3);
    eventually(|| (f.core().len().unwrap() == 1).then_some(()));
}

/// `cleanup_interval`: one cleanup per interval. The first call's cleanup is seen deleting an old entry; a second old entry then survives a
/// call within the interval.
pub fn cleanup_interval_limits_runs(spec: &str) {
    let calls = Counter::new();
    let f = built(
        numbered(spec, "cleanup_interval", &calls)
            .stale_after(MS(200))
            .cleanup_stale(true)
            .cleanup_interval(Duration::from_secs(3600)),
    );
    let stored = |x: u64| f.core().get(&f.key(&x).unwrap()).unwrap().is_some();
    f.precache_value(&9, 9).unwrap();
    thread::sleep(MS(300));
    f.call(1); // the first call runs a cleanup: entry 9 is stale
    eventually(|| (!stored(9)).then_some(()));
    f.precache_value(&8, 8).unwrap();
    thread::sleep(MS(300));
    f.call(2); // within the interval: no cleanup
    thread::sleep(MS(300));
    assert!(stored(8), "no second cleanup within the interval");
    assert!(stored(2));
}

/// `delete_stale_entries`: only entries older than the limit go.
pub fn delete_stale_entries_directly(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "delete_stale", &calls));
    f.call(1);
    thread::sleep(MS(1200));
    f.call(2);
    assert_eq!(f.delete_stale_entries(MS(600)).unwrap(), 1);
    assert_eq!(f.core().len().unwrap(), 1);
    assert_eq!(f.call(2), 2002, "the fresh entry stayed");
    thread::sleep(MS(5));
    assert_eq!(f.delete_stale_entries(Duration::ZERO).unwrap(), 1);
    assert_eq!(f.core().len().unwrap(), 0);
}

/// Stored bytes that do not decode are a miss, recomputed and overwritten, never a panic.
pub fn garbage_value_is_a_miss(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "garbage", &calls));
    let key = f.key(&1).unwrap();
    f.core().put(&key, b"\xffnot a value", None).unwrap();
    assert_eq!(f.call(1), 1001);
    assert_eq!(f.call(1), 1001);
    assert_eq!(calls.get(), 1, "the recomputed value overwrote the garbage");
}

/// A verbose call traces its decisions through `tracing`.
pub fn verbose_traces_decisions(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "verbose", &calls));
    let log = crate::capture_logs(|| {
        f.call_with(1, &CallOptions::new().verbose(true));
        f.call_with(1, &CallOptions::new().verbose(true));
        f.call(1);
    });
    assert!(
        log.contains("No entry found. No current calc. Calling like a boss."),
        "{log}"
    );
    assert!(log.contains("And it is fresh!"), "{log}");
    assert_eq!(
        log.matches("Entry found.").count(),
        1,
        "non-verbose calls stay quiet: {log}"
    );
}

/// Strict mode on a healthy store behaves as a lenient call.
pub fn strict_mode_returns_ok_when_healthy(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "strict", &calls));
    assert_eq!(f.try_call(1).unwrap(), 1001);
    assert_eq!(f.try_call(1).unwrap(), 1001);
    assert_eq!(f.backend_error_count(), 0);
}

/// `stats()` counts hits, misses, stale hits, recalculations and size-limit rejections, and
/// records latencies.
pub fn statistics_count_calls(spec: &str) {
    let calls = Counter::new();
    let f = built(numbered(spec, "stats", &calls).stale_after(MS(300)));
    f.call(1);
    f.call(1);
    f.call(2);
    let s = f.stats();
    assert_eq!((s.hits, s.misses, s.recalculations), (1, 2, 2), "{s:?}");
    assert!((s.hit_rate - 1.0 / 3.0).abs() < 1e-9, "{s:?}");
    assert_eq!(s.compute_latency.count, 2);
    thread::sleep(MS(400));
    f.call(1);
    let s = f.stats();
    assert_eq!(
        (s.stale_hits, s.misses, s.recalculations),
        (1, 3, 3),
        "{s:?}"
    );
    f.call_with(3, &CallOptions::new().skip_cache(true));
    assert_eq!(f.stats().misses, 3, "skip_cache is not counted");
    let big = built(text_fn(spec, "stats_size", &calls).entry_size_limit("10B"));
    big.call(1);
    assert_eq!(big.stats().size_limit_rejections, 1);
    for i in 0..200 {
        f.call(i % 2 + 1);
    }
    assert!(
        f.stats().hit_latency.count >= 1,
        "hit latencies are sampled"
    );
    assert_eq!(f.stats().backend_errors, 0);
}

/// A wait that runs out is counted.
pub fn statistics_count_wait_timeouts(spec: &str) {
    let calls = Counter::new();
    let f = built(slow(spec, "stats_wait", &calls, MS(800)).wait_for_calc_timeout(MS(200)));
    let first = {
        let f = f.clone();
        thread::spawn(move || f.call(1))
    };
    thread::sleep(MS(100));
    f.call(1);
    first.join().unwrap();
    assert_eq!(f.stats().wait_timeouts, 1);
}

/// A store lists its namespaces and a function's entries without their values.
pub fn listing_namespaces_and_entries(spec: &str) {
    let backend = backend_from_spec(spec);
    let calls = Counter::new();
    let c = calls.clone();
    let f = built(
        cachier::memoize(&unique_name("listing"), move |x: u64| {
            if x == 3 {
                thread::sleep(MS(600));
            }
            x * 1000 + c.bump() as u64
        })
        .shared_backend(backend.clone()),
    );
    f.call(1);
    f.call(2);
    let namespaces = backend.namespaces().unwrap();
    assert!(
        namespaces.contains(f.namespace()),
        "{:?} lists {}",
        namespaces,
        f.namespace()
    );
    let mut entries = f.core().entries().unwrap();
    entries.sort_by_key(|e| e.key);
    let mut keys = vec![f.key(&1).unwrap(), f.key(&2).unwrap()];
    keys.sort();
    assert_eq!(entries.iter().map(|e| e.key).collect::<Vec<_>>(), keys);
    for e in &entries {
        assert!(e.completed && !e.being_calculated(), "{e:?}");
        assert!(e.size > 0 && e.age < Duration::from_secs(60), "{e:?}");
    }
    let computing = {
        let f = f.clone();
        thread::spawn(move || f.call(3))
    };
    let listed = crate::cases::eventually(|| {
        let entries = f.core().entries().unwrap();
        entries
            .iter()
            .find(|e| e.key == f.key(&3).unwrap() && e.being_calculated())
            .cloned()
    });
    assert!(
        !listed.completed,
        "a computation in flight is listed as being calculated: {listed:?}"
    );
    computing.join().unwrap();
    f.clear_cache().unwrap();
    assert!(f.core().entries().unwrap().is_empty());
    assert!(
        !backend.namespaces().unwrap().contains(f.namespace()),
        "a cleared function is no longer listed"
    );
}

/// While the store fails, the callers of one process that miss one key at once compute it
/// once (the others take that result), the failure is logged once, not once per caller, and
/// the statistics count the uncached computation. `backend` is a store that cannot be
/// reached (or opened).
pub fn outage_computes_once_per_process(backend: Arc<dyn cachier::store::Backend>) {
    const CALLERS: usize = 50;
    let calls = Counter::new();
    let f = built(
        slow_memoize(&unique_name("outage_once"), &calls, MS(300)).shared_backend(backend.clone()),
    );
    let log = crate::capture_logs(|| {
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let barrier = Arc::new(Barrier::new(CALLERS));
        let handles: Vec<_> = (0..CALLERS)
            .map(|_| {
                let (f, barrier, dispatch) = (f.clone(), barrier.clone(), dispatch.clone());
                thread::spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        barrier.wait();
                        f.call(1)
                    })
                })
            })
            .collect();
        let values: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(values.iter().all(|v| *v == 1001), "{values:?}");
    });
    assert_eq!(calls.get(), 1, "one computation for {CALLERS} callers");
    assert_eq!(
        log.matches("cache unavailable").count(),
        1,
        "one warning, not one per caller: {log}"
    );
    let s = f.stats();
    assert_eq!(
        (s.misses, s.recalculations, s.uncached),
        (CALLERS as u64, 1, 1),
        "{s:?}"
    );
    assert!(s.backend_errors >= CALLERS as u64, "{s:?}");
    #[cfg(feature = "async")]
    outage_computes_once_per_process_async(backend);
}

/// [`outage_computes_once_per_process`] with async callers (tasks on a tokio runtime).
#[cfg(feature = "async")]
fn outage_computes_once_per_process_async(backend: Arc<dyn cachier::store::Backend>) {
    use tracing::instrument::WithSubscriber;
    const CALLERS: usize = 50;
    let calls = Counter::new();
    let c = calls.clone();
    let f = cachier::memoize_async(&unique_name("outage_once_async"), move |x: u64| {
        let c = c.clone();
        async move {
            tokio::time::sleep(MS(300)).await;
            x * 1000 + c.bump() as u64
        }
    })
    .shared_backend(backend)
    .build()
    .expect("build");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let log = crate::capture_logs(|| {
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        runtime.block_on(async {
            let handles: Vec<_> = (0..CALLERS)
                .map(|_| {
                    let f = f.clone();
                    tokio::spawn(async move { f.call(1).await }.with_subscriber(dispatch.clone()))
                })
                .collect();
            for handle in handles {
                assert_eq!(handle.await.unwrap(), 1001);
            }
        });
    });
    assert_eq!(calls.get(), 1, "one computation for {CALLERS} tasks");
    assert_eq!(log.matches("cache unavailable").count(), 1, "{log}");
    assert_eq!(f.stats().uncached, 1);
}

/// The lease of [`oversized_value_releases_claim`].
const OVERSIZED_LEASE: Duration = Duration::from_secs(60);

/// A value too large for the store (`size` bytes): the leader returns it uncached and frees
/// its claim at once, so a caller waiting in another instance (as in another process) takes
/// over without waiting for the lease, and later callers never stall.
///
/// The lease is long (60 s) so that the bounds below, generous for a slow store refusing a
/// large value, still tell a release from a lapsed lease.
pub fn oversized_value_releases_claim(backend: Arc<dyn cachier::store::Backend>, size: usize) {
    let calls = Counter::new();
    let name = unique_name("oversized");
    let twin = || {
        let calls = calls.clone();
        built(
            cachier::memoize(&name, move |x: u64| {
                let n = calls.bump();
                thread::sleep(MS(300));
                vec![x as u8; size + n]
            })
            .lease(OVERSIZED_LEASE)
            .shared_backend(backend.clone()),
        )
    };
    let (a, b) = (twin(), twin());
    let started = Instant::now();
    let first = thread::spawn(move || a.call(7).len());
    eventually(|| (calls.get() == 1).then_some(())); // a computes; b will wait for it
    let second = b.call(7);
    assert_eq!(first.join().unwrap(), size + 1);
    assert_eq!(second.len(), size + 2, "the waiter computed its own value");
    let took = started.elapsed();
    assert!(
        took < OVERSIZED_LEASE / 3,
        "the waiter took over after {took:?}: the refused value kept its claim"
    );
    let later = Instant::now();
    assert_eq!(b.call(7).len(), size + 3);
    assert!(
        later.elapsed() < OVERSIZED_LEASE / 6,
        "a later caller stalled {:?}",
        later.elapsed()
    );
    assert_eq!(calls.get(), 3);
}
