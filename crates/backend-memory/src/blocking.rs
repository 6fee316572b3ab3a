//! One function's store: a map under a mutex, and a condition variable that wakes waiters.
//! In a store with a capacity, the map also keeps its evictable values in last-use order
//! (see [`Budget`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cachier_core::watch::{ChangeHub, ChangeSink, Watch};
use cachier_core::{
    CacheEntry, Capabilities, Claim, ClaimToken, Core, EntryInfo, Error, Key, KeyHasherBuilder,
    LiveClaim,
};
use parking_lot::{Condvar, Mutex};

use crate::budget::Budget;

/// One function's entries.
pub(crate) struct MemoryCore {
    table: Mutex<Table>,
    /// Signalled whenever a value lands or a claim goes away.
    changed: Condvar,
    /// The store's capacity, shared with the other functions of the store; `None` when
    /// unbounded (then nothing below keeps a last-use order).
    budget: Option<Arc<Budget>>,
    /// Tells the near caches of the function (every memoized function built on this store
    /// in this process) of each change.
    changes: Arc<ChangeHub>,
}

/// The memory store's changes have one channel per function, always up.
const CHANNEL: &str = "";

#[derive(Default)]
struct Table {
    slots: HashMap<Key, Slot, KeyHasherBuilder>,
    /// Evictable values (stored, not under a claim) by the tick of their last use; kept only
    /// in a store with a capacity.
    by_use: BTreeMap<u64, Key>,
}

struct Slot {
    /// The completed value; `None` while the first computation runs.
    value: Option<Arc<[u8]>>,
    time: SystemTime,
    claim: Option<ClaimToken>,
    /// Its tick in [`Table::by_use`], while it is there.
    used: Option<u64>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            value: None,
            time: SystemTime::now(),
            claim: None,
            used: None,
        }
    }

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

    /// A value no computation holds: eviction may take it.
    fn evictable(&self) -> bool {
        self.value.is_some() && self.claim.is_none()
    }
}

impl Table {
    /// Puts `key`'s slot where its state says in the last-use order, as used just now: in it
    /// (at the newest tick) when evictable, out of it otherwise.
    fn settle(&mut self, key: &Key, budget: &Budget) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if let Some(tick) = slot.used.take() {
            self.by_use.remove(&tick);
        }
        if slot.evictable() {
            let tick = budget.tick();
            self.by_use.insert(tick, *key);
            slot.used = Some(tick);
        }
    }

    /// Replaces the value of `key`'s slot, counting the change against `budget`.
    fn set_value(&mut self, key: &Key, value: Option<Arc<[u8]>>, budget: Option<&Budget>) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let old = std::mem::replace(&mut slot.value, value);
        if let Some(budget) = budget {
            if let Some(old) = &old {
                budget.removed(old.len());
            }
            if let Some(new) = &slot.value {
                budget.added(new.len());
            }
        }
    }

    /// Deletes `key`'s slot, its place in the order and its value's count.
    fn drop_slot(&mut self, key: &Key, budget: Option<&Budget>) {
        let Some(slot) = self.slots.remove(key) else {
            return;
        };
        if let Some(tick) = slot.used {
            self.by_use.remove(&tick);
        }
        if let (Some(budget), Some(value)) = (budget, &slot.value) {
            budget.removed(value.len());
        }
    }
}

impl MemoryCore {
    pub(crate) fn new(budget: Option<Arc<Budget>>) -> MemoryCore {
        let changes = ChangeHub::new();
        changes.set_connected(true);
        MemoryCore {
            table: Mutex::default(),
            changed: Condvar::new(),
            budget,
            changes,
        }
    }

    /// Whether any entry (or claim) is stored, for listing namespaces.
    pub(crate) fn holds_entries(&self) -> bool {
        !self.table.lock().slots.is_empty()
    }

    /// Stored values and their bytes.
    pub(crate) fn usage(&self) -> (u64, u64) {
        let table = self.table.lock();
        table
            .slots
            .values()
            .filter_map(|slot| slot.value.as_ref())
            .fold((0, 0), |(n, bytes), v| (n + 1, bytes + v.len() as u64))
    }

    /// The last-use tick of this function's least recently used evictable value.
    pub(crate) fn oldest_use(&self) -> Option<u64> {
        self.table.lock().by_use.keys().next().copied()
    }

    /// Evicts this function's least recently used evictable value; false if it has none.
    pub(crate) fn evict_oldest(&self) -> bool {
        let mut table = self.table.lock();
        let Some((_, key)) = table.by_use.pop_first() else {
            return false;
        };
        if let Some(slot) = table.slots.get_mut(&key) {
            slot.used = None; // already out of the order
        }
        table.drop_slot(&key, self.budget.as_deref());
        drop(table);
        // Near caches hold no more than the store.
        self.changes.deliver(CHANNEL, Some(&key));
        true
    }

    fn settle(&self, table: &mut Table, key: &Key) {
        if let Some(budget) = &self.budget {
            table.settle(key, budget);
        }
    }

    /// After a change that may have grown the store: evict down to its capacity.
    fn fit(&self) {
        if let Some(budget) = &self.budget {
            budget.evict();
        }
    }
}

impl std::fmt::Debug for MemoryCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCore")
            .field("entries", &self.table.lock().slots.len())
            .field("bounded", &self.budget.is_some())
            .finish()
    }
}

impl Core for MemoryCore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // A claim lives in this process's memory: it cannot outlive its holder.
            leases: false,
            listing: true,
            cache_dir: None,
            in_process: true,
        }
    }

    /// A hit is a use: in a store with a capacity it moves the value to the newest end of
    /// the last-use order.
    fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        let mut table = self.table.lock();
        let Some(slot) = table.slots.get(key) else {
            return Ok(None);
        };
        let entry = slot.entry();
        if slot.used.is_some() {
            self.settle(&mut table, key);
        }
        Ok(Some(entry))
    }

    fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error> {
        let budget = self.budget.as_deref();
        let mut table = self.table.lock();
        let slot = table.slots.entry(*key).or_insert_with(Slot::new);
        if claim.is_some() && slot.claim.as_ref() == claim {
            slot.claim = None;
        }
        slot.time = SystemTime::now();
        // A value larger than the whole capacity is not kept: it would evict every other
        // value, then itself. The old value goes: it is not the latest any more.
        let kept = budget.is_none_or(|b| b.fits(value.len()));
        let value = kept.then(|| Arc::from(value));
        table.set_value(key, value, budget);
        let slot = &table.slots[key];
        if slot.value.is_none() && slot.claim.is_none() {
            table.drop_slot(key, budget);
        } else {
            self.settle(&mut table, key);
        }
        drop(table);
        self.changed.notify_all();
        self.changes.deliver(CHANNEL, Some(key));
        self.fit();
        Ok(())
    }

    fn claim(&self, key: &Key, _lease: Duration) -> Result<Claim, Error> {
        let mut table = self.table.lock();
        let slot = table.slots.entry(*key).or_insert_with(Slot::new);
        if slot.claim.is_some() {
            return Ok(Claim::Busy);
        }
        let token = ClaimToken::new();
        slot.claim = Some(token.clone());
        // Under a claim the value (kept for `next_time` callers) cannot be evicted.
        self.settle(&mut table, key);
        Ok(Claim::Claimed(token))
    }

    fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
        let mut table = self.table.lock();
        if let Some(slot) = table.slots.get_mut(key) {
            if slot.claim.as_ref() == Some(claim) {
                slot.claim = None;
                if slot.value.is_none() {
                    table.drop_slot(key, self.budget.as_deref());
                } else {
                    self.settle(&mut table, key);
                }
            }
        }
        drop(table);
        self.changed.notify_all();
        Ok(())
    }

    fn watch(&self, sink: Arc<dyn ChangeSink>) -> Result<Watch, Error> {
        Ok(Watch::Pushed(self.changes.subscribe(CHANNEL, sink)))
    }

    fn wait(&self, key: &Key, max: Duration) -> Result<bool, Error> {
        let deadline = Instant::now() + max;
        let mut table = self.table.lock();
        let released = |table: &Table| table.slots.get(key).is_none_or(|slot| slot.claim.is_none());
        loop {
            if released(&table) {
                return Ok(true);
            }
            if self.changed.wait_until(&mut table, deadline).timed_out() {
                return Ok(released(&table));
            }
        }
    }

    /// A claimed key keeps its slot, without a value: a placeholder its holder's `put` fills.
    fn remove(&self, key: &Key) -> Result<bool, Error> {
        let budget = self.budget.as_deref();
        let mut table = self.table.lock();
        let Some(slot) = table.slots.get(key) else {
            return Ok(false);
        };
        let had_value = slot.value.is_some();
        if slot.claim.is_none() {
            table.drop_slot(key, budget);
        } else {
            table.set_value(key, None, budget);
        }
        drop(table);
        self.changes.deliver(CHANNEL, Some(key));
        Ok(had_value)
    }

    fn clear_cache(&self) -> Result<(), Error> {
        let mut table = self.table.lock();
        let keys: Vec<Key> = table.slots.keys().copied().collect();
        for key in &keys {
            table.drop_slot(key, self.budget.as_deref());
        }
        drop(table);
        self.changed.notify_all();
        self.changes.deliver(CHANNEL, None);
        Ok(())
    }

    fn clear_being_calculated(&self) -> Result<(), Error> {
        let mut table = self.table.lock();
        let claimed: Vec<Key> = table
            .slots
            .iter()
            .filter(|(_, slot)| slot.claim.is_some())
            .map(|(key, _)| *key)
            .collect();
        for key in &claimed {
            let slot = table.slots.get_mut(key).expect("listed above");
            slot.claim = None;
            if slot.value.is_none() {
                table.drop_slot(key, self.budget.as_deref());
            } else {
                self.settle(&mut table, key);
            }
        }
        drop(table);
        self.changed.notify_all();
        Ok(())
    }

    fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        let now = SystemTime::now();
        let mut table = self.table.lock();
        // An entry being computed stays: dropping it would drop the claim with it.
        let stale: Vec<Key> = table
            .slots
            .iter()
            .filter(|(_, slot)| {
                slot.claim.is_none()
                    && now.duration_since(slot.time).unwrap_or_default() > older_than
            })
            .map(|(key, _)| *key)
            .collect();
        for key in &stale {
            table.drop_slot(key, self.budget.as_deref());
        }
        drop(table);
        if !stale.is_empty() {
            self.changes.deliver(CHANNEL, None);
        }
        Ok(stale.len() as u64)
    }

    fn len(&self) -> Result<u64, Error> {
        Ok(self.table.lock().slots.len() as u64)
    }

    fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
        let table = self.table.lock();
        Ok(table
            .slots
            .iter()
            .map(|(key, slot)| EntryInfo::of(*key, &slot.entry()))
            .collect())
    }
}
