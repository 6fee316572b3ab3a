//! Damaged cache files (garbage, truncated or empty stores and entry files) are misses with a
//! warning, never a panic or an error to the caller, and the recomputed values rewrite them.

mod common;

use std::fs;

use cachier_core::memoize;
use common::{backend, capture_logs, listing, multiplier, namespace, Counter};

/// A garbage store file is a miss with a warning, moved aside and rewritten; never a panic,
/// never an error to the caller.
#[test]
fn garbage_store_file_is_a_miss_and_rewritten() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    fs::create_dir_all(&dir).unwrap();
    let name = "damaged::garbage_store";
    let store = backend(&dir, false).store_path(&namespace(name));
    fs::write(
        &store,
        b"this is not an SQLite database, and it is long enough to look like one".repeat(100),
    )
    .unwrap();
    let calls = Counter::new();
    let log = capture_logs(|| {
        let f = multiplier(&backend(&dir, false), name, 2, &calls);
        assert_eq!(f.try_call(21).unwrap(), 42);
        assert_eq!(f.try_call(21).unwrap(), 42);
    });
    assert_eq!(
        calls.get(),
        1,
        "computed once, then served from the rewritten store"
    );
    assert!(log.contains("damaged database file moved aside"), "{log}");
    assert!(
        listing(&dir).iter().any(|n| n.contains(".corrupt-")),
        "{:?}",
        listing(&dir)
    );
    let again = multiplier(&backend(&dir, false), name, 2, &calls);
    assert_eq!(again.call(21), 42);
    assert_eq!(calls.get(), 1, "a new backend reads the rewritten store");
}

/// A store file truncated behind the backend's back (say, by a full disk) never panics:
/// every call returns the right value, damaged parts are recomputed after a warning.
#[test]
fn truncated_store_file_is_recovered() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let name = "damaged::truncated_store";
    let calls = Counter::new();
    let big = |x: u64| vec![x; 200];
    let make = |calls: &Counter| {
        let c = calls.clone();
        memoize(name, move |x: u64| {
            c.bump();
            big(x)
        })
        .backend(backend(&dir, false))
        .build()
        .unwrap()
    };
    {
        let f = make(&calls);
        for x in 0..300 {
            f.call(x);
        }
    } // last connection closed: SQLite folds the WAL into the file
    let store = backend(&dir, false).store_path(&namespace(name));
    let len = fs::metadata(&store).unwrap().len();
    assert!(len > 100_000, "{len}");
    fs::OpenOptions::new()
        .write(true)
        .open(&store)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let _ = fs::remove_file(format!("{}-wal", store.display()));
    let _ = fs::remove_file(format!("{}-shm", store.display()));
    let log = capture_logs(|| {
        let f = make(&calls);
        for x in 0..300 {
            assert_eq!(f.call(x), big(x));
        }
        for x in 0..300 {
            assert_eq!(f.call(x), big(x));
        }
        assert_eq!(f.backend_error_count(), 0);
    });
    assert!(log.contains("damaged database file moved aside"), "{log}");
    assert!(
        calls.get() > 300,
        "damaged entries were recomputed ({})",
        calls.get()
    );
}

/// A garbage or truncated entry file (separate_files) is a miss with a warning, and the
/// recomputed value rewrites it.
#[test]
fn damaged_entry_files_are_misses_and_rewritten() {
    let root = tempfile::tempdir().unwrap();
    let backend = backend(&root.path().join("cache"), true);
    let calls = Counter::new();
    let f = multiplier(&backend, "damaged::garbage_entry", 2, &calls);
    f.call(1);
    f.call(2);
    let entries = backend.store_path(f.namespace());
    let one = entries.join(f.key(&1).unwrap().to_hex());
    let two = entries.join(f.key(&2).unwrap().to_hex());
    fs::write(&one, b"garbage").unwrap();
    let len = fs::metadata(&two).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&two)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let empty = entries.join(f.key(&3).unwrap().to_hex());
    fs::write(&empty, b"").unwrap();
    let log = capture_logs(|| {
        assert_eq!(f.try_call(1).unwrap(), 2);
        assert_eq!(f.try_call(2).unwrap(), 4);
        assert_eq!(f.try_call(3).unwrap(), 6);
    });
    // Every read of a damaged file warns: a miss reads it before and after its claim.
    assert_eq!(
        log.matches("damaged cache entry file ignored").count(),
        6,
        "{log}"
    );
    assert_eq!(calls.get(), 5);
    let log = capture_logs(|| {
        f.call(1);
        f.call(2);
        f.call(3);
    });
    assert_eq!(calls.get(), 5, "rewritten entries are hits");
    assert!(!log.contains("damaged"), "{log}");
}
