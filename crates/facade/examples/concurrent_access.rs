//! Concurrent access: threads that miss the same key at once share one computation; with
//! `wait_for_calc_timeout` a waiter stops waiting for a slow computation and computes itself;
//! `clear_being_calculated` lets the next caller compute at once.
//!
//! `cargo run -p cachier-rs --example concurrent_access`

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn main() -> Result<(), cachier::Error> {
    let dir = std::env::temp_dir()
        .join("cachier-examples")
        .join("concurrent_access");
    let _ = std::fs::remove_dir_all(&dir);
    let computed = Arc::new(AtomicU32::new(0));
    let counter = computed.clone();
    let report = cachier::memoize(
        "examples::concurrent::report",
        move |(day, pause_ms): (u32, u64)| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::sleep(Duration::from_millis(pause_ms));
            format!("report for day {day} (computation #{n})")
        },
    )
    .cache_dir(&dir)
    .key(|(day, _pause): &(u32, u64)| *day) // the pause is a knob of this demo, not part of the key
    .wait_for_calc_timeout(Duration::from_millis(700))
    .build()?;

    // Eight threads miss one key at the same moment: one computes, the others wait for it.
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (report, barrier) = (report.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                report.call((1, 300))
            })
        })
        .collect();
    let results: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    println!("8 threads got {:?}", results[0]);
    assert!(results.iter().all(|r| r == &results[0]));
    assert_eq!(
        computed.load(Ordering::SeqCst),
        1,
        "one computation for eight callers"
    );

    // A computation slower than wait_for_calc_timeout: the waiter gives up and computes.
    let slow = {
        let report = report.clone();
        std::thread::spawn(move || report.call((2, 2_000)))
    };
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let own = report.call((2, 2_000));
    println!(
        "waiter gave up after {:.1} s and computed {own:?}",
        started.elapsed().as_secs_f64() - 2.0
    );
    assert!(started.elapsed() >= Duration::from_millis(700));
    let first = slow.join().unwrap();
    assert_ne!(first, own, "two computations");
    assert_eq!(computed.load(Ordering::SeqCst), 3);

    // clear_being_calculated: the next caller does not wait for the computation in flight.
    let running = {
        let report = report.clone();
        std::thread::spawn(move || report.call((3, 1_500)))
    };
    std::thread::sleep(Duration::from_millis(100));
    report.clear_being_calculated()?;
    let started = Instant::now();
    let mine = report.call((3, 10));
    println!(
        "after clear_being_calculated() the next caller computed at once: {mine:?} in {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    running.join().unwrap();
    assert_eq!(computed.load(Ordering::SeqCst), 5);
    Ok(())
}
