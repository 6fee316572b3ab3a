//! A 100,000-entry namespace on the shared server (`CACHIER_TEST_REDIS_URL`), counted and
//! cleared with `SCAN`. A file of its own, so a test binary of its own: its load on the server
//! never meets the short leases of `layout.rs`, which would lapse behind it.

mod common;

use std::time::Instant;

use cachier_backend_redis::RedisBackend;
use cachier_core::{Backend, Key, Namespace};
use cachier_testkit::unique_name;
use common::{command_calls, raw, shared_url};

/// A 100,000-entry namespace is counted and cleared with SCAN, never KEYS (checked in the
/// server's command statistics), and a neighbouring namespace whose name extends this one's
/// keeps its entries.
#[test]
fn clear_100k_entries_without_keys() {
    let Some(url) = shared_url("clear_100k_entries_without_keys") else {
        return;
    };
    let backend = RedisBackend::from_url(&url).unwrap();
    let name = unique_name("clear_100k");
    let ns = Namespace::new(&name, None).unwrap();
    let neighbour = Namespace::new(&format!("{name}:more"), None).unwrap();
    let core = backend.core(&ns).unwrap();
    let neighbour_core = backend.core(&neighbour).unwrap();
    let mut con = raw(&url);
    let filled = Instant::now();
    for chunk in (0u64..100_000).collect::<Vec<_>>().chunks(5_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let key = Key::of(i).unwrap();
            pipe.cmd("HSET")
                .arg(backend.redis_key(&ns, &key))
                .arg("value")
                .arg(b"v".as_slice())
                .arg("time")
                .arg(1u64)
                .arg("completed")
                .arg("1")
                .ignore();
        }
        pipe.query::<()>(&mut con).unwrap();
    }
    neighbour_core
        .put(&Key::of(&1u8).unwrap(), b"kept", None)
        .unwrap();
    eprintln!("filled 100,000 entries in {:?}", filled.elapsed());
    let keys_before = command_calls(&mut con, "keys");
    let scans_before = command_calls(&mut con, "scan");
    assert_eq!(core.len().unwrap(), 100_000);
    let started = Instant::now();
    core.clear_cache().unwrap();
    eprintln!("cleared 100,000 entries in {:?}", started.elapsed());
    assert_eq!(core.len().unwrap(), 0);
    assert_eq!(
        neighbour_core.len().unwrap(),
        1,
        "the neighbouring namespace is untouched"
    );
    assert_eq!(
        command_calls(&mut con, "keys"),
        keys_before,
        "KEYS was never called"
    );
    assert!(
        command_calls(&mut con, "scan") > scans_before,
        "SCAN did the work"
    );
    neighbour_core.clear_cache().unwrap();
}
