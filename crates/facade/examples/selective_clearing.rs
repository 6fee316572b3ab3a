//! Selective clearing with `separate_files`: every entry is one file in the function's
//! directory under `cache_dpath()`, so single entries can be listed and deleted by hand.
//!
//! `cargo run -p cachier-rs --example selective_clearing`

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir()
        .join("cachier-examples")
        .join("selective_clearing");
    let _ = std::fs::remove_dir_all(&dir);
    let computed = Arc::new(AtomicU32::new(0));
    let counter = computed.clone();
    let user = cachier::memoize("examples::selective::user_profile", move |id: u32| {
        counter.fetch_add(1, Ordering::SeqCst);
        format!("profile of user {id}")
    })
    .cache_dir(&dir)
    .separate_files(true)
    .build()?;
    for id in [1, 2, 3] {
        user.call(id);
    }
    assert_eq!(computed.load(Ordering::SeqCst), 3);

    let root = user.cache_dpath().expect("file backends have a directory");
    println!("cache_dpath() = {}", root.display());
    let function_dir = std::fs::read_dir(&root)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .find(|p| p.is_dir())
        .expect("one directory per function");
    let mut entries: Vec<String> = std::fs::read_dir(&function_dir)?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| !name.starts_with('.'))
        .collect();
    entries.sort();
    println!(
        "{} holds {} entry files:",
        function_dir.display(),
        entries.len()
    );
    for name in &entries {
        println!("  {name}");
    }
    assert_eq!(entries.len(), 3);

    // The file of user 2's entry is named by its key.
    let key = user.key(&2)?.to_hex();
    std::fs::remove_file(function_dir.join(&key))?;
    println!("deleted {key} (user 2) by hand");

    user.call(1);
    user.call(3);
    assert_eq!(
        computed.load(Ordering::SeqCst),
        3,
        "users 1 and 3 are still cached"
    );
    assert_eq!(user.call(2), "profile of user 2");
    println!("user 2 was recomputed; users 1 and 3 were served from the cache");
    assert_eq!(computed.load(Ordering::SeqCst), 4);
    Ok(())
}
