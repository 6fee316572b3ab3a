//! Basic cache management on the default (file) backend: `stale_after`, `clear_cache`,
//! `cache_dpath` and `precache_value`.
//!
//! `cargo run -p cachier --example basic_cache_management`

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn main() -> Result<(), cachier::Error> {
    let dir = std::env::temp_dir()
        .join("cachier-examples")
        .join("basic_cache_management");
    let _ = std::fs::remove_dir_all(&dir);
    let computed = Arc::new(AtomicU32::new(0));
    let counter = computed.clone();
    let price = cachier::memoize("examples::basic::price", move |item: String| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200)); // an expensive lookup
        item.len() as u64 * 100
    })
    .cache_dir(&dir)
    .stale_after(Duration::from_secs(1))
    .build()?;

    println!("cache_dpath() = {:?}", price.cache_dpath());
    assert_eq!(price.cache_dpath(), Some(dir.clone()));

    assert_eq!(price.call("apple".into()), 500);
    assert_eq!(price.call("apple".into()), 500);
    println!(
        "two calls, {} computation (the second was a hit)",
        computed.load(Ordering::SeqCst)
    );
    assert_eq!(computed.load(Ordering::SeqCst), 1);

    std::thread::sleep(Duration::from_millis(1100));
    price.call("apple".into());
    println!(
        "after stale_after (1 s) the value was recomputed: {} computations",
        computed.load(Ordering::SeqCst)
    );
    assert_eq!(computed.load(Ordering::SeqCst), 2);

    price.clear_cache()?;
    price.call("apple".into());
    println!(
        "after clear_cache(): {} computations",
        computed.load(Ordering::SeqCst)
    );
    assert_eq!(computed.load(Ordering::SeqCst), 3);

    price.precache_value(&"caviar".to_string(), 99_000)?;
    assert_eq!(price.call("caviar".into()), 99_000);
    println!("precache_value: caviar served as 99000 without computing");
    assert_eq!(computed.load(Ordering::SeqCst), 3);
    Ok(())
}
