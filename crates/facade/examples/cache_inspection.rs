//! Cache inspection and maintenance: list and size the cache directory, count entries, and
//! delete stale entries (`cleanup_stale` in the background, or `delete_stale_entries` now).
//!
//! `cargo run -p cachier-rs --example cache_inspection`

use std::path::Path;
use std::time::Duration;

fn size_of(path: &Path) -> std::io::Result<u64> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        total += size_of(&entry?.path())?;
    }
    Ok(total)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir()
        .join("cachier-examples")
        .join("cache_inspection");
    let _ = std::fs::remove_dir_all(&dir);
    let square = cachier::memoize("examples::inspection::square", |x: u64| vec![x * x; 100])
        .cache_dir(&dir)
        .build()?;
    let cube = cachier::memoize("examples::inspection::cube", |x: u64| x * x * x)
        .cache_dir(&dir)
        .separate_files(true)
        .stale_after(Duration::from_secs(3))
        .cleanup_stale(true)
        .cleanup_interval(Duration::ZERO)
        .build()?;
    for x in 0..50 {
        square.call(x);
        cube.call(x);
    }

    let root = square.cache_dpath().expect("a directory");
    println!("cache directory {}:", root.display());
    let mut names: Vec<_> = std::fs::read_dir(&root)?.collect::<Result<Vec<_>, _>>()?;
    names.sort_by_key(|e| e.file_name());
    for entry in &names {
        println!(
            "  {:<60} {:>9} bytes",
            entry.file_name().to_string_lossy(),
            size_of(&entry.path())?
        );
    }
    let total = size_of(&root)?;
    println!(
        "total {total} bytes; square has {} entries, cube {}",
        square.core().len()?,
        cube.core().len()?
    );
    assert!(total > 0);
    assert_eq!(square.core().len()?, 50);
    assert_eq!(cube.core().len()?, 50);

    // cube's entries go stale after 3 s; the next call cleans them up in the background.
    std::thread::sleep(Duration::from_millis(3100));
    cube.call(1000);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cube.core().len()? != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "cleanup_stale did not run"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("cleanup_stale removed cube's 50 stale entries; 1 fresh entry left");

    // Or by hand: delete square's entries older than 100 ms.
    std::thread::sleep(Duration::from_millis(150));
    square.call(7777);
    let deleted = square.delete_stale_entries(Duration::from_millis(100))?;
    println!("delete_stale_entries removed {deleted} of square's entries");
    assert_eq!(deleted, 50);
    assert_eq!(square.core().len()?, 1);
    Ok(())
}
