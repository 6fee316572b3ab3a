//! The conformance suite, the multi-process tests and the MongoDB-specific checks against a
//! real server at `CACHIER_TEST_MONGO_URL` (scripts/test.sh starts SecantusDB and sets it).
#![cfg(feature = "mongo")]

use std::time::{Duration, Instant};

use cachier::{backends::mongo::MongoBackend, CallOptions};
use cachier_backend_mongo::mongodb::bson::{doc, Bson, DateTime, Document};
use cachier_conformance::{capture_logs, service_url, unique_name, Counter};

fn spec() -> Option<String> {
    service_url("CACHIER_TEST_MONGO_URL", "mongo").map(|url| format!("mongo:{url}"))
}

cachier_conformance::conformance_tests!(spec);

mod multiprocess {
    cachier_conformance::multiprocess_tests!(super::spec);
}

/// Async callers: the backend's native async core (`MongoAsyncCore`) awaits the driver on the
/// caller's runtime.
#[cfg(feature = "async")]
mod asynchronous {
    use std::time::Duration;

    use cachier::backends::mongo::MongoBackend;
    use cachier_conformance::{service_url, unique_name, Counter};

    cachier_conformance::async_conformance_tests!(super::spec);
    cachier_conformance::async_multiprocess_tests!(super::spec);

    /// Hits and misses are awaited on the caller's runtime: they complete on a current-thread
    /// runtime whose only blocking thread is busy, where the default offloaded core (every
    /// operation on tokio's blocking pool) would stall.
    #[test]
    fn async_calls_need_no_blocking_thread() {
        let Some(url) = service_url("CACHIER_TEST_MONGO_URL", "mongo::async_native") else {
            return;
        };
        let calls = Counter::new();
        let counted = calls.clone();
        let f = cachier::memoize_async(&unique_name("mongo_async_native"), move |x: u64| {
            let calls = counted.clone();
            async move {
                calls.bump();
                x * 2
            }
        })
        .backend(MongoBackend::from_url(&url).expect("backend"))
        .build()
        .expect("build");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel();
        runtime.block_on(async {
            assert_eq!(f.call(21).await, 42);
            tokio::task::spawn_blocking(move || {
                started.send(()).unwrap();
                let _ = hold.recv_timeout(Duration::from_secs(60));
            });
            running.recv().unwrap();
            let within = |call| tokio::time::timeout(Duration::from_secs(10), call);
            assert_eq!(within(f.call(21)).await.expect("a hit, not stalled"), 42);
            assert_eq!(calls.get(), 1);
            assert_eq!(within(f.call(22)).await.expect("a miss, not stalled"), 44);
            assert_eq!(calls.get(), 2);
            drop(release);
            f.clear_cache().await.expect("clear");
        });
    }
}

/// A backend on a collection of its own, dropped by [`drop_collection`].
fn private_backend(url: &str, case: &str) -> MongoBackend {
    let collection = unique_name(case).replace("::", "_");
    MongoBackend::builder(url)
        .database("cachier_tests")
        .collection(collection)
        .build()
        .expect("backend")
}

fn drop_collection(backend: &MongoBackend) {
    let collection = backend.collection().clone();
    backend
        .block_on(async move { collection.drop().await })
        .unwrap()
        .expect("drop collection");
}

fn find(backend: &MongoBackend, filter: Document) -> Option<Document> {
    let collection = backend.collection().clone();
    backend
        .block_on(async move { collection.find_one(filter).await })
        .unwrap()
        .expect("find_one")
}

#[test]
fn cache_dpath_is_none() {
    let Some(url) = service_url("CACHIER_TEST_MONGO_URL", "mongo::cache_dpath_is_none") else {
        return;
    };
    let f = cachier::memoize(&unique_name("mongo_dpath"), |x: u64| x)
        .backend(MongoBackend::from_url(&url).unwrap())
        .build()
        .unwrap();
    assert_eq!(f.cache_dpath(), None);
}

/// The (func, key) index is created on first use and is unique: a second document for the
/// same key is refused, which is what makes claims atomic.
#[test]
fn unique_index_exists_after_first_use() {
    let Some(url) = service_url("CACHIER_TEST_MONGO_URL", "mongo::unique_index") else {
        return;
    };
    let backend = private_backend(&url, "unique_index");
    let f = cachier::memoize(&unique_name("mongo_index"), |x: u64| x + 1)
        .backend(backend.clone())
        .build()
        .unwrap();
    assert_eq!(f.call(1), 2);
    let collection = backend.collection().clone();
    let indexes = backend
        .block_on(async move {
            let mut cursor = collection.list_indexes().await?;
            let mut found = Vec::new();
            while cursor.advance().await? {
                found.push(cursor.deserialize_current()?);
            }
            Ok::<_, cachier_backend_mongo::mongodb::error::Error>(found)
        })
        .unwrap()
        .expect("list indexes");
    let index = indexes
        .iter()
        .find(|i| {
            i.options.as_ref().and_then(|o| o.name.as_deref())
                == Some(cachier_backend_mongo::INDEX_NAME)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {} index: {indexes:?}",
                cachier_backend_mongo::INDEX_NAME
            )
        });
    assert_eq!(index.keys, doc! { "func": 1, "key": 1 });
    assert_eq!(
        index.options.as_ref().and_then(|o| o.unique),
        Some(true),
        "{index:?}"
    );
    let collection = backend.collection().clone();
    let duplicate = backend
        .block_on(async move {
            collection
                .insert_many([
                    doc! { "func": "dup", "key": "k" },
                    doc! { "func": "dup", "key": "k" },
                ])
                .await
        })
        .unwrap();
    assert!(
        duplicate.is_err(),
        "the second document for one key was accepted"
    );
    drop_collection(&backend);
}

/// Documents look like cachier's: func, key, binary value, UTC datetime, flags; the claim is
/// gone once the value is stored.
#[test]
fn documents_have_cachiers_shape() {
    let Some(url) = service_url("CACHIER_TEST_MONGO_URL", "mongo::document_shape") else {
        return;
    };
    let backend = private_backend(&url, "document_shape");
    let name = unique_name("mongo_shape");
    let f = cachier::memoize(&name, |x: u64| x * 2)
        .backend(backend.clone())
        .build()
        .unwrap();
    assert_eq!(f.call(21), 42);
    let key = f.key(&21).unwrap().to_hex();
    let doc = find(&backend, doc! { "func": &name, "key": &key }).expect("stored document");
    assert!(matches!(doc.get("value"), Some(Bson::Binary(_))), "{doc:?}");
    let Some(Bson::DateTime(time)) = doc.get("time") else {
        panic!("time is not a datetime: {doc:?}")
    };
    let skew = (DateTime::now().timestamp_millis() - time.timestamp_millis()).abs();
    assert!(skew < 60_000, "time is UTC now ({skew} ms off)");
    assert_eq!(doc.get_bool("completed"), Ok(true));
    assert_eq!(doc.get_bool("processing"), Ok(false));
    assert_eq!(doc.get("claim_owner"), Some(&Bson::Null));
    drop_collection(&backend);
}

/// A document whose value is not binary at all (another writer's garbage) is a miss: the
/// value is recomputed and overwrites it. So is a foreign placeholder with no lease.
#[test]
fn garbage_document_is_recomputed() {
    let Some(url) = service_url("CACHIER_TEST_MONGO_URL", "mongo::garbage_document") else {
        return;
    };
    let backend = private_backend(&url, "garbage_document");
    let name = unique_name("mongo_garbage");
    let calls = Counter::new();
    let c = calls.clone();
    let f = cachier::memoize(&name, move |x: u64| x * 1000 + c.bump() as u64)
        .backend(backend.clone())
        .build()
        .unwrap();
    let key = |x: u64| f.key(&x).unwrap().to_hex();
    let collection = backend.collection().clone();
    let documents = [
        doc! { "func": &name, "key": key(1), "value": "not binary", "time": DateTime::now(), "processing": false, "completed": true },
        // Python cachier's placeholder: processing, no value, no lease.
        doc! { "func": &name, "key": key(2), "processing": true },
        // A claim whose lease is not a date.
        doc! { "func": &name, "key": key(3), "processing": true, "claim_owner": "x", "lease_until": "soon" },
    ];
    backend
        .block_on(async move { collection.insert_many(documents).await })
        .unwrap()
        .expect("insert garbage");
    let started = Instant::now();
    assert_eq!(f.call(1), 1001);
    assert_eq!(f.call(1), 1001);
    assert_eq!(f.call(2), 2002);
    assert_eq!(f.call(2), 2002);
    assert_eq!(f.call(3), 3003);
    assert_eq!(f.call(3), 3003);
    assert_eq!(calls.get(), 3);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "nobody waited on the lease-less placeholder"
    );
    let doc = find(&backend, doc! { "func": &name, "key": key(1) }).unwrap();
    assert!(
        matches!(doc.get("value"), Some(Bson::Binary(_))),
        "overwritten: {doc:?}"
    );
    assert_eq!(f.core().len().unwrap(), 3);
    assert_eq!(
        f.backend_error_count(),
        0,
        "garbage is a miss, not a store failure"
    );
    drop_collection(&backend);
}

/// A closed port: by default every call warns and returns the right value uncached; strict
/// calls return the backend error. Each call gives up after the short server-selection
/// timeout. Needs no server.
#[test]
fn unreachable_server_degrades_to_uncached_calls() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // the listener is dropped: nothing listens on `port` now
    let backend =
        MongoBackend::builder(format!("mongodb://127.0.0.1:{port}/?directConnection=true"))
            .server_selection_timeout(Duration::from_millis(300))
            .connect_timeout(Duration::from_millis(300))
            .build()
            .expect("building never connects");
    let calls = Counter::new();
    let c = calls.clone();
    let f = cachier::memoize(&unique_name("mongo_down"), move |x: u64| {
        c.bump();
        x * 3
    })
    .backend(backend)
    .build()
    .expect("building a function never connects");
    let started = Instant::now();
    let logs = capture_logs(|| {
        assert_eq!(f.call(5), 15);
        assert_eq!(f.call(5), 15);
    });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "each call gave up quickly: {:?}",
        started.elapsed()
    );
    assert_eq!(calls.get(), 2, "computed uncached every time");
    assert!(f.backend_error_count() >= 2);
    assert!(logs.contains("cache unavailable"), "{logs}");
    assert!(logs.contains("mongo"), "{logs}");
    // Concurrent callers share one failed attempt instead of each waiting out the timeout
    // in turn behind a lock.
    let started = Instant::now();
    let threads: Vec<_> = (0..6u64)
        .map(|x| {
            let f = f.clone();
            std::thread::spawn(move || f.call(x))
        })
        .collect();
    for (x, thread) in threads.into_iter().enumerate() {
        assert_eq!(thread.join().unwrap(), x as u64 * 3);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1_200),
        "six concurrent calls took {took:?}"
    );
    let error = f.try_call(5).expect_err("strict mode surfaces the failure");
    assert!(error.is_backend(), "{error}");
    assert!(error.to_string().contains("mongo backend"), "{error}");
    assert!(
        f.try_call_with(5, &CallOptions::new().skip_cache(true))
            .is_ok(),
        "skip_cache never touches the store"
    );
    assert!(f.clear_cache().is_err());
}

/// Credentials the server refuses: the error names the server's reason, once, in its message
/// and in its whole chain of sources.
#[test]
fn refused_credentials_show_the_servers_message_once() {
    let Some(url) = service_url("CACHIER_TEST_MONGO_URL", "mongo::refused_credentials") else {
        return;
    };
    use cachier::store::Backend;
    let url = cachier_conformance::with_user_info(&url, "nosuchuser:wrong-password");
    let backend = MongoBackend::from_url(&url).unwrap();
    let error = backend.namespaces().unwrap_err();
    let cause = "authentication failed";
    assert!(error.to_string().to_lowercase().contains(cause), "{error}");
    let report = cachier_conformance::error_report(&error).to_lowercase();
    assert_eq!(report.matches(cause).count(), 1, "{report}");
    assert!(!report.contains("wrong-password"), "{report}");
}

/// A computation longer than its lease keeps its claim: the engine renews the lease, so a
/// waiter does not take over a live computation (it gets that computation's value).
#[test]
fn renewed_lease_is_not_taken_over() {
    let Some(url) = service_url("CACHIER_TEST_MONGO_URL", "mongo::renewed_lease") else {
        return;
    };
    let calls = Counter::new();
    let c = calls.clone();
    let f = cachier::memoize(&unique_name("mongo_renew"), move |x: u64| {
        std::thread::sleep(Duration::from_millis(2_000));
        x * 1000 + c.bump() as u64
    })
    .backend(MongoBackend::from_url(&url).unwrap())
    .lease(Duration::from_millis(600))
    .build()
    .unwrap();
    let first = {
        let f = f.clone();
        std::thread::spawn(move || f.call(4))
    };
    std::thread::sleep(Duration::from_millis(200));
    let key = f.key(&4).unwrap();
    let entry = f.core().get(&key).unwrap().expect("placeholder");
    assert!(
        entry.being_calculated() && entry.claim_owner().is_some(),
        "{entry:?}"
    );
    assert_eq!(f.call(4), 4001, "the waiter got the computation's value");
    assert_eq!(first.join().unwrap(), 4001);
    assert_eq!(
        calls.get(),
        1,
        "three lease lengths in, the claim was still live"
    );
}

/// A value over the 16 MiB document limit: returned uncached, and its claim freed at once.
#[test]
fn oversized_value_releases_claim() {
    let Some(url) = service_url("CACHIER_TEST_MONGO_URL", "oversized_value_releases_claim") else {
        return;
    };
    let backend = MongoBackend::from_url(&url).unwrap();
    cachier_conformance::cases::oversized_value_releases_claim(
        std::sync::Arc::new(backend),
        17 << 20,
    );
}
