//! What the backend keeps in its collection, through blocking memoized functions against the
//! MongoDB-wire server in `CACHIER_TEST_MONGO_URL`: the unique index, the documents' shape,
//! foreign and garbage documents read as misses, a claim kept live by lease renewal, and no
//! cache directory.

use std::time::{Duration, Instant};

use cachier_backend_mongo::mongodb::bson::{doc, Bson, DateTime, Document};
use cachier_backend_mongo::{MongoBackend, INDEX_NAME};
use cachier_core::memoize;
use cachier_testkit::{service_url, unique_name, Counter};

/// The test server's URL, or `None` with a loud SKIPPED line (a failure when
/// `CACHIER_REQUIRE_SERVICES` or `CI` is set).
fn server_url(test: &str) -> Option<String> {
    service_url("CACHIER_TEST_MONGO_URL", test)
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
    let Some(url) = server_url("mongo::cache_dpath_is_none") else {
        return;
    };
    let f = memoize(&unique_name("mongo_dpath"), |x: u64| x)
        .backend(MongoBackend::from_url(&url).unwrap())
        .build()
        .unwrap();
    assert_eq!(f.cache_dpath(), None);
}

/// The (func, key) index is created on first use and is unique: a second document for the
/// same key is refused, which is what makes claims atomic.
#[test]
fn unique_index_exists_after_first_use() {
    let Some(url) = server_url("mongo::unique_index") else {
        return;
    };
    let backend = private_backend(&url, "unique_index");
    let f = memoize(&unique_name("mongo_index"), |x: u64| x + 1)
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
        .find(|i| i.options.as_ref().and_then(|o| o.name.as_deref()) == Some(INDEX_NAME))
        .unwrap_or_else(|| panic!("no {INDEX_NAME} index: {indexes:?}"));
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
    let Some(url) = server_url("mongo::document_shape") else {
        return;
    };
    let backend = private_backend(&url, "document_shape");
    let name = unique_name("mongo_shape");
    let f = memoize(&name, |x: u64| x * 2)
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
    let Some(url) = server_url("mongo::garbage_document") else {
        return;
    };
    let backend = private_backend(&url, "garbage_document");
    let name = unique_name("mongo_garbage");
    let calls = Counter::new();
    let c = calls.clone();
    let f = memoize(&name, move |x: u64| x * 1000 + c.bump() as u64)
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

/// A computation longer than its lease keeps its claim: the engine renews the lease, so a
/// waiter does not take over a live computation (it gets that computation's value).
#[test]
fn renewed_lease_is_not_taken_over() {
    let Some(url) = server_url("mongo::renewed_lease") else {
        return;
    };
    let calls = Counter::new();
    let c = calls.clone();
    let f = memoize(&unique_name("mongo_renew"), move |x: u64| {
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
