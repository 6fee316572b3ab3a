//! The conformance suite against the file backend, in both modes, and the two file cases that
//! need the facade: its default backend (built from its own `cache_dir`/`separate_files`
//! settings), and a broken cache directory run through the shared outage case of
//! `cachier_conformance::cases`. The backend's own cases (directory layout, file modes, names,
//! damaged files, claims, listing, unwritable directories) live in `crates/backend-file/tests/`.
#![cfg(feature = "file")]

use std::fs;

use cachier::backends::file::FileBackend;
use cachier_conformance::{fresh_dir, unique_name, Counter};

mod single {
    cachier_conformance::conformance_tests!(|| Some(format!(
        "file:{}",
        cachier_conformance::fresh_dir("file-single")
            .join("cache")
            .display()
    )));
    cachier_conformance::multiprocess_tests!(|| Some(format!(
        "file:{}",
        cachier_conformance::fresh_dir("file-single-mp")
            .join("cache")
            .display()
    )));
}

mod separate {
    cachier_conformance::conformance_tests!(|| Some(format!(
        "file-separate:{}",
        cachier_conformance::fresh_dir("file-separate")
            .join("cache")
            .display()
    )));
    cachier_conformance::multiprocess_tests!(|| Some(format!(
        "file-separate:{}",
        cachier_conformance::fresh_dir("file-separate-mp")
            .join("cache")
            .display()
    )));
}

/// The facade's default backend is this one, built from `cache_dir`/`separate_files`.
#[test]
fn default_backend_is_the_file_backend() {
    for separate in [false, true] {
        let dir = fresh_dir("file-default").join("cache");
        let calls = Counter::new();
        let c = calls.clone();
        let name = unique_name("default");
        let build = || {
            let c = c.clone();
            cachier::memoize(&name, move |x: u64| {
                c.bump();
                x + 1
            })
            .cache_dir(&dir)
            .separate_files(separate)
            .build()
            .unwrap()
        };
        let f = build();
        assert_eq!(f.cache_dpath(), Some(dir.clone()));
        assert_eq!(f.call(1), 2);
        assert_eq!(
            build().call(1),
            2,
            "a second function of the same name shares the store"
        );
        assert_eq!(calls.get(), 1);
        let stored = FileBackend::builder()
            .cache_dir(&dir)
            .separate_files(separate)
            .build();
        assert!(stored.store_path(f.namespace()).exists());
    }
}

/// A broken cache directory (a file stands where it should be): the callers of one process
/// compute a key once and the failure is logged once, in both layouts.
#[test]
fn broken_cache_directory_computes_once_per_process() {
    for separate in [false, true] {
        let blocker = fresh_dir("file-broken").join("not-a-directory");
        fs::write(&blocker, b"a file where the cache directory should go").unwrap();
        let backend = FileBackend::builder()
            .cache_dir(blocker.join("cache"))
            .separate_files(separate)
            .build();
        cachier_conformance::cases::outage_computes_once_per_process(std::sync::Arc::new(backend));
    }
}
