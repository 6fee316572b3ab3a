//! Error recovery: a computation gets stuck while holding the claim on its key. Other callers
//! stop waiting after `wait_for_calc_timeout` and compute themselves; `clear_being_calculated`
//! drops the stuck claim so that nobody waits at all. Errors (`Err` results) are never cached.
//! (A claim of a process that *dies* needs neither: the file backend's claims are OS file
//! locks, released by the kernel the moment the process ends.)
//!
//! `cargo run -p cachier-rs --example error_recovery`

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> Result<(), cachier::Error> {
    let dir = std::env::temp_dir()
        .join("cachier-examples")
        .join("error_recovery");
    let _ = std::fs::remove_dir_all(&dir);
    let stuck = Arc::new(AtomicBool::new(true));
    let attempts = Arc::new(AtomicU32::new(0));
    let (hang, count) = (stuck.clone(), attempts.clone());
    let fetch = cachier::memoize_fallible("examples::recovery::fetch", move |url: String| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 && hang.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(3)); // a request that hangs
        }
        if url.contains("broken") {
            return Err(format!("{url}: server error"));
        }
        Ok(format!("body of {url} (attempt {n})"))
    })
    .cache_dir(&dir)
    .wait_for_calc_timeout(Duration::from_millis(500))
    .build()?;

    let hung = {
        let fetch = fetch.clone();
        std::thread::spawn(move || fetch.call("https://example.org/a".into()))
    };
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let body = fetch
        .call("https://example.org/a".into())
        .expect("second attempt works");
    println!(
        "gave up waiting after {:?} and fetched it: {body:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500)
            && started.elapsed() < Duration::from_secs(2)
    );

    // The stuck computation still holds its claim: clear it so later callers never wait.
    fetch.clear_being_calculated()?;
    fetch.clear_cache()?;
    let started = Instant::now();
    let again = fetch.call("https://example.org/a".into()).expect("works");
    println!(
        "after clear_being_calculated(): {again:?} in {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_millis(400));
    hung.join()
        .unwrap()
        .expect("the hung request finished eventually");

    // Errors are returned, never cached: the next call tries again.
    let before = attempts.load(Ordering::SeqCst);
    assert!(fetch.call("https://example.org/broken".into()).is_err());
    assert!(fetch.call("https://example.org/broken".into()).is_err());
    assert_eq!(attempts.load(Ordering::SeqCst), before + 2);
    println!("errors are not cached: two calls, two attempts");
    Ok(())
}
