//! The global default backend when it cannot be used: a configuration error that the
//! functions on it report (running uncached), `cachier::check()` returns and no other store
//! replaces. One test: it changes the global parameters of this process.

use std::sync::atomic::{AtomicU64, Ordering};

use cachier::{cachier, ErrorKind, ParamsUpdate};

static RUNS: AtomicU64 = AtomicU64::new(0);

#[cachier]
fn doubled(x: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    x * 2
}

#[test]
fn unusable_default_backend_is_a_configuration_error_and_check_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    cachier::set_global_params(ParamsUpdate::new().cache_dir(dir.path().join("unused"))).unwrap();

    // A backend whose cargo feature is off: `mongodb://` without `mongo` (this crate's
    // default features), or `redis://` without `redis`.
    let url = if cfg!(feature = "mongo") {
        if cfg!(feature = "redis") {
            None
        } else {
            Some("redis://127.0.0.1:6379/0")
        }
    } else {
        Some("mongodb://user:s3cret@127.0.0.1:27017/db")
    };
    if let Some(url) = url {
        cachier::set_global_params(ParamsUpdate::new().backend(url)).unwrap();
        let error = cachier::check().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Configuration, "{error}");
        let message = error.to_string();
        assert!(
            message.contains("not compiled in") && !message.contains("s3cret"),
            "{message}"
        );
        for x in 1..=3 {
            assert_eq!(doubled(x), x * 2);
        }
        assert_eq!(RUNS.load(Ordering::SeqCst), 3, "every call ran, uncached");
        let Err(error) = doubled_cache() else {
            panic!("a cache on a backend that is not compiled in");
        };
        assert_eq!(error.kind(), ErrorKind::Configuration);
        let built = cachier::memoize("default_backend::builder", |x: u64| x).build();
        assert_eq!(
            built.err().map(|e| e.kind()),
            Some(ErrorKind::Configuration)
        );
        assert!(!dir.path().join("unused").exists(), "no file cache instead");
    } else {
        // `--all-features` compiles every backend in; `scripts/test.sh` also runs this file
        // with the default features, where `mongodb://` is compiled out.
        eprintln!("NOTE: every backend is compiled in; the feature-off case ran in the default-feature run");
    }

    // The file backend: a directory that can be created passes; one under a regular file
    // does not.
    let cache_dir = dir.path().join("created-by-check");
    cachier::set_global_params(ParamsUpdate::new().backend("pickle").cache_dir(&cache_dir))
        .unwrap();
    cachier::check().unwrap();
    assert!(cache_dir.is_dir());
    let left: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    cachier::set_global_params(ParamsUpdate::new().cache_dir(blocker.join("cache"))).unwrap();
    let error = cachier::check().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.to_string().contains("a-file"), "{error}");

    // The memory backend always answers.
    cachier::set_global_params(ParamsUpdate::new().backend("memory")).unwrap();
    cachier::check().unwrap();
}
