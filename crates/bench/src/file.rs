//! File backend rows, both modes, next to the raw storage operation each path cannot avoid:
//! a prepared rusqlite point SELECT / upsert on a WAL database (single-store mode), and a
//! plain file read / write-then-rename (`separate_files`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::{overhead_fn, prefill, run_name, scattered, Config, Row};

fn raw_wal(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("raw connection");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "NORMAL")
        .expect("normal");
    conn
}

/// Hit and miss rows of both modes at every size.
pub fn rows(config: &Config) -> Vec<Row> {
    let dir = std::env::temp_dir().join(run_name("file").replace("::", "-"));
    let mut rows = Vec::new();
    for &n in &config.sizes {
        for separate in [false, true] {
            let label = if separate {
                "file (separate_files)"
            } else {
                "file"
            };
            let cache = dir.join(format!("{n}-{separate}"));
            let backend = cachier::backends::file::FileBackend::builder()
                .cache_dir(&cache)
                .separate_files(separate)
                .build();
            let f = overhead_fn(&run_name("file"))
                .backend(backend.clone())
                .build()
                .expect("build");
            prefill(&f, n);
            let keys: Vec<cachier::store::Key> =
                (0..n as u64).map(|k| f.key(&k).expect("key")).collect();
            let store = backend.store_path(f.namespace());
            let hit = config.measure(|i| {
                std::hint::black_box(f.call(scattered(i, n)));
            });
            let base = 1u64 << 40;
            let miss = config.measure(|i| {
                std::hint::black_box(f.call(base + i));
            });
            if separate {
                let raw_hit = config.measure(|i| {
                    let key = &keys[scattered(i, n) as usize];
                    std::hint::black_box(
                        std::fs::read(store.join(key.to_hex())).expect("raw read"),
                    );
                });
                let raw_dir = cache.join("raw");
                std::fs::create_dir_all(&raw_dir).expect("raw dir");
                let raw_miss = config.measure(|i| {
                    let tmp = raw_dir.join(format!(".tmp-{i}"));
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&tmp)
                        .expect("tmp");
                    file.write_all(&[7u8; 44]).expect("write");
                    drop(file);
                    std::fs::rename(&tmp, raw_dir.join(format!("{i:064x}"))).expect("rename");
                });
                rows.push(Row::new(
                    label,
                    n,
                    "hit",
                    hit,
                    "std::fs::read of the entry file",
                    raw_hit,
                ));
                rows.push(Row::new(
                    label,
                    n,
                    "miss",
                    miss,
                    "write tmp + rename (one new file)",
                    raw_miss,
                ));
            } else {
                let raw = raw_wal(&store);
                let raw_hit = config.measure(|i| {
                    let key = keys[scattered(i, n) as usize];
                    let mut stmt = raw
                        .prepare_cached("SELECT value FROM entries WHERE key = ?1")
                        .expect("prepare");
                    let v: Vec<u8> = stmt
                        .query_row([key.as_bytes().as_slice()], |r| r.get(0))
                        .expect("raw select");
                    std::hint::black_box(v);
                });
                let other = raw_wal(&cache.join("raw.sqlite3"));
                other
                    .execute_batch("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
                    .expect("raw table");
                let raw_miss = config.measure(|i| {
                    let mut stmt = other
                        .prepare_cached("INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)")
                        .expect("prepare");
                    stmt.execute((i.to_le_bytes().as_slice(), [7u8; 12].as_slice()))
                        .expect("raw upsert");
                });
                rows.push(Row::new(
                    label,
                    n,
                    "hit",
                    hit,
                    "rusqlite prepared point SELECT",
                    raw_hit,
                ));
                rows.push(Row::new(
                    label,
                    n,
                    "miss",
                    miss,
                    "rusqlite prepared upsert (one write)",
                    raw_miss,
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    rows
}
