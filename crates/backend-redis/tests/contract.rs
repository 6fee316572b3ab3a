//! The store contract against the Redis server in `CACHIER_TEST_REDIS_URL`, and against the
//! Redis Cluster in `CACHIER_TEST_REDIS_CLUSTER_URL`.

use std::path::Path;
use std::sync::Arc;

use cachier_backend_redis::RedisBackend;
use cachier_core::Backend;

fn open_url(var: &str, test: &str) -> Option<Arc<dyn Backend>> {
    let url = cachier_testkit::service_url(var, test)?;
    Some(Arc::new(
        RedisBackend::from_url(&url).expect("redis backend"),
    ))
}

fn open(_dir: &Path) -> Option<Arc<dyn Backend>> {
    open_url("CACHIER_TEST_REDIS_URL", "redis contract")
}

cachier_testkit::store_contract_tests!(leased: open);
cachier_testkit::store_contract_process_tests!(open);

/// The same contract on a cluster: entries spread over its primaries, the namespace-wide
/// operations walk every one of them.
mod cluster {
    use super::*;

    fn open(_dir: &Path) -> Option<Arc<dyn Backend>> {
        open_url("CACHIER_TEST_REDIS_CLUSTER_URL", "redis cluster contract")
    }

    cachier_testkit::store_contract_tests!(leased: open);
    cachier_testkit::store_contract_process_tests!(open);
}

/// Pushed changes between two backend instances, with a fallback poll of 10 s: only the
/// published message can wake a waiter within the bound.
mod push {
    use super::*;
    use std::time::Duration;

    fn open_pushing(var: &str, test: &str) -> Option<Arc<dyn Backend>> {
        let url = cachier_testkit::service_url(var, test)?;
        Some(Arc::new(
            RedisBackend::builder(url)
                .wait_poll(Duration::from_secs(10))
                .build()
                .expect("redis backend"),
        ))
    }

    fn open(_dir: &Path) -> Option<Arc<dyn Backend>> {
        open_pushing("CACHIER_TEST_REDIS_URL", "redis push")
    }

    cachier_testkit::store_push_tests!(open);

    mod cluster {
        use super::*;

        fn open(_dir: &Path) -> Option<Arc<dyn Backend>> {
            open_pushing("CACHIER_TEST_REDIS_CLUSTER_URL", "redis cluster push")
        }

        cachier_testkit::store_push_tests!(open);
    }
}
