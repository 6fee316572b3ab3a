//! The store contract against the Redis server in `CACHIER_TEST_REDIS_URL`.

use std::path::Path;
use std::sync::Arc;

use cachier_backend_redis::RedisBackend;
use cachier_core::Backend;

fn open(_dir: &Path) -> Option<Arc<dyn Backend>> {
    let url = cachier_testkit::service_url("CACHIER_TEST_REDIS_URL", "redis contract")?;
    Some(Arc::new(
        RedisBackend::from_url(&url).expect("redis backend"),
    ))
}

cachier_testkit::store_contract_tests!(leased: open);
cachier_testkit::store_contract_process_tests!(open);
