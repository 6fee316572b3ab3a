//! [`MemoryBackendBuilder`]: a memory store with a capacity.

use std::sync::Arc;

use crate::budget::Budget;
use crate::MemoryBackend;

/// Options of a [`MemoryBackend`]: without any, the store is unbounded (what
/// [`MemoryBackend::new`] makes).
///
/// ```
/// use cachier_backend_memory::MemoryBackend;
///
/// // At most 10,000 values and 64 MiB of them, least recently used evicted first.
/// let store = MemoryBackend::builder()
///     .max_entries(10_000)
///     .max_bytes(64 << 20)
///     .build();
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryBackendBuilder {
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
}

impl MemoryBackendBuilder {
    /// Keeps at most `n` stored values over every function of the store; the least recently
    /// used go first. A key being computed (claimed, nothing stored yet) is not a value and
    /// does not count.
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = Some(n);
        self
    }

    /// Keeps at most `bytes` of stored values (their encoded sizes) over every function of
    /// the store; the least recently used go first. A single value larger than this is not
    /// kept at all: it is returned to its callers and computed again next time.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// The store.
    pub fn build(self) -> MemoryBackend {
        let budget = (self.max_entries.is_some() || self.max_bytes.is_some())
            .then(|| Arc::new(Budget::new(self.max_entries, self.max_bytes)));
        MemoryBackend::with_budget(budget)
    }
}
