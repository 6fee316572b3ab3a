//! Issue 7: the async path (`memoize_async`) on every backend, with multi-process single
//! flight for async callers on the backends processes share. The memory backend's async cases
//! are in `memory.rs`.
#![cfg(feature = "async")]

#[cfg(feature = "file")]
mod file_single {
    fn spec() -> Option<String> {
        Some(format!(
            "file:{}",
            cachier_conformance::fresh_dir("async-file")
                .join("cache")
                .display()
        ))
    }
    cachier_conformance::async_conformance_tests!(spec);
    cachier_conformance::async_multiprocess_tests!(spec);
}

#[cfg(feature = "file")]
mod file_separate {
    fn spec() -> Option<String> {
        Some(format!(
            "file-separate:{}",
            cachier_conformance::fresh_dir("async-file-separate")
                .join("cache")
                .display()
        ))
    }
    cachier_conformance::async_conformance_tests!(spec);
}

#[cfg(feature = "redis")]
mod redis {
    fn spec() -> Option<String> {
        cachier_conformance::service_url("CACHIER_TEST_REDIS_URL", "async redis")
            .map(|url| format!("redis:{url}"))
    }
    cachier_conformance::async_conformance_tests!(spec);
    cachier_conformance::async_multiprocess_tests!(spec);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    fn spec() -> Option<String> {
        Some(format!(
            "sqlite:{}",
            cachier_conformance::fresh_dir("async-sqlite")
                .join("cache.db")
                .display()
        ))
    }
    cachier_conformance::async_conformance_tests!(spec);
    cachier_conformance::async_multiprocess_tests!(spec);
}

#[cfg(feature = "postgres")]
mod postgres {
    fn spec() -> Option<String> {
        cachier_conformance::service_url("CACHIER_TEST_POSTGRES_URL", "async postgres")
            .map(|url| format!("postgres:{url}"))
    }
    cachier_conformance::async_conformance_tests!(spec);
    cachier_conformance::async_multiprocess_tests!(spec);
}
