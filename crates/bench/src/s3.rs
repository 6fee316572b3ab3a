//! S3 backend rows, next to one raw GET of the same objects through the same client in the
//! same run, and the number of requests a miss sends.
//!
//! The server is `CACHIER_BENCH_S3_URL`, else `CACHIER_TEST_S3_URL` (scripts/test.sh starts
//! moto and sets it); without one the rows are skipped with a note. An S3 server has no bulk
//! write, so at most a thousand entries are stored (a hit is one GET of one object whatever
//! the bucket holds). Each run uses fresh namespaces and clears them at the end.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use cachier::backends::s3::S3Backend;
use cachier_backend_s3::object_store::path::Path;
use cachier_backend_s3::object_store::ObjectStoreExt;

use crate::{overhead_fn, prefill, run_name, scattered, Config, Row, Summary};

/// Alternating measurement rounds.
const ROUNDS: u64 = 3;
/// Most entries stored (one PUT each).
const MAX_ENTRIES: usize = 1_000;
/// The target: a miss is at most this many requests.
const MISS_REQUESTS_TARGET: f64 = 4.0;

/// Hit, async hit and miss rows, with the raw GET baseline and the requests per miss.
pub fn rows(config: &Config) -> Vec<Row> {
    let url = crate::server_url(&["CACHIER_BENCH_S3_URL", "CACHIER_TEST_S3_URL"], "");
    if url.is_empty() {
        eprintln!("s3 rows skipped: set CACHIER_BENCH_S3_URL or CACHIER_TEST_S3_URL");
        return Vec::new();
    }
    let backend = match S3Backend::from_url(&url) {
        Ok(backend) => backend,
        Err(error) => {
            eprintln!("s3 rows skipped: {error}");
            return Vec::new();
        }
    };
    let mut sizes: Vec<usize> = config.sizes.iter().map(|&n| n.min(MAX_ENTRIES)).collect();
    sizes.dedup();
    let mut rows = Vec::new();
    for n in sizes {
        let f = overhead_fn(&run_name("s3"))
            .backend(backend.clone())
            .build()
            .expect("build");
        if let Err(error) = f.try_call(u64::MAX) {
            eprintln!("s3 rows skipped: no server ({error})");
            return Vec::new();
        }
        prefill(&f, n);
        // The raw baseline reads the very objects the hits read.
        let dir = backend.prefix().clone().join(f.namespace().as_str());
        let paths: Vec<Path> = (0..n as u64)
            .map(|k| dir.clone().join(f.key(&k).expect("key").to_hex()))
            .collect();
        let store = backend.store().clone();

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        static ASYNC_CALLS: AtomicU64 = AtomicU64::new(0);
        let f_async = cachier::memoize_async(f.namespace().as_str(), |x: u64| async move {
            ASYNC_CALLS.fetch_add(1, Ordering::Relaxed);
            x.wrapping_mul(2)
        })
        .backend(backend.clone())
        .build()
        .expect("build");

        let mut best = [None::<Summary>; 5];
        let (mut misses, mut miss_requests) = (0u64, 0u64);
        for round in 0..ROUNDS {
            let raw = config.measure(|i| {
                let (store, path) = (store.clone(), paths[scattered(i, n) as usize].clone());
                let bytes = backend
                    .block_on(async move { store.get(&path).await?.bytes().await })
                    .expect("runtime")
                    .expect("raw GET");
                black_box(bytes);
            });
            let hit = config.measure(|i| {
                black_box(f.call(scattered(i, n)));
            });
            let async_hit = config.measure(|i| {
                black_box(runtime.block_on(f_async.call(scattered(i, n))));
            });
            let raw_async = config.measure(|i| {
                let path = &paths[scattered(i, n) as usize];
                let bytes = runtime
                    .block_on(async { store.get(path).await?.bytes().await })
                    .expect("raw GET");
                black_box(bytes);
            });
            // Fresh keys in every round: `measure` counts from 0 each time.
            let base = (1u64 << 40) + (round << 36);
            let sent = backend.requests_sent();
            let mut calls = 0;
            let miss = config.measure(|i| {
                calls += 1;
                black_box(f.call(base + i));
            });
            misses += calls;
            miss_requests += backend.requests_sent() - sent;
            for (slot, new) in best.iter_mut().zip([raw, hit, async_hit, raw_async, miss]) {
                if slot.is_none_or(|old: Summary| new.median_ns < old.median_ns) {
                    *slot = Some(new);
                }
            }
        }
        let [raw, hit, async_hit, raw_async, miss] = best.map(|s| s.expect("measured"));
        assert_eq!(
            ASYNC_CALLS.load(Ordering::Relaxed),
            0,
            "async hits must not compute"
        );
        let per_miss = miss_requests as f64 / misses as f64;
        assert!(
            per_miss <= MISS_REQUESTS_TARGET,
            "a miss sent {per_miss:.2} requests"
        );
        rows.push(Row::new("s3", n, "hit", hit, "raw GET, same client", raw));
        rows.push(Row::new(
            "s3",
            n,
            "async hit",
            async_hit,
            "raw GET awaited, same runtime",
            raw_async,
        ));
        rows.push(Row::new(
            "s3",
            n,
            "miss",
            miss,
            format!("raw GET, same client ({per_miss:.2} requests per miss)"),
            raw,
        ));
        f.clear_cache().expect("clear");
    }
    rows
}
