//! The file backend with the facade's default features: a value stored by one memoized
//! function is read back from its SQLite store by another instance of it. `scripts/test.sh`
//! also runs this against the system's SQLite (`bundled-sqlite` off).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cachier::backends::file::FileBackend;

#[test]
fn a_stored_value_is_read_back_from_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicU64::new(0));
    let build = || {
        let runs = runs.clone();
        cachier::memoize("file_store::tripled", move |x: u64| {
            runs.fetch_add(1, Ordering::SeqCst);
            x * 3
        })
        .backend(FileBackend::new(dir.path()))
        .build()
        .unwrap()
    };
    assert_eq!(build().try_call(14).unwrap(), 42);
    let again = build();
    assert_eq!(again.try_call(14).unwrap(), 42);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the second instance computed again"
    );
    assert_eq!(again.stats().hits, 1);
    let stores = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".sqlite3"))
        .count();
    assert_eq!(stores, 1, "one SQLite store in {}", dir.path().display());
}
