//! Memory backend rows, next to the `cached` crate's `UnboundCache` and `TtlCache` behind a
//! `Mutex` (what `#[cached]` and `#[cached(time = ...)]` expand to).

use std::sync::Mutex;
use std::time::Duration;

use cached::stores::{TtlCache, UnboundCache};
use cached::Cached;

use crate::{overhead_fn, prefill, run_name, scattered, Config, Row};

/// One call through a `cached` store, as the `#[cached]` macro does it: lock, look up, and on
/// a miss compute and insert.
fn cached_call<C: Cached<u64, u64>>(cache: &Mutex<C>, k: u64) -> u64 {
    let mut guard = cache.lock().unwrap();
    if let Some(v) = guard.cache_get(&k) {
        return *v;
    }
    let v = k.wrapping_mul(2);
    guard.cache_set(k, v);
    v
}

/// Hit, miss and stale rows at every size.
pub fn rows(config: &Config) -> Vec<Row> {
    let mut rows = Vec::new();
    for &n in &config.sizes {
        let backend = cachier::backends::memory::MemoryBackend::new();
        let f = overhead_fn(&run_name("memory"))
            .backend(backend.clone())
            .build()
            .expect("build");
        prefill(&f, n);
        let ttl = Mutex::new(TtlCache::new(Duration::from_secs(86_400)));
        let unbound = Mutex::new(UnboundCache::new());
        for k in 0..n as u64 {
            ttl.lock().unwrap().cache_set(k, k.wrapping_mul(2));
            unbound.lock().unwrap().cache_set(k, k.wrapping_mul(2));
        }
        let hit = config.measure(|i| {
            std::hint::black_box(f.call(scattered(i, n)));
        });
        let ttl_hit = config.measure(|i| {
            std::hint::black_box(cached_call(&ttl, scattered(i, n)));
        });
        let unbound_hit = config.measure(|i| {
            std::hint::black_box(cached_call(&unbound, scattered(i, n)));
        });
        rows.push(Row {
            backend: "memory".into(),
            entries: n,
            path: "hit",
            ours: hit,
            baseline_name: "cached TtlCache hit".into(),
            baseline: ttl_hit,
        });
        rows.push(Row {
            backend: "memory".into(),
            entries: n,
            path: "hit",
            ours: hit,
            baseline_name: "cached UnboundCache hit".into(),
            baseline: unbound_hit,
        });
        let quiet = overhead_fn(&run_name("memory-nostats"))
            .backend(backend.clone())
            .statistics(false)
            .build()
            .expect("build");
        prefill(&quiet, n);
        let hit_without_stats = config.measure(|i| {
            std::hint::black_box(quiet.call(scattered(i, n)));
        });
        rows.push(Row {
            backend: "memory".into(),
            entries: n,
            path: "hit, statistics on",
            ours: hit,
            baseline_name: "same, statistics off".into(),
            baseline: hit_without_stats,
        });

        // A store with a capacity keeps a last-use order, which every hit updates; a miss on
        // a full store evicts the least recently used value.
        let bounded_store = cachier::backends::memory::MemoryBackend::builder()
            .max_entries(n as u64)
            .build();
        let bounded = overhead_fn(&run_name("memory-bounded"))
            .backend(bounded_store)
            .build()
            .expect("build");
        prefill(&bounded, n);
        let bounded_hit = config.measure(|i| {
            std::hint::black_box(bounded.call(scattered(i, n)));
        });
        rows.push(Row {
            backend: "memory".into(),
            entries: n,
            path: "hit, bounded store",
            ours: bounded_hit,
            baseline_name: "same, unbounded".into(),
            baseline: hit,
        });

        let base = 1u64 << 40;
        let miss = config.measure(|i| {
            std::hint::black_box(f.call(base + i));
        });
        let ttl_miss = config.measure(|i| {
            std::hint::black_box(cached_call(&ttl, base + i));
        });
        rows.push(Row {
            backend: "memory".into(),
            entries: n,
            path: "miss",
            ours: miss,
            baseline_name: "cached TtlCache miss".into(),
            baseline: ttl_miss,
        });

        let evicting_miss = config.measure(|i| {
            std::hint::black_box(bounded.call(base + i));
        });
        rows.push(Row {
            backend: "memory".into(),
            entries: n,
            path: "miss, full bounded store (evicts)",
            ours: evicting_miss,
            baseline_name: "same, unbounded".into(),
            baseline: miss,
        });

        let stale = overhead_fn(&run_name("memory-stale"))
            .backend(backend)
            .stale_after(Duration::ZERO)
            .build()
            .expect("build");
        prefill(&stale, n);
        let stale_path = config.measure(|i| {
            std::hint::black_box(stale.call(scattered(i, n)));
        });
        rows.push(Row {
            backend: "memory".into(),
            entries: n,
            path: "stale (recompute)",
            ours: stale_path,
            baseline_name: "cached TtlCache miss".into(),
            baseline: ttl_miss,
        });
    }
    rows
}
