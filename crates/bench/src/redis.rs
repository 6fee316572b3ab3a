//! Redis backend rows, next to a raw `HGETALL` (and `GET`) round trip made with the same
//! client in the same run, on one server and on a Redis Cluster.
//!
//! The server is `CACHIER_BENCH_REDIS_URL`, else `CACHIER_TEST_REDIS_URL`, else
//! `redis://127.0.0.1:6379/0`; the cluster is `CACHIER_BENCH_REDIS_CLUSTER_URL`, else
//! `CACHIER_TEST_REDIS_CLUSTER_URL` (no default). Without a reachable server the rows are
//! skipped with a note. Each run uses fresh namespaces and clears them at the end.

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
    let Some(client) = backend.client() else {
        eprintln!("redis rows skipped: {url} is a cluster (its rows come from CACHIER_BENCH_REDIS_CLUSTER_URL)");
        return Vec::new();
    };
    let mut con = match client.get_connection_with_timeout(Duration::from_secs(1)) {
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
            .block_on(client.get_multiplexed_async_connection())
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
        // A write alone: `precache_value` (the put script) next to a raw `HSET` of the same
        // fields, over the stored keys.
        let value = cachier::store::codec::encode(&0u64).expect("encode");
        let hash_keys: Vec<String> = plain_keys.iter().map(|k| format!("{k}:h")).collect();
        let (put, raw) = config.paired(
            |i| {
                let k = scattered(i, n);
                black_box(f.precache_value(&k, k.wrapping_mul(2)).expect("put"));
            },
            |i| {
                let () = redis::cmd("HSET")
                    .arg(&hash_keys[scattered(i, n) as usize])
                    .arg("value")
                    .arg(&value[..])
                    .arg("time")
                    .arg(i)
                    .arg("completed")
                    .arg(1)
                    .query(&mut con)
                    .map(|_: i64| ())
                    .expect("HSET");
            },
        );
        rows.push(Row::new(
            "redis",
            n,
            "put (precache_value)",
            put,
            "raw HSET round trip",
            raw,
        ));

        f.clear_cache().expect("clear");
        stale.clear_cache().expect("clear");
        for chunk in hash_keys.chunks(5_000) {
            let () = redis::cmd("UNLINK")
                .arg(chunk)
                .query(&mut con)
                .map(|_: i64| ())
                .expect("UNLINK");
        }
        backend
            .core(&plain)
            .and_then(|core| core.clear_cache())
            .expect("clear");
    }
    rows
}

/// Cluster rows: hit and miss next to a raw `HGETALL` through the same cluster client, then
/// the key placement measured: how one function's entries spread over the primaries, and
/// `clear_cache` on them next to the same number of hashes under one hash tag (what a
/// per-function tag would give) cleared with `SCAN` and `UNLINK` on their one node.
pub fn cluster_rows(config: &Config) -> Vec<Row> {
    let url = crate::server_url(
        &[
            "CACHIER_BENCH_REDIS_CLUSTER_URL",
            "CACHIER_TEST_REDIS_CLUSTER_URL",
        ],
        "",
    );
    if url.is_empty() {
        eprintln!("redis cluster rows skipped: no CACHIER_BENCH_REDIS_CLUSTER_URL");
        return Vec::new();
    }
    let backend = match RedisBackend::from_url(&url) {
        Ok(backend) => backend,
        Err(error) => {
            eprintln!("redis cluster rows skipped: {error}");
            return Vec::new();
        }
    };
    let Some(client) = backend.cluster_client() else {
        eprintln!("redis cluster rows skipped: {url} is not a cluster");
        return Vec::new();
    };
    let mut con = match client.get_connection() {
        Ok(con) => con,
        Err(error) => {
            eprintln!("redis cluster rows skipped: no cluster ({error})");
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    for &n in &config.sizes {
        let f = overhead_fn(&run_name("redis-cluster"))
            .backend(backend.clone())
            .build()
            .expect("build");
        prefill(&f, n);
        let keys: Vec<String> = (0..n as u64)
            .map(|k| backend.redis_key(f.namespace(), &f.key(&k).expect("key")))
            .collect();
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
            "redis cluster",
            n,
            "hit",
            hit,
            "raw HGETALL round trip (cluster client)",
            raw,
        ));
        let base = 1u64 << 40;
        let (miss, raw) = config.paired(
            |i| {
                black_box(f.call(base + i));
            },
            &mut raw_hgetall,
        );
        rows.push(Row::new(
            "redis cluster",
            n,
            "miss",
            miss,
            "raw HGETALL round trip (cluster client)",
            raw,
        ));
        f.clear_cache().expect("clear");
        placement(&mut con, &backend, n);
    }
    rows
}

/// Prints the key placement measurements for `n` entries of a fresh function (see
/// [`cluster_rows`]).
fn placement(con: &mut redis::cluster::ClusterConnection, backend: &RedisBackend, n: usize) {
    let f = overhead_fn(&run_name("redis-cluster-placement"))
        .backend(backend.clone())
        .build()
        .expect("build");
    prefill(&f, n);
    use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(con)
        .expect("CLUSTER SLOTS");
    let mut primaries: Vec<(String, u16)> = slots
        .iter()
        .filter_map(|range| match range {
            redis::Value::Array(parts) => match parts.get(2) {
                Some(redis::Value::Array(node)) => Some((
                    redis::from_redis_value(node[0].clone()).ok()?,
                    redis::from_redis_value(node[1].clone()).ok()?,
                )),
                _ => None,
            },
            _ => None,
        })
        .collect();
    primaries.sort();
    primaries.dedup();
    // Keys matching `pattern` on each primary, with `SCAN`; with `unlink`, deleted as found.
    let walk = |con: &mut redis::cluster::ClusterConnection, pattern: &str, unlink: bool| {
        let mut counts = Vec::new();
        for (host, port) in &primaries {
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port: *port,
            });
            let (mut cursor, mut count) = (0u64, 0usize);
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply = con.route_command(&scan, route.clone()).expect("SCAN");
                let (next, keys): (u64, Vec<String>) =
                    redis::from_redis_value(reply).expect("SCAN reply");
                count += keys.len();
                if unlink && !keys.is_empty() {
                    let mut del = redis::cmd("UNLINK");
                    del.arg(&keys);
                    con.route_command(&del, route.clone()).expect("UNLINK");
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            counts.push(count);
        }
        counts
    };
    let base = backend.redis_key(f.namespace(), &cachier::store::Key::from_bytes([0; 32]));
    let pattern = format!("{}*", &base[..base.len() - 64]);
    let spread = walk(con, &pattern, false);
    let started = std::time::Instant::now();
    f.clear_cache().expect("clear");
    let spread_clear = started.elapsed();

    // The same entries under one hash tag (one slot, so one node), written with a cluster
    // pipeline and cleared the way a tag allows: `SCAN` and `UNLINK` of whole batches.
    let tag = run_name("redis-cluster-tag");
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let mut pipe = redis::cluster::cluster_pipe();
        for k in chunk {
            pipe.cmd("HSET")
                .arg(format!("cachier-bench:{{{tag}}}:{k:064x}"))
                .arg("value")
                .arg(b"0123456789".as_slice())
                .ignore();
        }
        pipe.exec(con).expect("fill tagged keys");
    }
    let tagged = walk(con, &format!("cachier-bench:{{{tag}}}:*"), false);
    let started = std::time::Instant::now();
    walk(con, &format!("cachier-bench:{{{tag}}}:*"), true);
    let tagged_clear = started.elapsed();
    let share = |counts: &[usize]| {
        let max = counts.iter().copied().max().unwrap_or(0);
        100.0 * max as f64 / counts.iter().sum::<usize>().max(1) as f64
    };
    println!(
        "redis cluster placement, {n} entries: spread (cachier) per primary {spread:?}, largest {:.1} %, clear_cache {spread_clear:.2?}; one hash tag per function per primary {tagged:?}, largest {:.1} %, SCAN+UNLINK {tagged_clear:.2?}",
        share(&spread),
        share(&tagged)
    );
}
