//! The conformance suite and the multi-process cases against the shared Redis server at
//! `CACHIER_TEST_REDIS_URL` (the async ones are in `asynchronous.rs`), and two of the suite's
//! shared cases (`cachier_conformance::cases`, also run by other backends) on Redis servers:
//! one nobody listens on, one that refuses large values.
//!
//! What only the Redis backend does (its layout on the server, `SCAN` without `KEYS`, garbage
//! entries, leases, `evict_after`, listing, credentials, `redis+unix://` and `rediss://`,
//! outages on private servers) is tested in its own crate, `crates/backend-redis/tests/`.
#![cfg(feature = "redis")]

use cachier::backends::redis::RedisBackend;
use cachier_conformance::private_redis::PrivateRedis;
use cachier_conformance::service_url;

cachier_conformance::conformance_tests!(|| spec("redis conformance"));
cachier_conformance::multiprocess_tests!(|| spec("redis multiprocess"));

fn spec(test: &str) -> Option<String> {
    service_url("CACHIER_TEST_REDIS_URL", test).map(|url| format!("redis:{url}"))
}

/// While no server answers, the callers of one process compute a key once and the failure
/// is logged once.
#[test]
fn unreachable_server_computes_once_per_process() {
    // Port 1 on loopback: nothing listens there, connections are refused at once.
    let backend = RedisBackend::from_url("redis://127.0.0.1:1/0").unwrap();
    cachier_conformance::cases::outage_computes_once_per_process(std::sync::Arc::new(backend));
}

/// A value larger than the server takes (`proto-max-bulk-len`): returned uncached, and its
/// claim freed at once.
#[test]
fn oversized_value_releases_claim() {
    if !PrivateRedis::available("oversized_value_releases_claim") {
        return;
    }
    let server = PrivateRedis::start("redis-oversized", &["--proto-max-bulk-len", "1mb"]);
    let backend = RedisBackend::from_url(&server.url()).unwrap();
    cachier_conformance::cases::oversized_value_releases_claim(
        std::sync::Arc::new(backend),
        4 << 20,
    );
}
