//! [`FileCore`]: the store operations of one function. Its I/O is local and blocking, so this
//! is the only implementation of them; async callers get core's `OffloadedCore` around it.
//!
//! What both layouts share is written once in [`FileCore`]: opening the store lazily, and the
//! claims, which are lock files in both ([`Claims`]). What differs is behind [`Layout`],
//! implemented by the single store ([`SingleStore`]) and by `separate_files`
//! ([`SeparateStore`]).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use cachier_core::watch::{ChangeSink, Watch};
use cachier_core::{
    Backoff, CacheEntry, Capabilities, Claim, ClaimToken, Core, EntryInfo, Error, Key, LiveClaim,
    Namespace,
};
use parking_lot::Mutex;

use crate::changes::Changes;
use crate::claims::{create_dir, create_owned_dir, Claims};
use crate::clock::cutoff;
use crate::error::io_error;
use crate::file_stem;
use crate::open_lock::{OpenLock, CHANGES_SUFFIX, OPEN_LOCK_SUFFIX};
use crate::separate::{self, ReadError, SeparateStore};
use crate::single::{self, SingleStore};

/// How one function's entries are kept on disk: what the single store and `separate_files`
/// do differently. The lock files of claims are the same in both and stay with [`FileCore`],
/// which hands them to the operations that report claims.
pub(crate) trait Layout: Sized + Send + Sync + 'static {
    /// Where the store of the function whose file stem is `stem` lives in `cache_dir`.
    fn store_path(cache_dir: &Path, stem: &str) -> PathBuf;

    /// The lock files of that function's claims.
    fn claims(cache_dir: &Path, stem: &str) -> Claims;

    /// Opens (or creates) the store at `path` for `namespace`; the cache directory exists.
    fn open(path: &Path, namespace: &Namespace) -> Result<Self, Error>;

    /// [`Core::get`]: `being_calculated` is a live claim in `claims`.
    fn get(&self, key: &Key, claims: &Claims) -> Result<Option<CacheEntry>, Error>;

    /// Stores a completed value; a claim marker is cleared if it is `claim`'s. The lock file
    /// is the caller's to release.
    fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error>;

    /// Makes sure a claim has somewhere to live, before its lock file is taken.
    fn ready_for_claim(&self) -> Result<(), Error>;

    /// Records the claim `token` just won on `key` in the key's entry, where entries record
    /// claims.
    fn mark_claim(&self, key: &Key, token: &ClaimToken) -> Result<(), Error>;

    /// Drops that record if it is still `token`'s (a placeholder goes with it).
    fn unmark_claim(&self, key: &Key, token: &ClaimToken) -> Result<(), Error>;

    /// Drops every claim record; the lock files are cleared by the caller.
    fn clear_claim_marks(&self) -> Result<(), Error>;

    /// [`Core::remove`]: a key under a live claim in `claims` keeps its claim.
    fn remove(&self, key: &Key, claims: &Claims) -> Result<bool, Error>;

    /// [`Core::clear_cache`].
    fn clear_cache(&self) -> Result<(), Error>;

    /// [`Core::delete_stale_entries`], with entries stored before `cutoff`.
    fn delete_stale_entries(&self, cutoff: SystemTime, claims: &Claims) -> Result<u64, Error>;

    /// [`Core::entries`].
    fn entries(&self, claims: &Claims) -> Result<Vec<EntryInfo>, Error>;

    /// [`Core::len`].
    fn len(&self, claims: &Claims) -> Result<u64, Error>;
}

/// One function's cache in a [`FileBackend`](crate::FileBackend), in layout `L`. Generic
/// rather than a `Box<dyn Layout>`: the backend picks the layout once, when it makes the core,
/// and every operation then calls the layout directly.
pub(crate) struct FileCore<L> {
    namespace: Namespace,
    cache_dir: PathBuf,
    store_path: PathBuf,
    claims: Claims,
    store: OnceLock<L>,
    opening: Mutex<()>,
    changes_path: PathBuf,
    /// The change counters shared with the other processes, mapped when the store opens
    /// (`None` where they cannot be: near caches then fall back to a bounded age).
    changes: OnceLock<Option<Arc<Changes>>>,
    open_lock_path: PathBuf,
    /// A shared lock on `<stem>.open.lock`, taken before the store is opened and held until
    /// this core is dropped: while it is held, `remove_unused_store` (`cachier clear`)
    /// leaves the store's files alone.
    open_lock: OnceLock<OpenLock>,
}

/// How often a waiter looks at its key's change counter, at most (a load, then a sleep).
const COUNTER_POLL: Duration = Duration::from_micros(500);

impl<L> fmt::Debug for FileCore<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCore")
            .field("namespace", &self.namespace)
            .field("store", &self.store_path)
            .finish()
    }
}

impl<L: Layout> FileCore<L> {
    /// The cache of `namespace` in `cache_dir`, opened now if it can be, so that a usable
    /// directory costs nothing later. A failure is retried by every operation (which reports
    /// it), so that a directory fixed later starts working.
    pub(crate) fn new(cache_dir: &Path, namespace: &Namespace) -> FileCore<L> {
        let stem = file_stem(namespace.as_str());
        let core = FileCore {
            namespace: namespace.clone(),
            cache_dir: cache_dir.to_owned(),
            store_path: L::store_path(cache_dir, &stem),
            claims: L::claims(cache_dir, &stem),
            store: OnceLock::new(),
            opening: Mutex::new(()),
            changes_path: cache_dir.join(format!("{stem}{CHANGES_SUFFIX}")),
            changes: OnceLock::new(),
            open_lock_path: cache_dir.join(format!("{stem}{OPEN_LOCK_SUFFIX}")),
            open_lock: OnceLock::new(),
        };
        if let Err(error) = core.store() {
            tracing::debug!(namespace = %namespace, %error, "cachier: file store not available yet");
        }
        core
    }

    /// The store, opened by the first operation that finds it usable.
    fn store(&self) -> Result<&L, Error> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let _opening = self.opening.lock();
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        create_dir(&self.cache_dir).map_err(|e| io_error("open", &self.cache_dir, e))?;
        if self.open_lock.get().is_none() {
            match OpenLock::shared(&self.open_lock_path) {
                Ok(lock) => drop(self.open_lock.set(lock)),
                // Only where the directory cannot be written: no removal can happen there.
                Err(error) => {
                    tracing::debug!(path = %self.open_lock_path.display(), %error, "cachier: store used without its open lock")
                }
            }
        }
        let store = L::open(&self.store_path, &self.namespace)?;
        self.changes.get_or_init(|| match Changes::open(&self.changes_path) {
            Ok(changes) => Some(Arc::new(changes)),
            Err(error) => {
                tracing::warn!(path = %self.changes_path.display(), %error, "cachier: change counters unavailable; near caches of this function fall back to a bounded age");
                None
            }
        });
        Ok(self.store.get_or_init(|| store))
    }

    fn changes(&self) -> Option<&Changes> {
        self.changes.get()?.as_deref()
    }

    /// A write is done: tell the other processes (their near caches and waiters).
    fn changed(&self, key: Option<&Key>) {
        if let Some(changes) = self.changes() {
            changes.bump(key);
        }
    }

    /// Sleeps `pause`, or less if `key`'s change counters move meanwhile.
    fn pause_unless_changed(&self, key: &Key, pause: Duration) {
        let Some(changes) = self.changes() else {
            return std::thread::sleep(pause);
        };
        let seen = changes.read(key);
        let until = Instant::now() + pause;
        let mut tick = Duration::from_micros(50);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if left.is_zero() || changes.read(key) != seen {
                return;
            }
            std::thread::sleep(tick.min(left));
            tick = (tick * 2).min(COUNTER_POLL);
        }
    }
}

impl<L: Layout> Core for FileCore<L> {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Claims are OS file locks, dropped by the kernel when their process dies.
            leases: false,
            listing: true,
            cache_dir: Some(self.cache_dir.clone()),
            in_process: false,
        }
    }

    fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        self.store()?.get(key, &self.claims)
    }

    fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error> {
        let stored = self.store()?.put(key, value, claim);
        // Unlock even when the write failed, so that waiters take over instead of waiting.
        let released = match claim {
            Some(token) => self
                .claims
                .release(key, token)
                .map(drop)
                .map_err(|e| self.claims.error("put", e)),
            None => Ok(()),
        };
        self.changed(Some(key));
        stored.and(released)
    }

    fn claim(&self, key: &Key, _lease: Duration) -> Result<Claim, Error> {
        let store = self.store()?;
        store.ready_for_claim()?;
        let Some(token) = self
            .claims
            .acquire(key)
            .map_err(|e| self.claims.error("claim", e))?
        else {
            return Ok(Claim::Busy);
        };
        if let Err(error) = store.mark_claim(key, &token) {
            let _ = self.claims.release(key, &token);
            return Err(error);
        }
        Ok(Claim::Claimed(token))
    }

    fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
        let unmarked = self.store()?.unmark_claim(key, claim);
        let released = self
            .claims
            .release(key, claim)
            .map(drop)
            .map_err(|e| self.claims.error("release", e));
        self.changed(Some(key));
        unmarked.and(released)
    }

    /// Shared change counters: every process's near cache compares them on each hit.
    fn watch(&self, _sink: Arc<dyn ChangeSink>) -> Result<Watch, Error> {
        self.store()?;
        Ok(match self.changes.get().cloned().flatten() {
            Some(changes) => Watch::Counted(changes),
            None => Watch::Unwatched,
        })
    }

    /// Looks at the key's lock file (1 ms, doubling to 25 ms apart) and, in between, at its
    /// change counter (every 50 µs, doubling to 500 µs): a waiter wakes within about half a
    /// millisecond of the result landing, and within 25 ms when the computing process dies
    /// (the kernel drops its lock; nothing bumps a counter).
    fn wait(&self, key: &Key, max: Duration) -> Result<bool, Error> {
        let mut backoff = Backoff::until(max);
        loop {
            if !self.claims.is_live(key, "wait")? {
                return Ok(true);
            }
            match backoff.next_pause() {
                Some(pause) => self.pause_unless_changed(key, pause),
                None => return Ok(false),
            }
        }
    }

    fn remove(&self, key: &Key) -> Result<bool, Error> {
        let removed = self.store()?.remove(key, &self.claims);
        self.changed(Some(key));
        removed
    }

    fn clear_cache(&self) -> Result<(), Error> {
        let cleared = self.store()?.clear_cache();
        self.changed(None);
        cleared
    }

    fn clear_being_calculated(&self) -> Result<(), Error> {
        let store = self.store()?;
        self.claims
            .clear_all()
            .map_err(|e| self.claims.error("clear_being_calculated", e))?;
        let cleared = store.clear_claim_marks();
        self.changed(None);
        cleared
    }

    fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        let cutoff = cutoff(older_than);
        let deleted = self.store()?.delete_stale_entries(cutoff, &self.claims);
        if deleted.as_ref().is_ok_and(|&n| n > 0) {
            self.changed(None);
        }
        deleted
    }

    /// Lists rows (single store: `length(value)`, never the values) or entry files (their
    /// headers and sizes). A claim counts as being calculated only while its lock is held, as
    /// in `get`; markers left by dead processes are cleaned up on the way, as `get` does.
    /// Damaged entry files are left out (`get` reads them as misses).
    fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
        self.store()?.entries(&self.claims)
    }

    fn len(&self) -> Result<u64, Error> {
        self.store()?.len(&self.claims)
    }
}

/// How old a value stored at `time` is at `now`.
fn age(now: SystemTime, time: SystemTime) -> Duration {
    now.duration_since(time).unwrap_or_default()
}

/// One SQLite database per function. A claim is its lock file and a marker (the claimer's
/// token) in the entry's row, so that a hit on an unclaimed entry never opens a lock file.
impl Layout for SingleStore {
    fn store_path(cache_dir: &Path, stem: &str) -> PathBuf {
        cache_dir.join(format!("{stem}{}", single::SUFFIX))
    }

    fn claims(cache_dir: &Path, stem: &str) -> Claims {
        Claims::new(cache_dir.join(format!("{stem}{}", single::CLAIMS_SUFFIX)))
    }

    fn open(path: &Path, namespace: &Namespace) -> Result<Self, Error> {
        SingleStore::open(path.to_owned(), namespace.as_str())
    }

    fn get(&self, key: &Key, claims: &Claims) -> Result<Option<CacheEntry>, Error> {
        let Some(row) = self.read(key)? else {
            return Ok(None);
        };
        let Some(marker) = row.claim.clone() else {
            return Ok(Some(row.entry(false, None)));
        };
        if claims.is_live(key, "get")? {
            return Ok(Some(row.entry(true, None)));
        }
        // The claimer died or its claim was cleared: drop the stale marker.
        self.unmark(key, &marker, "get")?;
        Ok(row.value.is_some().then(|| row.entry(false, None)))
    }

    fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error> {
        self.write(key, value, claim.map(ClaimToken::as_str))
    }

    fn ready_for_claim(&self) -> Result<(), Error> {
        Ok(())
    }

    fn mark_claim(&self, key: &Key, token: &ClaimToken) -> Result<(), Error> {
        self.mark(key, token.as_str())
    }

    fn unmark_claim(&self, key: &Key, token: &ClaimToken) -> Result<(), Error> {
        self.unmark(key, token.as_str(), "release")
    }

    fn clear_claim_marks(&self) -> Result<(), Error> {
        self.clear_marks()
    }

    /// Decides on the row as read, then changes it only if its claim marker is still the one
    /// read; a row changed in between (a claim or a put landed) is read again.
    fn remove(&self, key: &Key, claims: &Claims) -> Result<bool, Error> {
        loop {
            let Some(row) = self.read(key)? else {
                return Ok(false);
            };
            let had_value = row.completed && row.value.is_some();
            let marker = row.claim.as_deref();
            let live = marker.is_some() && claims.is_live(key, "remove")?;
            if live {
                if !had_value || self.drop_value(key, marker)? {
                    return Ok(had_value);
                }
            } else if self.delete_row(key, marker)? {
                return Ok(had_value);
            }
        }
    }

    fn clear_cache(&self) -> Result<(), Error> {
        self.clear()
    }

    fn delete_stale_entries(&self, cutoff: SystemTime, claims: &Claims) -> Result<u64, Error> {
        let mut doomed = Vec::new();
        for (key, marker) in self.older_than(cutoff)? {
            // An entry being recomputed stays: its claim lives in its row.
            if marker.is_none() || !claims.is_live(&key, "delete_stale_entries")? {
                doomed.push(key);
            }
        }
        self.delete(&doomed, cutoff)
    }

    fn entries(&self, claims: &Claims) -> Result<Vec<EntryInfo>, Error> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for (key, row) in self.list()? {
            let being_calculated = match &row.claim {
                None => false,
                Some(_) if claims.is_live(&key, "entries")? => true,
                Some(marker) => {
                    self.unmark(&key, marker, "entries")?;
                    if row.size.is_none() {
                        continue; // a dead claim's placeholder, now gone
                    }
                    false
                }
            };
            out.push(EntryInfo {
                key,
                size: row.size.unwrap_or(0),
                time: row.time,
                age: age(now, row.time),
                completed: row.completed,
                claim: LiveClaim::if_live(being_calculated, row.claim),
                preview: row.preview,
            });
        }
        Ok(out)
    }

    fn len(&self, _claims: &Claims) -> Result<u64, Error> {
        // Placeholders are rows too.
        self.count()
    }
}

/// One file per entry in the function's entry directory. A claim is its lock file alone
/// (kept in the entry directory), so a hit costs one `stat` of it.
impl Layout for SeparateStore {
    fn store_path(cache_dir: &Path, stem: &str) -> PathBuf {
        cache_dir.join(stem)
    }

    fn claims(cache_dir: &Path, stem: &str) -> Claims {
        Claims::in_owned_parent(Self::store_path(cache_dir, stem).join(separate::CLAIMS_DIR))
    }

    fn open(path: &Path, namespace: &Namespace) -> Result<Self, Error> {
        create_owned_dir(path).map_err(|e| io_error("open", path, e))?;
        SeparateStore::open(path.to_owned(), namespace.as_str())
            .map_err(|e| io_error("open", path, e))
    }

    fn get(&self, key: &Key, claims: &Claims) -> Result<Option<CacheEntry>, Error> {
        let file = match self.read(key) {
            Ok(file) => file,
            Err(ReadError::Io(error)) => return Err(io_error("get", &self.path(key), error)),
            Err(ReadError::Damaged(why)) => {
                tracing::warn!(
                    namespace = %self.namespace(),
                    path = %self.path(key).display(),
                    why,
                    "cachier: damaged cache entry file ignored; it will be recomputed and rewritten"
                );
                None
            }
        };
        let being_calculated = claims.marker_exists(key) && claims.is_live(key, "get")?;
        // The lock file is empty (see claims.rs): the owner is not recorded.
        let claim = LiveClaim::if_live(being_calculated, None);
        let now = SystemTime::now();
        Ok(match file {
            Some(file) => Some(CacheEntry {
                value: file.completed.then(|| Arc::from(file.value)),
                time: file.time,
                age: age(now, file.time),
                claim,
            }),
            None if being_calculated => Some(CacheEntry {
                value: None,
                time: now,
                age: Duration::ZERO,
                claim,
            }),
            None => None,
        })
    }

    fn put(&self, key: &Key, value: &[u8], _claim: Option<&ClaimToken>) -> Result<(), Error> {
        match self.write(key, value) {
            // The directory was deleted by hand: make it again.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                create_owned_dir(self.dir()).map_err(|e| io_error("put", self.dir(), e))?;
                self.label().and_then(|()| self.write(key, value))
            }
            other => other,
        }
        .map_err(|e| io_error("put", &self.path(key), e))
    }

    /// Makes the entry directory again, labelled, if it is gone (deleted by hand, or a link
    /// moved aside), so that claims do not make it unlabelled.
    fn ready_for_claim(&self) -> Result<(), Error> {
        let ready = self
            .guard()
            .and_then(|()| match fs::symlink_metadata(self.dir()) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    create_owned_dir(self.dir()).and_then(|()| self.label())
                }
                _ => Ok(()),
            });
        ready.map_err(|e| io_error("claim", self.dir(), e))
    }

    /// The lock file is the claim's only marker.
    fn mark_claim(&self, _key: &Key, _token: &ClaimToken) -> Result<(), Error> {
        Ok(())
    }

    fn unmark_claim(&self, _key: &Key, _token: &ClaimToken) -> Result<(), Error> {
        Ok(())
    }

    fn clear_claim_marks(&self) -> Result<(), Error> {
        Ok(())
    }

    /// The entry file goes; a claim is its lock file, which stays.
    fn remove(&self, key: &Key, _claims: &Claims) -> Result<bool, Error> {
        let path = self.path(key);
        self.remove_file(&path)
            .map_err(|e| io_error("remove", &path, e))
    }

    fn clear_cache(&self) -> Result<(), Error> {
        self.clear()
            .map_err(|e| io_error("clear_cache", self.dir(), e))
    }

    fn delete_stale_entries(&self, cutoff: SystemTime, claims: &Claims) -> Result<u64, Error> {
        let old = self
            .older_than(cutoff)
            .map_err(|e| io_error("delete_stale_entries", self.dir(), e))?;
        let mut deleted = 0;
        for (key, path) in old {
            if claims.marker_exists(&key) && claims.is_live(&key, "delete_stale_entries")? {
                continue;
            }
            if self
                .remove_file(&path)
                .map_err(|e| io_error("delete_stale_entries", &path, e))?
            {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    fn entries(&self, claims: &Claims) -> Result<Vec<EntryInfo>, Error> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        let files = self
            .list()
            .map_err(|e| io_error("entries", self.dir(), e))?;
        for (key, file) in files {
            match file {
                Ok(file) => out.push(EntryInfo {
                    key,
                    size: file.size,
                    time: file.time,
                    age: age(now, file.time),
                    completed: file.completed,
                    claim: None,
                    preview: file.preview,
                }),
                Err(why) => tracing::debug!(
                    path = %self.path(&key).display(),
                    why,
                    "cachier: damaged entry file not listed"
                ),
            }
        }
        let marked = claims
            .marked_keys()
            .map_err(|e| claims.error("entries", e))?;
        for key in marked {
            if !claims.is_live(&key, "entries")? {
                continue;
            }
            if let Some(entry) = out.iter_mut().find(|e| e.key == key) {
                entry.claim = Some(LiveClaim::default());
                continue;
            }
            // A placeholder: nothing stored yet. Its time is the claim's.
            let time = fs::symlink_metadata(claims.path(&key))
                .and_then(|m| m.modified())
                .unwrap_or(now);
            out.push(EntryInfo {
                key,
                size: 0,
                time,
                age: age(now, time),
                completed: false,
                claim: Some(LiveClaim::default()),
                preview: None,
            });
        }
        Ok(out)
    }

    /// Entry files, and placeholders: keys claimed with nothing stored yet.
    fn len(&self, claims: &Claims) -> Result<u64, Error> {
        let keys = self.keys().map_err(|e| io_error("len", self.dir(), e))?;
        let marked = claims.marked_keys().map_err(|e| claims.error("len", e))?;
        let placeholders = marked.iter().filter(|k| !keys.contains(k)).count();
        Ok((keys.len() + placeholders) as u64)
    }
}
