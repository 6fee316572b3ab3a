//! The native async store against real servers: it never waits for tokio's blocking pool,
//! works on multi-threaded and current-thread runtimes, shares the blocking core's layout,
//! reconnects after a server restart and fails fast on a dead or hung server.
//!
//! The shared server is `CACHIER_TEST_REDIS_URL`; the fault cases start private
//! `redis-server` processes on free loopback ports.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachier_backend_redis::RedisBackend;
use cachier_core::{AsyncCore, Backend, Claim, Key, Namespace, OffloadedCore};
use cachier_testkit::private_redis::PrivateRedis;
use cachier_testkit::unique_name;
use common::{shared_url, MS};

fn unique(label: &str) -> Namespace {
    Namespace::new(&unique_name(label), None).unwrap()
}

fn native(backend: &RedisBackend, ns: &Namespace) -> Arc<dyn AsyncCore> {
    let core = backend.core(ns).unwrap();
    backend.async_core(ns, &core).unwrap()
}

/// Every operation of the async store, checked against the blocking core's view.
async fn exercise(backend: &RedisBackend) {
    let ns = unique("ops");
    let blocking = backend.core(&ns).unwrap();
    let store = native(backend, &ns);
    let key = Key::of(&1u64).unwrap();
    let lease = Duration::from_secs(30);

    assert!(store.get(&key).await.unwrap().is_none());
    let Claim::Claimed(token) = store.claim(&key, lease).await.unwrap() else {
        panic!("a fresh key is claimable")
    };
    assert_eq!(store.claim(&key, lease).await.unwrap(), Claim::Busy);
    let placeholder = store.get(&key).await.unwrap().expect("placeholder");
    assert!(placeholder.being_calculated() && !placeholder.is_completed());
    assert_eq!(placeholder.claim_owner(), Some(token.as_str()));

    store.put(&key, b"forty-two", Some(&token)).await.unwrap();
    let entry = store.get(&key).await.unwrap().expect("stored");
    assert!(entry.is_completed() && !entry.being_calculated());
    assert_eq!(entry.value.as_ref().unwrap().as_ref(), b"forty-two");
    // Same layout as the blocking path.
    let seen = blocking
        .get(&key)
        .unwrap()
        .expect("the blocking core reads it");
    assert_eq!((seen.value, seen.time), (entry.value.clone(), entry.time));

    // A refresh claim keeps the value; releasing it leaves the value.
    let Claim::Claimed(refresh) = store.claim(&key, lease).await.unwrap() else {
        panic!("no live claim, so claimable")
    };
    let during = store.get(&key).await.unwrap().unwrap();
    assert!(during.being_calculated() && during.is_completed());
    store.release(&key, &refresh).await.unwrap();
    let after = store.get(&key).await.unwrap().unwrap();
    assert!(!after.being_calculated() && after.is_completed());

    // clear_being_calculated drops a claim; a placeholder goes with it.
    let other = Key::of(&2u64).unwrap();
    assert!(matches!(
        store.claim(&other, lease).await.unwrap(),
        Claim::Claimed(_)
    ));
    assert_eq!(blocking.len().unwrap(), 2);
    store.clear_being_calculated().await.unwrap();
    assert!(store.get(&other).await.unwrap().is_none());
    assert_eq!(blocking.len().unwrap(), 1);

    // Stale cleanup by the server's clock.
    assert_eq!(
        store
            .delete_stale_entries(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    tokio::time::sleep(MS(5)).await;
    assert_eq!(store.delete_stale_entries(MS(1)).await.unwrap(), 1);
    assert_eq!(blocking.len().unwrap(), 0);

    // A value written by the blocking path is read by the async one, and cleared by it.
    blocking.put(&other, b"sync", None).unwrap();
    let read = store.get(&other).await.unwrap().unwrap();
    assert_eq!(read.value.as_ref().unwrap().as_ref(), b"sync");
    store.clear_cache().await.unwrap();
    assert_eq!(blocking.len().unwrap(), 0);

    // The default wait: a released key reports at once; a live claim until `max`.
    assert!(store.wait(&key, MS(200)).await.unwrap());
    let Claim::Claimed(held) = store.claim(&key, lease).await.unwrap() else {
        panic!("claimable")
    };
    let started = Instant::now();
    assert!(!store.wait(&key, MS(100)).await.unwrap());
    assert!(started.elapsed() >= MS(100));
    store.release(&key, &held).await.unwrap();
    assert!(store.get(&key).await.unwrap().is_none());
}

#[test]
fn operations_on_a_multi_threaded_runtime() {
    let Some(url) = shared_url("operations_on_a_multi_threaded_runtime") else {
        return;
    };
    let backend = RedisBackend::from_url(&url).unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(exercise(&backend));
}

#[test]
fn operations_on_a_current_thread_runtime() {
    let Some(url) = shared_url("operations_on_a_current_thread_runtime") else {
        return;
    };
    let backend = RedisBackend::from_url(&url).unwrap();
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    runtime().block_on(exercise(&backend));
    // The same backend on a second runtime, after the first (and the connection its driver
    // task ran on) is gone.
    runtime().block_on(exercise(&backend));
}

/// A current-thread runtime whose one blocking thread is busy: the offloaded core stalls
/// behind it, the backend's async core (and a memoized async function on it) does not.
#[test]
fn async_core_is_native_and_never_waits_for_the_blocking_pool() {
    let Some(url) = shared_url("async_core_is_native_and_never_waits_for_the_blocking_pool") else {
        return;
    };
    let backend = RedisBackend::from_url(&url).unwrap();
    let ns = unique("native");
    let core = backend.core(&ns).unwrap();
    let store = backend.async_core(&ns, &core).unwrap();
    assert!(format!("{:?}", backend.async_store(&ns)).starts_with("RedisAsyncCore"));
    let key = Key::of(&7u64).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let _busy = tokio::task::spawn_blocking(move || {
            started_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_secs(3));
        });
        while started_rx.try_recv().is_err() {
            tokio::time::sleep(MS(1)).await;
        }

        // Control: the default (offloaded) core waits for the busy pool.
        let offloaded = OffloadedCore(core.clone());
        assert!(
            tokio::time::timeout(MS(300), offloaded.get(&key))
                .await
                .is_err(),
            "an offloaded get should stall behind the busy blocking pool"
        );

        // The backend's async core answers at once.
        tokio::time::timeout(MS(1000), store.put(&key, b"v", None))
            .await
            .expect("async put must not wait for the blocking pool")
            .unwrap();
        let entry = tokio::time::timeout(MS(1000), store.get(&key))
            .await
            .expect("async get must not wait for the blocking pool")
            .unwrap()
            .unwrap();
        assert_eq!(entry.value.as_ref().unwrap().as_ref(), b"v");

        // Through the engine: a miss then a hit, while the pool is still busy.
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        let f = cachier_core::memoize_async(&format!("{}-fn", ns.as_str()), move |x: u64| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { x * 2 }
        })
        .backend(backend.clone())
        .build()
        .unwrap();
        let started = Instant::now();
        let first = tokio::time::timeout(MS(1000), f.try_call(21))
            .await
            .expect("an async miss must not wait for the blocking pool")
            .unwrap();
        let second = tokio::time::timeout(MS(1000), f.try_call(21))
            .await
            .expect("an async hit must not wait for the blocking pool")
            .unwrap();
        assert_eq!((first, second), (42, 42));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the second call is a hit");
        assert!(started.elapsed() < Duration::from_secs(2));
        f.clear_cache().await.unwrap();
        store.clear_cache().await.unwrap();
    });
    runtime.shutdown_background();
}

// ---------------------------------------------------------------------------------------
// Faults, on private servers.

fn on_both_runtimes(body: impl Fn(bool)) {
    body(true);
    body(false);
}

fn runtime(multi: bool) -> tokio::runtime::Runtime {
    if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

/// A restart between calls costs no failed call: the dead connection is replaced and the
/// request sent again.
#[test]
fn a_server_restart_between_calls_costs_no_failed_call() {
    on_both_runtimes(|multi| {
        if !PrivateRedis::available("a_server_restart_between_calls") {
            return;
        }
        let mut server = PrivateRedis::start("a_server_restart_between_calls", &[]);
        let backend = RedisBackend::from_url(&server.url()).unwrap();
        let ns = unique("restart");
        let store = native(&backend, &ns);
        let key = Key::of(&1u64).unwrap();
        let rt = runtime(multi);
        rt.block_on(async {
            store.put(&key, b"before", None).await.unwrap();
            assert!(store.get(&key).await.unwrap().is_some());
        });
        server.stop();
        server.resume();
        rt.block_on(async {
            // The server lost everything (no persistence), and answers through a new
            // connection on the first try.
            assert!(store.get(&key).await.unwrap().is_none());
            store.put(&key, b"after", None).await.unwrap();
            let entry = store.get(&key).await.unwrap().unwrap();
            assert_eq!(entry.value.as_ref().unwrap().as_ref(), b"after");
        });
    });
}

/// A dead server fails calls within the connect timeout, then at once during the backoff;
/// a hung one (`SIGSTOP`) within the response timeout. Both recover.
#[test]
fn a_dead_or_hung_server_fails_fast_and_recovers() {
    on_both_runtimes(|multi| {
        if !PrivateRedis::available("a_dead_or_hung_server") {
            return;
        }
        let mut server = PrivateRedis::start("a_dead_or_hung_server", &[]);
        let backend = RedisBackend::builder(server.url())
            .connect_timeout(MS(300))
            .response_timeout(MS(300))
            .reconnect_backoff(MS(500))
            .build()
            .unwrap();
        let ns = unique("faults");
        let store = native(&backend, &ns);
        let key = Key::of(&1u64).unwrap();
        let rt = runtime(multi);
        rt.block_on(async {
            store.put(&key, b"v", None).await.unwrap();

            // Hung: the request times out (and is not retried, which would double the wait).
            server.signal(libc::SIGSTOP);
            let started = Instant::now();
            let error = store
                .get(&key)
                .await
                .expect_err("a hung server fails the call");
            let took = started.elapsed();
            assert!(took >= MS(250) && took < MS(1500), "{took:?}: {error}");
            server.signal(libc::SIGCONT);
            tokio::time::sleep(MS(50)).await;
            assert!(store.get(&key).await.unwrap().is_some(), "recovered");

            // Dead: the request fails, then connecting is suspended for the backoff.
            server.stop();
            let started = Instant::now();
            store
                .get(&key)
                .await
                .expect_err("a dead server fails the call");
            assert!(started.elapsed() < MS(1500), "{:?}", started.elapsed());
            let started = Instant::now();
            let error = store.get(&key).await.expect_err("still down");
            assert!(started.elapsed() < MS(100), "during the backoff: at once");
            assert!(error.to_string().contains("unreachable"), "{error}");
        });
        server.resume();
        rt.block_on(async {
            tokio::time::sleep(MS(600)).await;
            store.put(&key, b"back", None).await.unwrap();
            assert!(store.get(&key).await.unwrap().is_some(), "recovered");
        });
    });
}
