//! The near cache: a bounded tier of a function's values, kept typed in this process in front
//! of its store, so that a hit costs a hash of the encoded arguments, a map lookup and a clone
//! (no SHA-256, no decoding, no store access).
//!
//! It stays coherent with the store through the store's [`Watch`]: pushed messages remove the
//! entries other processes change (and stop all serving while the channel is down), shared
//! counters are compared on every hit, and an unwatched store's entries are served for a
//! bounded time only. A value read from the store is kept only if no change was heard since
//! just before it was read (the `epoch`), so a message that overtakes the read is not lost.
//!
//! Entries are spread over shards by the hash of their arguments. A shard's table holds what a
//! hit reads ([`Hot`]); the rest of an entry sits in a slot beside it ([`Cold`]), read only
//! under a staleness limit, a bounded age or change counters. The cache is bounded in entries
//! and bytes and evicts with CLOCK (second chance) over a shard's table: a hit sets a bit,
//! eviction sweeps past set bits (clearing them) to the first clear one. That approximates LRU
//! without a write to shared order on every hit.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use parking_lot::Mutex;

use super::params::Threshold;
use crate::watch::{ChangeCounters, ChangeSink, Stamp, Subscription, Watch};
use crate::{Core, Error, Key, NearCache};

/// Shards of a near cache (a power of two): enough that two threads seldom meet on one lock.
/// The bounds hold for the whole cache, not per shard, so a shard may hold any share of them.
const SHARDS: usize = 16;

/// What an entry costs beyond its encoded value and arguments, for the byte bound: its table
/// entry, its slot, its key index entry and the tables' spare room, roughly (the bench's
/// memory row: about 224 bytes in all per `u64` entry, arguments and value included).
const ENTRY_OVERHEAD: u64 = 160;

/// A function's near cache.
pub(crate) struct Near<R> {
    state: Arc<State<R>>,
    hasher: foldhash::fast::RandomState,
    /// Bounds of the whole cache.
    max_entries: usize,
    max_bytes: u64,
    /// Shared change counters (a counted store).
    counters: Option<Arc<dyn ChangeCounters>>,
    /// How long an entry is served (an unwatched store).
    ttl: Option<Duration>,
    /// How long an entry is served once a pushing store turns out unable to push.
    unwatched_ttl: Duration,
    /// Keeps the store's messages coming (a pushed store).
    _subscription: Option<Subscription>,
    /// Copies a stored result (the value codec's).
    clone: fn(&R) -> Option<R>,
}

/// What the store's messages reach.
struct State<R> {
    shards: Box<[Mutex<Shard<R>>]>,
    /// What all shards hold.
    totals: Arc<Totals>,
    /// False while the store's change channel is down (or not up yet): nothing is served.
    serving: AtomicBool,
    /// Bumped before every invalidation: a value read before it is not kept.
    epoch: AtomicU64,
    /// The store's channel will never come up ([`ChangeSink::unwatched`]): entries are
    /// served for `unwatched_ttl` only.
    unwatched: AtomicBool,
}

struct Shard<R> {
    /// What a hit reads, by the hash of the arguments' encoding.
    by_args: HashTable<Hot<R>>,
    /// Slot indices by the store key (for messages, which name keys).
    by_key: HashTable<u32>,
    /// The rest of each entry, at its [`Hot::slot`].
    slots: Vec<Option<Cold>>,
    free: Vec<u32>,
    /// The CLOCK hand: a bucket of `by_args`.
    hand: usize,
    len: usize,
    bytes: u64,
    /// The whole cache's counts, which this shard's changes keep up to date.
    totals: Arc<Totals>,
}

/// How many entries, and bytes, a near cache holds in all its shards.
#[derive(Default)]
struct Totals {
    len: AtomicUsize,
    bytes: AtomicU64,
}

/// What a hit reads of an entry, kept in the table a hit searches: a hit without a staleness
/// limit touches nothing else (as small as the arguments and value allow).
struct Hot<R> {
    args: Args,
    value: R,
    /// Where the rest is, in [`Shard::slots`].
    slot: u32,
    none: bool,
    referenced: bool,
}

/// The rest of an entry: read by a hit only under a staleness limit, a bounded age or change
/// counters.
struct Cold {
    /// The value's age by the store's clock when read, and when that was by ours: its age
    /// now is their sum.
    age: Duration,
    read_at: Instant,
    stamp: Option<Stamp>,
    hash: u64,
    charge: u64,
    key: Key,
}

/// A slot's encoded arguments: short ones (most) in the slot itself, so a hit follows no
/// pointer to compare them.
enum Args {
    Inline { len: u8, bytes: [u8; INLINE_ARGS] },
    Heap(Box<[u8]>),
}

/// The longest arguments kept in the slot: a slot's `Args` is then no larger than a boxed
/// slice and its tag.
const INLINE_ARGS: usize = 22;

impl Args {
    fn new(args: &[u8]) -> Args {
        if args.len() <= INLINE_ARGS {
            let mut bytes = [0; INLINE_ARGS];
            bytes[..args.len()].copy_from_slice(args);
            Args::Inline {
                len: args.len() as u8,
                bytes,
            }
        } else {
            Args::Heap(args.into())
        }
    }

    #[inline]
    fn is(&self, args: &[u8]) -> bool {
        match self {
            Args::Inline { len, bytes } => same_bytes(&bytes[..*len as usize], args),
            Args::Heap(bytes) => **bytes == *args,
        }
    }
}

/// `a == b`, without a call to `memcmp` for the short slices arguments mostly are: slices of
/// up to 16 bytes are compared as two overlapping words, first and last, or byte by byte.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word8 = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("8"));
    let word4 = |s: &[u8], at: usize| u32::from_ne_bytes(s[at..at + 4].try_into().expect("4"));
    match n {
        0 => true,
        // First, middle and last: every byte of 1 to 3.
        1..4 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..8 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        8..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        _ => a == b,
    }
}

/// Taken just before the store is read: what a value read then must still match to be kept.
pub(crate) struct Before {
    epoch: u64,
    stamp: Option<Stamp>,
}

/// A value to keep, with what the store said of it.
pub(crate) struct Keep<'a, R> {
    pub(crate) key: Key,
    pub(crate) value: &'a R,
    /// The encoded value (its size counts toward the byte bound; a `None` is not served
    /// unless allowed).
    pub(crate) bytes: &'a [u8],
    /// Its age by the store's clock.
    pub(crate) age: Duration,
}

fn key_hash(key: &Key) -> u64 {
    let bytes = key.as_bytes();
    u64::from_le_bytes(bytes[..8].try_into().expect("eight bytes"))
}

impl<R: Send + 'static> Near<R> {
    /// A near cache of `config`'s size in front of `core`, subscribed to its changes.
    pub(crate) fn open(
        config: &NearCache,
        core: &dyn Core,
        clone: fn(&R) -> Option<R>,
    ) -> Result<Near<R>, Error> {
        let totals = Arc::new(Totals::default());
        let state = Arc::new(State {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard::new(totals.clone())))
                .collect(),
            totals,
            // A pushed store says when its channel is up; until then nothing is served.
            serving: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            unwatched: AtomicBool::new(false),
        });
        let mut near = Near {
            state: state.clone(),
            hasher: foldhash::fast::RandomState::default(),
            max_entries: config.max_entries.unwrap_or(usize::MAX).max(1),
            max_bytes: config.max_bytes.unwrap_or(u64::MAX),
            counters: None,
            ttl: None,
            unwatched_ttl: config.unwatched_ttl,
            _subscription: None,
            clone,
        };
        match core.watch(Arc::new(SinkOf(Arc::downgrade(&state))))? {
            Watch::Pushed(subscription) => near._subscription = Some(subscription),
            Watch::Counted(counters) => {
                near.counters = Some(counters);
                state.serving.store(true, Ordering::Release);
            }
            Watch::Unwatched => {
                near.ttl = Some(config.unwatched_ttl);
                state.serving.store(true, Ordering::Release);
            }
        }
        Ok(near)
    }
}

impl<R> Near<R> {
    /// The hash the shards and tables use for `args`.
    #[inline]
    pub(crate) fn hash(&self, args: &[u8]) -> u64 {
        self.hasher.hash_one(args)
    }

    /// The value kept for `args` (of hash `hash`), if it is served under `threshold` and
    /// `allow_none`.
    #[inline]
    pub(crate) fn get(
        &self,
        hash: u64,
        args: &[u8],
        threshold: Threshold,
        allow_none: bool,
    ) -> Option<R> {
        let state = &*self.state;
        if !state.serving.load(Ordering::Acquire) {
            return None;
        }
        let mut guard = state.shard(hash).lock();
        let shard = &mut *guard;
        let hot = shard.by_args.find_mut(hash, |hot| hot.args.is(args))?;
        if hot.none && !allow_none {
            return None;
        }
        let ttl = match self.ttl {
            Some(ttl) => Some(ttl),
            None => state
                .unwatched
                .load(Ordering::Relaxed)
                .then_some(self.unwatched_ttl),
        };
        let clocked = matches!(threshold, Threshold::Within(_)) || ttl.is_some();
        if !clocked && self.counters.is_none() && !matches!(threshold, Threshold::Always) {
            hot.referenced = true;
            return (self.clone)(&hot.value);
        }
        let slot = hot.slot;
        let cold = shard.slots[slot as usize].as_ref().expect("indexed slot");
        let elapsed = if clocked {
            cold.read_at.elapsed()
        } else {
            Duration::ZERO
        };
        let expired = ttl.is_some_and(|ttl| elapsed > ttl);
        let changed = match (&self.counters, &cold.stamp) {
            (Some(counters), Some(stamp)) => !counters.unchanged(stamp),
            _ => false,
        };
        if !expired && !changed {
            let fresh = match threshold {
                Threshold::Never => true,
                Threshold::Always => false,
                Threshold::Within(limit) => cold.age + elapsed <= limit,
            };
            if !fresh {
                return None;
            }
            hot.referenced = true;
            return (self.clone)(&hot.value);
        }
        shard.remove(slot);
        None
    }

    /// To be taken just before the store is read for `key`.
    pub(crate) fn before(&self, key: &Key) -> Before {
        Before {
            epoch: self.state.epoch.load(Ordering::Acquire),
            stamp: self.counters.as_ref().map(|c| c.stamp(key)),
        }
    }

    /// Keeps `keep` for `args` if nothing was heard to change since `before`.
    pub(crate) fn keep(&self, hash: u64, args: &[u8], before: Before, keep: Keep<'_, R>) {
        let state = &*self.state;
        let charge = keep.bytes.len() as u64 + args.len() as u64 + ENTRY_OVERHEAD;
        if charge > self.max_bytes {
            return;
        }
        let Some(value) = (self.clone)(keep.value) else {
            return;
        };
        let mut shard = state.shard(hash).lock();
        // Read under the shard's lock: an invalidation bumps the epoch before it takes the
        // lock, so either it is seen here or it removes what is kept now.
        if state.epoch.load(Ordering::Acquire) != before.epoch
            || !state.serving.load(Ordering::Acquire)
        {
            return;
        }
        if let Some(hot) = shard.by_args.find(hash, |hot| hot.args.is(args)) {
            let slot = hot.slot;
            shard.remove(slot);
        }
        // The cache's bounds, made room for in this shard: with keys spread evenly, its share
        // of the entries is as good as any (the bound is exceeded by at most one entry per
        // shard, while others hold everything).
        while shard.len > 0
            && (state.totals.len.load(Ordering::Relaxed) >= self.max_entries
                || state.totals.bytes.load(Ordering::Relaxed) + charge > self.max_bytes)
        {
            shard.evict_one();
        }
        let none = crate::codec::encodes_none(keep.bytes);
        let cold = Cold {
            age: keep.age,
            read_at: Instant::now(),
            stamp: before.stamp,
            hash,
            charge,
            key: keep.key,
        };
        shard.insert(Args::new(args), value, none, cold);
    }

    /// Forgets `key` (this process changed it).
    pub(crate) fn forget(&self, key: &Key) {
        self.state.forget(key);
    }

    /// Forgets everything (this process cleared the function).
    pub(crate) fn forget_all(&self) {
        self.state.forget_all();
    }

    /// How many entries are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.shards.iter().map(|s| s.lock().len).sum()
    }
}

impl<R> State<R> {
    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Shard<R>> {
        // The table uses the hash's low bits; the shard its high ones.
        &self.shards[(hash >> 60) as usize & (self.shards.len() - 1)]
    }

    fn forget(&self, key: &Key) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let hash = key_hash(key);
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            if let Some(&slot) = shard.by_key.find(hash, |&i| shard.cold(i).key == *key) {
                shard.remove(slot);
            }
        }
    }

    fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for shard in self.shards.iter() {
            shard.lock().clear();
        }
    }
}

/// The near cache as the store's messages see it (weakly: the store's hub must not keep a
/// dropped function's cache alive).
struct SinkOf<R>(std::sync::Weak<State<R>>);

impl<R: Send + 'static> ChangeSink for SinkOf<R> {
    fn changed(&self, key: &Key) {
        if let Some(state) = self.0.upgrade() {
            state.forget(key);
        }
    }
    fn changed_all(&self) {
        if let Some(state) = self.0.upgrade() {
            state.forget_all();
        }
    }
    fn connected(&self, up: bool) {
        if let Some(state) = self.0.upgrade() {
            if !up {
                state.serving.store(false, Ordering::Release);
            }
            // Whatever was missed while down (or before the channel first came up) is gone.
            state.forget_all();
            if up {
                state.serving.store(true, Ordering::Release);
            }
        }
    }
    fn unwatched(&self) {
        if let Some(state) = self.0.upgrade() {
            state.unwatched.store(true, Ordering::Release);
            state.forget_all();
            state.serving.store(true, Ordering::Release);
        }
    }
}

impl<R> Shard<R> {
    fn new(totals: Arc<Totals>) -> Shard<R> {
        Shard {
            by_args: HashTable::new(),
            by_key: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            len: 0,
            bytes: 0,
            totals,
        }
    }

    /// Drops every entry (and the memory of its tables).
    fn clear(&mut self) {
        self.totals.len.fetch_sub(self.len, Ordering::Relaxed);
        self.totals.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
        *self = Shard::new(self.totals.clone());
    }

    fn cold(&self, slot: u32) -> &Cold {
        self.slots[slot as usize].as_ref().expect("indexed slot")
    }

    fn insert(&mut self, args: Args, value: R, none: bool, cold: Cold) {
        let (hash, key_hash_) = (cold.hash, key_hash(&cold.key));
        self.len += 1;
        self.bytes += cold.charge;
        self.totals.len.fetch_add(1, Ordering::Relaxed);
        self.totals.bytes.fetch_add(cold.charge, Ordering::Relaxed);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(cold);
                slot
            }
            None => {
                self.slots.push(Some(cold));
                (self.slots.len() - 1) as u32
            }
        };
        let hot = Hot {
            args,
            value,
            slot,
            none,
            referenced: false,
        };
        let slots = &self.slots;
        let cold = |slot: u32| slots[slot as usize].as_ref().expect("indexed slot");
        self.by_args
            .insert_unique(hash, hot, |hot| cold(hot.slot).hash);
        self.by_key
            .insert_unique(key_hash_, slot, |&slot| key_hash(&cold(slot).key));
    }

    fn remove(&mut self, slot: u32) {
        let Some(cold) = self.slots[slot as usize].take() else {
            return;
        };
        if let Ok(found) = self.by_args.find_entry(cold.hash, |hot| hot.slot == slot) {
            found.remove();
        }
        if let Ok(found) = self.by_key.find_entry(key_hash(&cold.key), |&i| i == slot) {
            found.remove();
        }
        self.len -= 1;
        self.bytes -= cold.charge;
        self.totals.len.fetch_sub(1, Ordering::Relaxed);
        self.totals.bytes.fetch_sub(cold.charge, Ordering::Relaxed);
        self.free.push(slot);
    }

    /// CLOCK over the buckets of `by_args`: the first entry past the hand whose bit is clear
    /// goes; set bits are cleared on the way.
    fn evict_one(&mut self) {
        let n = self.by_args.num_buckets();
        for _ in 0..2 * n + 1 {
            self.hand = (self.hand + 1) % n;
            match self.by_args.get_bucket_mut(self.hand) {
                Some(hot) if hot.referenced => hot.referenced = false,
                Some(hot) => {
                    let slot = hot.slot;
                    self.remove(slot);
                    return;
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Inert;
    use crate::watch::ChangeHub;

    /// Every length, and a difference at every position, in and out of the slot.
    #[test]
    fn arguments_compare_byte_for_byte() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).collect();
            let args = Args::new(&a);
            assert!(args.is(&a) && same_bytes(&a, &a), "{n}");
            assert!(!args.is(&a[..n.saturating_sub(1)]) || n == 0, "{n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x80;
                assert!(!args.is(&b) && !same_bytes(&a, &b), "{n} {at}");
            }
        }
    }

    /// A near cache in front of a store that tells of no change (entries live a minute).
    fn near(config: NearCache) -> Near<u64> {
        let config = config.unwatched_ttl(Duration::from_secs(60));
        Near::open(&config, &Inert::default(), |v| Some(*v)).unwrap()
    }

    fn keep(n: &Near<u64>, i: u64) {
        let args = i.to_le_bytes();
        let before = n.before(&Key::of(&i).unwrap());
        let bytes = crate::codec::encode(&i).unwrap();
        n.keep(
            n.hash(&args),
            &args,
            before,
            Keep {
                key: Key::of(&i).unwrap(),
                value: &i,
                bytes: &bytes,
                age: Duration::ZERO,
            },
        );
    }

    fn get(n: &Near<u64>, i: u64) -> Option<u64> {
        let args = i.to_le_bytes();
        n.get(n.hash(&args), &args, Threshold::Never, false)
    }

    #[test]
    fn kept_values_are_served_and_forgotten() {
        let n = near(NearCache::entries(100));
        keep(&n, 1);
        keep(&n, 2);
        assert_eq!(get(&n, 1), Some(1));
        assert_eq!(get(&n, 3), None);
        n.forget(&Key::of(&1u64).unwrap());
        assert_eq!(get(&n, 1), None);
        assert_eq!(get(&n, 2), Some(2));
        n.forget_all();
        assert_eq!(get(&n, 2), None);
    }

    #[test]
    fn a_value_read_before_a_change_is_not_kept() {
        let n = near(NearCache::entries(100));
        let args = 7u64.to_le_bytes();
        let key = Key::of(&7u64).unwrap();
        let before = n.before(&key);
        n.forget(&key); // a message arrives while the store is read
        let bytes = crate::codec::encode(&7u64).unwrap();
        let keep = Keep {
            key,
            value: &7,
            bytes: &bytes,
            age: Duration::ZERO,
        };
        n.keep(n.hash(&args), &args, before, keep);
        assert_eq!(get(&n, 7), None);
    }

    #[test]
    fn entries_stay_within_their_bound_and_recent_hits_survive() {
        let n = near(NearCache::entries(160));
        for i in 0..10_000u64 {
            keep(&n, i);
            if i % 4 == 0 {
                get(&n, 0);
            }
        }
        assert!(n.len() <= 160, "{} entries", n.len());
        assert_eq!(get(&n, 0), Some(0), "a value hit all along is kept");
    }

    #[test]
    fn a_million_keys_stay_within_the_byte_bound() {
        let bound = 1 << 20;
        let n = near(NearCache::bytes(bound));
        let bytes = |n: &Near<u64>| -> u64 { n.state.shards.iter().map(|s| s.lock().bytes).sum() };
        let mut most = 0;
        for i in 0..1_000_000u64 {
            keep(&n, i);
            if i % 1024 == 0 {
                most = most.max(bytes(&n));
            }
        }
        // Within the bound, give or take one entry (under 200 bytes) per shard.
        let slack = SHARDS as u64 * 200;
        assert!(most <= bound + slack, "{most} bytes kept");
        assert!(bytes(&n) <= bound + slack);
        assert_eq!(bytes(&n), n.state.totals.bytes.load(Ordering::Relaxed));
        let entries = n.len() as u64;
        assert!(entries > 1000, "the bound is used: {entries} entries");
        // The slots' vectors (the most entries a shard ever held) stay within what the
        // bound lets them hold.
        let slots: usize = n.state.shards.iter().map(|s| s.lock().slots.len()).sum();
        assert!(
            slots as u64 * ENTRY_OVERHEAD <= bound + slack,
            "{slots} slots for {entries} entries"
        );
    }

    #[test]
    fn a_small_cache_holds_as_many_entries_as_its_bound() {
        for bound in [1, 10, 100] {
            let n = near(NearCache::entries(bound));
            for i in 0..bound as u64 {
                keep(&n, i);
            }
            let served = (0..bound as u64).filter(|&i| get(&n, i) == Some(i)).count();
            assert_eq!(served, bound, "entries({bound})");
        }
        // Keys beyond the bound evict others, wherever they fall.
        let n = near(NearCache::entries(1_000));
        for i in 0..10_000u64 {
            keep(&n, i);
        }
        assert!(n.len() <= 1_000 + SHARDS, "{} entries", n.len());
        assert!(n.len() >= 1_000, "{} entries", n.len());
    }

    #[test]
    fn stale_values_and_nones_are_not_served() {
        let n = near(NearCache::entries(10));
        keep(&n, 5);
        let args = 5u64.to_le_bytes();
        let h = n.hash(&args);
        assert_eq!(n.get(h, &args, Threshold::Always, false), None);
        assert_eq!(
            n.get(h, &args, Threshold::Within(Duration::from_secs(60)), false),
            Some(5)
        );
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            n.get(h, &args, Threshold::Within(Duration::from_millis(1)), false),
            None
        );
    }

    #[test]
    fn an_unwatched_entry_is_served_for_its_ttl_only() {
        let config = NearCache::entries(10).unwatched_ttl(Duration::from_millis(30));
        let n = Near::open(&config, &Inert::default(), |v: &u64| Some(*v)).unwrap();
        keep(&n, 1);
        assert_eq!(get(&n, 1), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(get(&n, 1), None);
    }

    /// A store that pushes its changes through a hub the test drives.
    struct Pushing {
        inert: Inert,
        hub: Arc<ChangeHub>,
    }

    impl Core for Pushing {
        fn capabilities(&self) -> crate::Capabilities {
            self.inert.capabilities()
        }
        fn get(&self, key: &Key) -> Result<Option<crate::CacheEntry>, Error> {
            self.inert.get(key)
        }
        fn put(
            &self,
            key: &Key,
            value: &[u8],
            claim: Option<&crate::ClaimToken>,
        ) -> Result<(), Error> {
            self.inert.put(key, value, claim)
        }
        fn claim(&self, key: &Key, lease: Duration) -> Result<crate::Claim, Error> {
            self.inert.claim(key, lease)
        }
        fn release(&self, key: &Key, claim: &crate::ClaimToken) -> Result<(), Error> {
            self.inert.release(key, claim)
        }
        fn clear_cache(&self) -> Result<(), Error> {
            self.inert.clear_cache()
        }
        fn clear_being_calculated(&self) -> Result<(), Error> {
            self.inert.clear_being_calculated()
        }
        fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
            self.inert.delete_stale_entries(older_than)
        }
        fn len(&self) -> Result<u64, Error> {
            self.inert.len()
        }
        fn watch(&self, sink: Arc<dyn ChangeSink>) -> Result<Watch, Error> {
            Ok(Watch::Pushed(self.hub.subscribe("f", sink)))
        }
    }

    #[test]
    fn a_pushed_cache_serves_only_while_its_channel_is_up() {
        let hub = ChangeHub::new();
        let store = Pushing {
            inert: Inert::default(),
            hub: hub.clone(),
        };
        let n = Near::open(&NearCache::entries(10), &store, |v: &u64| Some(*v)).unwrap();
        keep(&n, 1);
        assert_eq!(get(&n, 1), None, "nothing is kept before the channel is up");
        hub.set_connected(true);
        keep(&n, 1);
        keep(&n, 2);
        assert_eq!((get(&n, 1), get(&n, 2)), (Some(1), Some(2)));
        hub.deliver("f", Some(&Key::of(&1u64).unwrap()));
        assert_eq!(
            (get(&n, 1), get(&n, 2)),
            (None, Some(2)),
            "a change forgets its key"
        );
        hub.set_connected(false);
        assert_eq!(
            get(&n, 2),
            None,
            "nothing is served while the channel is down"
        );
        hub.set_connected(true);
        assert_eq!(get(&n, 2), None, "what was kept before the outage is gone");
        keep(&n, 2);
        hub.deliver("f", None);
        assert_eq!(get(&n, 2), None, "a change to every entry forgets them all");
        keep(&n, 2);
        hub.deliver_everywhere();
        assert_eq!(
            get(&n, 2),
            None,
            "a change of no known namespace forgets them all"
        );
    }

    /// A pushing store that turns out unable to push: its near caches, those open and those
    /// opened later, serve for the unwatched bound only, as in front of an unwatched store.
    #[test]
    fn a_store_that_cannot_push_serves_for_the_unwatched_bound() {
        let hub = ChangeHub::new();
        let store = Pushing {
            inert: Inert::default(),
            hub: hub.clone(),
        };
        let config = NearCache::entries(10).unwatched_ttl(Duration::from_millis(30));
        let before = Near::open(&config, &store, |v: &u64| Some(*v)).unwrap();
        hub.set_unwatched();
        let after = Near::open(&config, &store, |v: &u64| Some(*v)).unwrap();
        for n in [&before, &after] {
            keep(n, 1);
            assert_eq!(get(n, 1), Some(1), "served while young");
        }
        std::thread::sleep(Duration::from_millis(40));
        for n in [&before, &after] {
            assert_eq!(get(n, 1), None, "not past the bound");
        }
    }
}
