//! MongoDB backend rows, next to a raw `find_one` on the same entries made with the same client
//! (and the same runtime) in the same run.
//!
//! The server is `CACHIER_BENCH_MONGO_URL`, else `CACHIER_TEST_MONGO_URL`, else
//! `mongodb://127.0.0.1:27017/?directConnection=true`; without a reachable server the rows
//! are skipped with a note. Entries beyond the first thousand are bulk-inserted in the
//! backend's document format (the test server takes about a millisecond per single write).
//! Each run uses fresh namespaces and clears them at the end.

use std::future::IntoFuture;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use cachier::backends::mongo::MongoBackend;
use cachier_backend_mongo::mongodb::bson::{doc, spec::BinarySubtype, Binary, DateTime, Document};

use crate::{overhead_fn, prefill, run_name, scattered, Config, Row, Summary};

/// Alternating measurement rounds per size.
const ROUNDS: u64 = 3;

/// Stores keys `0..n`: the first thousand through `precache_value`, the rest in bulk.
fn fill(backend: &MongoBackend, f: &cachier::Memoized<u64, u64>, n: usize) {
    prefill(f, n.min(1_000));
    let now = DateTime::from_system_time(SystemTime::now());
    let func = f.namespace().as_str().to_owned();
    let docs: Vec<Document> = (1_000..n as u64)
        .map(|k| {
            let value = cachier::store::codec::encode(&k.wrapping_mul(2)).expect("encode");
            doc! {
                "func": &func,
                "key": f.key(&k).expect("key").to_hex(),
                "value": Binary { subtype: BinarySubtype::Generic, bytes: value },
                "time": now,
                "processing": false,
                "completed": true,
            }
        })
        .collect();
    for chunk in docs.chunks(10_000) {
        let collection = backend.collection().clone();
        let chunk = chunk.to_vec();
        backend
            .block_on(async move { collection.insert_many(chunk).await })
            .expect("runtime")
            .expect("bulk insert");
    }
}

/// Hit, miss and stale rows at every size, with the raw `find_one` baseline.
pub fn rows(config: &Config) -> Vec<Row> {
    let backend = match MongoBackend::builder(crate::server_url(
        &["CACHIER_BENCH_MONGO_URL", "CACHIER_TEST_MONGO_URL"],
        "mongodb://127.0.0.1:27017/?directConnection=true",
    ))
    .database("cachier_bench")
    .server_selection_timeout(Duration::from_secs(1))
    .build()
    {
        Ok(backend) => backend,
        Err(error) => {
            eprintln!("mongo rows skipped: {error}");
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    for &n in &config.sizes {
        let f = overhead_fn(&run_name("mongo"))
            .backend(backend.clone())
            .build()
            .expect("build");
        if let Err(error) = f.try_call(u64::MAX) {
            eprintln!("mongo rows skipped: no server ({error})");
            return Vec::new();
        }
        fill(&backend, &f, n);
        // The raw baseline reads the very documents the hits read, by their precomputed keys.
        let func = f.namespace().as_str().to_owned();
        let filters: Vec<Document> = (0..n as u64)
            .map(|k| doc! { "func": &func, "key": f.key(&k).expect("key").to_hex() })
            .collect();

        let stale = overhead_fn(&run_name("mongo-stale"))
            .backend(backend.clone())
            .stale_after(Duration::ZERO)
            .build()
            .expect("build");
        let stale_n = n.min(1_000);
        prefill(&stale, stale_n);

        // Async hits (the native async store) on the same entries, one `block_on` per call on
        // a current-thread runtime, next to a raw `find_one` awaited on that runtime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        static ASYNC_CALLS: AtomicU64 = AtomicU64::new(0);
        let f_async = cachier::memoize_async(&func, |x: u64| async move {
            ASYNC_CALLS.fetch_add(1, Ordering::Relaxed);
            x.wrapping_mul(2)
        })
        .backend(backend.clone())
        .build()
        .expect("build");

        // Paths and baselines alternate, ROUNDS times; each keeps its best median, so a burst
        // of load on this shared machine does not land on one side only.
        let mut best = [None::<Summary>; 6];
        for round in 0..ROUNDS {
            let raw = config.measure(|i| {
                let collection = backend.collection().clone();
                let filter = filters[scattered(i, n) as usize].clone();
                let found = backend
                    .block_on(async move { collection.find_one(filter).await })
                    .expect("runtime")
                    .expect("find_one");
                black_box(found.expect("stored"));
            });
            let hit = config.measure(|i| {
                black_box(f.call(scattered(i, n)));
            });
            // Fresh keys in every round: `measure` counts from 0 each time.
            let base = (1u64 << 40) + (round << 36);
            let miss = config.measure(|i| {
                black_box(f.call(base + i));
            });
            let stale_path = config.measure(|i| {
                black_box(stale.call(scattered(i, stale_n)));
            });
            let async_hit = config.measure(|i| {
                black_box(runtime.block_on(f_async.call(scattered(i, n))));
            });
            let raw_async = config.measure(|i| {
                let filter = filters[scattered(i, n) as usize].clone();
                let found = runtime
                    .block_on(backend.collection().find_one(filter).into_future())
                    .expect("find_one");
                black_box(found.expect("stored"));
            });
            for (slot, new) in best
                .iter_mut()
                .zip([raw, hit, miss, stale_path, async_hit, raw_async])
            {
                if slot.is_none_or(|old: Summary| new.median_ns < old.median_ns) {
                    *slot = Some(new);
                }
            }
        }
        let [raw, hit, miss, stale_path, async_hit, raw_async] = best.map(|s| s.expect("measured"));
        assert_eq!(
            ASYNC_CALLS.load(Ordering::Relaxed),
            0,
            "async hits must not compute"
        );
        rows.push(Row::new(
            "mongo",
            n,
            "hit",
            hit,
            "raw find_one, same client",
            raw,
        ));
        rows.push(Row::new(
            "mongo",
            n,
            "async hit",
            async_hit,
            "raw find_one, same client",
            raw,
        ));
        rows.push(Row::new(
            "mongo",
            n,
            "async hit",
            async_hit,
            "raw find_one awaited, same runtime",
            raw_async,
        ));
        rows.push(Row::new(
            "mongo",
            n,
            "miss",
            miss,
            "raw find_one, same client",
            raw,
        ));
        rows.push(Row::new(
            "mongo",
            n,
            "stale (recompute)",
            stale_path,
            "raw find_one, same client",
            raw,
        ));
        f.clear_cache().expect("clear");
        stale.clear_cache().expect("clear");
    }
    rows
}
