//! What the backend puts in a cache directory, in both layouts: the directory itself
//! (`cache_dpath`, created on first use), private file modes, names that never leave it, and
//! entry files a person can list and delete by hand.
#![cfg(unix)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cachier_core::Claim;
use common::{backend, listing, multiplier, Counter};

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `cache_dpath()` is the cache directory, in both modes; it is created on first use.
#[test]
fn cache_dpath_is_the_cache_directory() {
    for separate in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let backend = backend(&dir, separate);
        let f = multiplier(&backend, "layout::dpath", 2, &Counter::new());
        assert_eq!(f.cache_dpath(), Some(dir.clone()));
        assert_eq!(f.call(2), 4);
        assert!(dir.is_dir());
    }
}

/// With `separate_files`, entries are files that can be listed and deleted one by one by hand
/// (the `selective_clearing` example).
#[test]
fn separate_files_can_be_listed_and_removed_by_hand() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let backend = backend(&dir, true);
    let calls = Counter::new();
    let f = multiplier(&backend, "layout::by_hand", 2, &calls);
    for x in 1..=3 {
        f.call(x);
    }
    let entries_dir = backend.store_path(f.namespace());
    assert!(entries_dir.starts_with(&dir));
    let mut expected: Vec<String> = (1..=3).map(|x| f.key(&x).unwrap().to_hex()).collect();
    expected.sort();
    let files: Vec<String> = listing(&entries_dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(files, expected, "one file per entry, named by its key");
    fs::remove_file(entries_dir.join(f.key(&2).unwrap().to_hex())).unwrap();
    assert_eq!(f.core().len().unwrap(), 2);
    assert_eq!(f.call(2), 4);
    assert_eq!(calls.get(), 4, "the deleted entry was recomputed");
    f.call(1);
    f.call(3);
    assert_eq!(calls.get(), 4, "the others were not");
    // Deleting the whole directory by hand is a cleared cache, not an error.
    fs::remove_dir_all(&entries_dir).unwrap();
    assert_eq!(f.try_call(1).unwrap(), 2);
    assert_eq!(calls.get(), 5);
    assert_eq!(f.try_call(1).unwrap(), 2);
    assert_eq!(calls.get(), 5);
}

/// Cache files are 0600 in a 0700 directory: store, WAL, lock files and entry files.
#[test]
fn files_are_private() {
    for separate in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache").join("nested");
        let backend = backend(&dir, separate);
        let f = multiplier(&backend, "layout::perms", 2, &Counter::new());
        f.call(1);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(dir.parent().unwrap()), 0o700, "created parents too");
        let store = backend.store_path(f.namespace());
        let key = f.key(&9).unwrap();
        let token = match f.core().claim(&key, Duration::from_secs(10)).unwrap() {
            Claim::Claimed(token) => token,
            Claim::Busy => panic!("nobody else claims"),
        };
        let mut files = Vec::new();
        let mut dirs = vec![dir.clone()];
        while let Some(d) = dirs.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        if separate {
            assert_eq!(mode(&store), 0o700);
            assert!(files
                .iter()
                .any(|p| p.starts_with(&store) && !p.to_string_lossy().contains(".claims")));
        } else {
            assert!(files.contains(&store));
            let wal = PathBuf::from(format!("{}-wal", store.display()));
            assert!(files.contains(&wal), "{files:?}");
        }
        assert!(
            files
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "lock")),
            "{files:?}"
        );
        for file in &files {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        for d in files.iter().filter_map(|p| p.parent()) {
            assert_eq!(mode(d), 0o700, "{}", d.display());
        }
        f.core().release(&key, &token).unwrap();
    }
}

/// No function name can put files outside the cache directory; distinct names never share.
#[test]
fn function_names_are_sanitised() {
    let long = "n".repeat(3000);
    let names = [
        "../../etc/passwd",
        "a/b",
        "a\\b",
        "con",
        "CON",
        "nul",
        ".hidden",
        "..",
        long.as_str(),
        "ünïcödé::函数",
        "a b:c*d?e",
    ];
    for separate in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let backend = backend(&dir, separate);
        let calls = Counter::new();
        let functions: Vec<_> = names
            .iter()
            .map(|n| multiplier(&backend, n, 2, &calls))
            .collect();
        for (i, f) in functions.iter().enumerate() {
            assert_eq!(f.try_call(i as u64).unwrap(), 2 * i as u64);
        }
        for (i, f) in functions.iter().enumerate() {
            assert_eq!(f.try_call(i as u64).unwrap(), 2 * i as u64);
            assert_eq!(
                f.core().len().unwrap(),
                1,
                "{:?} has its own store",
                names[i]
            );
        }
        assert_eq!(calls.get(), names.len());
        assert_eq!(
            listing(root.path()),
            vec!["cache".to_string()],
            "nothing was written beside the cache directory"
        );
        for f in &functions {
            let path = backend.store_path(f.namespace());
            assert_eq!(path.parent(), Some(dir.as_path()), "{}", path.display());
            assert!(path.exists());
        }
    }
}
