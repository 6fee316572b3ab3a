#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Coherence of near caches and waiters across instances (file, PostgreSQL, Redis, MongoDB).
#[cfg(any(
    feature = "file",
    feature = "postgres",
    feature = "redis",
    feature = "mongo"
))]
pub mod coherence;
#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "macros")]
pub mod macros;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "mongo")]
pub mod mongo;
#[cfg(feature = "memory")]
pub mod near;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod sql;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// Entry counts to measure at (`CACHIER_BENCH_SIZES`, default `1000,100000`).
    pub sizes: Vec<usize>,
    /// Batches per measurement; the median batch is reported.
    pub samples: usize,
    /// Target duration of one batch (`CACHIER_BENCH_BATCH_MS`, default 20 ms): shorter batches
    /// interleave a pair's two sides more finely, for a machine whose load comes in bursts.
    pub batch_time: Duration,
}

impl Config {
    /// From the environment: `CACHIER_BENCH_SIZES` (comma-separated), `CACHIER_BENCH_SAMPLES`,
    /// `CACHIER_BENCH_BATCH_MS`.
    pub fn from_env() -> Config {
        let sizes = std::env::var("CACHIER_BENCH_SIZES")
            .ok()
            .map(|s| {
                s.split(',')
                    .filter_map(|n| n.trim().replace('_', "").parse().ok())
                    .collect()
            })
            .filter(|v: &Vec<usize>| !v.is_empty())
            .unwrap_or_else(|| vec![1_000, 100_000]);
        let samples = std::env::var("CACHIER_BENCH_SAMPLES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(31);
        let batch_ms = std::env::var("CACHIER_BENCH_BATCH_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|ms| *ms > 0)
            .unwrap_or(20);
        Config {
            sizes,
            samples,
            batch_time: Duration::from_millis(batch_ms),
        }
    }

    /// Times `op(i)` for `i = 0, 1, 2, ...`: calibrates a batch size to about `batch_time`,
    /// then reports per-call statistics over `samples` batches.
    pub fn measure(&self, mut op: impl FnMut(u64)) -> Summary {
        let mut i = 0u64;
        let mut batch = 1u64;
        loop {
            let started = Instant::now();
            run_batch(&mut op, &mut i, batch);
            let took = started.elapsed();
            if took >= self.batch_time || batch >= 1 << 24 {
                break;
            }
            // Grow towards the target quickly, without overshooting slow operations.
            let factor = (self.batch_time.as_nanos() / took.as_nanos().max(1)).clamp(2, 16) as u64;
            batch *= factor;
        }
        let per_call: Vec<f64> = (0..self.samples)
            .map(|_| {
                let started = Instant::now();
                run_batch(&mut op, &mut i, batch);
                started.elapsed().as_nanos() as f64 / batch as f64
            })
            .collect();
        summarize(per_call, batch * self.samples as u64)
    }
}

impl Config {
    /// Like [`Config::measure`] for an operation and its baseline at once: their batches
    /// alternate (one of `ours`, one of `baseline`, and again), so a burst of load on a shared
    /// machine hits both sides alike. The batch size is calibrated on `ours`; both see
    /// increasing, never repeated arguments.
    pub fn paired(
        &self,
        mut ours: impl FnMut(u64),
        mut baseline: impl FnMut(u64),
    ) -> (Summary, Summary) {
        let mut i = 0u64;
        let mut batch = 1u64;
        let mut time_batch = |op: &mut dyn FnMut(u64), batch: u64| {
            let started = Instant::now();
            run_batch(op, &mut i, batch);
            started.elapsed()
        };
        loop {
            let took = time_batch(&mut ours, batch);
            if took >= self.batch_time || batch >= 1 << 20 {
                break;
            }
            batch *= (self.batch_time.as_nanos() / took.as_nanos().max(1)).clamp(2, 16) as u64;
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..self.samples {
            a.push(time_batch(&mut ours, batch).as_nanos() as f64 / batch as f64);
            b.push(time_batch(&mut baseline, batch).as_nanos() as f64 / batch as f64);
        }
        (
            summarize(a, batch * self.samples as u64),
            summarize(b, batch * self.samples as u64),
        )
    }
}

/// Per-call statistics from per-call times of batches (or of single calls), in nanoseconds;
/// `calls` is how many calls they cover.
pub(crate) fn summarize(mut per_call: Vec<f64>, calls: u64) -> Summary {
    per_call.sort_by(f64::total_cmp);
    let at = |q: f64| per_call[((per_call.len() - 1) as f64 * q).round() as usize];
    Summary {
        median_ns: at(0.5),
        p10_ns: at(0.1),
        p90_ns: at(0.9),
        p99_ns: at(0.99),
        calls,
    }
}

fn run_batch(op: &mut dyn FnMut(u64), i: &mut u64, batch: u64) {
    for _ in 0..batch {
        op(black_box(*i));
        *i += 1;
    }
}

/// Per-call statistics of one measurement.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Median over batches of the mean per-call time, in nanoseconds.
    pub median_ns: f64,
    /// 10th percentile.
    pub p10_ns: f64,
    /// 90th percentile.
    pub p90_ns: f64,
    /// 99th percentile (of batches, or of single calls for latency rows).
    pub p99_ns: f64,
    /// Calls measured in all.
    pub calls: u64,
}

/// One line of the report: our path next to its baseline.
#[derive(Debug, Clone)]
pub struct Row {
    /// Backend (and mode).
    pub backend: String,
    /// Entries stored when measured.
    pub entries: usize,
    /// `hit`, `miss` or `stale`.
    pub path: &'static str,
    /// Our measurement.
    pub ours: Summary,
    /// What the baseline is.
    pub baseline_name: String,
    /// The baseline's measurement, from the same run.
    pub baseline: Summary,
}

impl Row {
    /// A row: `backend`'s `path` at `entries` entries, `ours` next to `baseline`.
    pub fn new(
        backend: impl Into<String>,
        entries: usize,
        path: &'static str,
        ours: Summary,
        baseline_name: impl Into<String>,
        baseline: Summary,
    ) -> Row {
        Row {
            backend: backend.into(),
            entries,
            path,
            ours,
            baseline_name: baseline_name.into(),
            baseline,
        }
    }
}

/// The stores compiled in whose functions can have a near cache worth measuring, as (label,
/// URL): a file cache and an SQLite database under `dir`, and the servers of their own rows.
#[allow(dead_code)] // used by the near and coherence rows, each under its features
pub(crate) fn stores(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    #[allow(unused_mut)] // each store is pushed under its own feature
    let mut stores = Vec::new();
    #[cfg(feature = "file")]
    stores.push(("file", format!("file://{}", dir.join("file").display())));
    #[cfg(feature = "sqlite")]
    stores.push((
        "SQLite",
        format!("sqlite://{}", dir.join("near.db").display()),
    ));
    #[cfg(feature = "postgres")]
    stores.push((
        "PostgreSQL",
        server_url(
            &["CACHIER_BENCH_POSTGRES_URL", "CACHIER_TEST_POSTGRES_URL"],
            "postgres://postgres@127.0.0.1:5432/test",
        ),
    ));
    #[cfg(feature = "redis")]
    stores.push((
        "Redis",
        server_url(
            &["CACHIER_BENCH_REDIS_URL", "CACHIER_TEST_REDIS_URL"],
            "redis://127.0.0.1:6379/0",
        ),
    ));
    #[cfg(feature = "mongo")]
    stores.push((
        "MongoDB",
        server_url(
            &["CACHIER_BENCH_MONGO_URL", "CACHIER_TEST_MONGO_URL"],
            "mongodb://127.0.0.1:27017/?directConnection=true",
        ),
    ));
    let _ = dir;
    stores
}

/// The server to measure: the first of `vars` that is set, else `default`.
pub fn server_url(vars: &[&str], default: &str) -> String {
    vars.iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| default.to_owned())
}

/// Prints rows as a Markdown table.
pub fn print_table(rows: &[Row]) {
    println!("| backend | entries | path | cachier median (p10–p90) | p99 | baseline | baseline median | ratio |");
    println!("|---|---:|---|---:|---:|---|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} ({}–{}) | {} | {} | {} | {:.2}× |",
            r.backend,
            r.entries,
            r.path,
            fmt_ns(r.ours.median_ns),
            fmt_ns(r.ours.p10_ns),
            fmt_ns(r.ours.p90_ns),
            fmt_ns(r.ours.p99_ns),
            r.baseline_name,
            fmt_ns(r.baseline.median_ns),
            r.ours.median_ns / r.baseline.median_ns
        );
    }
}

/// `850 ns`, `4.2 µs`, `1.30 ms`.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{:.2} ms", ns / 1_000_000.0)
    }
}

/// The benchmarked function: trivial work, so a call's time is the cache's overhead.
pub fn overhead_fn(name: &str) -> cachier::Memoize<u64, u64> {
    cachier::memoize(name, |x: u64| x.wrapping_mul(2))
}

/// Stores keys `0..n` (through `precache_value`, which writes like a miss does).
pub fn prefill(f: &cachier::Memoized<u64, u64>, n: usize) {
    for k in 0..n as u64 {
        f.precache_value(&k, k.wrapping_mul(2)).expect("prefill");
    }
}

/// A key in `0..n` for the `i`-th hit, scattered so that hits do not walk the store in order.
pub fn scattered(i: u64, n: usize) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n as u64
}

/// A unique namespace per run, so runs never read each other's entries.
pub fn run_name(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("cachier_bench::{label}::{}-{nanos}", std::process::id())
}
