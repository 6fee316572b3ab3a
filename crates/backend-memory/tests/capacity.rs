//! A memory store with a capacity: least recently used values are evicted over every function
//! of the store, and nothing a computation holds is ever evicted, so single flight holds under
//! eviction pressure.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cachier_backend_memory::MemoryBackend;
use cachier_core::{Backend, Claim, ClaimToken, Core, Key, Namespace};
use cachier_testkit::{unique_name, Counter};

const LEASE: Duration = Duration::from_secs(60);

fn key(n: u64) -> Key {
    Key::of(&n).expect("key")
}

fn core(backend: &MemoryBackend, case: &str) -> Arc<dyn Core> {
    let namespace = Namespace::new(&unique_name(case), None).expect("namespace");
    backend.core(&namespace).expect("core")
}

fn value(core: &dyn Core, n: u64) -> Option<Vec<u8>> {
    core.get(&key(n))
        .expect("get")
        .and_then(|entry| entry.value.map(|v| v.to_vec()))
}

fn claim(core: &dyn Core, n: u64) -> ClaimToken {
    match core.claim(&key(n), LEASE).expect("claim") {
        Claim::Claimed(token) => token,
        Claim::Busy => panic!("key {n} is busy"),
    }
}

#[test]
fn least_recently_used_values_go_first() {
    let store = MemoryBackend::builder().max_entries(3).build();
    let f = core(&store, "lru");
    for n in 1..=3 {
        f.put(&key(n), b"v", None).expect("put");
    }
    assert!(
        value(&*f, 1).is_some(),
        "a hit is a use: 1 is now the newest"
    );
    f.put(&key(4), b"v", None).expect("put");
    assert_eq!(value(&*f, 2), None, "2 was the least recently used");
    for n in [1, 3, 4] {
        assert!(value(&*f, n).is_some(), "{n} stays");
    }
    assert_eq!(store.evictions(), 1);
    assert_eq!(store.usage(), (3, 3));
    f.put(&key(3), b"again", None).expect("put");
    f.put(&key(5), b"v", None).expect("put");
    assert_eq!(value(&*f, 1), None, "overwriting 3 used it: 1 went");
    assert_eq!(f.len().expect("len"), 3);
}

#[test]
fn the_byte_bound_counts_encoded_sizes() {
    let store = MemoryBackend::builder().max_bytes(100).build();
    let f = core(&store, "bytes");
    for n in 1..=3 {
        f.put(&key(n), &[n as u8; 40], None).expect("put");
    }
    assert_eq!(
        value(&*f, 1),
        None,
        "120 bytes do not fit in 100: the oldest went"
    );
    assert_eq!(store.usage(), (2, 80));
    f.put(&key(2), &[0; 10], None)
        .expect("a smaller value replaces a larger one");
    assert_eq!(store.usage(), (2, 50));
    assert!(value(&*f, 3).is_some());
}

#[test]
fn a_value_larger_than_the_capacity_is_not_kept() {
    let store = MemoryBackend::builder().max_bytes(10).build();
    let f = core(&store, "too_large");
    f.put(&key(1), b"small", None).expect("put");
    f.put(&key(2), b"kept", None).expect("put");
    let token = claim(&*f, 1);
    f.put(&key(1), b"eleven byte", Some(&token))
        .expect("a value too large is refused quietly");
    assert_eq!(
        f.get(&key(1)).expect("get"),
        None,
        "no old value, no claim left"
    );
    assert_eq!(
        value(&*f, 2).as_deref(),
        Some(&b"kept"[..]),
        "nothing else evicted"
    );
    assert_eq!(store.evictions(), 0);
    let _again = claim(&*f, 1);
}

#[test]
fn eviction_spans_every_function_of_the_store() {
    let store = MemoryBackend::builder().max_entries(4).build();
    let (a, b) = (core(&store, "span_a"), core(&store, "span_b"));
    for n in 1..=4 {
        a.put(&key(n), b"a", None).expect("put");
    }
    b.put(&key(1), b"b", None).expect("put");
    b.put(&key(2), b"b", None).expect("put");
    assert_eq!(value(&*a, 1), None);
    assert_eq!(value(&*a, 2), None);
    assert_eq!(a.len().expect("len") + b.len().expect("len"), 4);
    assert_eq!(store.usage().0, 4);
    let unbounded = MemoryBackend::new();
    let c = core(&unbounded, "unbounded");
    for n in 0..1000 {
        c.put(&key(n), b"c", None).expect("put");
    }
    assert_eq!(unbounded.usage(), (1000, 1000));
    assert_eq!(unbounded.evictions(), 0);
}

/// A value under a live claim (a `next_time` refresh) and a claimed key with nothing stored
/// yet stay through any eviction pressure; once the claim ends, the value is evictable again.
#[test]
fn claimed_keys_are_never_evicted() {
    let store = MemoryBackend::builder().max_entries(2).build();
    let f = core(&store, "claimed");
    f.put(&key(1), b"refreshing", None).expect("put");
    let refresh = claim(&*f, 1);
    let placeholder = claim(&*f, 2);
    for n in 10..100 {
        f.put(&key(n), b"flood", None).expect("put");
    }
    assert_eq!(value(&*f, 1).as_deref(), Some(&b"refreshing"[..]));
    for n in [1, 2] {
        let entry = f.get(&key(n)).expect("get").expect("the claimed key stays");
        assert!(entry.being_calculated(), "key {n}: {entry:?}");
        assert_eq!(f.claim(&key(n), LEASE).expect("claim"), Claim::Busy);
    }
    assert_eq!(
        store.usage().0,
        2,
        "the claimed value and the newest flood value"
    );
    f.put(&key(2), b"done", Some(&placeholder)).expect("put");
    f.release(&key(1), &refresh).expect("release");
    f.put(&key(200), b"more", None).expect("put");
    f.put(&key(201), b"more", None).expect("put");
    assert_eq!(value(&*f, 1), None, "released, it is evictable again");
    assert_eq!(value(&*f, 2), None);
}

/// Callers of one key on two instances of a function (two flights, as in two programs
/// sharing the store) compute it once while another function floods the store far past its
/// capacity: the claim of the computation in flight is never evicted, so the second
/// instance's callers wait for it instead of computing.
#[test]
fn eviction_never_breaks_single_flight() {
    let store = MemoryBackend::builder().max_entries(8).build();
    let name = unique_name("single_flight");
    let calls = Counter::new();
    let twin = || {
        let calls = calls.clone();
        cachier_core::memoize(&name, move |x: u64| {
            thread::sleep(Duration::from_millis(400));
            x * 1000 + calls.bump() as u64
        })
        .backend(store.clone())
        .build()
        .expect("build")
    };
    let (a, b) = (twin(), twin());
    let flood = cachier_core::memoize(&unique_name("flood"), |x: u64| x)
        .backend(store.clone())
        .build()
        .expect("build");
    let flooding = thread::spawn(move || {
        let until = Instant::now() + Duration::from_millis(600);
        let mut n = 0;
        while Instant::now() < until {
            flood.call(n);
            n += 1;
            thread::sleep(Duration::from_micros(200));
        }
        n
    });
    // Callers arrive all through the computation, most of them after evictions began.
    let callers: Vec<_> = (0..8)
        .map(|i| {
            let f = if i % 2 == 0 { a.clone() } else { b.clone() };
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(40 * i));
                f.call(7)
            })
        })
        .collect();
    let values: Vec<u64> = callers.into_iter().map(|c| c.join().unwrap()).collect();
    let flooded = flooding.join().unwrap();
    assert!(flooded > 100, "the flood ran: {flooded} values");
    assert!(
        store.evictions() > 50,
        "evictions ran meanwhile: {}",
        store.evictions()
    );
    assert!(values.iter().all(|v| *v == values[0]), "{values:?}");
    assert_eq!(
        calls.get(),
        1,
        "one computation for every caller of both instances"
    );
}

/// A stale value being refreshed in the background (`next_time`) is under the refresh's
/// claim: eviction pressure does not take it, so other instances' callers keep being served
/// it at once instead of missing and waiting.
#[test]
fn a_value_being_refreshed_is_not_evicted() {
    let store = MemoryBackend::builder().max_entries(4).build();
    let name = unique_name("refresh");
    let calls = Counter::new();
    let twin = || {
        let calls = calls.clone();
        cachier_core::memoize(&name, move |x: u64| {
            if calls.bump() > 1 {
                thread::sleep(Duration::from_millis(500)); // the refresh is slow
            }
            x
        })
        .backend(store.clone())
        .stale_after(Duration::from_millis(50))
        .next_time(true)
        .build()
        .expect("build")
    };
    let (a, b) = (twin(), twin());
    assert_eq!(a.call(1), 1);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(a.call(1), 1, "stale: served, and a refresh starts");
    thread::sleep(Duration::from_millis(50));
    let f = core(&store, "refresh_flood");
    for n in 0..100 {
        f.put(&key(n), b"flood", None).expect("put");
    }
    let started = Instant::now();
    assert_eq!(b.call(1), 1);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "the stale value was served at once, not waited for: {:?}",
        started.elapsed()
    );
    assert_eq!(calls.get(), 2, "one computation, one refresh");
}
