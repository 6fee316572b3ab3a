//! Listing the namespaces of a cache directory (`Backend::namespaces`), in both layouts: names
//! come from what each store records, and stores that cannot vouch for theirs are skipped.

use std::fs;
use std::path::Path;

use cachier_backend_file::FileBackend;
use cachier_core::{Backend, Key, Namespace};

fn ns(name: &str) -> Namespace {
    Namespace::new(name, None).unwrap()
}

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
    let (old, good) = (ns("m::old@1"), ns("m::good"));
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
    let (a, b) = (ns("m::a:b@2"), ns("m::old"));
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
    let name = ns("m::closed");
    {
        let backend = FileBackend::new(dir.path());
        store_one(&backend, &name);
    }
    let names = |dir: &Path| {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = names(dir.path());
    assert!(before.iter().all(|n| !n.ends_with("-wal")), "{before:?}");
    assert_eq!(
        FileBackend::new(dir.path()).namespaces().unwrap(),
        vec![name]
    );
    assert_eq!(names(dir.path()), before);
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
