//! A real backend with one fault planted in front of it: claims that arrive late, or puts the
//! store refuses. Every other operation goes straight to the wrapped store, so the cases see
//! the store's own claims, leases and wake-ups.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cachier::{
    store::{
        Backend, CacheEntry, Capabilities, Claim, ClaimToken, Core, EntryInfo, Key, Namespace,
    },
    Error,
};

/// The fault a [`Faulty`] backend plants.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Every `claim` sleeps this long before reaching the store (a slow network, a paused
    /// process): another caller can miss, claim, compute and store meanwhile.
    SlowClaims(Duration),
    /// Every `put` fails, as a store refuses a value too large for it.
    RefusedPuts,
}

/// `inner` with `fault` planted in front of it.
#[derive(Debug, Clone)]
pub struct Faulty {
    inner: Arc<dyn Backend>,
    fault: Fault,
}

impl Faulty {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>, fault: Fault) -> Faulty {
        Faulty { inner, fault }
    }
}

impl Backend for Faulty {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn core(&self, namespace: &Namespace) -> Result<Arc<dyn Core>, Error> {
        Ok(Arc::new(FaultyCore {
            inner: self.inner.core(namespace)?,
            fault: self.fault,
        }))
    }
}

struct FaultyCore {
    inner: Arc<dyn Core>,
    fault: Fault,
}

impl fmt::Debug for FaultyCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyCore")
            .field("fault", &self.fault)
            .finish()
    }
}

impl Core for FaultyCore {
    fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        self.inner.get(key)
    }
    fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error> {
        if let Fault::RefusedPuts = self.fault {
            return Err(Error::backend(
                "faulty",
                "put",
                std::io::Error::other("value refused by the store"),
            ));
        }
        self.inner.put(key, value, claim)
    }
    fn claim(&self, key: &Key, lease: Duration) -> Result<Claim, Error> {
        if let Fault::SlowClaims(delay) = self.fault {
            std::thread::sleep(delay);
        }
        self.inner.claim(key, lease)
    }
    fn renew(&self, key: &Key, claim: &ClaimToken, lease: Duration) -> Result<bool, Error> {
        self.inner.renew(key, claim, lease)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
        self.inner.release(key, claim)
    }
    fn wait(&self, key: &Key, max: Duration) -> Result<bool, Error> {
        self.inner.wait(key, max)
    }
    fn watch(
        &self,
        sink: Arc<dyn cachier::store::watch::ChangeSink>,
    ) -> Result<cachier::store::watch::Watch, Error> {
        self.inner.watch(sink)
    }
    fn remove(&self, key: &Key) -> Result<bool, Error> {
        self.inner.remove(key)
    }
    fn clear_cache(&self) -> Result<(), Error> {
        self.inner.clear_cache()
    }
    fn clear_being_calculated(&self) -> Result<(), Error> {
        self.inner.clear_being_calculated()
    }
    fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        self.inner.delete_stale_entries(older_than)
    }
    fn len(&self) -> Result<u64, Error> {
        self.inner.len()
    }
    fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
        self.inner.entries()
    }
}
