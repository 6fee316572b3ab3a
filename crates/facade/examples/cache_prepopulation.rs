//! Cache pre-population: store known results with `precache_value` (say, from a previous
//! batch job) so that calls are served without computing.
//!
//! `cargo run -p cachier-rs --example cache_prepopulation`

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn fibonacci(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fibonacci(n - 1) + fibonacci(n - 2)
    }
}

fn main() -> Result<(), cachier::Error> {
    let dir = std::env::temp_dir()
        .join("cachier-examples")
        .join("cache_prepopulation");
    let _ = std::fs::remove_dir_all(&dir);
    let computed = Arc::new(AtomicU32::new(0));
    let counter = computed.clone();
    let fib = cachier::memoize("examples::prepopulation::fib", move |n: u64| {
        counter.fetch_add(1, Ordering::SeqCst);
        fibonacci(n)
    })
    .cache_dir(&dir)
    .build()?;

    // Known values, computed elsewhere (cheaply, by iteration).
    let (mut a, mut b) = (0u64, 1u64);
    let started = Instant::now();
    for n in 0..=40u64 {
        fib.precache_value(&n, a)?;
        (a, b) = (b, a + b);
    }
    println!("pre-populated 41 entries in {:?}", started.elapsed());
    assert_eq!(fib.core().len()?, 41);

    let started = Instant::now();
    let value = fib.call(40);
    println!(
        "fib(40) = {value}, served from the cache in {:?}",
        started.elapsed()
    );
    assert_eq!(value, 102_334_155);
    assert_eq!(computed.load(Ordering::SeqCst), 0, "nothing was computed");

    let value = fib.call(25);
    assert_eq!(value, 75_025);
    let value = fib.call(41);
    println!("fib(41) = {value} was not pre-populated: computed once");
    assert_eq!(value, 165_580_141);
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    Ok(())
}
