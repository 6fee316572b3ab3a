//! The conformance suite against the memory backend.
#![cfg(feature = "memory")]

cachier_conformance::conformance_tests!(|| Some("memory".to_string()));
cachier_conformance::multiprocess_tests!(@cases || Some("memory".to_string()); stress_no_duplicate_computations);

#[cfg(feature = "async")]
mod asynchronous {
    cachier_conformance::async_conformance_tests!(|| Some("memory".to_string()));
}

#[test]
fn cache_dpath_is_none() {
    let f = cachier::memoize("memory::cache_dpath", |x: u64| x)
        .backend(cachier::backends::memory::MemoryBackend::new())
        .build()
        .unwrap();
    assert_eq!(f.cache_dpath(), None);
}

/// Two functions on one memory store (their near caches on by default) hear each other's
/// overwrite, invalidation and clear at once.
#[test]
fn near_caches_of_one_store_hear_each_other() {
    let backend = cachier::backends::memory::MemoryBackend::new();
    let calls = cachier_conformance::Counter::new();
    let build = || {
        let calls = calls.clone();
        cachier::memoize("memory::near_shared", move |x: u64| {
            x * 1000 + calls.bump() as u64
        })
        .backend(backend.clone())
        .build()
        .unwrap()
    };
    let (a, b) = (build(), build());
    let first = a.call(1);
    assert_eq!(a.call(1), first, "kept");
    b.precache_value(&1, 7).unwrap();
    assert_eq!(a.call(1), 7, "an overwrite by the other function");
    assert!(b.invalidate(&1).unwrap());
    let recomputed = a.call(1);
    assert_ne!(recomputed, 7, "an invalidation by the other function");
    assert_eq!(a.call(1), recomputed);
    b.clear_cache().unwrap();
    assert_ne!(a.call(1), recomputed, "a clear by the other function");
}
