//! The contract between the call engine and the stores.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::watch::{ChangeSink, Watch};
use crate::{codec, Error, Key, Namespace};

/// One stored entry, as a [`Core`] reports it. Its fields cannot disagree: a value is there
/// only when a computation completed and stored it, a claim only while it is live, so each
/// store normalises what it read once, when it builds the entry.
#[derive(Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The completed value; `None` in a placeholder (a claim with nothing stored yet, or what
    /// a released claim left behind). The engine never serves a placeholder.
    pub value: Option<Arc<[u8]>>,
    /// When the value was stored (UTC, by the store's clock where it has one). It identifies
    /// the stored value: a store reports the same `time` for the same value on every read.
    pub time: SystemTime,
    /// How old the value was when read, measured by the store's clock: machines whose clocks
    /// disagree still agree on what is stale.
    pub age: Duration,
    /// The live claim on the key: someone is computing it right now. A lapsed or released
    /// claim is `None`.
    pub claim: Option<LiveClaim>,
}

/// A claim in force on a key, as a store reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveClaim {
    /// Its holder's token, where the store records it (for inspection tools).
    pub owner: Option<String>,
}

impl LiveClaim {
    /// The claim a store read: `Some` only if it is `live` (its lease ahead of the store's
    /// clock), with `owner` where the store records it.
    pub fn if_live(live: bool, owner: Option<String>) -> Option<LiveClaim> {
        live.then_some(LiveClaim { owner })
    }
}

impl CacheEntry {
    /// A completed entry holding `value`, stored at `time`, read now by this machine's clock.
    pub fn completed(value: Arc<[u8]>, time: SystemTime) -> CacheEntry {
        CacheEntry {
            value: Some(value),
            time,
            age: SystemTime::now().duration_since(time).unwrap_or_default(),
            claim: None,
        }
    }

    /// Whether a computation finished and stored a value here (false for a placeholder).
    pub fn is_completed(&self) -> bool {
        self.value.is_some()
    }

    /// Whether a live claim exists: someone is computing this key right now.
    pub fn being_calculated(&self) -> bool {
        self.claim.is_some()
    }

    /// Who holds the live claim, where the store records it.
    pub fn claim_owner(&self) -> Option<&str> {
        self.claim.as_ref()?.owner.as_deref()
    }
}

impl fmt::Debug for CacheEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheEntry")
            .field("value_len", &self.value.as_ref().map(|v| v.len()))
            .field("time", &self.time)
            .field("age", &self.age)
            .field("claim", &self.claim)
            .finish()
    }
}

/// One entry as listed by [`Core::entries`]: everything but the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// The entry's key.
    pub key: Key,
    /// Size of the stored (encoded) value in bytes; 0 for a placeholder.
    pub size: u64,
    /// When the value was stored (UTC).
    pub time: SystemTime,
    /// Its age when listed, by the store's clock.
    pub age: Duration,
    /// A computation finished and stored a value (false for a placeholder).
    pub completed: bool,
    /// The live claim on the key, if any.
    pub claim: Option<LiveClaim>,
    /// A readable preview of the arguments the value was computed from, where the value
    /// carries one (functions with `preview_args` on; see [`codec::preview`]). Read from the
    /// value's first [`codec::PREVIEW_PREFIX_LEN`] bytes, so listing it needs neither the
    /// whole value nor its type.
    pub preview: Option<String>,
}

impl EntryInfo {
    /// The listing of `entry` under `key`.
    pub fn of(key: Key, entry: &CacheEntry) -> EntryInfo {
        EntryInfo {
            key,
            size: entry.value.as_ref().map_or(0, |v| v.len() as u64),
            time: entry.time,
            age: entry.age,
            completed: entry.is_completed(),
            claim: entry.claim.clone(),
            preview: entry.value.as_deref().and_then(preview_of),
        }
    }

    /// Whether a live claim exists.
    pub fn being_calculated(&self) -> bool {
        self.claim.is_some()
    }

    /// Who holds the live claim, where the store records it.
    pub fn claim_owner(&self) -> Option<&str> {
        self.claim.as_ref()?.owner.as_deref()
    }
}

/// The preview a stored value (or the first [`codec::PREVIEW_PREFIX_LEN`] bytes of it)
/// carries, for a store's listing.
pub fn preview_of(value_prefix: &[u8]) -> Option<String> {
    codec::preview(value_prefix).map(str::to_owned)
}

/// What a store can do: declared by each store as data, read once when a function is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Claims carry a lease that the engine renews while computing. False where a claim
    /// cannot outlive its holder (memory, an OS file lock): nothing renews them.
    pub leases: bool,
    /// [`Core::entries`] and [`Backend::namespaces`] list what is stored (for `cachier ls`,
    /// `cachier show` and statistics); without it they return [`Error::Unsupported`].
    pub listing: bool,
    /// The directory holding this function's cache, for stores kept in local files
    /// (`Memoized::cache_dpath`).
    pub cache_dir: Option<PathBuf>,
    /// The store lives in this process (memory): a near cache in front of it costs no
    /// coherence traffic, so functions get one by default.
    pub in_process: bool,
}

/// Proof of a claim on one key: only its holder's [`Core::put`] or [`Core::release`] clears it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClaimToken(String);

impl ClaimToken {
    /// A token unique across processes and machines: the process id, then 64 bits hashed from
    /// the clock, a counter and the process id.
    pub fn new() -> ClaimToken {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut hasher = Sha256::new();
        hasher.update(seed.to_le_bytes());
        hasher.update(n.to_le_bytes());
        hasher.update(std::process::id().to_le_bytes());
        hasher.update((&n as *const u64 as usize).to_le_bytes());
        let digest = hasher.finalize();
        let random = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
        ClaimToken(format!("{}-{random:016x}", std::process::id()))
    }

    /// Rebuilds a token from its stored text.
    pub fn from_string(text: String) -> ClaimToken {
        ClaimToken(text)
    }

    /// The token as stored (`"<pid>-<16 hex digits>"`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ClaimToken {
    fn default() -> Self {
        ClaimToken::new()
    }
}

impl fmt::Debug for ClaimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClaimToken({})", self.0)
    }
}

/// The answer to [`Core::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller now holds the claim and must compute, then `put` or `release`.
    Claimed(ClaimToken),
    /// Someone else holds a live claim on this key.
    Busy,
}

/// The answer to [`Core::claim_and_get`]: the claim, and what the key holds just after it.
#[derive(Debug)]
pub struct ClaimAndGet {
    /// The claim's answer.
    pub claim: Claim,
    /// When claimed, the entry as read just after the claim (`Ok(None)` when busy). A failed
    /// read does not undo the claim: its holder still must `put` or `release`.
    pub entry: Result<Option<CacheEntry>, Error>,
}

/// A store, possibly a pool of connections; cheap to clone. Hands out one [`Core`] per
/// memoized function.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Short name for logs and errors (`"memory"`, `"file"`, `"redis"`...).
    fn name(&self) -> &'static str;

    /// The store of one function.
    ///
    /// # Errors
    /// When the store cannot be opened or set up (bad path, schema creation failed...).
    fn core(&self, namespace: &Namespace) -> Result<Arc<dyn Core>, Error>;

    /// Every namespace with entries in this store, for inspection tools (`cachier ls`).
    ///
    /// # Errors
    /// [`Error::Unsupported`] from backends that cannot list (the default).
    fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        Err(Error::Unsupported {
            backend: self.name(),
            operation: "listing namespaces",
        })
    }

    /// The store of one function for async memoized functions, given the blocking `core`
    /// already opened for it. The default runs `core` on tokio's blocking pool; backends with
    /// native async drivers override it.
    #[cfg(feature = "async")]
    fn async_core(
        &self,
        namespace: &Namespace,
        core: &Arc<dyn Core>,
    ) -> Result<Arc<dyn crate::AsyncCore>, Error> {
        let _ = namespace;
        Ok(Arc::new(crate::OffloadedCore(core.clone())))
    }
}

/// One function's cache in one store. Values cross it as bytes; times are UTC.
///
/// [`Core::claim`] is atomic (of many callers that miss a key at once exactly one gets
/// [`Claim::Claimed`]), and a claim is a lease that lapses when its holder stops renewing it
/// (or, on the file backend, when its process dies). `docs/ARCHITECTURE.md` describes the
/// whole contract and the claim protocol.
pub trait Core: Send + Sync {
    /// What this store can do: leases, listing, a cache directory.
    fn capabilities(&self) -> Capabilities;

    /// The entry under `key`, if any.
    fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error>;

    /// Stores a completed value, timestamped now. If `claim` is the live claim on `key`, it is
    /// released in the same step; another holder's claim is left alone. When it fails, the
    /// engine releases the claim with [`Core::release`] at once.
    fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error>;

    /// Atomically claims `key` for a computation unless a live claim exists. A stored value
    /// is kept (callers with `next_time` keep serving it during the refresh).
    ///
    /// A claim need not check for a value stored since the caller's read: the engine reads
    /// the key again after winning a claim ([`Core::claim_and_get`]) and serves such a value
    /// instead of computing.
    fn claim(&self, key: &Key, lease: Duration) -> Result<Claim, Error>;

    /// [`Core::claim`], then, once claimed, [`Core::get`]: what the engine does on a miss, so
    /// that a value another caller stored since this caller's read is served instead of
    /// computed again. Stores that can do both in one round trip override it.
    fn claim_and_get(&self, key: &Key, lease: Duration) -> Result<ClaimAndGet, Error> {
        claim_then_get(self, key, lease)
    }

    /// Extends a claim's lease; `Ok(false)` if the claim was lost (cleared or taken over).
    fn renew(&self, key: &Key, claim: &ClaimToken, lease: Duration) -> Result<bool, Error> {
        let _ = (key, claim, lease);
        Ok(true)
    }

    /// Drops `claim` on `key` if it is still the live one; stored values are kept.
    fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error>;

    /// How this function's near caches, in every process, learn of changes to its entries:
    /// `sink` is told of them ([`Watch::Pushed`]), or every process counts them in shared
    /// counters ([`Watch::Counted`]). The default, [`Watch::Unwatched`], serves near entries
    /// for a bounded time only.
    ///
    /// # Errors
    /// The store cannot set up its notifications.
    fn watch(&self, sink: Arc<dyn ChangeSink>) -> Result<Watch, Error> {
        let _ = sink;
        Ok(Watch::Unwatched)
    }

    /// Blocks until `key` has no live claim (true) or `max` has passed (false).
    ///
    /// The default polls [`Core::get`] with a short backoff, so waiters wake within tens of
    /// milliseconds of the result landing; stores with a notification mechanism override it.
    fn wait(&self, key: &Key, max: Duration) -> Result<bool, Error> {
        poll_until_released(self, key, max)
    }

    /// Deletes the value stored under `key` (an invalidation); returns whether there was one.
    /// Other keys are untouched.
    ///
    /// A live claim on `key` stays, as a placeholder: its holder goes on computing, its `put`
    /// stores the new value, and callers waiting on the claim wait for that value, so an
    /// invalidation never starts a second computation of a key in flight. A placeholder whose
    /// claim is gone (lapsed or released) goes with the value.
    ///
    /// # Errors
    /// [`Error::Unsupported`] from stores that do not implement it (the default, which knows
    /// no backend name: it reports a `"custom"` backend). Every store of this workspace
    /// implements it, and the store-contract suite checks that it does.
    fn remove(&self, key: &Key) -> Result<bool, Error> {
        let _ = key;
        Err(Error::Unsupported {
            backend: "custom",
            operation: "removing an entry",
        })
    }

    /// Deletes every entry of this function. A live claim that the store cannot revoke (an
    /// OS file lock held by a live process) stays, as a placeholder.
    fn clear_cache(&self) -> Result<(), Error>;

    /// Drops every claim of this function (the manual remedy; lapsed leases make it rarely
    /// needed).
    fn clear_being_calculated(&self) -> Result<(), Error>;

    /// Deletes entries older than `older_than`; returns how many.
    fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error>;

    /// Number of entries, placeholders included.
    fn len(&self) -> Result<u64, Error>;

    /// Every entry, without its value (for inspection tools: `cachier show`, statistics).
    ///
    /// # Errors
    /// [`Error::Unsupported`] from backends that cannot list (the default, which knows no
    /// backend name: it reports a `"custom"` backend).
    fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
        Err(Error::Unsupported {
            backend: "custom",
            operation: "listing entries",
        })
    }

    /// True when [`Core::len`] is zero.
    fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len()? == 0)
    }
}

/// [`Core::claim_and_get`] in two steps: a claim, then (once claimed) a read.
pub fn claim_then_get<C: Core + ?Sized>(
    core: &C,
    key: &Key,
    lease: Duration,
) -> Result<ClaimAndGet, Error> {
    let claim = core.claim(key, lease)?;
    let entry = match claim {
        Claim::Claimed(_) => core.get(key),
        Claim::Busy => Ok(None),
    };
    Ok(ClaimAndGet { claim, entry })
}

/// [`Core::wait`] by polling [`Core::get`] with a [`Backoff`].
pub fn poll_until_released<C: Core + ?Sized>(
    core: &C,
    key: &Key,
    max: Duration,
) -> Result<bool, Error> {
    let mut backoff = Backoff::until(max);
    loop {
        match core.get(key)? {
            Some(entry) if entry.being_calculated() => {}
            _ => return Ok(true),
        }
        match backoff.next_pause() {
            Some(pause) => std::thread::sleep(pause),
            None => return Ok(false),
        }
    }
}

/// The pauses of a wait that polls its store: 1 ms, doubling up to a cap, never past the
/// wait's deadline. Waiters wake within a cap of the result landing, and an idle wait costs
/// the store one look per cap.
#[derive(Debug, Clone)]
pub struct Backoff {
    deadline: Instant,
    pause: Duration,
    cap: Duration,
}

impl Backoff {
    /// The cap unless [`Backoff::capped`] says otherwise.
    pub const CAP: Duration = Duration::from_millis(25);

    /// Pauses for a wait of at most `max` from now.
    pub fn until(max: Duration) -> Backoff {
        Backoff {
            deadline: Instant::now() + max,
            pause: Duration::from_millis(1),
            cap: Backoff::CAP,
        }
    }

    /// With pauses of at most `cap` (a store whose look costs more polls less often).
    pub fn capped(mut self, cap: Duration) -> Backoff {
        self.cap = cap;
        self
    }

    /// The next pause, or `None` once the deadline has passed.
    pub fn next_pause(&mut self) -> Option<Duration> {
        let left = self.deadline.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        let pause = self.pause.min(left);
        self.pause = (self.pause * 2).min(self.cap);
        Some(pause)
    }
}

/// A store that implements only what it must (and counts its renewals, each taking
/// `renew_pause`), for the unit tests of this crate.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Inert {
    pub(crate) renew_pause: Duration,
    pub(crate) renewals: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
impl Core for Inert {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            leases: true,
            listing: false,
            cache_dir: None,
            in_process: false,
        }
    }
    fn get(&self, _: &Key) -> Result<Option<CacheEntry>, Error> {
        Ok(None)
    }
    fn put(&self, _: &Key, _: &[u8], _: Option<&ClaimToken>) -> Result<(), Error> {
        Ok(())
    }
    fn claim(&self, _: &Key, _: Duration) -> Result<Claim, Error> {
        Ok(Claim::Busy)
    }
    fn renew(&self, _: &Key, _: &ClaimToken, _: Duration) -> Result<bool, Error> {
        std::thread::sleep(self.renew_pause);
        self.renewals
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(true)
    }
    fn release(&self, _: &Key, _: &ClaimToken) -> Result<(), Error> {
        Ok(())
    }
    fn clear_cache(&self) -> Result<(), Error> {
        Ok(())
    }
    fn clear_being_calculated(&self) -> Result<(), Error> {
        Ok(())
    }
    fn delete_stale_entries(&self, _: Duration) -> Result<u64, Error> {
        Ok(0)
    }
    fn len(&self) -> Result<u64, Error> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_stops_at_the_deadline() {
        let mut backoff = Backoff::until(Duration::from_secs(60)).capped(Duration::from_millis(8));
        let pauses: Vec<u64> = (0..6)
            .map(|_| backoff.next_pause().unwrap().as_millis() as u64)
            .collect();
        assert_eq!(pauses, [1, 2, 4, 8, 8, 8]);
        let mut short = Backoff::until(Duration::from_millis(30));
        let mut waited = Duration::ZERO;
        while let Some(pause) = short.next_pause() {
            assert!(pause <= Backoff::CAP);
            std::thread::sleep(pause);
            waited += pause;
        }
        assert!(
            waited <= Duration::from_millis(30),
            "never past the deadline: {waited:?}"
        );
    }

    #[test]
    fn unsupported_listing_reads_well() {
        let error = Inert::default().entries().unwrap_err();
        assert_eq!(
            error.to_string(),
            "the custom backend does not support listing entries"
        );
    }

    #[test]
    fn a_store_without_remove_says_so() {
        let error = Inert::default()
            .remove(&Key::of(&1u8).unwrap())
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the custom backend does not support removing an entry"
        );
    }
}
