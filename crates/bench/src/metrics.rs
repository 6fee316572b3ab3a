//! `metrics::publish` rows: what one publish costs when the function's store holds 100,000
//! entries, next to the same at 1,000, measured in the same run, on the SQL backend over SQLite
//! (a file in a temporary directory). Each sample builds the function anew, so its store has
//! no size reading yet and one is due: the publish that would list the store if any did. No
//! recorder is installed (the `metrics` facade's no-op one), so the time is cachier's own.

use std::time::Instant;

use crate::{overhead_fn, run_name, summarize, Config, Row};

/// Entry counts compared, whatever `CACHIER_BENCH_SIZES` says.
const SMALL: usize = 1_000;
const LARGE: usize = 100_000;

/// A SQLite store holding `n` entries of one function, written in one transaction.
fn store(dir: &std::path::Path, n: usize) -> (cachier::backends::sql::SqlBackend, String) {
    let path = dir.join(format!("metrics-{n}.db"));
    let backend = cachier::backends::sql::SqlBackend::sqlite(&path).expect("sqlite backend");
    let name = run_name(&format!("metrics-{n}"));
    let f = overhead_fn(&name)
        .backend(backend.clone())
        .build()
        .expect("build");
    f.call(0); // creates the table
    let value = cachier::store::codec::encode(&0u64).expect("encode");
    let mut raw = rusqlite::Connection::open(&path).expect("raw connection");
    raw.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    let tx = raw.transaction().expect("begin");
    {
        let mut insert = tx
            .prepare(
                "INSERT OR IGNORE INTO cachier_cache (function_id, key, value, stored_at, completed) \
                 VALUES (?1, ?2, ?3, 0, TRUE)",
            )
            .expect("prepare");
        let fid = f.namespace().as_str();
        for k in 0..n as u64 {
            let key = f.key(&k).expect("key").to_hex();
            insert.execute((fid, &key, &value)).expect("prefill");
        }
    }
    tx.commit().expect("commit");
    (backend, name)
}

/// The `metrics::publish` row.
pub fn rows(config: &Config) -> Vec<Row> {
    let dir = std::env::temp_dir().join(run_name("metrics").replace("::", "-"));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let (small, small_name) = store(&dir, SMALL);
    let (large, large_name) = store(&dir, LARGE);
    // One publish with only the function of `backend` live, built just before it.
    let publish_fresh = |backend: &cachier::backends::sql::SqlBackend, name: &str| {
        let f = overhead_fn(name)
            .backend(backend.clone())
            .build()
            .expect("build");
        let started = Instant::now();
        cachier::metrics::publish();
        let took = started.elapsed();
        drop(f);
        took.as_nanos() as f64
    };
    // Samples alternate between the two sizes, so a burst of load hits both alike.
    let samples = config.samples.max(1) * 8;
    let (mut ours, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        ours.push(publish_fresh(&large, &large_name));
        baseline.push(publish_fresh(&small, &small_name));
    }
    let _ = std::fs::remove_dir_all(&dir);
    vec![Row::new(
        "metrics (SQL on SQLite)",
        LARGE,
        "publish, size reading due",
        summarize(ours, samples as u64),
        format!("same at {SMALL} entries"),
        summarize(baseline, samples as u64),
    )]
}
