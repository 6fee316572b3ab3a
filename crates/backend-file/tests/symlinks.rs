//! Symbolic links planted inside a cache directory are damage: the backend never opens,
//! creates or deletes anything through one. Each test plants a link at one path the backend
//! uses, pointing into a directory beside the cache, and checks that this directory is left
//! exactly as it was (names, bytes, times, locks) and that the memoized function still returns
//! the right values, cached.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cachier_backend_file::{file_stem, FileBackend};
use cachier_core::{Backend, Claim, Memoized};
use common::{
    backend, capture_logs, is_link, listing, multiplier, namespace, sidecar, snapshot, Counter,
    Seen,
};

const NAME: &str = "symlinks::f";

/// A cache directory and, beside it, the directory planted links point into.
struct Scene {
    _root: tempfile::TempDir,
    cache: PathBuf,
    outside: PathBuf,
    frozen: BTreeMap<PathBuf, Seen>,
}

impl Scene {
    fn new() -> Scene {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let outside = root.path().join("outside");
        fs::create_dir(&cache).unwrap();
        fs::create_dir(&outside).unwrap();
        Scene {
            _root: root,
            cache,
            outside,
            frozen: BTreeMap::new(),
        }
    }

    /// Records the outside directory as it is now.
    fn freeze(&mut self) {
        self.frozen = snapshot(&self.outside);
    }

    fn assert_untouched(&self) {
        assert_eq!(
            snapshot(&self.outside),
            self.frozen,
            "something outside the cache directory was created, changed or removed"
        );
    }

    fn backend(&self, separate: bool) -> FileBackend {
        backend(&self.cache, separate)
    }

    fn store(&self, separate: bool) -> PathBuf {
        self.backend(separate).store_path(&namespace(NAME))
    }

    fn claims(&self, separate: bool) -> PathBuf {
        if separate {
            self.store(true).join(".claims")
        } else {
            self.cache.join(format!("{}.claims", file_stem(NAME)))
        }
    }

    /// The links moved aside in `dir`.
    fn moved_aside(&self, dir: &Path) -> Vec<String> {
        listing(dir)
            .into_iter()
            .filter(|n| n.contains(".symlink-") && is_link(&dir.join(n)))
            .collect()
    }
}

/// Calls `f` (which doubles) on 1..=3 twice: right values, and `calls` ends at `expected`.
fn exercise(f: &Memoized<u64, u64>, calls: &Counter, expected: usize) {
    for _ in 0..2 {
        for x in 1..=3 {
            assert_eq!(f.call(x), 2 * x);
        }
    }
    assert_eq!(
        calls.get(),
        expected,
        "each value computed once, then cached"
    );
}

/// A store for `NAME` in `dir` whose function triples: entries for 1 and 2.
fn tripled_store(dir: &Path, separate: bool) {
    let f = multiplier(&backend(dir, separate), NAME, 3, &Counter::default());
    assert_eq!(f.call(1), 3);
    assert_eq!(f.call(2), 6);
}

#[test]
fn dangling_link_at_the_store_file_is_moved_aside() {
    let mut s = Scene::new();
    let store = s.store(false);
    symlink(s.outside.join("victim.sqlite3"), &store).unwrap();
    s.freeze();
    let calls = Counter::default();
    let log = capture_logs(|| {
        let f = multiplier(&s.backend(false), NAME, 2, &calls);
        exercise(&f, &calls, 3);
    });
    s.assert_untouched();
    assert!(
        !is_link(&store) && store.is_file(),
        "a real store replaced it"
    );
    assert_eq!(s.moved_aside(&s.cache).len(), 1, "{:?}", listing(&s.cache));
    assert!(log.contains("symbolic link"), "{log}");
}

/// A link to another store (or to any existing file) is moved aside unread and unwritten:
/// its entries are not served, and no `-wal` or `-shm` appears beside it.
#[test]
fn link_to_an_existing_file_at_the_store_file_is_moved_aside() {
    for garbage in [false, true] {
        let mut s = Scene::new();
        let target = if garbage {
            let target = s.outside.join("notes.txt");
            fs::write(&target, b"not a database ".repeat(300)).unwrap();
            target
        } else {
            tripled_store(&s.outside, false);
            backend(&s.outside, false).store_path(&namespace(NAME))
        };
        let store = s.store(false);
        symlink(&target, &store).unwrap();
        s.freeze();
        let calls = Counter::default();
        let log = capture_logs(|| {
            let f = multiplier(&s.backend(false), NAME, 2, &calls);
            exercise(&f, &calls, 3);
        });
        s.assert_untouched();
        assert!(!is_link(&store) && store.is_file());
        assert_eq!(s.moved_aside(&s.cache).len(), 1, "{:?}", listing(&s.cache));
        assert!(log.contains("symbolic link"), "{log}");
    }
}

/// Links at the paths of SQLite's own files beside the store (`-wal`, `-shm`, `-journal`).
#[test]
fn links_at_the_store_sidecar_files_are_moved_aside() {
    let mut s = Scene::new();
    let calls = Counter::default();
    {
        let f = multiplier(&s.backend(false), NAME, 2, &calls);
        assert_eq!(f.call(1), 2);
    } // closed: SQLite removed its -wal and -shm
    let store = s.store(false);
    for suffix in ["-wal", "-shm", "-journal"] {
        let path = sidecar(&store, suffix);
        let _ = fs::remove_file(&path);
        symlink(s.outside.join(format!("victim{suffix}")), &path).unwrap();
    }
    s.freeze();
    let log = capture_logs(|| {
        let f = multiplier(&s.backend(false), NAME, 2, &calls);
        exercise(&f, &calls, 3);
        for suffix in ["-wal", "-shm", "-journal"] {
            assert!(!is_link(&sidecar(&store, suffix)), "{suffix}");
        }
    });
    s.assert_untouched();
    assert_eq!(s.moved_aside(&s.cache).len(), 3, "{:?}", listing(&s.cache));
    assert!(log.contains("symbolic link"), "{log}");
}

/// The lock file taken while a damaged store is moved aside.
#[test]
fn link_at_the_recovery_lock_is_moved_aside() {
    let mut s = Scene::new();
    let store = s.store(false);
    fs::write(&store, b"garbage, not a database ".repeat(300)).unwrap();
    symlink(
        s.outside.join("victim.lock"),
        sidecar(&store, "-recover.lock"),
    )
    .unwrap();
    s.freeze();
    let calls = Counter::default();
    let log = capture_logs(|| {
        let f = multiplier(&s.backend(false), NAME, 2, &calls);
        exercise(&f, &calls, 3);
    });
    s.assert_untouched();
    assert!(log.contains("damaged database file moved aside"), "{log}");
    assert!(!is_link(&sidecar(&store, "-recover.lock")));
}

/// `separate_files`: the function's entry directory is a link (to a directory, or dangling).
#[test]
fn linked_entry_directory_is_moved_aside() {
    for dangling in [false, true] {
        let mut s = Scene::new();
        let target = s.outside.join("entries");
        if !dangling {
            fs::create_dir(&target).unwrap();
        }
        let store = s.store(true);
        symlink(&target, &store).unwrap();
        s.freeze();
        let calls = Counter::default();
        let log = capture_logs(|| {
            let f = multiplier(&s.backend(true), NAME, 2, &calls);
            exercise(&f, &calls, 3);
            let key = f.key(&1).unwrap();
            assert!(f.core().get(&key).unwrap().is_some());
        });
        s.assert_untouched();
        assert!(!is_link(&store) && store.is_dir(), "dangling: {dangling}");
        assert_eq!(s.moved_aside(&s.cache).len(), 1, "{:?}", listing(&s.cache));
        assert!(log.contains("symbolic link"), "{log}");
        assert_eq!(s.backend(true).namespaces().unwrap(), vec![namespace(NAME)]);
    }
}

/// `separate_files`: one entry file is a link to a valid entry file of another cache (holding
/// another value). It is damage, never read: the value is recomputed and the link replaced.
#[test]
fn linked_entry_file_is_not_read() {
    let mut s = Scene::new();
    tripled_store(&s.outside, true);
    let calls = Counter::default();
    let f = multiplier(&s.backend(true), NAME, 2, &calls);
    assert_eq!(f.call(2), 4);
    let name = f.key(&1).unwrap().to_hex();
    let outside_entry = backend(&s.outside, true)
        .store_path(&namespace(NAME))
        .join(&name);
    assert!(outside_entry.is_file());
    let entry = s.store(true).join(&name);
    symlink(&outside_entry, &entry).unwrap();
    s.freeze();
    let log = capture_logs(|| {
        exercise(&f, &calls, 3);
        let entries = f.core().entries().unwrap();
        assert_eq!(entries.len(), 3);
    });
    s.assert_untouched();
    assert!(!is_link(&entry) && entry.is_file());
    assert!(log.contains("symbolic link"), "{log}");
}

/// The directory of lock files is a link to a directory, in both layouts.
#[test]
fn linked_claims_directory_is_moved_aside() {
    for separate in [false, true] {
        let mut s = Scene::new();
        let claims = s.claims(separate);
        fs::create_dir_all(claims.parent().unwrap()).unwrap();
        fs::create_dir(s.outside.join("claims")).unwrap();
        symlink(s.outside.join("claims"), &claims).unwrap();
        s.freeze();
        let calls = Counter::default();
        let log = capture_logs(|| {
            let f = multiplier(&s.backend(separate), NAME, 2, &calls);
            exercise(&f, &calls, 3);
            // A claim held while the outside directory is looked at.
            let key = f.key(&9).unwrap();
            let Claim::Claimed(token) = f.core().claim(&key, Duration::from_secs(10)).unwrap()
            else {
                panic!("nobody else claims")
            };
            s.assert_untouched();
            assert!(f.core().get(&key).unwrap().unwrap().being_calculated());
            f.core().release(&key, &token).unwrap();
            f.core().clear_being_calculated().unwrap();
        });
        s.assert_untouched();
        assert!(!is_link(&claims) && claims.is_dir(), "separate: {separate}");
        assert!(log.contains("symbolic link"), "{log}");
    }
}

/// Whether another open file description can lock `path` now (nobody else holds its lock).
fn lockable(path: &Path) -> bool {
    let file = fs::File::open(path).unwrap();
    // SAFETY: flock on a descriptor owned by `file`.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    drop(file);
    locked
}

/// A lock file is a link (dangling, or to an existing file), in both layouts: a claim neither
/// creates nor locks the file it points to.
#[test]
fn linked_lock_file_is_moved_aside() {
    for separate in [false, true] {
        for dangling in [false, true] {
            let mut s = Scene::new();
            let target = s.outside.join("victim.lock");
            if !dangling {
                fs::write(&target, b"someone else's lock file").unwrap();
            }
            let calls = Counter::default();
            let f = multiplier(&s.backend(separate), NAME, 2, &calls);
            let key = f.key(&1).unwrap();
            let claims = s.claims(separate);
            fs::create_dir_all(&claims).unwrap();
            let lock = claims.join(format!("{}.lock", key.to_hex()));
            symlink(&target, &lock).unwrap();
            s.freeze();
            let log = capture_logs(|| {
                let Claim::Claimed(token) = f.core().claim(&key, Duration::from_secs(10)).unwrap()
                else {
                    panic!("a planted link is no claim")
                };
                if !dangling {
                    assert!(lockable(&target), "the claim locked the file outside");
                }
                s.assert_untouched();
                assert!(!is_link(&lock));
                f.core().release(&key, &token).unwrap();
                exercise(&f, &calls, 3);
            });
            s.assert_untouched();
            assert!(
                log.contains("symbolic link"),
                "separate {separate}, dangling {dangling}: {log}"
            );
        }
    }
}

/// A lock file planted as a link is seen by `get` and by listing as no claim, not followed.
#[test]
fn linked_lock_file_is_no_claim() {
    for separate in [false, true] {
        let mut s = Scene::new();
        let target = s.outside.join("victim.lock");
        fs::write(&target, b"someone else's lock file").unwrap();
        let calls = Counter::default();
        let f = multiplier(&s.backend(separate), NAME, 2, &calls);
        assert_eq!(f.call(1), 2);
        let key = f.key(&1).unwrap();
        let claims = s.claims(separate);
        fs::create_dir_all(&claims).unwrap();
        symlink(&target, claims.join(format!("{}.lock", key.to_hex()))).unwrap();
        s.freeze();
        let entry = f.core().get(&key).unwrap().expect("stored");
        assert!(!entry.being_calculated(), "separate {separate}");
        assert!(f
            .core()
            .entries()
            .unwrap()
            .iter()
            .all(|e| !e.being_calculated()));
        assert!(f.core().wait(&key, Duration::ZERO).unwrap());
        exercise(&f, &calls, 3);
        s.assert_untouched();
    }
}

/// `separate_files`: the `.namespace` file is a link. It is replaced, never read through.
#[test]
fn linked_namespace_file_is_replaced() {
    let mut s = Scene::new();
    let calls = Counter::default();
    assert_eq!(multiplier(&s.backend(true), NAME, 2, &calls).call(1), 2);
    let label = s.store(true).join(".namespace");
    fs::remove_file(&label).unwrap();
    let target = s.outside.join("namespace");
    fs::write(&target, b"other::name\n").unwrap();
    symlink(&target, &label).unwrap();
    s.freeze();
    let log = capture_logs(|| {
        assert_eq!(s.backend(true).namespaces().unwrap(), vec![]);
    });
    assert!(log.contains("symbolic link"), "listing says why: {log}");
    let f = multiplier(&s.backend(true), NAME, 2, &calls);
    exercise(&f, &calls, 3);
    s.assert_untouched();
    assert!(!is_link(&label));
    assert_eq!(fs::read_to_string(&label).unwrap(), format!("{NAME}\n"));
    assert_eq!(s.backend(true).namespaces().unwrap(), vec![namespace(NAME)]);
}

/// Listing namespaces skips stores that are links (with a warning) without opening them.
#[test]
fn linked_stores_are_not_listed() {
    for separate in [false, true] {
        let mut s = Scene::new();
        tripled_store(&s.outside, separate);
        let target = backend(&s.outside, separate).store_path(&namespace(NAME));
        symlink(&target, s.store(separate)).unwrap();
        s.freeze();
        let log = capture_logs(|| {
            assert_eq!(s.backend(separate).namespaces().unwrap(), vec![]);
        });
        s.assert_untouched();
        if !separate {
            assert!(log.contains("symbolic link"), "{log}");
        }
        let calls = Counter::default();
        let f = multiplier(&s.backend(separate), NAME, 2, &calls);
        exercise(&f, &calls, 3);
        s.assert_untouched();
    }
}

/// A link at the open lock (`<stem>.open.lock`), dangling or to an existing file, is moved
/// aside: the lock is taken on a real file, and a removal of the cleared function removes
/// that file, never what a link points at.
#[test]
fn linked_open_lock_is_moved_aside() {
    for separate in [false, true] {
        for dangling in [true, false] {
            let mut s = Scene::new();
            let lock = s.cache.join(format!("{}.open.lock", file_stem(NAME)));
            let target = s.outside.join("victim.lock");
            if !dangling {
                fs::write(&target, b"keep me").unwrap();
            }
            symlink(&target, &lock).unwrap();
            s.freeze();
            let calls = Counter::default();
            let log = capture_logs(|| {
                let f = multiplier(&s.backend(separate), NAME, 2, &calls);
                exercise(&f, &calls, 3);
                assert!(!is_link(&lock) && lock.is_file(), "a real lock file");
                f.clear_cache().unwrap();
            });
            assert_eq!(s.moved_aside(&s.cache).len(), 1, "{:?}", listing(&s.cache));
            assert!(log.contains("symbolic link"), "{log}");
            let removed =
                cachier_backend_file::remove_unused_store(&s.cache, &namespace(NAME), separate)
                    .unwrap();
            assert_eq!(removed, cachier_backend_file::Removal::Removed);
            assert!(!lock.exists());
            s.assert_untouched();
        }
    }
}
