//! Coherence rows: how long after another instance's write a near cache stops serving the old
//! value, and how long after the computing instance stores its result a waiting caller of
//! another instance returns. Each row is a latency distribution (p50, p90, p99 over its
//! samples), next to a cost measured in the same samples (the write itself; one read).
//!
//! The two instances are two backends opened from one URL in this process: each has its own
//! connections and its own listener (file: its own mapping of the change counters), so what
//! one hears of the other travels through the store exactly as between two processes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cachier::NearCache;

use crate::{run_name, stores, summarize, Config, Row};

/// Samples per row: each waiter sample takes about 15 ms.
const SAMPLES: usize = 200;

/// The coherence and waiter rows of every store that can be reached.
pub fn rows(_config: &Config) -> Vec<Row> {
    let dir = std::env::temp_dir().join(run_name("coherence").replace("::", "-"));
    let mut rows = Vec::new();
    // The stores that tell other instances of changes (SQLite does not).
    let coherent = stores(&dir)
        .into_iter()
        .filter(|(label, _)| matches!(*label, "file" | "PostgreSQL" | "Redis" | "MongoDB"));
    for (label, url) in coherent {
        let open = || cachier::backend_from_url(&url);
        let (Ok(reader), Ok(writer), Ok(waiter), Ok(computer)) = (open(), open(), open(), open())
        else {
            eprintln!("coherence {label} rows skipped: cannot open {label}");
            continue;
        };
        match overwrite_seen(label, reader, writer) {
            Ok(row) => rows.push(row),
            Err(error) => eprintln!("coherence {label} row skipped: {error}"),
        }
        match waiter_woken(label, waiter, computer) {
            Ok(row) => rows.push(row),
            Err(error) => eprintln!("waiter {label} row skipped: {error}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

type Backend = Arc<dyn cachier::store::Backend>;

/// A near-cached reader holds a value; the writer overwrites it (`precache_value`); the
/// reader calls until it gets the new value. Ours: from the write's start to the first new
/// value. Baseline: the write itself.
fn overwrite_seen(label: &str, reader: Backend, writer: Backend) -> Result<Row, cachier::Error> {
    let name = run_name(&format!("coherence-{label}"));
    let reader = cachier::memoize(&name, |x: u64| x)
        .shared_backend(reader)
        .near_cache(NearCache::entries(1_000))
        .build()?;
    let writer = cachier::memoize(&name, |x: u64| x)
        .shared_backend(writer)
        .build()?;
    let key = 7;
    let mut seen = Vec::with_capacity(SAMPLES);
    let mut writes = Vec::with_capacity(SAMPLES);
    let deadline = Duration::from_secs(5);
    for value in 1..=SAMPLES as u64 {
        writer.precache_value(&key, value)?;
        // Until the reader holds this value in its near cache (its next reads are near hits).
        while reader.try_call(key)? != value {}
        reader.try_call(key)?;
        let next = value + 1_000_000;
        let start = Instant::now();
        writer.precache_value(&key, next)?;
        writes.push(start.elapsed().as_nanos() as f64);
        while reader.try_call(key)? != next {
            if start.elapsed() > deadline {
                return Err(cachier::Error::config(
                    "near_cache",
                    format!("the reader still served the old value {deadline:?} after the write"),
                ));
            }
        }
        seen.push(start.elapsed().as_nanos() as f64);
    }
    let _ = writer.clear_cache();
    Ok(Row::new(
        format!("near cache in front of {label}"),
        1,
        "another instance's overwrite seen",
        summarize(seen, SAMPLES as u64),
        "the overwrite itself (precache_value)",
        summarize(writes, SAMPLES as u64),
    ))
}

/// One instance computes a key, a caller of another instance waits for it; the computation is
/// then let go. Ours: from the result landing (the computing caller's return: its result
/// stored, its claim released and the store's acknowledgement received) to the waiter's
/// return, zero when the waiter returned first. Baseline: a hit of the waiter's instance on
/// that key right after, one read of the store (no near cache), what waking costs at least.
fn waiter_woken(label: &str, waiter: Backend, computer: Backend) -> Result<Row, cachier::Error> {
    let name = run_name(&format!("waiter-{label}"));
    let (go, gate) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let gate = Mutex::new((started_tx, gate));
    let computing = cachier::memoize(&name, move |x: u64| {
        if let Ok(gate) = gate.lock() {
            let _ = gate.0.send(());
            let _ = gate.1.recv();
        }
        x
    })
    .shared_backend(computer)
    .build()?;
    let waiter_computed = Arc::new(AtomicU64::new(0));
    let counter = waiter_computed.clone();
    let waiting = cachier::memoize(&name, move |x: u64| {
        counter.fetch_add(1, Ordering::Relaxed);
        x
    })
    .shared_backend(waiter)
    .build()?;
    let mut woken = Vec::with_capacity(SAMPLES);
    let mut read = Vec::with_capacity(SAMPLES);
    // Both instances open their store before the first sample.
    waiting.try_call(u64::MAX)?;
    go.send(()).expect("the gate is open");
    computing.try_call(u64::MAX - 1)?;
    started.try_recv().expect("the computation started");
    for key in 0..SAMPLES as u64 {
        let computed_before = waiter_computed.load(Ordering::Relaxed);
        let computer = {
            let computing = computing.clone();
            thread::spawn(move || {
                let result = computing.try_call(key);
                (result, Instant::now())
            })
        };
        // The computing caller holds the claim once its function runs.
        if started.recv_timeout(Duration::from_secs(5)).is_err() {
            return Err(cachier::Error::config(
                "lease",
                "the computing caller did not start computing within 5 s",
            ));
        }
        let waiter = {
            let waiting = waiting.clone();
            thread::spawn(move || {
                let result = waiting.try_call(key);
                (result, Instant::now())
            })
        };
        thread::sleep(Duration::from_millis(10)); // the waiter waits
        let _ = go.send(());
        let (computed, computed_at) = computer.join().expect("computing thread");
        let (waited, woken_at) = waiter.join().expect("waiting thread");
        assert_eq!((computed?, waited?), (key, key));
        if waiter_computed.load(Ordering::Relaxed) != computed_before {
            continue; // the waiter computed too instead of waiting: not a sample of waking
        }
        woken.push(woken_at.saturating_duration_since(computed_at).as_nanos() as f64);
        let hit = Instant::now();
        waiting.try_call(key)?;
        read.push(hit.elapsed().as_nanos() as f64);
    }
    let _ = computing.clear_cache();
    let computed = waiter_computed.load(Ordering::Relaxed) - 1; // less the warm-up key
    if computed > 0 {
        eprintln!("waiter {label}: the waiter computed {computed} of {SAMPLES} keys itself");
    }
    let samples = woken.len() as u64;
    Ok(Row::new(
        format!("waiter on {label}"),
        1,
        "woken after another instance's result landed",
        summarize(woken, samples),
        "a hit on that key (one read)",
        summarize(read, samples),
    ))
}
