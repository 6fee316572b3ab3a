//! The store contract against the memory backend. Its claims live in the process's memory,
//! so they need no lease and no other process can see them: no cross-process case.

use std::sync::Arc;

use cachier_backend_memory::MemoryBackend;

cachier_testkit::store_contract_tests!(unleased: |_dir| Some(Arc::new(MemoryBackend::new())));

/// The same contract for a store with a capacity (large enough for every case): keeping the
/// last-use order must change nothing else.
mod bounded {
    use super::*;

    cachier_testkit::store_contract_tests!(unleased: |_dir| Some(Arc::new(
        MemoryBackend::builder()
            .max_entries(10_000)
            .max_bytes(64 << 20)
            .build()
    )));
}
