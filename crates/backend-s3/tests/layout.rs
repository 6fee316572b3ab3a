//! What the backend leaves in the bucket: one object per entry at
//! `{prefix}/{namespace}/{key hex}` in the documented format, namespaces that look like paths
//! kept apart, and objects of other writers recomputed rather than served.

use cachier_backend_s3::object_store::path::Path;
use cachier_backend_s3::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use cachier_backend_s3::{S3Backend, FORMAT_VERSION};
use cachier_core::{memoize, Backend, Memoized, Namespace};
use cachier_testkit::{capture_logs, service_url, unique_name, Counter};
use futures_util::TryStreamExt;

/// A backend whose prefix no other test uses, so listings see this test's objects only.
fn backend(test: &str) -> Option<S3Backend> {
    let url = service_url("CACHIER_TEST_S3_URL", test)?;
    let prefix = format!("layout-{}", unique_name(test).replace("::", "-"));
    let url = match url.split_once('?') {
        Some((base, query)) => format!("{}/{prefix}?{query}", base.trim_end_matches('/')),
        None => format!("{}/{prefix}", url.trim_end_matches('/')),
    };
    Some(S3Backend::from_url(&url).expect("s3 backend"))
}

/// Every object under the backend's prefix.
fn objects(backend: &S3Backend) -> Vec<Path> {
    let store = backend.store().clone();
    let prefix = backend.prefix().clone();
    let mut paths: Vec<Path> = backend
        .block_on(async move {
            store
                .list(Some(&prefix))
                .map_ok(|meta| meta.location)
                .try_collect::<Vec<_>>()
                .await
        })
        .unwrap()
        .expect("list");
    paths.sort();
    paths
}

fn read(backend: &S3Backend, path: &Path) -> Vec<u8> {
    let (store, path) = (backend.store().clone(), path.clone());
    backend
        .block_on(async move { store.get(&path).await?.bytes().await })
        .unwrap()
        .expect("get")
        .to_vec()
}

fn write(backend: &S3Backend, path: &Path, bytes: Vec<u8>) {
    let (store, path) = (backend.store().clone(), path.clone());
    backend
        .block_on(async move { store.put(&path, PutPayload::from(bytes)).await })
        .unwrap()
        .expect("put");
}

fn counted(backend: &S3Backend, name: &str, calls: &Counter) -> Memoized<u64, u64> {
    let c = calls.clone();
    memoize(name, move |x: u64| {
        c.bump();
        x * 10
    })
    .backend(backend.clone())
    .build()
    .expect("memoized function")
}

#[test]
fn one_object_per_entry_in_the_documented_format() {
    let Some(backend) = backend("one_object_per_entry_in_the_documented_format") else {
        return;
    };
    let calls = Counter::new();
    let f = counted(&backend, "module::f", &calls);
    assert_eq!(f.call(4), 40);
    assert_eq!(f.call(4), 40);
    assert_eq!(calls.get(), 1);
    let paths = objects(&backend);
    assert_eq!(paths.len(), 1, "{paths:?}");
    let path = paths[0].as_ref();
    let expected_dir = format!("{}/module::f/", backend.prefix().as_ref());
    assert!(path.starts_with(&expected_dir), "{path}");
    let key = &path[expected_dir.len()..];
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    let bytes = read(&backend, &paths[0]);
    assert_eq!(&bytes[..4], b"CCS3");
    assert_eq!(bytes[4], FORMAT_VERSION);
    assert_eq!(bytes[5], 1, "completed, no other flag");
    assert_eq!(bytes[22], 0, "no claim after the put");
    assert_eq!(
        &bytes[14..22],
        &[0; 8],
        "no lease after the put released the claim"
    );
    let entries = f.core().entries().expect("entries");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].size as usize, bytes.len() - 23);
    assert_eq!(entries[0].key.to_hex(), key);
}

#[test]
fn namespaces_that_look_like_paths_stay_apart() {
    let Some(backend) = backend("namespaces_that_look_like_paths_stay_apart") else {
        return;
    };
    let names = [
        "a",
        "a/b",
        "a%2Fb",
        "a/../b",
        "..",
        ".",
        "../..",
        "b",
        "%",
        "%25",
        "ünï/cödé",
        "日本",
    ];
    let counters: Vec<Counter> = names.iter().map(|_| Counter::new()).collect();
    let functions: Vec<_> = names
        .iter()
        .zip(&counters)
        .enumerate()
        .map(|(i, (name, calls))| {
            let c = calls.clone();
            memoize(name, move |x: u64| {
                c.bump();
                x + 1000 * i as u64
            })
            .backend(backend.clone())
            .build()
            .expect("memoized function")
        })
        .collect();
    for _ in 0..2 {
        for (i, f) in functions.iter().enumerate() {
            assert_eq!(f.call(7), 7 + 1000 * i as u64, "{}", names[i]);
        }
    }
    for (name, calls) in names.iter().zip(&counters) {
        assert_eq!(calls.get(), 1, "{name}: computed once, then its own hit");
    }
    // One object per function, each in a folder of its own right under the prefix.
    let paths = objects(&backend);
    assert_eq!(paths.len(), names.len(), "{paths:?}");
    let depth = backend.prefix().parts().count() + 2;
    for path in &paths {
        assert_eq!(path.parts().count(), depth, "{path}");
    }
    let mut listed: Vec<String> = backend
        .namespaces()
        .expect("namespaces")
        .iter()
        .map(|n| n.as_str().to_owned())
        .collect();
    listed.sort();
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    // Clearing one leaves the others, its look-alikes included.
    functions[1].clear_cache().expect("clear a/b");
    assert_eq!(objects(&backend).len(), names.len() - 1);
    for (i, f) in functions.iter().enumerate() {
        assert_eq!(f.core().len().unwrap(), u64::from(i != 1), "{}", names[i]);
    }
    assert!(Namespace::new("a/b", None).is_ok());
}

#[test]
fn objects_of_other_writers_are_recomputed_and_overwritten() {
    let Some(backend) = backend("objects_of_other_writers_are_recomputed_and_overwritten") else {
        return;
    };
    let calls = Counter::new();
    let f = counted(&backend, "garbage", &calls);
    assert_eq!(f.call(1), 10);
    let path = objects(&backend).pop().expect("the entry's object");
    let good = read(&backend, &path);
    let mut later_format = good.clone();
    later_format[4] = FORMAT_VERSION + 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"not an entry at all".to_vec()),
        ("empty", Vec::new()),
        ("truncated", good[..10].to_vec()),
        ("later format", later_format),
    ];
    for (n, (what, bytes)) in cases.into_iter().enumerate() {
        write(&backend, &path, bytes);
        let entry = f.core().entries().expect("entries");
        assert!(!entry[0].completed, "{what}: listed as a placeholder");
        let logs = capture_logs(|| assert_eq!(f.call(1), 10, "{what}"));
        assert_eq!(calls.get(), n + 2, "{what}: recomputed");
        assert!(logs.contains("unreadable"), "{what}: {logs}");
        assert_eq!(f.call(1), 10);
        assert_eq!(calls.get(), n + 2, "{what}: overwritten, then a hit");
        assert_eq!(&read(&backend, &path)[..4], b"CCS3");
    }
}
