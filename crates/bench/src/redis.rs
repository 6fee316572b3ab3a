//! Redis backend rows, next to a raw `HGETALL` (and `GET`) round trip made with the same
//! client in the same run.
//!
//! The server is `CACHIER_BENCH_REDIS_URL`, else `CACHIER_TEST_REDIS_URL`, else
//! `redis://127.0.0.1:6379/0`; without a reachable server the rows are skipped with a note.
//! Each run uses fresh namespaces and clears them at the end.

use std::hint::black_box;
use std::time::Duration;

use cachier::{
    backends::redis::RedisBackend,
    store::{Backend, Key, Namespace},
};

use crate::{overhead_fn, prefill, run_name, scattered, Config, Row};

/// Hit, miss and stale rows at every size, with their raw round-trip baselines.
pub fn rows(config: &Config) -> Vec<Row> {
    let url = crate::server_url(
        &["CACHIER_BENCH_REDIS_URL", "CACHIER_TEST_REDIS_URL"],
        "redis://127.0.0.1:6379/0",
    );
    let backend = match RedisBackend::from_url(&url) {
        Ok(backend) => backend,
        Err(error) => {
            eprintln!("redis rows skipped: {error}");
            return Vec::new();
        }
    };
    let mut con = match backend
        .client()
        .get_connection_with_timeout(Duration::from_secs(1))
    {
        Ok(con) => con,
        Err(error) => {
            eprintln!("redis rows skipped: no server ({error})");
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    for &n in &config.sizes {
        let f = overhead_fn(&run_name("redis"))
            .backend(backend.clone())
            .build()
            .expect("build");
        prefill(&f, n);
        // The raw baseline reads the very entries the hits read, by their precomputed keys.
        let keys: Vec<String> = (0..n as u64)
            .map(|k| backend.redis_key(f.namespace(), &f.key(&k).expect("key")))
            .collect();
        let plain = Namespace::new(&run_name("redis-plain"), None).expect("namespace");
        let plain_keys: Vec<String> = (0..n as u64)
            .map(|k| backend.redis_key(&plain, &Key::of(&k).expect("key")))
            .collect();
        for chunk in plain_keys.chunks(5_000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(b"0123456789".as_slice())
                    .ignore();
            }
            pipe.query::<()>(&mut con).expect("fill GET baseline keys");
        }

        let stale = overhead_fn(&run_name("redis-stale"))
            .backend(backend.clone())
            .stale_after(Duration::ZERO)
            .build()
            .expect("build");
        let stale_n = n.min(1_000);
        prefill(&stale, stale_n);

        // Each path is measured in batches alternating with its baseline's (see `Config::paired`).
        let mut raw_hgetall = |i: u64| {
            let reply: redis::Value = redis::cmd("HGETALL")
                .arg(&keys[scattered(i, n) as usize])
                .query(&mut con)
                .expect("HGETALL");
            black_box(reply);
        };
        let (hit, raw) = config.paired(
            |i| {
                black_box(f.call(scattered(i, n)));
            },
            &mut raw_hgetall,
        );
        rows.push(Row::new(
            "redis",
            n,
            "hit",
            hit,
            "raw HGETALL round trip",
            raw,
        ));
        // The async hit (native async store), one `block_on` per call on a current-thread
        // runtime, next to the blocking raw round trip and a raw async one on that runtime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Same namespace as `f`: it reads the very entries `f`'s hits read (never computes).
        static ASYNC_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let f_async = cachier::memoize_async(f.namespace().as_str(), |x: u64| async move {
            ASYNC_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            x.wrapping_mul(2)
        })
        .backend(backend.clone())
        .build()
        .expect("build");
        let (hit, raw) = config.paired(
            |i| {
                black_box(runtime.block_on(f_async.call(scattered(i, n))));
            },
            &mut raw_hgetall,
        );
        rows.push(Row::new(
            "redis",
            n,
            "async hit",
            hit,
            "raw HGETALL round trip",
            raw,
        ));
        let mut async_con = runtime
            .block_on(backend.client().get_multiplexed_async_connection())
            .expect("async connection");
        let (hit, raw) = config.paired(
            |i| {
                black_box(runtime.block_on(f_async.call(scattered(i, n))));
            },
            |i| {
                let reply: redis::Value = runtime
                    .block_on(
                        redis::cmd("HGETALL")
                            .arg(&keys[scattered(i, n) as usize])
                            .query_async(&mut async_con),
                    )
                    .expect("HGETALL");
                black_box(reply);
            },
        );
        rows.push(Row::new(
            "redis",
            n,
            "async hit",
            hit,
            "raw async HGETALL round trip",
            raw,
        ));
        assert_eq!(
            ASYNC_CALLS.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "async hits must not compute"
        );
        let base = 1u64 << 40;
        let (miss, raw) = config.paired(
            |i| {
                black_box(f.call(base + i));
            },
            &mut raw_hgetall,
        );
        rows.push(Row::new(
            "redis",
            n,
            "miss",
            miss,
            "raw HGETALL round trip",
            raw,
        ));
        let (stale_path, raw) = config.paired(
            |i| {
                black_box(stale.call(scattered(i, stale_n)));
            },
            &mut raw_hgetall,
        );
        rows.push(Row::new(
            "redis",
            n,
            "stale (recompute)",
            stale_path,
            "raw HGETALL round trip",
            raw,
        ));
        let (hit, raw) = config.paired(
            |i| {
                black_box(f.call(scattered(i, n)));
            },
            |i| {
                let reply: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&plain_keys[scattered(i, n) as usize])
                    .query(&mut con)
                    .expect("GET");
                black_box(reply);
            },
        );
        rows.push(Row::new("redis", n, "hit", hit, "raw GET round trip", raw));

        f.clear_cache().expect("clear");
        stale.clear_cache().expect("clear");
        backend
            .core(&plain)
            .and_then(|core| core.clear_cache())
            .expect("clear");
    }
    rows
}
