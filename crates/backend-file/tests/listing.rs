//! Listing a cache directory, in both layouts: its namespaces (`Backend::namespaces`), whose
//! names come from what each store records (stores that cannot vouch for theirs are skipped),
//! and a store's entries (`Core::entries`), sized without reading values, with live claims
//! and without damaged files.

mod common;

use std::fs;
use std::time::Duration;

use cachier_backend_file::{file_stem, FileBackend};
use cachier_core::{memoize, Backend, Claim, Key, Namespace};
use common::{backend, listing, multiplier, namespace, Counter};

fn store_one(backend: &FileBackend, namespace: &Namespace) {
    let core = backend.core(namespace).unwrap();
    core.put(&Key::of(&1u8).unwrap(), b"value", None).unwrap();
}

/// Stores from before namespaces were recorded are skipped until a function opens them
/// again (which labels them); stores renamed by hand and damaged stores are skipped; the
/// rest are still listed.
#[test]
fn unlabelled_renamed_and_damaged_stores_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FileBackend::new(dir.path());
    let (old, good) = (namespace("m::old@1"), namespace("m::good"));
    // A store as the previous version wrote it: the entries table, no `meta`.
    let old_path = backend.store_path(&old);
    let conn = rusqlite::Connection::open(&old_path).unwrap();
    conn.execute_batch(
        "CREATE TABLE entries (key BLOB PRIMARY KEY NOT NULL, value BLOB,
         time_ns INTEGER NOT NULL, completed INTEGER NOT NULL, claim TEXT) WITHOUT ROWID;
         INSERT INTO entries VALUES (zeroblob(32), x'01', 1, 1, NULL);",
    )
    .unwrap();
    drop(conn);
    store_one(&backend, &good);
    fs::copy(
        backend.store_path(&good),
        dir.path().join("copied-0123456789abcdef.sqlite3"),
    )
    .unwrap();
    fs::write(
        dir.path().join("damaged-0123456789abcdef.sqlite3"),
        [0x5a; 4096],
    )
    .unwrap();
    assert_eq!(backend.namespaces().unwrap(), vec![good.clone()]);
    // Opened by this version: labelled, and listed from then on.
    let _ = FileBackend::new(dir.path()).core(&old).unwrap();
    assert_eq!(
        backend.namespaces().unwrap(),
        vec![good.clone(), old.clone()]
    );
    assert_eq!(backend.core(&old).unwrap().entries().unwrap().len(), 1);
}

#[test]
fn entry_directories_record_their_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FileBackend::builder()
        .cache_dir(dir.path())
        .separate_files(true)
        .build();
    let (a, b) = (namespace("m::a:b@2"), namespace("m::old"));
    store_one(&backend, &a);
    store_one(&backend, &b);
    let label = backend.store_path(&a).join(".namespace");
    assert_eq!(fs::read_to_string(&label).unwrap(), "m::a:b@2\n");
    assert_eq!(backend.namespaces().unwrap(), vec![a.clone(), b.clone()]);
    // Unlabelled (as before this version), and renamed by hand: skipped.
    fs::remove_file(backend.store_path(&b).join(".namespace")).unwrap();
    fs::rename(
        backend.store_path(&a),
        dir.path().join("moved-0123456789abcdef"),
    )
    .unwrap();
    assert_eq!(backend.namespaces().unwrap(), vec![]);
    // Deleted by hand while in use: the next write makes and labels it again.
    let core = backend.core(&a).unwrap();
    core.put(&Key::of(&2u8).unwrap(), b"again", None).unwrap();
    assert_eq!(fs::read_to_string(&label).unwrap(), "m::a:b@2\n");
    assert_eq!(backend.namespaces().unwrap(), vec![a.clone()]);
    core.clear_cache().unwrap();
    assert_eq!(backend.namespaces().unwrap(), vec![], "empty: not listed");
}

/// A store nobody has open (its `-wal` and `-shm` are gone) is listed, and listing
/// leaves no file behind.
#[test]
fn closed_stores_are_listed_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let name = namespace("m::closed");
    {
        let backend = FileBackend::new(dir.path());
        store_one(&backend, &name);
    }
    let before = listing(dir.path());
    assert!(before.iter().all(|n| !n.ends_with("-wal")), "{before:?}");
    assert_eq!(
        FileBackend::new(dir.path()).namespaces().unwrap(),
        vec![name]
    );
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn missing_cache_directory_lists_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FileBackend::new(dir.path().join("never-created"));
    assert_eq!(backend.namespaces().unwrap(), vec![]);
    let file = dir.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    let err = FileBackend::new(&file).namespaces().unwrap_err();
    assert!(err.to_string().contains("a-file"), "{err}");
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
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let backend = backend(&dir, separate);
        assert_eq!(backend.namespaces().unwrap(), vec![], "no directory yet");
        let calls = Counter::new();
        let mut expected = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let f = memoize(name, {
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
        let empty = multiplier(&backend, "listing::empty", 2, &calls);
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
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let backend = backend(&dir, separate);
        let ns = namespace("listing::many");
        let core = backend.core(&ns).unwrap();
        let n = 2_000u64;
        for i in 0..n {
            let value = vec![7u8; (i % 97) as usize];
            core.put(&Key::of(&i).unwrap(), &value, None).unwrap();
        }
        let mut entries = core.entries().unwrap();
        assert_eq!(entries.len() as u64, n);
        assert_eq!(core.len().unwrap(), n);
        entries.sort_by_key(|e| e.key);
        for i in 0..n {
            let key = Key::of(&i).unwrap();
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
        let stored = Key::of(&5u64).unwrap();
        let new = Key::of(&(n + 1)).unwrap();
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
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let backend = backend(&dir, separate);
        let ns = namespace("listing::dead");
        let core = backend.core(&ns).unwrap();
        let key = Key::of(&1u64).unwrap();
        let Claim::Claimed(_token) = core.claim(&key, Duration::from_secs(5)).unwrap() else {
            panic!("claim")
        };
        assert!(core.entries().unwrap()[0].being_calculated());
        let claims = if separate {
            backend.store_path(&ns).join(".claims")
        } else {
            dir.join(format!("{}.claims", file_stem(ns.as_str())))
        };
        fs::remove_file(claims.join(format!("{}.lock", key.to_hex()))).unwrap();
        assert!(
            core.entries().unwrap().is_empty(),
            "no live claim: no placeholder"
        );
        assert!(core.get(&key).unwrap().is_none(), "as get reports it");
        if separate {
            core.put(&key, b"good", None).unwrap();
            let bad = Key::of(&2u64).unwrap();
            let cut = Key::of(&3u64).unwrap();
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
