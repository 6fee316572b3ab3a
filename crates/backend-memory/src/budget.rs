//! The bound of a [`MemoryBackend`](crate::MemoryBackend) built with a capacity: what the store
//! may hold, what it holds, the clock that orders its values by last use, and eviction.
//!
//! Each function's core keeps its evictable values (stored, not under a live claim) in
//! last-use order under its own mutex; the budget counts values and bytes over every core.
//! When a `put` leaves the store over its capacity, the least recently used value of the
//! whole store goes, then the next, until it fits: the evictor compares the oldest value of
//! each core and evicts the oldest of them. A value under a live claim is never in that order,
//! so it is never evicted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::blocking::MemoryCore;

/// The capacity of a store and its use.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
    /// Stored values, over every core.
    entries: AtomicU64,
    /// Their encoded sizes, summed.
    bytes: AtomicU64,
    /// Last-use order: each use of a value takes the next tick.
    clock: AtomicU64,
    /// Values evicted since the store was made.
    evictions: AtomicU64,
    /// Every core of the store (they live as long as the backend's map holds them).
    cores: Mutex<Vec<Weak<MemoryCore>>>,
    /// One eviction at a time, so that two puts do not both evict for the same overflow.
    evicting: Mutex<()>,
}

impl Budget {
    pub(crate) fn new(max_entries: Option<u64>, max_bytes: Option<u64>) -> Budget {
        Budget {
            max_entries,
            max_bytes,
            ..Budget::default()
        }
    }

    /// The next tick of the last-use clock.
    pub(crate) fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether a value of `size` bytes can be kept at all (a larger one would evict
    /// everything else and then itself).
    pub(crate) fn fits(&self, size: usize) -> bool {
        self.max_bytes.is_none_or(|max| size as u64 <= max)
    }

    /// A value of `size` bytes was stored.
    pub(crate) fn added(&self, size: usize) {
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size as u64, Ordering::Relaxed);
    }

    /// A value of `size` bytes was deleted.
    pub(crate) fn removed(&self, size: usize) {
        self.entries.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(size as u64, Ordering::Relaxed);
    }

    pub(crate) fn register(&self, core: &Arc<MemoryCore>) {
        self.cores.lock().push(Arc::downgrade(core));
    }

    /// Stored values and their bytes, over every function.
    pub(crate) fn usage(&self) -> (u64, u64) {
        (
            self.entries.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    fn over(&self) -> bool {
        let (entries, bytes) = self.usage();
        self.max_entries.is_some_and(|max| entries > max)
            || self.max_bytes.is_some_and(|max| bytes > max)
    }

    /// Evicts least recently used values until the store is within its capacity, or until
    /// every value left is under a live claim. Called with no core's lock held.
    pub(crate) fn evict(&self) {
        if !self.over() {
            return;
        }
        let _one_at_a_time = self.evicting.lock();
        let cores: Vec<Arc<MemoryCore>> =
            self.cores.lock().iter().filter_map(Weak::upgrade).collect();
        while self.over() {
            let oldest = cores
                .iter()
                .filter_map(|core| Some((core.oldest_use()?, core)))
                .min_by_key(|(tick, _)| *tick);
            let Some((_, core)) = oldest else {
                return; // everything stored is being computed: nothing may go
            };
            if core.evict_oldest() {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
