//! One function's store: a map under a mutex, and a condition variable that wakes waiters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cachier_core::{
    CacheEntry, Capabilities, Claim, ClaimToken, Core, EntryInfo, Error, Key, KeyHasherBuilder,
    LiveClaim,
};
use parking_lot::{Condvar, Mutex};

/// One function's entries.
#[derive(Default)]
pub(crate) struct MemoryCore {
    entries: Mutex<HashMap<Key, Slot, KeyHasherBuilder>>,
    /// Signalled whenever a value lands or a claim goes away.
    changed: Condvar,
}

impl MemoryCore {
    /// Whether any entry (or claim) is stored, for listing namespaces.
    pub(crate) fn holds_entries(&self) -> bool {
        !self.entries.lock().is_empty()
    }
}

impl std::fmt::Debug for MemoryCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCore")
            .field("entries", &self.entries.lock().len())
            .finish()
    }
}

struct Slot {
    /// The completed value; `None` while the first computation runs.
    value: Option<Arc<[u8]>>,
    time: SystemTime,
    claim: Option<ClaimToken>,
}

impl Slot {
    fn entry(&self) -> CacheEntry {
        CacheEntry {
            value: self.value.clone(),
            time: self.time,
            age: SystemTime::now()
                .duration_since(self.time)
                .unwrap_or_default(),
            claim: self.claim.as_ref().map(|token| LiveClaim {
                owner: Some(token.as_str().to_owned()),
            }),
        }
    }
}

impl Core for MemoryCore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // A claim lives in this process's memory: it cannot outlive its holder.
            leases: false,
            listing: true,
            cache_dir: None,
        }
    }

    fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        Ok(self.entries.lock().get(key).map(Slot::entry))
    }

    fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error> {
        let mut entries = self.entries.lock();
        let slot = entries.entry(*key).or_insert_with(|| Slot {
            value: None,
            time: SystemTime::now(),
            claim: None,
        });
        slot.value = Some(Arc::from(value));
        slot.time = SystemTime::now();
        if claim.is_some() && slot.claim.as_ref() == claim {
            slot.claim = None;
        }
        drop(entries);
        self.changed.notify_all();
        Ok(())
    }

    fn claim(&self, key: &Key, _lease: Duration) -> Result<Claim, Error> {
        let mut entries = self.entries.lock();
        let slot = entries.entry(*key).or_insert_with(|| Slot {
            value: None,
            time: SystemTime::now(),
            claim: None,
        });
        if slot.claim.is_some() {
            return Ok(Claim::Busy);
        }
        let token = ClaimToken::new();
        slot.claim = Some(token.clone());
        Ok(Claim::Claimed(token))
    }

    fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
        let mut entries = self.entries.lock();
        if let Some(slot) = entries.get_mut(key) {
            if slot.claim.as_ref() == Some(claim) {
                slot.claim = None;
                if slot.value.is_none() {
                    entries.remove(key);
                }
            }
        }
        drop(entries);
        self.changed.notify_all();
        Ok(())
    }

    fn wait(&self, key: &Key, max: Duration) -> Result<bool, Error> {
        let deadline = Instant::now() + max;
        let mut entries = self.entries.lock();
        let released = |entries: &HashMap<Key, Slot, KeyHasherBuilder>| {
            entries.get(key).is_none_or(|slot| slot.claim.is_none())
        };
        loop {
            if released(&entries) {
                return Ok(true);
            }
            if self.changed.wait_until(&mut entries, deadline).timed_out() {
                return Ok(released(&entries));
            }
        }
    }

    /// A claimed key keeps its slot, without a value: a placeholder its holder's `put` fills.
    fn remove(&self, key: &Key) -> Result<bool, Error> {
        let mut entries = self.entries.lock();
        let Some(slot) = entries.get_mut(key) else {
            return Ok(false);
        };
        let had_value = slot.value.take().is_some();
        if slot.claim.is_none() {
            entries.remove(key);
        }
        Ok(had_value)
    }

    fn clear_cache(&self) -> Result<(), Error> {
        self.entries.lock().clear();
        self.changed.notify_all();
        Ok(())
    }

    fn clear_being_calculated(&self) -> Result<(), Error> {
        let mut entries = self.entries.lock();
        entries.retain(|_, slot| slot.value.is_some());
        for slot in entries.values_mut() {
            slot.claim = None;
        }
        drop(entries);
        self.changed.notify_all();
        Ok(())
    }

    fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        let now = SystemTime::now();
        let mut entries = self.entries.lock();
        let before = entries.len();
        // An entry being computed stays: dropping it would drop the claim with it.
        entries.retain(|_, slot| {
            slot.claim.is_some() || now.duration_since(slot.time).unwrap_or_default() <= older_than
        });
        Ok((before - entries.len()) as u64)
    }

    fn len(&self) -> Result<u64, Error> {
        Ok(self.entries.lock().len() as u64)
    }

    fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
        let entries = self.entries.lock();
        Ok(entries
            .iter()
            .map(|(key, slot)| EntryInfo::of(*key, &slot.entry()))
            .collect())
    }
}
