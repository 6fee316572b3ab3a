//! The async core: every operation awaited on the caller's runtime, which must answer while
//! tokio's blocking pool is busy (directly and under an async memoized function), on either kind
//! of runtime, fail fast on a dead server and reconnect after a restart.
#![cfg(feature = "async")]

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use cachier_backend_mongo::MongoBackend;
use cachier_core::{memoize_async, AsyncCore, Backend, Claim, Core, Key, Namespace, OffloadedCore};
use cachier_testkit::private_mongo::PrivateMongo;
use cachier_testkit::{unique_name, Counter};

/// The test server's URL, or `None` with a loud SKIPPED line (a failure when
/// `CACHIER_REQUIRE_SERVICES` or `CI` is set), as the conformance suite does.
fn server_url(test: &str) -> Option<String> {
    cachier_testkit::service_url("CACHIER_TEST_MONGO_URL", test)
}

/// A current-thread runtime whose only blocking thread is kept busy until the returned
/// sender is dropped (or a minute passes): an offloaded core stalls on it.
fn starved_runtime() -> (tokio::runtime::Runtime, mpsc::Sender<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (release, hold) = mpsc::channel::<()>();
    let (started, running) = mpsc::channel();
    runtime.spawn_blocking(move || {
        started.send(()).unwrap();
        let _ = hold.recv_timeout(Duration::from_secs(60));
    });
    running.recv().unwrap();
    (runtime, release)
}

fn cores(backend: &MongoBackend, case: &str) -> (Arc<dyn Core>, Arc<dyn AsyncCore>) {
    let namespace =
        Namespace::new(&format!("async::{case}::{}", std::process::id()), None).unwrap();
    let core = backend.core(&namespace).unwrap();
    let native = backend.async_core(&namespace, &core).unwrap();
    (core, native)
}

/// Every operation of the contract, awaited on the caller's runtime.
async fn exercise(core: &dyn AsyncCore) {
    let key = Key::of(&7u8).unwrap();
    core.clear_cache().await.unwrap();
    assert!(core.get(&key).await.unwrap().is_none());
    let Claim::Claimed(token) = core.claim(&key, Duration::from_secs(10)).await.unwrap() else {
        panic!("a fresh key must be claimable");
    };
    assert!(matches!(
        core.claim(&key, Duration::from_secs(10)).await.unwrap(),
        Claim::Busy
    ));
    assert!(core.get(&key).await.unwrap().unwrap().being_calculated());
    assert!(!core.wait(&key, Duration::from_millis(30)).await.unwrap());
    core.put(&key, b"native", Some(&token)).await.unwrap();
    assert!(core.wait(&key, Duration::from_secs(1)).await.unwrap());
    let entry = core.get(&key).await.unwrap().expect("stored");
    assert_eq!(entry.value.as_ref().map(|v| &v[..]), Some(&b"native"[..]));
    assert!(!entry.being_calculated());
    let Claim::Claimed(token) = core.claim(&key, Duration::from_secs(10)).await.unwrap() else {
        panic!("a released key must be claimable");
    };
    core.release(&key, &token).await.unwrap();
    assert!(matches!(
        core.claim(&key, Duration::from_secs(10)).await.unwrap(),
        Claim::Claimed(_)
    ));
    core.clear_being_calculated().await.unwrap();
    assert!(!core.get(&key).await.unwrap().unwrap().being_calculated());
    assert_eq!(
        core.delete_stale_entries(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(core.delete_stale_entries(Duration::ZERO).await.unwrap(), 1);
    core.clear_cache().await.unwrap();
    assert!(core.get(&key).await.unwrap().is_none());
}

#[test]
fn native_core_never_uses_the_blocking_pool() {
    let Some(url) = server_url("native_core_never_uses_the_blocking_pool") else {
        return;
    };
    let backend = MongoBackend::builder(url)
        .collection("runtime_tests")
        .build()
        .unwrap();
    let (core, native) = cores(&backend, "starved");
    let (runtime, release) = starved_runtime();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), exercise(&*native))
            .await
            .expect("the native core must not wait for the blocking pool");
        // The control: the default offloaded core stalls behind the busy thread, so
        // this test would catch a core that is not native.
        let offloaded = OffloadedCore(core.clone());
        let key = Key::of(&7u8).unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(500), offloaded.get(&key))
                .await
                .is_err(),
            "the offloaded core should have stalled"
        );
    });
    drop(release);
    drop(runtime);
}

#[test]
fn native_core_works_on_a_multi_thread_runtime() {
    let Some(url) = server_url("native_core_works_on_a_multi_thread_runtime") else {
        return;
    };
    let backend = MongoBackend::builder(url)
        .collection("runtime_tests")
        .build()
        .unwrap();
    let (_, native) = cores(&backend, "multi");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let native = native.clone();
        tokio::spawn(async move { exercise(&*native).await })
            .await
            .unwrap();
    });
}

/// An async memoized function's misses and hits are awaited on the caller's runtime: they
/// complete on a current-thread runtime whose only blocking thread is busy, where the default
/// offloaded core (every operation on tokio's blocking pool) would stall.
#[test]
fn async_calls_need_no_blocking_thread() {
    let Some(url) = server_url("mongo::async_native") else {
        return;
    };
    let calls = Counter::new();
    let counted = calls.clone();
    let f = memoize_async(&unique_name("mongo_async_native"), move |x: u64| {
        let calls = counted.clone();
        async move {
            calls.bump();
            x * 2
        }
    })
    .backend(MongoBackend::from_url(&url).expect("backend"))
    .build()
    .expect("build");
    let (runtime, release) = starved_runtime();
    runtime.block_on(async {
        let within = |call| tokio::time::timeout(Duration::from_secs(10), call);
        assert_eq!(within(f.call(21)).await.expect("a miss, not stalled"), 42);
        assert_eq!(within(f.call(21)).await.expect("a hit, not stalled"), 42);
        assert_eq!(calls.get(), 1);
        assert_eq!(within(f.call(22)).await.expect("a miss, not stalled"), 44);
        assert_eq!(calls.get(), 2);
        drop(release);
        f.clear_cache().await.expect("clear");
    });
}

#[test]
fn dead_server_times_out() {
    let backend = MongoBackend::builder("mongodb://127.0.0.1:1/?directConnection=true")
        .server_selection_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let (_, native) = cores(&backend, "dead");
    let (runtime, release) = starved_runtime();
    let key = Key::of(&1u8).unwrap();
    let started = Instant::now();
    let error = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), native.get(&key)).await })
        .expect("the server-selection timeout applies")
        .unwrap_err();
    assert!(error.is_backend(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(release);
}

/// Needs `CACHIER_TEST_SECANTUSD`, the path of `secantusd-py`: the test stops and
/// restarts a server of its own (the shared one is left alone).
#[test]
fn native_core_reconnects_after_a_server_restart() {
    let Some(mut server) = PrivateMongo::start("native_core_reconnects_after_a_server_restart")
    else {
        return;
    };
    let backend = MongoBackend::builder(server.url())
        .server_selection_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let (_, native) = cores(&backend, "restart");
    let key = Key::of(&3u8).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        native.put(&key, b"before", None).await.unwrap();
        assert!(native.get(&key).await.unwrap().is_some());
    });
    server.stop();
    let down = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), native.get(&key)).await });
    assert!(down.expect("times out").is_err(), "the server is down");
    server.resume();
    // The driver reconnects by itself; the first operations may still see the old pool.
    let deadline = Instant::now() + Duration::from_secs(15);
    runtime.block_on(async {
        loop {
            match native.put(&key, b"after", None).await {
                Ok(()) => break,
                Err(error) => {
                    assert!(Instant::now() < deadline, "no reconnection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let entry = native.get(&key).await.unwrap().expect("stored again");
        assert_eq!(entry.value.as_ref().map(|v| &v[..]), Some(&b"after"[..]));
    });
}
