//! Near cache rows: a hit served in this process in front of each store, next to the memory
//! backend's hit (itself a near hit by default) measured in the same run, and two threads
//! hitting one memoized function next to two threads reading a `moka` cache.
//!
//! Server stores come from the same variables as their own rows (`CACHIER_BENCH_*_URL`, else
//! `CACHIER_TEST_*_URL`); a store that cannot be reached is skipped with a note.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cachier::NearCache;

use crate::{overhead_fn, prefill, run_name, scattered, stores, summarize, Config, Row};

/// Near hits in front of every store, and the two-thread rows.
pub fn rows(config: &Config) -> Vec<Row> {
    let dir = std::env::temp_dir().join(run_name("near").replace("::", "-"));
    let mut rows = Vec::new();
    for &n in &config.sizes {
        let memory = overhead_fn(&run_name("near-memory"))
            .backend(cachier::backends::memory::MemoryBackend::new())
            .build()
            .expect("build");
        prefill(&memory, n);
        warm(&memory, n);
        for (label, url) in stores(&dir) {
            let backend = match cachier::backend_from_url(&url) {
                Ok(backend) => backend,
                Err(error) => {
                    eprintln!("near {label} rows skipped: {error}");
                    continue;
                }
            };
            let f = match overhead_fn(&run_name(&format!("near-{label}")))
                .shared_backend(backend)
                .near_cache(NearCache::entries(n))
                .build()
            {
                Ok(f) => f,
                Err(error) => {
                    eprintln!("near {label} rows skipped: {error}");
                    continue;
                }
            };
            if let Err(error) = f.try_call(u64::MAX) {
                eprintln!("near {label} rows skipped: no server ({error})");
                continue;
            }
            prefill(&f, n.min(10_000));
            let n_near = n.min(10_000);
            warm(&f, n_near);
            let (near, mem) = config.paired(
                |i| {
                    std::hint::black_box(f.call(scattered(i, n_near)));
                },
                |i| {
                    std::hint::black_box(memory.call(scattered(i, n)));
                },
            );
            rows.push(Row::new(
                format!("near cache in front of {label}"),
                n_near,
                "hit",
                near,
                "memory backend hit",
                mem,
            ));
            let _ = f.clear_cache();
        }
        rows.push(two_threads(config, &memory, n));
    }
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

/// Reads every key once, so the near cache keeps it (a value stored by `precache_value` is
/// kept at its first read).
fn warm(f: &cachier::Memoized<u64, u64>, n: usize) {
    for k in 0..n as u64 {
        std::hint::black_box(f.call(k));
    }
}

/// Two threads hitting `f`, next to two threads reading a `moka` cache of the same keys: the
/// wall time per call of all threads (its inverse is the throughput).
fn two_threads(config: &Config, f: &cachier::Memoized<u64, u64>, n: usize) -> Row {
    let moka = moka::sync::Cache::new(n as u64 * 2);
    for k in 0..n as u64 {
        moka.insert(k, k.wrapping_mul(2));
    }
    let rounds = config.samples.clamp(3, 11);
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..rounds {
        let f = f.clone();
        ours.push(per_call(move |i| {
            std::hint::black_box(f.call(scattered(i, n)));
        }));
        let moka = moka.clone();
        theirs.push(per_call(move |i| {
            std::hint::black_box(moka.get(&scattered(i, n)));
        }));
    }
    Row::new(
        "memory, 2 threads on one function",
        n,
        "hit (wall time per call)",
        summarize(ours, 0),
        "moka::sync::Cache::get, 2 threads",
        summarize(theirs, 0),
    )
}

/// Wall time per call of two threads calling `op` for 100 ms.
fn per_call(op: impl Fn(u64) + Send + Sync + Clone + 'static) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let (op, stop, calls) = (op.clone(), stop.clone(), calls.clone());
            thread::spawn(move || {
                let mut i = t << 40;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        op(i);
                        i += 1;
                    }
                    calls.fetch_add(256, Ordering::Relaxed);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("bench thread");
    }
    started.elapsed().as_nanos() as f64 / calls.load(Ordering::Relaxed) as f64
}

/// Entries of the memory-use rows.
pub const MEMORY_ENTRIES: u64 = 1_000_000;

/// The bytes a near cache of [`MEMORY_ENTRIES`] entries (`u64` → `u64`) keeps allocated,
/// next to a `moka::sync::Cache` of the same entries, as `live_bytes` (the bytes allocated and
/// not freed, counted by the caller's global allocator) grows while each is filled. The store
/// under the near cache is filled first, by a function without one, so that only the near
/// cache is counted.
pub fn memory_use(live_bytes: impl Fn() -> u64) -> (u64, u64) {
    let name = run_name("near-memory-use");
    let backend = cachier::backends::memory::MemoryBackend::new();
    let store_only = overhead_fn(&name)
        .backend(backend.clone())
        .no_near_cache()
        .build()
        .expect("build");
    prefill(&store_only, MEMORY_ENTRIES as usize);
    let near = overhead_fn(&name)
        .backend(backend)
        .near_cache(NearCache::entries(MEMORY_ENTRIES as usize))
        .build()
        .expect("build");
    let before = live_bytes();
    for k in 0..MEMORY_ENTRIES {
        std::hint::black_box(near.call(k));
    }
    let near_bytes = live_bytes().saturating_sub(before);
    assert_eq!(
        near.stats().hits,
        MEMORY_ENTRIES,
        "every call read the store"
    );
    for k in 0..MEMORY_ENTRIES {
        std::hint::black_box(near.call(k));
    }
    assert_eq!(
        near.stats().hits,
        2 * MEMORY_ENTRIES,
        "every entry was kept and served"
    );
    let before = live_bytes();
    let moka = moka::sync::Cache::new(MEMORY_ENTRIES);
    for k in 0..MEMORY_ENTRIES {
        moka.insert(k, k.wrapping_mul(2));
    }
    moka.run_pending_tasks();
    let moka_bytes = live_bytes().saturating_sub(before);
    assert_eq!(moka.entry_count(), MEMORY_ENTRIES, "moka kept every entry");
    (near_bytes, moka_bytes)
}

/// Prints [`memory_use`] as a table.
pub fn print_memory_use(live_bytes: impl Fn() -> u64) {
    let (near, moka) = memory_use(live_bytes);
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let per = |bytes: u64| bytes as f64 / MEMORY_ENTRIES as f64;
    println!(
        "| memory kept allocated by | entries | bytes | per entry | baseline | baseline bytes | ratio |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|");
    println!(
        "| near cache (`u64` → `u64`) | {MEMORY_ENTRIES} | {:.1} MiB | {:.0} B | moka::sync::Cache, same entries | {:.1} MiB | {:.2}× |",
        mib(near),
        per(near),
        mib(moka),
        near as f64 / moka as f64
    );
}
