//! SQL backend rows: SQLite (a file in a temporary directory) and PostgreSQL
//! (`CACHIER_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`), each next
//! to the raw driver's prepared point SELECT (hits) and prepared upsert (misses) on the same
//! table, measured in the same run.

use crate::{overhead_fn, run_name, scattered, Config, Row};

/// The hex keys of arguments `0..n`, as the backend stores them.
fn keys(f: &cachier::Memoized<u64, u64>, n: usize) -> Vec<String> {
    (0..n as u64)
        .map(|k| f.key(&k).expect("key").to_hex())
        .collect()
}

const SELECT: &str = "SELECT value FROM cachier_cache WHERE function_id = $1 AND key = $2";

/// SQLite rows at every size.
#[cfg(feature = "sqlite")]
pub fn sqlite_rows(config: &Config) -> Vec<Row> {
    let dir = std::env::temp_dir().join(run_name("sqlite").replace("::", "-"));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut rows = Vec::new();
    for &n in &config.sizes {
        let path = dir.join(format!("cache-{n}.db"));
        let backend = cachier::backends::sql::SqlBackend::sqlite(&path).expect("sqlite backend");
        let f = overhead_fn(&run_name("sqlite"))
            .backend(backend)
            .build()
            .expect("build");
        crate::prefill(&f, n);
        let keys = keys(&f, n);
        let fid = f.namespace().as_str().to_owned();
        let raw = rusqlite::Connection::open(&path).expect("raw connection");
        raw.busy_timeout(std::time::Duration::from_secs(10))
            .expect("busy timeout");
        // As the backend's connections run: WAL (set by the backend), synchronous=NORMAL.
        raw.pragma_update(None, "synchronous", "NORMAL")
            .expect("synchronous");
        let select = SELECT.replace('$', "?");
        let (hit, raw_hit) = config.paired(
            |i| {
                std::hint::black_box(f.call(scattered(i, n)));
            },
            |i| {
                let key = &keys[scattered(i, n) as usize];
                let mut stmt = raw.prepare_cached(&select).expect("prepare");
                let v: Vec<u8> = stmt
                    .query_row((&fid, key), |r| r.get(0))
                    .expect("raw select");
                std::hint::black_box(v);
            },
        );
        rows.push(Row::new(
            "sqlite",
            n,
            "hit",
            hit,
            "rusqlite prepared point SELECT",
            raw_hit,
        ));
        let base = 1u64 << 40;
        let upsert = "INSERT INTO cachier_cache (function_id, key, value, stored_at, completed) VALUES (?1, ?2, ?3, 0, TRUE) \
                      ON CONFLICT (function_id, key) DO UPDATE SET value = excluded.value";
        let raw_fid = format!("{fid}-raw");
        let (miss, raw_miss) = config.paired(
            |i| {
                std::hint::black_box(f.call(base + i));
            },
            |i| {
                let mut stmt = raw.prepare_cached(upsert).expect("prepare");
                stmt.execute((&raw_fid, format!("{i:064x}"), &b"12345678"[..]))
                    .expect("raw upsert");
            },
        );
        rows.push(Row::new(
            "sqlite",
            n,
            "miss",
            miss,
            "rusqlite prepared upsert (one write)",
            raw_miss,
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

/// PostgreSQL rows at every size; none (with a note) when the server cannot be reached.
#[cfg(feature = "postgres")]
pub fn postgres_rows(config: &Config) -> Vec<Row> {
    let url = std::env::var("CACHIER_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut raw = match postgres::Client::connect(&url, postgres::NoTls) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("postgres rows skipped: cannot connect ({error})");
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    for &n in &config.sizes {
        let backend = cachier::backends::sql::SqlBackend::postgres(&url).expect("postgres backend");
        let f = overhead_fn(&run_name("postgres"))
            .backend(backend)
            .build()
            .expect("build");
        f.call(0); // creates the table on a fresh database
        let keys = keys(&f, n);
        let fid = f.namespace().as_str().to_owned();
        // Bulk prefill through the raw driver in one transaction (the same rows `put` writes).
        {
            let value = cachier::store::codec::encode(&0u64).expect("encode");
            let mut tx = raw.transaction().expect("begin");
            let insert = tx
                .prepare(
                    "INSERT INTO cachier_cache (function_id, key, value, stored_at, completed) \
                     VALUES ($1, $2, $3, now(), TRUE) ON CONFLICT (function_id, key) DO NOTHING",
                )
                .expect("prepare");
            for key in &keys {
                tx.execute(&insert, &[&fid, key, &value]).expect("prefill");
            }
            tx.commit().expect("commit");
        }
        let select = raw.prepare(SELECT).expect("prepare");
        let mut raw_select = |i| {
            let key = &keys[scattered(i, n) as usize];
            let v: Vec<u8> = raw
                .query_one(&select, &[&fid, key])
                .expect("raw select")
                .get(0);
            std::hint::black_box(v);
        };
        let (hit, raw_hit) = config.paired(
            |i| {
                std::hint::black_box(f.call(scattered(i, n)));
            },
            &mut raw_select,
        );
        rows.push(Row::new(
            "postgres",
            n,
            "hit",
            hit,
            "postgres prepared point SELECT",
            raw_hit,
        ));
        // The same rows through the native async path (tokio-postgres), awaited on a
        // current-thread runtime: `block_on` per call is included in the time.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let g = cachier::memoize_async(&fid, |x: u64| async move { x.wrapping_mul(2) })
            .backend(cachier::backends::sql::SqlBackend::postgres(&url).expect("postgres backend"))
            .build()
            .expect("build");
        let (async_hit, raw_hit) = config.paired(
            |i| {
                std::hint::black_box(rt.block_on(g.call(scattered(i, n))));
            },
            &mut raw_select,
        );
        rows.push(Row::new(
            "postgres",
            n,
            "async hit",
            async_hit,
            "postgres prepared point SELECT",
            raw_hit,
        ));
        let base = 1u64 << 40;
        let raw_fid = format!("{fid}-raw");
        let upsert = raw
            .prepare(
                "INSERT INTO cachier_cache (function_id, key, value, stored_at, completed) VALUES ($1, $2, $3, now(), TRUE) \
                 ON CONFLICT (function_id, key) DO UPDATE SET value = excluded.value",
            )
            .expect("prepare");
        let (miss, raw_miss) = config.paired(
            |i| {
                std::hint::black_box(f.call(base + i));
            },
            |i| {
                raw.execute(
                    &upsert,
                    &[&raw_fid, &format!("{i:064x}"), &&b"12345678"[..]],
                )
                .expect("raw upsert");
            },
        );
        rows.push(Row::new(
            "postgres",
            n,
            "miss",
            miss,
            "postgres prepared upsert (one write)",
            raw_miss,
        ));
        // Leave the shared table as it was.
        f.clear_cache().expect("clear");
        raw.execute(
            "DELETE FROM cachier_cache WHERE function_id = $1",
            &[&raw_fid],
        )
        .expect("cleanup");
    }
    rows
}
