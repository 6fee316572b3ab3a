//! The async path (`memoize_async`) on every backend, with multi-process single
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

    /// The cases above go through the native async store: a miss and a hit complete on a
    /// current-thread runtime whose only blocking thread is busy (an offloaded store would
    /// wait behind it).
    #[test]
    fn async_calls_never_wait_for_the_blocking_pool() {
        use std::time::Duration;
        let Some(spec) = spec() else { return };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (started_tx, started_rx) = std::sync::mpsc::channel();
            let _busy = tokio::task::spawn_blocking(move || {
                started_tx.send(()).expect("send");
                std::thread::sleep(Duration::from_secs(3));
            });
            while started_rx.try_recv().is_err() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let calls = cachier_conformance::Counter::new();
            let counted = calls.clone();
            let name = cachier_conformance::unique_name("async_native_redis");
            let f = cachier::memoize_async(&name, move |x: u64| {
                counted.bump();
                async move { x + 1 }
            })
            .shared_backend(cachier_conformance::backend_from_spec(&spec))
            .build()
            .expect("build");
            for _ in 0..2 {
                let value = tokio::time::timeout(Duration::from_secs(1), f.try_call(41))
                    .await
                    .expect("an async call must not wait for the busy blocking pool")
                    .expect("no store error");
                assert_eq!(value, 42);
            }
            assert_eq!(calls.get(), 1, "the second call is a hit");
            f.clear_cache().await.expect("clear");
        });
        runtime.shutdown_background();
    }
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
