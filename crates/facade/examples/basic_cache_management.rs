//! Basic cache management on the default (file) backend, with the `#[cachier]` attribute:
//! `stale_after`, `clear_cache`, `cache_dpath` and `precache_value`.
//!
//! `cargo run -p cachier-rs --example basic_cache_management`

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cachier::cachier;

static COMPUTED: AtomicU32 = AtomicU32::new(0);

fn example_dir() -> std::path::PathBuf {
    std::env::temp_dir()
        .join("cachier-examples")
        .join("basic_cache_management")
}

/// An expensive lookup, cached in the example's directory for one second.
#[cachier(stale_after = "1s", cache_dir = example_dir())]
fn price(item: String) -> u64 {
    COMPUTED.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    item.len() as u64 * 100
}

fn computed() -> u32 {
    COMPUTED.load(Ordering::SeqCst)
}

fn main() -> Result<(), cachier::Error> {
    let _ = std::fs::remove_dir_all(example_dir());
    let cache = price_cache()?;

    println!("cache_dpath() = {:?}", cache.cache_dpath());
    assert_eq!(cache.cache_dpath(), Some(example_dir()));

    assert_eq!(price("apple".into()), 500);
    assert_eq!(price("apple".into()), 500);
    println!(
        "two calls, {} computation (the second was a hit)",
        computed()
    );
    assert_eq!(computed(), 1);

    std::thread::sleep(Duration::from_millis(1100));
    price("apple".into());
    println!(
        "after stale_after (1 s) the value was recomputed: {} computations",
        computed()
    );
    assert_eq!(computed(), 2);

    cache.clear_cache()?;
    price("apple".into());
    println!("after clear_cache(): {} computations", computed());
    assert_eq!(computed(), 3);

    cache.precache_value(&("caviar".to_string(),), 99_000)?;
    assert_eq!(price("caviar".into()), 99_000);
    println!("precache_value: caviar served as 99000 without computing");
    assert_eq!(computed(), 3);
    Ok(())
}
