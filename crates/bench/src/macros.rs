//! `#[cachier]` rows: a hit through the macro next to the same hit through the `Memoized`
//! handle built by hand, on the memory backend. The difference is the macro's own cost (one
//! `OnceLock` read and a type check per call).

use cachier::cachier;

use crate::{run_name, scattered, Config, Row};

#[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
fn through_macro(x: u64) -> u64 {
    x.wrapping_mul(2)
}

/// Hit rows at every size.
pub fn rows(config: &Config) -> Vec<Row> {
    let mut rows = Vec::new();
    let by_hand = cachier::memoize(&run_name("macro-by-hand"), |(x,): (u64,)| x.wrapping_mul(2))
        .backend(cachier::backends::memory::MemoryBackend::new())
        .build()
        .expect("build");
    let handle = through_macro_cache().expect("build");
    handle.clear_cache().expect("clear");
    let mut filled = 0u64;
    for &n in &config.sizes {
        for k in filled..n as u64 {
            handle
                .precache_value(&(k,), k.wrapping_mul(2))
                .expect("prefill");
            by_hand
                .precache_value(&(k,), k.wrapping_mul(2))
                .expect("prefill");
        }
        filled = filled.max(n as u64);
        let macro_hit = config.measure(|i| {
            std::hint::black_box(through_macro(scattered(i, n)));
        });
        let hand_hit = config.measure(|i| {
            std::hint::black_box(by_hand.call((scattered(i, n),)));
        });
        rows.push(Row {
            backend: "memory, #[cachier]".into(),
            entries: n,
            path: "hit",
            ours: macro_hit,
            baseline_name: "Memoized::call hit".into(),
            baseline: hand_hit,
        });
    }
    rows
}
