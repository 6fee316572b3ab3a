//! The store contract against the file backend, in both layouts. Claims are OS file locks,
//! held exactly as long as their process: no lease to renew.

use std::path::Path;
use std::sync::Arc;

use cachier_backend_file::FileBackend;
use cachier_core::Backend;

fn open(dir: &Path, separate: bool) -> Option<Arc<dyn Backend>> {
    Some(Arc::new(
        FileBackend::builder()
            .cache_dir(dir.join("cache"))
            .separate_files(separate)
            .build(),
    ))
}

/// One store file per function.
mod single {
    cachier_testkit::store_contract_tests!(unleased: |dir| super::open(dir, false));
    cachier_testkit::store_contract_process_tests!(|dir| super::open(dir, false));
}

/// One file per entry.
mod separate {
    cachier_testkit::store_contract_tests!(unleased: |dir| super::open(dir, true));
    cachier_testkit::store_contract_process_tests!(|dir| super::open(dir, true));
}
