//! Error recovery on MongoDB: a computation gets stuck while holding the claim on its key.
//! Other callers — in this process or any other sharing the collection — stop waiting after
//! `wait_for_calc_timeout` and compute themselves; `clear_being_calculated` drops the stuck
//! claim so that nobody waits at all. A claim whose holder died (nobody renews its lease)
//! lapses by itself. Errors (`Err` results) are never cached.
//!
//! Needs a MongoDB server (scripts/test.sh starts one):
//! `CACHIER_TEST_MONGO_URL=mongodb://127.0.0.1:27017/?directConnection=true cargo run -p cachier-rs --features mongo --example mongo_error_recovery`

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachier::{backends::mongo::MongoBackend, store::Claim};

fn main() -> Result<(), cachier::Error> {
    let url = std::env::var("CACHIER_TEST_MONGO_URL")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".to_owned());
    let backend = MongoBackend::builder(url)
        .database("cachier_examples")
        .collection("error_recovery")
        .build()?;

    let stuck = Arc::new(AtomicBool::new(true));
    let attempts = Arc::new(AtomicU32::new(0));
    let (hang, count) = (stuck.clone(), attempts.clone());
    let fetch = cachier::memoize_fallible("examples::mongo_recovery::fetch", move |url: String| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 && hang.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(3)); // a request that hangs
        }
        if url.contains("broken") {
            return Err(format!("{url}: server error"));
        }
        Ok(format!("body of {url} (attempt {n})"))
    })
    .backend(backend.clone())
    .wait_for_calc_timeout(Duration::from_millis(500))
    .lease(Duration::from_secs(2))
    .build()?;
    fetch.clear_cache()?; // a previous run's entries live on in the server

    let hung = {
        let fetch = fetch.clone();
        std::thread::spawn(move || fetch.call("https://example.org/a".into()))
    };
    std::thread::sleep(Duration::from_millis(200));
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

    // A holder that died: its claim is never renewed, so it lapses after its lease (1 s here)
    // and the next caller takes over, with no clear_being_calculated() and no timeout.
    let key = fetch.key(&"https://example.org/b".to_owned())?;
    let Claim::Claimed(_abandoned) = fetch.core().claim(&key, Duration::from_secs(1))? else {
        panic!("nobody else holds this claim");
    };
    let patient = cachier::memoize_fallible("examples::mongo_recovery::fetch", |url: String| {
        Ok::<_, String>(format!("body of {url} (after takeover)"))
    })
    .backend(backend)
    .build()?;
    let started = Instant::now();
    let taken_over = patient.call("https://example.org/b".into()).expect("works");
    println!(
        "a dead holder's claim lapsed; took over after {:?}: {taken_over:?}",
        started.elapsed()
    );
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(taken_over, "body of https://example.org/b (after takeover)");

    // Errors are returned, never cached: the next call tries again.
    let before = attempts.load(Ordering::SeqCst);
    assert!(fetch.call("https://example.org/broken".into()).is_err());
    assert!(fetch.call("https://example.org/broken".into()).is_err());
    assert_eq!(attempts.load(Ordering::SeqCst), before + 2);
    println!("errors are not cached: two calls, two attempts");
    fetch.clear_cache()?;
    Ok(())
}
