//! The store contract against the S3 server in `CACHIER_TEST_S3_URL`.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use cachier_backend_s3::S3Backend;
use cachier_core::Backend;

/// One client for the whole process: it keeps its connections and its measure of the
/// server's clock.
fn open(_dir: &Path) -> Option<Arc<dyn Backend>> {
    static BACKEND: OnceLock<S3Backend> = OnceLock::new();
    let url = cachier_testkit::service_url("CACHIER_TEST_S3_URL", "s3 contract")?;
    let backend = BACKEND.get_or_init(|| S3Backend::from_url(&url).expect("s3 backend"));
    Some(Arc::new(backend.clone()))
}

cachier_testkit::store_contract_tests!(leased: open);
cachier_testkit::store_contract_process_tests!(open);
