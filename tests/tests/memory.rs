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
