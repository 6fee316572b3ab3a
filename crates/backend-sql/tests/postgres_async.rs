//! The native async path on PostgreSQL (`async` + `postgres` features), against the server in
//! `CACHIER_TEST_POSTGRES_URL`: it is the backend's own `AsyncCore` (not the blocking core on
//! tokio's blocking pool), it never needs the blocking pool, it works on current-thread and
//! multi-threaded runtimes, reconnects after its connections are killed and times out on a
//! server that does not answer.
#![cfg(all(feature = "async", feature = "postgres"))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachier_backend_sql::SqlBackend;
use cachier_core::{memoize_async, AsyncMemoized, Backend, Namespace};
use cachier_testkit::{service_url, unique_name};

/// The server's URL, or `None` (a SKIPPED line; a failure when services are required).
fn url(test: &str) -> Option<String> {
    service_url("CACHIER_TEST_POSTGRES_URL", test)
}

/// A name no other test or run uses.
fn unique(test: &str) -> String {
    unique_name(test).replace("::", "_")
}

/// `f(x) = x * 1000 + n` where `n` counts calls.
fn numbered(backend: SqlBackend, test: &str, calls: &Arc<AtomicUsize>) -> AsyncMemoized<u64, u64> {
    let calls = calls.clone();
    memoize_async(&format!("tests::{}", unique(test)), move |x: u64| {
        let n = calls.fetch_add(1, Ordering::SeqCst) as u64 + 1;
        async move { x * 1000 + n }
    })
    .backend(backend)
    .build()
    .expect("build")
}

fn current_thread(blocking_threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(blocking_threads)
        .enable_all()
        .build()
        .expect("runtime")
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn async_core_is_native_not_the_offloaded_blocking_core() {
    let Some(url) = url("async_core_is_native") else {
        return;
    };
    let backend = SqlBackend::postgres(&url).unwrap();
    let namespace = Namespace::new(&format!("tests::{}", unique("native")), None).unwrap();
    let core = backend.core(&namespace).unwrap();
    let before = Arc::strong_count(&core);
    let native = backend.async_core(&namespace, &core).unwrap();
    // `OffloadedCore` keeps a clone of the blocking core; the native core does not.
    assert_eq!(
        Arc::strong_count(&core),
        before,
        "the async core must not wrap the blocking core"
    );
    drop(native);
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_stays_on_the_blocking_pool() {
    // The control for the check above: the offloaded core does hold the blocking core.
    let backend = SqlBackend::sqlite(":memory:").unwrap();
    let namespace = Namespace::new("tests::sqlite_offloaded", None).unwrap();
    let core = backend.core(&namespace).unwrap();
    let before = Arc::strong_count(&core);
    let offloaded = backend.async_core(&namespace, &core).unwrap();
    assert_eq!(Arc::strong_count(&core), before + 1);
    drop(offloaded);
}

/// Occupies the runtime's only blocking thread for `hold`, then checks that `f`'s hit still
/// answers within a second; returns whether it did.
async fn hit_while_blocking_pool_is_busy(f: &AsyncMemoized<u64, u64>, expected: u64) -> bool {
    let hold = Duration::from_secs(4);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let busy = tokio::task::spawn_blocking(move || {
        let _ = started_tx.send(());
        std::thread::sleep(hold);
    });
    started_rx.await.expect("the blocking task started");
    let hit = tokio::time::timeout(Duration::from_secs(1), f.try_call(3)).await;
    busy.await.expect("blocking task");
    match hit {
        Ok(Ok(value)) => {
            assert_eq!(value, expected);
            true
        }
        Ok(Err(error)) => panic!("hit failed: {error}"),
        Err(_) => false,
    }
}

#[test]
fn a_hit_needs_no_blocking_thread_on_a_current_thread_runtime() {
    let Some(url) = url("hit_needs_no_blocking_thread") else {
        return;
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let f = numbered(SqlBackend::postgres(&url).unwrap(), "busy_pool", &calls);
    current_thread(1).block_on(async {
        let first = f.try_call(3).await.unwrap();
        assert_eq!(first, 3001);
        assert!(
            hit_while_blocking_pool_is_busy(&f, first).await,
            "the hit waited for the blocking pool"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    });
}

#[cfg(feature = "sqlite")]
#[test]
fn an_offloaded_hit_does_wait_for_the_blocking_pool() {
    // The control: the same check fails on a backend that runs on the blocking pool, so the
    // test above can fail.
    let dir = std::env::temp_dir().join(unique("offloaded"));
    std::fs::create_dir_all(&dir).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = SqlBackend::sqlite(dir.join("cache.db")).unwrap();
    let f = numbered(backend, "offloaded", &calls);
    current_thread(1).block_on(async {
        let first = f.try_call(3).await.unwrap();
        assert!(!hit_while_blocking_pool_is_busy(&f, first).await);
    });
    drop(f);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn many_tasks_on_a_multi_threaded_runtime_share_a_small_pool() {
    let Some(url) = url("multi_threaded") else {
        return;
    };
    let backend = SqlBackend::builder(&url)
        .unwrap()
        .pool_size(2)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let f = numbered(backend, "multi", &calls);
    multi_thread().block_on(async {
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let f = f.clone();
                tokio::spawn(async move { (i % 8, f.try_call(i % 8).await) })
            })
            .collect();
        let mut seen = std::collections::HashMap::new();
        for task in tasks {
            let (x, value) = task.await.unwrap();
            let value = value.unwrap();
            assert_eq!(value / 1000, x);
            // Every caller of one argument sees the one computed value.
            assert_eq!(*seen.entry(x).or_insert(value), value);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 8, "one computation per key");
        f.clear_cache().await.unwrap();
        assert_eq!(f.try_call(1).await.unwrap(), 1009);
    });
}

#[test]
fn connections_of_an_idle_current_thread_runtime_are_not_borrowed() {
    let Some(url) = url("idle_runtime") else {
        return;
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let f = numbered(SqlBackend::postgres(&url).unwrap(), "idle_rt", &calls);
    let first = current_thread(4);
    assert_eq!(first.block_on(f.try_call(1)).unwrap(), 1001);
    // `first` stays alive but idle: its connection's task does not run. Another runtime
    // must open its own connection instead of waiting on that one forever.
    let second = current_thread(4);
    let hit = second
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), f.try_call(1)).await });
    assert_eq!(hit.expect("no hang").unwrap(), 1001);
    assert_eq!(first.block_on(f.try_call(1)).unwrap(), 1001);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn reconnects_after_its_connections_are_terminated() {
    let Some(url) = url("async_reconnect") else {
        return;
    };
    let app = unique("app");
    let sep = if url.contains('?') { '&' } else { '?' };
    let backend = SqlBackend::postgres(&format!("{url}{sep}application_name={app}")).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let f = numbered(backend, "reconnect", &calls);
    let rt = multi_thread();
    assert_eq!(rt.block_on(f.try_call(1)).unwrap(), 1001);
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let terminated: i64 = admin
        .query_one(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) t",
            &[&app],
        )
        .unwrap()
        .get(0);
    assert!(
        terminated >= 1,
        "the async pool's connection was terminated"
    );
    // Give the connection task a moment to see the end of its socket (either way, the next
    // statement fails on the dead connection and is retried once on a new one).
    std::thread::sleep(Duration::from_millis(100));
    rt.block_on(async {
        assert_eq!(f.try_call(1).await.unwrap(), 1001);
        assert_eq!(f.try_call(2).await.unwrap(), 2002);
    });
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(f.backend_error_count(), 0);
}

#[test]
fn a_server_that_never_answers_times_out() {
    // Accepts TCP connections (the kernel does, into the backlog) but never speaks.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let backend = SqlBackend::builder(&format!("postgres://cachier@127.0.0.1:{port}/test"))
        .unwrap()
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let f = numbered(backend, "silent", &calls);
    for rt in [current_thread(1), multi_thread()] {
        let started = Instant::now();
        let result = rt.block_on(f.try_call(1));
        assert!(result.is_err(), "{result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "timed out in {:?}",
            started.elapsed()
        );
        // Lenient calls compute without the cache (fast: the failure is remembered for 1 s).
        assert_eq!(rt.block_on(f.call(2)) / 1000, 2);
    }
    drop(silent);
}

#[test]
fn a_refused_connection_fails_fast() {
    let backend = SqlBackend::postgres("postgres://cachier:s3cr3t@127.0.0.1:1/test").unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let f = numbered(backend, "refused", &calls);
    let started = Instant::now();
    let error = current_thread(1)
        .block_on(f.try_call(1))
        .unwrap_err()
        .to_string();
    assert!(!error.contains("s3cr3t"), "{error}");
    assert!(error.contains("postgres"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
