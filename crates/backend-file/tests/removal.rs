//! `remove_unused_store`: a cleared function's files go once nobody has its store open, never
//! while someone does, and never another function's. (Across processes: the `cachier` tool's
//! tests, `clear_*_files_*`, run it in a process of its own.)
#![cfg(unix)]

mod common;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachier_backend_file::{file_stem, remove_unused_store, Removal};
use cachier_core::{Backend, Core};
use common::{backend, multiplier, namespace, Counter};

/// The names in `dir` that belong to the function `name` (its stem and a dot, or the stem
/// alone: the entry directory of `separate_files`).
fn files_of(dir: &Path, name: &str) -> Vec<String> {
    let stem = file_stem(name);
    let mut files: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| *f == stem || f.starts_with(&format!("{stem}.")))
        .collect();
    files.sort();
    files
}

#[test]
fn a_store_is_removed_only_once_nobody_has_it_open_and_it_is_empty() {
    for separate in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let (name, other) = ("removal::f", "removal::other");
        let calls = Counter::new();
        let f = multiplier(&backend(&dir, separate), name, 2, &calls);
        let g = multiplier(&backend(&dir, separate), other, 3, &Counter::new());
        f.call(1);
        g.call(1);
        let before = files_of(&dir, name);
        assert!(
            before.iter().any(|f| f.ends_with(".open.lock")),
            "{before:?}"
        );
        assert!(before.iter().any(|f| f.ends_with(".changes")), "{before:?}");
        let others = files_of(&dir, other);

        let remove = || remove_unused_store(&dir, &namespace(name), separate).unwrap();
        assert_eq!(remove(), Removal::InUse, "open here: nothing goes");
        assert_eq!(files_of(&dir, name), before);
        f.clear_cache().unwrap();
        assert_eq!(remove(), Removal::InUse, "empty, but still open");
        assert_eq!(files_of(&dir, name), before);
        f.call(5);
        drop(f);
        assert_eq!(
            remove(),
            Removal::NotEmpty,
            "nobody has it open, but it holds an entry"
        );
        // (SQLite drops its -wal and -shm files when its last connection closes.)
        let lasting = |files: Vec<String>| -> Vec<String> {
            files
                .into_iter()
                .filter(|f| !f.ends_with("-wal") && !f.ends_with("-shm"))
                .collect()
        };
        assert_eq!(lasting(files_of(&dir, name)), lasting(before.clone()));

        let f = multiplier(&backend(&dir, separate), name, 2, &calls);
        let computed = calls.get();
        assert_eq!(f.call(5), 10);
        assert_eq!(calls.get(), computed, "the entry that stayed is a hit");
        f.clear_cache().unwrap();
        drop(f);
        assert_eq!(remove(), Removal::Removed, "separate_files: {separate}");
        assert_eq!(files_of(&dir, name), Vec::<String>::new());
        assert_eq!(
            files_of(&dir, other),
            others,
            "another function's files stay"
        );
        assert_eq!(remove(), Removal::Absent);

        // The function works again from nothing.
        let f = multiplier(&backend(&dir, separate), name, 2, &calls);
        let before_calls = calls.get();
        assert_eq!(f.call(7), 14);
        assert_eq!(f.call(7), 14);
        assert_eq!(calls.get(), before_calls + 1, "stored again, then a hit");
        assert_eq!(g.call(1), 3);
    }
}

/// A core that opens the store while removals run never loses its writes: it waits for a
/// removal's exclusive lock, then takes the new lock file, and a removal that finds it there
/// leaves the store alone.
#[test]
fn stores_opened_during_removals_keep_their_writes() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let ns = namespace("removal::race");
    let stop = Arc::new(AtomicBool::new(false));
    let remover = {
        let (dir, ns, stop) = (dir.clone(), ns.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut removed = 0;
            while !stop.load(Ordering::Relaxed) {
                if remove_unused_store(&dir, &ns, false).unwrap() == Removal::Removed {
                    removed += 1;
                }
            }
            removed
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut rounds = 0u64;
    while Instant::now() < deadline || rounds < 50 {
        let core: Arc<dyn Core> = backend(&dir, false).core(&ns).unwrap();
        let key = cachier_core::Key::of(&rounds).unwrap();
        // Empty while open: a removal must still leave it alone.
        core.clear_cache().unwrap();
        std::thread::yield_now();
        core.put(&key, b"v", None).unwrap();
        // Another handle opens the store by its path: it must find the same files.
        let other: Arc<dyn Core> = backend(&dir, false).core(&ns).unwrap();
        let entry = other.get(&key).unwrap();
        assert!(
            entry.is_some_and(|e| e.value.as_deref() == Some(&b"v"[..])),
            "round {rounds}: the store was removed under an open handle"
        );
        core.clear_cache().unwrap();
        drop((core, other));
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let removed = remover.join().unwrap();
    assert!(
        removed > 0,
        "removals ran between the rounds ({rounds} rounds)"
    );
}
