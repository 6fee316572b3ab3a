//! Quick start: a slow function memoized on the default backend (files in a cache directory
//! shared by every process of the machine). Run it twice: the first run computes, the second
//! run, a new process, is served from the cache.
//!
//! `cargo run -p cachier-rs --example quickstart` (twice)
//!
//! The cache lives in `$CACHIER_CACHE_DIR`, else in `cachier-quickstart` under the temporary
//! directory. Run with `--clear` to start over.

use std::time::{Duration, Instant};

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(1)); // stands for an expensive computation
    x * x
}

fn main() -> Result<(), cachier::Error> {
    let dir = std::env::var_os("CACHIER_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("cachier-quickstart"));
    let square = cachier::memoize("quickstart::slow_square", slow_square)
        .cache_dir(&dir)
        .build()?;
    if std::env::args().any(|a| a == "--clear") {
        square.clear_cache()?;
        println!("cache cleared");
    }
    let cached_before = square
        .core()
        .get(&square.key(&12)?)?
        .is_some_and(|e| e.is_completed());

    let started = Instant::now();
    let value = square.call(12);
    let took = started.elapsed();
    assert_eq!(value, 144);
    if cached_before {
        println!("slow_square(12) = {value}: served from cache in {took:.0?}");
        assert!(took < Duration::from_millis(500), "a hit must not compute");
    } else {
        println!(
            "slow_square(12) = {value}: computed in {:.2} s",
            took.as_secs_f64()
        );
        assert!(took >= Duration::from_secs(1));
        let started = Instant::now();
        assert_eq!(square.call(12), 144);
        println!(
            "again in this process: served from cache in {:.0?}",
            started.elapsed()
        );
        println!(
            "run me again: the next process is served from {}",
            dir.display()
        );
    }
    Ok(())
}
