//! The conformance suite, the multi-process cases and the async path against the Redis
//! Cluster at `CACHIER_TEST_REDIS_CLUSTER_URL` (three primaries and three replicas that
//! scripts/test.sh starts), through `redis+cluster://` URLs: entries spread over every
//! primary. The cluster's own cases (keys on every primary, failover, resharding) are the
//! backend crate's (`crates/backend-redis/tests/cluster.rs`).
#![cfg(feature = "redis")]

fn spec(test: &str) -> Option<String> {
    cachier_conformance::service_url("CACHIER_TEST_REDIS_CLUSTER_URL", test)
        .map(|url| format!("redis:{url}"))
}

cachier_conformance::conformance_tests!(|| spec("redis cluster conformance"));
cachier_conformance::multiprocess_tests!(|| spec("redis cluster multiprocess"));

#[cfg(feature = "async")]
mod asynchronous {
    cachier_conformance::async_conformance_tests!(|| super::spec("async redis cluster"));
    cachier_conformance::async_multiprocess_tests!(|| super::spec("async redis cluster"));
}
