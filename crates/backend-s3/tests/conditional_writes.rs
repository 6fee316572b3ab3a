//! The server under test really enforces conditional writes: without that, every claim would
//! succeed and the single-flight tests could pass by luck of timing. Raw requests through the
//! backend's own client.

use cachier_backend_s3::object_store::path::Path;
use cachier_backend_s3::object_store::{
    Error as StoreError, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};
use cachier_backend_s3::S3Backend;

fn backend(test: &str) -> Option<S3Backend> {
    let url = cachier_testkit::service_url("CACHIER_TEST_S3_URL", test)?;
    Some(S3Backend::from_url(&url).expect("s3 backend"))
}

fn path(backend: &S3Backend, test: &str) -> Path {
    backend
        .prefix()
        .clone()
        .join(cachier_testkit::unique_name(test).as_str())
}

#[test]
fn a_second_create_of_the_same_key_is_refused() {
    let Some(backend) = backend("a_second_create_of_the_same_key_is_refused") else {
        return;
    };
    let store = backend.store().clone();
    let path = path(&backend, "create");
    let (first, second, kept) = backend
        .block_on(async move {
            let create = || PutOptions::from(PutMode::Create);
            let first = store
                .put_opts(&path, PutPayload::from_static(b"first"), create())
                .await;
            let second = store
                .put_opts(&path, PutPayload::from_static(b"second"), create())
                .await;
            let kept = store.get(&path).await?.bytes().await?;
            store.delete(&path).await?;
            Ok::<_, StoreError>((first, second, kept))
        })
        .unwrap()
        .unwrap();
    assert!(first.is_ok(), "{first:?}");
    assert!(
        matches!(second, Err(StoreError::AlreadyExists { .. })),
        "the server accepted a second `If-None-Match: *` write: {second:?}"
    );
    assert_eq!(&kept[..], b"first");
}

#[test]
fn an_update_on_a_stale_etag_is_refused() {
    let Some(backend) = backend("an_update_on_a_stale_etag_is_refused") else {
        return;
    };
    let store = backend.store().clone();
    let path = path(&backend, "update");
    let (update, stale, kept) = backend
        .block_on(async move {
            let first = store.put(&path, PutPayload::from_static(b"one")).await?;
            let version = UpdateVersion::from(first);
            let update = store
                .put_opts(
                    &path,
                    PutPayload::from_static(b"two"),
                    PutMode::Update(version.clone()).into(),
                )
                .await;
            // The same ETag again: it no longer names what is stored.
            let stale = store
                .put_opts(
                    &path,
                    PutPayload::from_static(b"three"),
                    PutMode::Update(version).into(),
                )
                .await;
            let kept = store.get(&path).await?.bytes().await?;
            store.delete(&path).await?;
            Ok::<_, StoreError>((update, stale, kept))
        })
        .unwrap()
        .unwrap();
    assert!(update.is_ok(), "{update:?}");
    assert!(
        matches!(stale, Err(StoreError::Precondition { .. })),
        "the server accepted an `If-Match` on a stale ETag: {stale:?}"
    );
    assert_eq!(&kept[..], b"two");
}
