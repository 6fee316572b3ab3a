//! The store contract against the MongoDB-wire server in `CACHIER_TEST_MONGO_URL`.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use cachier_backend_mongo::MongoBackend;
use cachier_core::Backend;

/// One client for the whole process: each client opens a pool and its monitors.
fn open(_dir: &Path) -> Option<Arc<dyn Backend>> {
    static BACKEND: OnceLock<MongoBackend> = OnceLock::new();
    let url = cachier_testkit::service_url("CACHIER_TEST_MONGO_URL", "mongo contract")?;
    let backend = BACKEND.get_or_init(|| MongoBackend::from_url(&url).expect("mongo backend"));
    Some(Arc::new(backend.clone()))
}

cachier_testkit::store_contract_tests!(leased: open);
cachier_testkit::store_contract_process_tests!(open);

/// Pushed changes between two backend instances (the change stream), with a fallback poll of
/// 10 s: only the stream's event can wake a waiter within the bound. A deletion reaches every
/// namespace (the stream cannot name a deleted entry).
mod push {
    use super::*;
    use std::time::Duration;

    fn open(_dir: &Path) -> Option<Arc<dyn Backend>> {
        let url = cachier_testkit::service_url("CACHIER_TEST_MONGO_URL", "mongo push")?;
        Some(Arc::new(
            MongoBackend::builder(url)
                .wait_poll(Duration::from_secs(10))
                .build()
                .expect("mongo backend"),
        ))
    }

    cachier_testkit::store_push_tests!(deletes_everywhere: open);
}
