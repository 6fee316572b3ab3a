//! `cleanup_stale` starts one cleanup per call, whether the call is served by the near cache
//! or goes on to the store after missing it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachier_backend_memory::MemoryBackend;
use cachier_core::watch::{ChangeSink, Watch};
use cachier_core::{
    Backend, CacheEntry, Capabilities, Claim, ClaimToken, Core, Error, Key, Namespace, NearCache,
};

/// The memory store, counting the cleanups it is asked for.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Backend>,
    cleanups: Arc<AtomicUsize>,
}

struct CountingCore {
    inner: Arc<dyn Core>,
    cleanups: Arc<AtomicUsize>,
}

impl Backend for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn core(&self, namespace: &Namespace) -> Result<Arc<dyn Core>, Error> {
        Ok(Arc::new(CountingCore {
            inner: self.inner.core(namespace)?,
            cleanups: self.cleanups.clone(),
        }))
    }
}

impl Core for CountingCore {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        self.inner.get(key)
    }
    fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error> {
        self.inner.put(key, value, claim)
    }
    fn claim(&self, key: &Key, lease: Duration) -> Result<Claim, Error> {
        self.inner.claim(key, lease)
    }
    fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
        self.inner.release(key, claim)
    }
    fn watch(&self, sink: Arc<dyn ChangeSink>) -> Result<Watch, Error> {
        self.inner.watch(sink)
    }
    fn wait(&self, key: &Key, max: Duration) -> Result<bool, Error> {
        self.inner.wait(key, max)
    }
    fn clear_cache(&self) -> Result<(), Error> {
        self.inner.clear_cache()
    }
    fn clear_being_calculated(&self) -> Result<(), Error> {
        self.inner.clear_being_calculated()
    }
    fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        self.cleanups.fetch_add(1, Ordering::SeqCst);
        self.inner.delete_stale_entries(older_than)
    }
    fn len(&self) -> Result<u64, Error> {
        self.inner.len()
    }
}

#[test]
fn one_cleanup_per_call_with_or_without_a_near_hit() {
    let cleanups = Arc::new(AtomicUsize::new(0));
    let store = Counting {
        inner: Arc::new(MemoryBackend::new()),
        cleanups: cleanups.clone(),
    };
    let f = cachier_core::memoize("cleanup::one_per_call", |x: u64| x * 2)
        .shared_backend(Arc::new(store))
        .near_cache(NearCache::entries(100))
        .stale_after(Duration::from_secs(60))
        .cleanup_stale(true)
        .cleanup_interval(Duration::ZERO)
        .build()
        .expect("build");
    let misses = 10; // new arguments: each misses the near cache and the store
    for x in 0..misses {
        assert_eq!(f.call(x), x * 2);
    }
    let hits = 10; // kept by the near cache
    for _ in 0..hits {
        assert_eq!(f.call(0), 0);
    }
    let calls = (misses + hits) as usize;
    // Cleanups run on the background pool: wait for every one asked for.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cleanups.load(Ordering::SeqCst) < calls {
        assert!(
            Instant::now() < deadline,
            "only {cleanups:?} cleanups for {calls} calls"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        cleanups.load(Ordering::SeqCst),
        calls,
        "one cleanup per call"
    );
}
