//! The conformance suite against the file backend, in both modes, and its own cases
//! (directory, names, damaged files, listing, entries deleted by hand).
#![cfg(feature = "file")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cachier::{
    backends::file::FileBackend,
    store::{Backend, Claim, Core, Namespace},
    Memoized,
};
use cachier_conformance::{capture_logs, fresh_dir, unique_name, Counter};

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

fn backend(dir: &Path, separate: bool) -> FileBackend {
    FileBackend::builder()
        .cache_dir(dir)
        .separate_files(separate)
        .build()
}

/// `f(x) = x * 2`, counting calls.
fn doubler(backend: &FileBackend, name: &str, calls: &Counter) -> Memoized<u64, u64> {
    let calls = calls.clone();
    cachier::memoize(name, move |x: u64| {
        calls.bump();
        x * 2
    })
    .backend(backend.clone())
    .build()
    .expect("build")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `cache_dpath()` is the cache directory, in both modes; it is created on first use.
#[test]
fn cache_dpath_is_the_cache_directory() {
    for separate in [false, true] {
        let dir = fresh_dir("file-dpath").join("cache");
        let f = doubler(
            &backend(&dir, separate),
            &unique_name("dpath"),
            &Counter::new(),
        );
        assert_eq!(f.cache_dpath(), Some(dir.clone()));
        assert_eq!(f.call(2), 4);
        assert!(dir.is_dir());
    }
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

/// With `separate_files`, entries are files that can be listed and deleted one by one by hand
/// (the `selective_clearing` example).
#[test]
fn separate_files_can_be_listed_and_removed_by_hand() {
    let dir = fresh_dir("file-by-hand").join("cache");
    let backend = backend(&dir, true);
    let calls = Counter::new();
    let f = doubler(&backend, &unique_name("by_hand"), &calls);
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
        let dir = fresh_dir("file-perms").join("cache").join("nested");
        let backend = backend(&dir, separate);
        let f = doubler(&backend, &unique_name("perms"), &Counter::new());
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

/// A garbage store file is a miss with a warning, moved aside and rewritten; never a panic,
/// never an error to the caller.
#[test]
fn garbage_store_file_is_a_miss_and_rewritten() {
    let dir = fresh_dir("file-garbage-store").join("cache");
    fs::create_dir_all(&dir).unwrap();
    let name = unique_name("garbage_store");
    let store = backend(&dir, false).store_path(&Namespace::new(&name, None).unwrap());
    fs::write(
        &store,
        b"this is not an SQLite database, and it is long enough to look like one".repeat(100),
    )
    .unwrap();
    let calls = Counter::new();
    let log = capture_logs(|| {
        let f = doubler(&backend(&dir, false), &name, &calls);
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
    let again = doubler(&backend(&dir, false), &name, &calls);
    assert_eq!(again.call(21), 42);
    assert_eq!(calls.get(), 1, "a new backend reads the rewritten store");
}

/// A store file truncated behind the backend's back (say, by a full disk) never panics:
/// every call returns the right value, damaged parts are recomputed after a warning.
#[test]
fn truncated_store_file_is_recovered() {
    let dir = fresh_dir("file-truncated-store").join("cache");
    let name = unique_name("truncated_store");
    let calls = Counter::new();
    let big = |x: u64| vec![x; 200];
    let make = |calls: &Counter| {
        let c = calls.clone();
        cachier::memoize(&name, move |x: u64| {
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
    let store = backend(&dir, false).store_path(&Namespace::new(&name, None).unwrap());
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
    let dir = fresh_dir("file-garbage-entry").join("cache");
    let backend = backend(&dir, true);
    let calls = Counter::new();
    let f = doubler(&backend, &unique_name("garbage_entry"), &calls);
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

/// A broken cache directory (a file stands where it should be): the callers of one process
/// compute a key once and the failure is logged once, in both layouts.
#[test]
fn broken_cache_directory_computes_once_per_process() {
    for separate in [false, true] {
        let blocker = fresh_dir("file-broken").join("not-a-directory");
        fs::write(&blocker, b"a file where the cache directory should go").unwrap();
        let backend = backend(&blocker.join("cache"), separate);
        cachier_conformance::cases::outage_computes_once_per_process(std::sync::Arc::new(backend));
    }
}

/// An unusable cache directory: a warning and an uncached call by default, an `Err` from
/// `try_call` (strict), in both modes. It starts working once the directory can be made.
#[test]
fn unwritable_cache_directory() {
    for separate in [false, true] {
        let base = fresh_dir("file-unwritable");
        let blocker = base.join("not-a-directory");
        fs::write(&blocker, b"a file where the cache directory should go").unwrap();
        let dir = blocker.join("cache");
        let calls = Counter::new();
        let f = doubler(&backend(&dir, separate), &unique_name("unwritable"), &calls);
        let log = capture_logs(|| {
            assert_eq!(f.call(5), 10);
            assert_eq!(f.call(5), 10);
        });
        assert_eq!(calls.get(), 2, "computed uncached each time");
        assert!(f.backend_error_count() >= 2);
        assert!(
            log.contains("cache unavailable, computing uncached"),
            "{log}"
        );
        let err = f.try_call(5).unwrap_err();
        assert!(err.is_backend(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("file backend") && text.contains("not-a-directory"),
            "{text}"
        );
        assert!(f.clear_cache().is_err());
        // Fixed: the same function starts caching.
        fs::remove_file(&blocker).unwrap();
        assert_eq!(f.try_call(5).unwrap(), 10);
        assert_eq!(f.try_call(5).unwrap(), 10);
        assert_eq!(
            calls.get(),
            3,
            "strict calls fail before computing; cached once the directory could be made"
        );
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
        let root = fresh_dir("file-names");
        let dir = root.join("cache");
        let backend = backend(&dir, separate);
        let calls = Counter::new();
        let functions: Vec<_> = names.iter().map(|n| doubler(&backend, n, &calls)).collect();
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
            listing(&root),
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

/// The claim of a process that is alive is visible to others as `being_calculated`, and
/// `clear_being_calculated` lets the next caller compute while it still runs.
#[test]
fn claims_are_visible_across_handles_and_clearable() {
    for separate in [false, true] {
        let dir = fresh_dir("file-claims").join("cache");
        let ns = Namespace::new(&unique_name("claims"), None).unwrap();
        let a: Arc<dyn Core> = backend(&dir, separate).core(&ns).unwrap();
        let b: Arc<dyn Core> = backend(&dir, separate).core(&ns).unwrap();
        let key = cachier::store::Key::of(&1u64).unwrap();
        let Claim::Claimed(token) = a.claim(&key, Duration::from_secs(1)).unwrap() else {
            panic!("claim")
        };
        assert_eq!(b.claim(&key, Duration::from_secs(1)).unwrap(), Claim::Busy);
        let seen = b.get(&key).unwrap().expect("placeholder");
        assert!(
            seen.being_calculated() && !seen.is_completed() && seen.value.is_none(),
            "{seen:?}"
        );
        if !separate {
            assert_eq!(seen.claim_owner(), Some(token.as_str()));
        }
        assert!(
            !b.wait(&key, Duration::from_millis(50)).unwrap(),
            "still claimed"
        );
        b.clear_being_calculated().unwrap();
        assert!(b.get(&key).unwrap().is_none_or(|e| !e.being_calculated()));
        let Claim::Claimed(second) = b.claim(&key, Duration::from_secs(1)).unwrap() else {
            panic!("claim after clearing")
        };
        a.put(&key, b"first", Some(&token)).unwrap();
        assert!(
            b.get(&key).unwrap().unwrap().being_calculated(),
            "the old holder left the new claim alone"
        );
        b.put(&key, b"second", Some(&second)).unwrap();
        let entry = a.get(&key).unwrap().unwrap();
        assert!(!entry.being_calculated() && entry.is_completed());
        assert_eq!(entry.value.as_deref(), Some(b"second".as_slice()));
        assert!(a.wait(&key, Duration::ZERO).unwrap());
    }
}

/// Listing gives back the original namespaces, not the sanitised file names: names
/// whose readable parts collide, names shortened and hashed, versions, `::`, non-ASCII. A
/// function whose store exists but is empty is not listed, nor are the other layout's stores.
#[test]
fn listing_returns_original_namespaces() {
    let long = format!("{}::tail", "n".repeat(3000));
    let names = [
        "my_crate::pricing::quote",
        "a/b",
        "a_b",
        "a\\b",
        long.as_str(),
        "ünïcödé::函数",
        "../../etc/passwd",
        "a b:c*d?e",
    ];
    for separate in [false, true] {
        let dir = fresh_dir("file-listing").join("cache");
        let backend = backend(&dir, separate);
        assert_eq!(backend.namespaces().unwrap(), vec![], "no directory yet");
        let calls = Counter::new();
        let mut expected = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let f = cachier::memoize(name, {
                let calls = calls.clone();
                move |x: u64| {
                    calls.bump();
                    x * 2
                }
            })
            .version("v2")
            .backend(backend.clone())
            .build()
            .unwrap();
            assert_eq!(f.call(i as u64), 2 * i as u64);
            assert_eq!(f.namespace().as_str(), format!("{name}@v2"));
            expected.push(f.namespace().clone());
        }
        // Opened, never written: its store exists but holds nothing.
        let empty = doubler(&backend, &unique_name("empty"), &calls);
        assert!(backend.store_path(empty.namespace()).exists());
        expected.sort();
        // Another handle (a new process would do the same) reads the names from the disk.
        let fresh = FileBackend::builder()
            .cache_dir(&dir)
            .separate_files(separate)
            .build();
        assert_eq!(
            fresh.namespaces().unwrap(),
            expected,
            "separate_files: {separate}"
        );
        let other_layout = FileBackend::builder()
            .cache_dir(&dir)
            .separate_files(!separate)
            .build();
        assert_eq!(
            other_layout.namespaces().unwrap(),
            vec![],
            "the other layout's stores"
        );
        for ns in &expected {
            let entries = fresh.core(ns).unwrap().entries().unwrap();
            assert_eq!(entries.len(), 1, "{ns}");
        }
    }
}

/// `entries()` reports each entry's size without reading values (the store's `length()`,
/// the file's size minus its header), for thousands of entries, and claims as `get` does.
#[test]
fn listing_many_entries_sizes_and_claims() {
    for separate in [false, true] {
        let dir = fresh_dir("file-listing-many").join("cache");
        let backend = backend(&dir, separate);
        let ns = Namespace::new(&unique_name("many"), None).unwrap();
        let core = backend.core(&ns).unwrap();
        let n = 2_000u64;
        for i in 0..n {
            let value = vec![7u8; (i % 97) as usize];
            core.put(&cachier::store::Key::of(&i).unwrap(), &value, None)
                .unwrap();
        }
        let mut entries = core.entries().unwrap();
        assert_eq!(entries.len() as u64, n);
        assert_eq!(core.len().unwrap(), n);
        entries.sort_by_key(|e| e.key);
        for i in 0..n {
            let key = cachier::store::Key::of(&i).unwrap();
            let e = entries[entries.binary_search_by_key(&key, |e| e.key).unwrap()].clone();
            assert_eq!(e.size, i % 97, "{e:?}");
            assert!(e.completed && !e.being_calculated() && e.claim_owner().is_none());
            assert!(e.age < Duration::from_secs(60));
            if separate {
                let file = backend.store_path(&ns).join(key.to_hex());
                assert_eq!(fs::metadata(file).unwrap().len(), e.size + 32);
            }
        }
        // A claim on a stored entry, and one on a new key (a placeholder), from another handle.
        let other = FileBackend::builder()
            .cache_dir(&dir)
            .separate_files(separate)
            .build()
            .core(&ns)
            .unwrap();
        let stored = cachier::store::Key::of(&5u64).unwrap();
        let new = cachier::store::Key::of(&(n + 1)).unwrap();
        let Claim::Claimed(t1) = other.claim(&stored, Duration::from_secs(5)).unwrap() else {
            panic!("claim")
        };
        let Claim::Claimed(t2) = other.claim(&new, Duration::from_secs(5)).unwrap() else {
            panic!("claim")
        };
        let entries = core.entries().unwrap();
        assert_eq!(entries.len() as u64, n + 1);
        let find = |key| entries.iter().find(|e| e.key == key).unwrap().clone();
        let (s, p) = (find(stored), find(new));
        assert!(s.completed && s.being_calculated() && s.size == 5, "{s:?}");
        assert!(!p.completed && p.being_calculated() && p.size == 0, "{p:?}");
        assert!(p.age < Duration::from_secs(60), "{p:?}");
        if !separate {
            assert_eq!(s.claim_owner(), Some(t1.as_str()));
            assert_eq!(p.claim_owner(), Some(t2.as_str()));
        }
        for (key, e) in [(stored, &s), (new, &p)] {
            let got = core.get(&key).unwrap().unwrap();
            assert_eq!(
                got.being_calculated(),
                e.being_calculated(),
                "as get reports it"
            );
        }
        other.release(&stored, &t1).unwrap();
        other.release(&new, &t2).unwrap();
        let entries = core.entries().unwrap();
        assert_eq!(
            entries.len() as u64,
            n,
            "the placeholder went with its claim"
        );
        assert!(entries.iter().all(|e| !e.being_calculated()));
        core.clear_cache().unwrap();
        assert!(core.entries().unwrap().is_empty());
        assert!(!backend.namespaces().unwrap().contains(&ns));
    }
}

/// A claim whose lock file was removed (as after a crash and a clean-up) no longer counts,
/// and damaged entry files, which `get` reads as misses, are left out of the listing.
#[test]
fn listing_skips_dead_claims_and_damaged_files() {
    for separate in [false, true] {
        let dir = fresh_dir("file-listing-dead").join("cache");
        let backend = backend(&dir, separate);
        let ns = Namespace::new(&unique_name("dead"), None).unwrap();
        let core = backend.core(&ns).unwrap();
        let key = cachier::store::Key::of(&1u64).unwrap();
        let Claim::Claimed(_token) = core.claim(&key, Duration::from_secs(5)).unwrap() else {
            panic!("claim")
        };
        assert!(core.entries().unwrap()[0].being_calculated());
        let claims = if separate {
            backend.store_path(&ns).join(".claims")
        } else {
            dir.join(format!(
                "{}.claims",
                cachier::backends::file::file_stem(ns.as_str())
            ))
        };
        fs::remove_file(claims.join(format!("{}.lock", key.to_hex()))).unwrap();
        assert!(
            core.entries().unwrap().is_empty(),
            "no live claim: no placeholder"
        );
        assert!(core.get(&key).unwrap().is_none(), "as get reports it");
        if separate {
            core.put(&key, b"good", None).unwrap();
            let bad = cachier::store::Key::of(&2u64).unwrap();
            let cut = cachier::store::Key::of(&3u64).unwrap();
            core.put(&cut, b"will be cut", None).unwrap();
            let entry_dir = backend.store_path(&ns);
            fs::write(entry_dir.join(bad.to_hex()), b"garbage").unwrap();
            let cut_path = entry_dir.join(cut.to_hex());
            let bytes = fs::read(&cut_path).unwrap();
            fs::write(&cut_path, &bytes[..bytes.len() - 3]).unwrap();
            let entries = core.entries().unwrap();
            assert_eq!(entries.iter().map(|e| e.key).collect::<Vec<_>>(), vec![key]);
            assert_eq!(entries[0].size, 4);
        }
    }
}
