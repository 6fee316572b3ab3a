//! What only the SQLite side of the SQL backend does, through memoized functions: the database
//! file (its path, WAL mode, schema version, both URL forms), garbage rows, table names, a
//! newer schema refused, bad URLs and paths, and `sqlite::memory:`.
#![cfg(feature = "sqlite")]

mod common;

use std::path::PathBuf;

use cachier_backend_sql::SqlBackend;
use cachier_core::{memoize, Error};
use cachier_sqlite::rusqlite;
use cachier_testkit::{fresh_dir, unique_name, Counter};
use common::{numbered, unique_table};

fn db_file() -> PathBuf {
    fresh_dir("sqlite-own").join("cache.db")
}

#[test]
fn file_path_is_available_and_cache_dpath_is_none() {
    let path = db_file();
    let backend = SqlBackend::sqlite(&path).unwrap();
    assert_eq!(backend.sqlite_path(), Some(path.as_path()));
    assert_eq!(backend.table(), "cachier_cache");
    let f = numbered(backend, &Counter::new());
    assert_eq!(f.call(1), 1001);
    assert_eq!(f.cache_dpath(), None);
    assert!(path.exists());
}

#[test]
fn urls_open_the_same_file() {
    let path = db_file();
    let calls = Counter::new();
    let absolute = format!("sqlite://{}", path.display());
    assert!(absolute.starts_with("sqlite:///"), "{absolute}");
    let a = numbered(SqlBackend::from_url(&absolute).unwrap(), &calls);
    let value = a.call(3);
    let b = memoize(a.namespace().as_str(), |x: u64| x)
        .backend(SqlBackend::from_url(&format!("sqlite:{}", path.display())).unwrap())
        .build()
        .unwrap();
    assert_eq!(
        b.call(3),
        value,
        "the second URL form reads the first one's entry"
    );
    assert_eq!(calls.get(), 1);
}

#[test]
fn file_is_in_wal_mode_with_a_schema_version() {
    let path = db_file();
    let f = numbered(SqlBackend::sqlite(&path).unwrap(), &Counter::new());
    f.call(1);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: String = conn
        .query_row(
            "SELECT value FROM cachier_cache_meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, "1");
}

#[test]
fn garbage_rows_are_recomputed() {
    let path = db_file();
    let calls = Counter::new();
    let f = numbered(SqlBackend::sqlite(&path).unwrap(), &calls);
    assert_eq!(f.call(1), 1001);
    assert_eq!(f.call(2), 2002);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let fid = f.namespace().as_str();
    // Bytes that do not decode, and a row whose columns hold the wrong types.
    let k1 = f.key(&1).unwrap().to_hex();
    let k2 = f.key(&2).unwrap().to_hex();
    conn.execute(
        "UPDATE cachier_cache SET value = X'FF00FF' WHERE function_id = ?1 AND key = ?2",
        (fid, &k1),
    )
    .unwrap();
    conn.execute(
        "UPDATE cachier_cache SET value = 'text, not bytes', stored_at = 'yesterday' WHERE function_id = ?1 AND key = ?2",
        (fid, &k2),
    )
    .unwrap();
    assert_eq!(f.call(1), 1003, "garbage bytes are a miss");
    assert_eq!(f.call(2), 2004, "an unreadable row is a miss");
    assert_eq!(
        f.call(1),
        1003,
        "the recomputed value overwrote the garbage"
    );
    assert_eq!(f.call(2), 2004);
    assert_eq!(calls.get(), 4);
}

#[test]
fn invalid_table_name_is_a_config_error() {
    for bad in ["x; DROP TABLE y", "1abc", "a.b.c", "has space", ""] {
        let built = SqlBackend::builder(&format!("sqlite:{}", db_file().display()))
            .unwrap()
            .table(bad)
            .build();
        match built {
            Err(Error::Config { param: "table", .. }) => {}
            other => panic!("{bad:?}: expected a config error, got {other:?}"),
        }
    }
}

#[test]
fn custom_table_is_used() {
    let path = db_file();
    let table = unique_table();
    let backend = SqlBackend::builder(&format!("sqlite:{}", path.display()))
        .unwrap()
        .table(&table)
        .build()
        .unwrap();
    assert_eq!(backend.table(), table);
    let f = numbered(backend, &Counter::new());
    f.call(5);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row(&format!("SELECT COUNT(*) FROM \"{table}\""), [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn newer_schema_version_is_refused() {
    let path = db_file();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE cachier_cache_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT INTO cachier_cache_meta VALUES ('schema_version', '999');",
    )
    .unwrap();
    drop(conn);
    let error = SqlBackend::sqlite(&path).unwrap_err().to_string();
    assert!(error.contains("newer cachier"), "{error}");
}

#[test]
fn bad_urls_are_config_errors() {
    for bad in ["sqlite:", "sqlite://", "mysql://h/db"] {
        match SqlBackend::from_url(bad) {
            Err(Error::Config { param: "url", .. }) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn unopenable_file_is_a_backend_error() {
    let dir = fresh_dir("sqlite-missing");
    let error = SqlBackend::sqlite(dir.join("no").join("such").join("dir.db")).unwrap_err();
    assert!(error.is_backend(), "{error}");
}

/// `sqlite::memory:`: a private in-memory database per backend.
#[test]
fn in_memory_url_opens() {
    let backend = SqlBackend::from_url("sqlite::memory:").unwrap();
    assert_eq!(backend.sqlite_path(), None);
    let f = memoize(&unique_name("sqlite_memory"), |x: u64| x + 1)
        .backend(backend)
        .build()
        .unwrap();
    assert_eq!(f.call(1), 2);
    assert_eq!(f.core().len().unwrap(), 1);
}
