#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod claims;
mod separate;
mod single;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cachier_core::{
    Backend, Backoff, CacheEntry, Claim, ClaimToken, Core, EntryInfo, Error, Key, Namespace,
};
use parking_lot::Mutex;

use claims::{create_dir, create_owned_dir, Claims, Liveness};
use separate::{ReadError, SeparateStore};
use single::{cutoff, SingleStore, Stored};

/// The backend's name in errors and logs.
const BACKEND: &str = "file";

/// The longest readable part of a store's file name (the hash suffix keeps it unique).
const MAX_READABLE: usize = 80;

/// The file backend: a cache directory shared by every thread and process of a machine. One
/// store per memoized function; see the crate docs for the layout. Clones share their stores.
#[derive(Clone)]
pub struct FileBackend {
    inner: Arc<BackendInner>,
}

struct BackendInner {
    dir: PathBuf,
    separate_files: bool,
    cores: Mutex<HashMap<Namespace, Arc<FileCore>>>,
}

impl fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBackend")
            .field("cache_dir", &self.inner.dir)
            .field("separate_files", &self.inner.separate_files)
            .finish()
    }
}

/// Configures a [`FileBackend`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct FileBackendBuilder {
    dir: Option<PathBuf>,
    separate_files: bool,
}

impl FileBackendBuilder {
    /// The cache directory (default: cachier's, see `cachier_settings::default_cache_dir`). A
    /// leading `~` is the home directory. Missing directories are created with mode 0700.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// One file per entry instead of one SQLite store per function (cachier's
    /// `separate_files`): entries can be listed and deleted by hand.
    pub fn separate_files(mut self, on: bool) -> Self {
        self.separate_files = on;
        self
    }

    /// The backend. Nothing touches the disk until a function's store is first used.
    pub fn build(self) -> FileBackend {
        let dir = self.dir.unwrap_or_else(cachier_settings::default_cache_dir);
        FileBackend {
            inner: Arc::new(BackendInner {
                dir: expand_home(dir),
                separate_files: self.separate_files,
                cores: Mutex::new(HashMap::new()),
            }),
        }
    }
}

fn expand_home(dir: PathBuf) -> PathBuf {
    match dir.strip_prefix("~") {
        Ok(rest) => match dirs::home_dir() {
            Some(home) => home.join(rest),
            None => dir,
        },
        Err(_) => dir,
    }
}

impl FileBackend {
    /// A backend keeping one SQLite store per function in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> FileBackend {
        FileBackend::builder().cache_dir(dir).build()
    }

    /// Starts configuring a backend.
    pub fn builder() -> FileBackendBuilder {
        FileBackendBuilder::default()
    }

    /// The cache directory (what `cache_dpath()` returns).
    pub fn cache_dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether entries are kept one file each.
    pub fn separate_files(&self) -> bool {
        self.inner.separate_files
    }

    /// Where `namespace`'s entries live: its SQLite file, or with `separate_files` the
    /// directory holding one file per entry (named by the key's 64 hex digits,
    /// [`Key::to_hex`]).
    pub fn store_path(&self, namespace: &Namespace) -> PathBuf {
        let stem = file_stem(namespace.as_str());
        if self.inner.separate_files {
            self.inner.dir.join(stem)
        } else {
            self.inner.dir.join(format!("{stem}.sqlite3"))
        }
    }
}

impl Backend for FileBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn core(&self, namespace: &Namespace) -> Result<Arc<dyn Core>, Error> {
        if self.inner.dir.as_os_str().is_empty() {
            return Err(Error::config(
                "cache_dir",
                "is empty; give the directory for the cache files",
            ));
        }
        let mut cores = self.inner.cores.lock();
        if let Some(core) = cores.get(namespace) {
            return Ok(core.clone());
        }
        let core = Arc::new(FileCore::new(self, namespace));
        // Open now so that a usable directory costs nothing later; a failure is retried by
        // every operation (which reports it), so that a directory fixed later starts working.
        if let Err(error) = core.store() {
            tracing::debug!(namespace = %namespace, %error, "cachier: file store not available yet");
        }
        cores.insert(namespace.clone(), core.clone());
        Ok(core)
    }

    /// The namespaces of this layout's stores in the cache directory that hold entries,
    /// read from the name each store records (not guessed from file names). Stores written
    /// before names were recorded are skipped (a debug log says which); so are stores that
    /// cannot be read (a warning says why) and stores renamed by hand (their namespace
    /// would open another file).
    fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        let dir = &self.inner.dir;
        let listing = match fs::read_dir(dir) {
            Ok(listing) => listing,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error("namespaces", dir, error)),
        };
        let mut names = BTreeSet::new();
        for entry in listing {
            let entry = entry.map_err(|e| io_error("namespaces", dir, e))?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let path = entry.path();
            let read = if self.inner.separate_files {
                if file_name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                listed_directory(&path, file_name)
            } else {
                let Some(stem) = file_name.strip_suffix(".sqlite3") else {
                    continue;
                };
                listed_database(&path, stem)
            };
            match read {
                Ok(Some(name)) => {
                    names.insert(name);
                }
                Ok(None) => {}
                Err(why) => {
                    tracing::warn!(path = %path.display(), why, "cachier: store skipped while listing namespaces");
                }
            }
        }
        Ok(names.into_iter().collect())
    }
}

/// Why a store was left out of a listing, when it is worth a debug line.
fn unlisted(path: &Path, why: &str) -> Result<Option<Namespace>, String> {
    tracing::debug!(path = %path.display(), why, "cachier: store not listed");
    Ok(None)
}

/// Checks a recorded namespace against the store's file name `stem`.
fn checked_namespace(path: &Path, stem: &str, recorded: &str) -> Result<Option<Namespace>, String> {
    if file_stem(recorded) != stem {
        return unlisted(
            path,
            "renamed or copied: its recorded namespace names another file",
        );
    }
    Namespace::new(recorded, None)
        .map(Some)
        .map_err(|e| format!("bad recorded namespace {recorded:?}: {e}"))
}

/// The namespace of the SQLite store at `path` (file name `<stem>.sqlite3`) if it has
/// entries.
fn listed_database(path: &Path, stem: &str) -> Result<Option<Namespace>, String> {
    match single::stored_namespace(path)? {
        Stored::Unlabelled => unlisted(path, "written before namespaces were recorded"),
        Stored::Namespace(_, false) => Ok(None),
        Stored::Namespace(recorded, true) => checked_namespace(path, stem, &recorded),
    }
}

/// The namespace of the entry directory `path` (named `stem`) if it has entries (entry files
/// or claims in flight).
fn listed_directory(path: &Path, stem: &str) -> Result<Option<Namespace>, String> {
    let Some(recorded) = separate::stored_namespace(path).map_err(|e| e.to_string())? else {
        return unlisted(
            path,
            "no .namespace file (written before namespaces were recorded)",
        );
    };
    let has_entries = separate::has_entry_files(path).map_err(|e| e.to_string())?
        || !Claims::new(path.join(".claims"))
            .marked_keys()
            .map_err(|e| e.to_string())?
            .is_empty();
    if !has_entries {
        return Ok(None);
    }
    checked_namespace(path, stem, &recorded)
}

/// A store's file name for `namespace`: its letters, digits, `_`, `-`, `.` and `@` (others
/// become `_`, `::` becomes `.`, leading dots go, at most 80 of them), then `-` and 16 hex
/// digits of the namespace's BLAKE3 hash. No namespace can name a path outside the cache
/// directory, a hidden file, or a reserved device name, and distinct namespaces never share a
/// file.
pub fn file_stem(namespace: &str) -> String {
    let readable: String = namespace
        .replace("::", ".")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let readable = readable.trim_start_matches(['.', '-']);
    let readable = &readable[..readable.len().min(MAX_READABLE)];
    let readable = if readable.is_empty() { "fn" } else { readable };
    let hash = blake3::hash(namespace.as_bytes());
    let mut stem = format!("{readable}-");
    cachier_core::push_hex(&mut stem, &hash.as_bytes()[..8]);
    stem
}

fn to_nanos(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

fn from_nanos(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// An I/O error that names the path it concerns.
fn io_error(operation: &'static str, path: &Path, error: io::Error) -> Error {
    Error::backend(
        BACKEND,
        operation,
        io::Error::new(error.kind(), format!("{}: {error}", path.display())),
    )
}

enum Store {
    Single(SingleStore),
    Separate(SeparateStore),
}

/// One function's cache in a [`FileBackend`].
pub struct FileCore {
    namespace: Namespace,
    cache_dir: PathBuf,
    store_path: PathBuf,
    separate_files: bool,
    claims: Claims,
    store: OnceLock<Store>,
    opening: Mutex<()>,
}

impl fmt::Debug for FileCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCore")
            .field("namespace", &self.namespace)
            .field("store", &self.store_path)
            .finish()
    }
}

impl FileCore {
    fn new(backend: &FileBackend, namespace: &Namespace) -> FileCore {
        let store_path = backend.store_path(namespace);
        let claims = if backend.inner.separate_files {
            Claims::in_owned_parent(store_path.join(".claims"))
        } else {
            Claims::new(
                backend
                    .inner
                    .dir
                    .join(format!("{}.claims", file_stem(namespace.as_str()))),
            )
        };
        FileCore {
            namespace: namespace.clone(),
            cache_dir: backend.inner.dir.clone(),
            store_path,
            separate_files: backend.inner.separate_files,
            claims,
            store: OnceLock::new(),
            opening: Mutex::new(()),
        }
    }

    /// The SQLite file, or the entry directory with `separate_files`.
    pub fn store_path(&self) -> &Path {
        &self.store_path
    }

    fn store(&self) -> Result<&Store, Error> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let _opening = self.opening.lock();
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        create_dir(&self.cache_dir).map_err(|e| io_error("open", &self.cache_dir, e))?;
        let store = if self.separate_files {
            create_owned_dir(&self.store_path)
                .map_err(|e| io_error("open", &self.store_path, e))?;
            Store::Separate(
                SeparateStore::open(self.store_path.clone(), self.namespace.as_str())
                    .map_err(|e| io_error("open", &self.store_path, e))?,
            )
        } else {
            Store::Single(SingleStore::open(
                self.store_path.clone(),
                self.namespace.as_str(),
            )?)
        };
        Ok(self.store.get_or_init(|| store))
    }

    fn claim_error(&self, operation: &'static str, error: io::Error) -> Error {
        io_error(operation, self.claims.dir(), error)
    }

    /// Makes the entry directory again, labelled, if it is gone (deleted by hand, or a link
    /// moved aside), so that claims do not make it unlabelled.
    fn separate_ready(&self, store: &SeparateStore) -> Result<(), Error> {
        let ready = store
            .guard()
            .and_then(|()| match fs::symlink_metadata(&self.store_path) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    create_owned_dir(&self.store_path).and_then(|()| store.label())
                }
                _ => Ok(()),
            });
        ready.map_err(|e| io_error("claim", &self.store_path, e))
    }

    fn separate_write(&self, store: &SeparateStore, key: &Key, value: &[u8]) -> Result<(), Error> {
        match store.write(key, value) {
            // The directory was deleted by hand: make it again.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                create_owned_dir(&self.store_path)
                    .map_err(|e| io_error("put", &self.store_path, e))?;
                store.label().and_then(|()| store.write(key, value))
            }
            other => other,
        }
        .map_err(|e| io_error("put", &store.path(key), e))
    }
}

impl Core for FileCore {
    fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        match self.store()? {
            Store::Single(store) => {
                let Some(row) = store.get(key)? else {
                    return Ok(None);
                };
                let Some(marker) = row.claim.clone() else {
                    return Ok(Some(row.entry(false, None)));
                };
                match self
                    .claims
                    .probe(key)
                    .map_err(|e| self.claim_error("get", e))?
                {
                    Liveness::Live => Ok(Some(row.entry(true, None))),
                    Liveness::Dead | Liveness::Absent => {
                        // The claimer died or its claim was cleared: drop the stale marker.
                        store.unmark(key, &marker, "get")?;
                        Ok(row.value.is_some().then(|| row.entry(false, None)))
                    }
                }
            }
            Store::Separate(store) => {
                let file = match store.read(key) {
                    Ok(file) => file,
                    Err(ReadError::Io(error)) => {
                        return Err(io_error("get", &store.path(key), error))
                    }
                    Err(ReadError::Damaged(why)) => {
                        tracing::warn!(
                            namespace = %self.namespace,
                            path = %store.path(key).display(),
                            why,
                            "cachier: damaged cache entry file ignored; it will be recomputed and rewritten"
                        );
                        None
                    }
                };
                let liveness = if self.claims.marker_exists(key) {
                    self.claims
                        .probe(key)
                        .map_err(|e| self.claim_error("get", e))?
                } else {
                    Liveness::Absent
                };
                // The lock file is empty (see claims.rs): the owner is not recorded.
                let (being_calculated, owner) = (liveness.is_live(), None);
                Ok(match file {
                    Some(file) => Some(CacheEntry {
                        value: Some(Arc::from(file.value)),
                        time: file.time,
                        age: SystemTime::now()
                            .duration_since(file.time)
                            .unwrap_or_default(),
                        completed: file.completed,
                        being_calculated,
                        claim_owner: owner,
                    }),
                    None if being_calculated => Some(CacheEntry {
                        value: None,
                        time: SystemTime::now(),
                        age: Duration::ZERO,
                        completed: false,
                        being_calculated,
                        claim_owner: owner,
                    }),
                    None => None,
                })
            }
        }
    }

    fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error> {
        let stored = match self.store()? {
            Store::Single(store) => store.put(key, value, claim.map(ClaimToken::as_str)),
            Store::Separate(store) => self.separate_write(store, key, value),
        };
        // Unlock even when the write failed, so that waiters take over instead of waiting.
        let released = match claim {
            Some(token) => self
                .claims
                .release(key, token)
                .map(drop)
                .map_err(|e| self.claim_error("put", e)),
            None => Ok(()),
        };
        stored.and(released)
    }

    fn claim(&self, key: &Key, _lease: Duration) -> Result<Claim, Error> {
        let store = self.store()?;
        if let Store::Separate(store) = store {
            self.separate_ready(store)?;
        }
        let Some(token) = self
            .claims
            .acquire(key)
            .map_err(|e| self.claim_error("claim", e))?
        else {
            return Ok(Claim::Busy);
        };
        if let Store::Single(store) = store {
            if let Err(error) = store.mark(key, token.as_str()) {
                let _ = self.claims.release(key, &token);
                return Err(error);
            }
        }
        Ok(Claim::Claimed(token))
    }

    /// Claims are OS file locks, dropped by the kernel when their process dies.
    fn needs_heartbeat(&self) -> bool {
        false
    }

    fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
        let unmarked = match self.store()? {
            Store::Single(store) => store.unmark(key, claim.as_str(), "release"),
            Store::Separate(_) => Ok(()),
        };
        let released = self
            .claims
            .release(key, claim)
            .map(drop)
            .map_err(|e| self.claim_error("release", e));
        unmarked.and(released)
    }

    /// Polls the key's lock file (1 ms, doubling to 20 ms): a waiter wakes within about 20 ms
    /// of the result landing, and at once when the computing process dies.
    fn wait(&self, key: &Key, max: Duration) -> Result<bool, Error> {
        let mut backoff = Backoff::until(max);
        loop {
            if !self
                .claims
                .probe(key)
                .map_err(|e| self.claim_error("wait", e))?
                .is_live()
            {
                return Ok(true);
            }
            match backoff.next_pause() {
                Some(pause) => std::thread::sleep(pause),
                None => return Ok(false),
            }
        }
    }

    fn clear_cache(&self) -> Result<(), Error> {
        match self.store()? {
            Store::Single(store) => store.clear(),
            Store::Separate(store) => store
                .clear()
                .map_err(|e| io_error("clear_cache", &self.store_path, e)),
        }
    }

    fn clear_being_calculated(&self) -> Result<(), Error> {
        let store = self.store()?;
        self.claims
            .clear_all()
            .map_err(|e| self.claim_error("clear_being_calculated", e))?;
        match store {
            Store::Single(store) => store.clear_marks(),
            Store::Separate(_) => Ok(()),
        }
    }

    fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        let cutoff = cutoff(older_than);
        let live = |key: &Key| -> Result<bool, Error> {
            Ok(self
                .claims
                .probe(key)
                .map_err(|e| self.claim_error("delete_stale_entries", e))?
                .is_live())
        };
        match self.store()? {
            Store::Single(store) => {
                let mut doomed = Vec::new();
                for (key, marker) in store.older_than(cutoff)? {
                    // An entry being recomputed stays: its claim lives in its row.
                    if marker.is_none() || !live(&key)? {
                        doomed.push(key);
                    }
                }
                store.delete(&doomed, cutoff)
            }
            Store::Separate(store) => {
                let old = store
                    .older_than(cutoff)
                    .map_err(|e| io_error("delete_stale_entries", &self.store_path, e))?;
                let mut deleted = 0;
                for (key, path) in old {
                    if self.claims.marker_exists(&key) && live(&key)? {
                        continue;
                    }
                    if store
                        .remove(&path)
                        .map_err(|e| io_error("delete_stale_entries", &path, e))?
                    {
                        deleted += 1;
                    }
                }
                Ok(deleted)
            }
        }
    }

    fn cache_dpath(&self) -> Option<PathBuf> {
        Some(self.cache_dir.clone())
    }

    /// Lists rows (single store: `length(value)`, never the values) or entry files (their
    /// headers and sizes). A claim counts as being calculated only while its lock is held, as
    /// in `get`; markers left by dead processes are cleaned up on the way, as `get` does.
    /// Damaged entry files are left out (`get` reads them as misses).
    fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
        let now = SystemTime::now();
        let age = |time: SystemTime| now.duration_since(time).unwrap_or_default();
        let live = |key: &Key| -> Result<bool, Error> {
            Ok(self
                .claims
                .probe(key)
                .map_err(|e| self.claim_error("entries", e))?
                .is_live())
        };
        let mut out = Vec::new();
        match self.store()? {
            Store::Single(store) => {
                for (key, row) in store.list()? {
                    let being_calculated = match &row.claim {
                        None => false,
                        Some(_) if live(&key)? => true,
                        Some(marker) => {
                            store.unmark(&key, marker, "entries")?;
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
                        age: age(row.time),
                        completed: row.completed,
                        being_calculated,
                        claim_owner: if being_calculated { row.claim } else { None },
                    });
                }
            }
            Store::Separate(store) => {
                let files = store
                    .list()
                    .map_err(|e| io_error("entries", &self.store_path, e))?;
                for (key, file) in files {
                    match file {
                        Ok(file) => out.push(EntryInfo {
                            key,
                            size: file.size,
                            time: file.time,
                            age: age(file.time),
                            completed: file.completed,
                            being_calculated: false,
                            claim_owner: None,
                        }),
                        Err(why) => tracing::debug!(
                            path = %store.path(&key).display(),
                            why,
                            "cachier: damaged entry file not listed"
                        ),
                    }
                }
                let marked = self
                    .claims
                    .marked_keys()
                    .map_err(|e| self.claim_error("entries", e))?;
                for key in marked {
                    if !live(&key)? {
                        continue;
                    }
                    if let Some(entry) = out.iter_mut().find(|e| e.key == key) {
                        entry.being_calculated = true;
                        continue;
                    }
                    // A placeholder: nothing stored yet. Its time is the claim's.
                    let time = fs::symlink_metadata(self.claims.path(&key))
                        .and_then(|m| m.modified())
                        .unwrap_or(now);
                    out.push(EntryInfo {
                        key,
                        size: 0,
                        time,
                        age: age(time),
                        completed: false,
                        being_calculated: true,
                        claim_owner: None,
                    });
                }
            }
        }
        Ok(out)
    }

    fn len(&self) -> Result<u64, Error> {
        match self.store()? {
            Store::Single(store) => store.len(),
            Store::Separate(store) => {
                let keys = store
                    .keys()
                    .map_err(|e| io_error("len", &self.store_path, e))?;
                let marked = self
                    .claims
                    .marked_keys()
                    .map_err(|e| self.claim_error("len", e))?;
                let placeholders = marked.iter().filter(|k| !keys.contains(k)).count();
                Ok((keys.len() + placeholders) as u64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_cannot_escape_or_collide() {
        let long = "x".repeat(5000);
        let names = [
            "../../etc/passwd",
            "a/b",
            "a\\b",
            "a_b",
            "con",
            "CON",
            "nul.txt",
            ".hidden",
            "..",
            ".",
            "-rf",
            long.as_str(),
            "ünïcödé::函数",
            "my_crate::pricing::quote@2",
        ];
        let mut seen = std::collections::HashSet::new();
        for name in names {
            let stem = file_stem(name);
            assert!(seen.insert(stem.clone()), "{name:?} collides as {stem:?}");
            assert!(!stem.contains('/') && !stem.contains('\\'), "{stem}");
            assert!(!stem.starts_with('.') && !stem.starts_with('-'), "{stem}");
            assert!(stem.len() <= MAX_READABLE + 17, "{} bytes", stem.len());
            assert!(stem.is_ascii(), "{stem}");
            assert!(
                stem.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@')),
                "{stem}"
            );
            let dir = Path::new("/cache");
            assert_eq!(
                dir.join(&stem).parent(),
                Some(dir),
                "{stem} stays in the directory"
            );
        }
        assert!(file_stem("my_crate::pricing::quote@2").starts_with("my_crate.pricing.quote@2-"));
        assert_eq!(file_stem("a::b"), file_stem("a::b"), "stable");
    }

    fn ns(name: &str) -> Namespace {
        Namespace::new(name, None).unwrap()
    }

    fn store_one(backend: &FileBackend, namespace: &Namespace) {
        let core = backend.core(namespace).unwrap();
        core.put(&Key::of(&1u8).unwrap(), b"value", None).unwrap();
    }

    /// Stores from before namespaces were recorded are skipped until a function opens them
    /// again (which labels them); stores renamed by hand and damaged stores are skipped; the
    /// rest are still listed.
    #[test]
    fn unlabelled_renamed_and_damaged_stores_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let backend = FileBackend::new(dir.path());
        let (old, good) = (ns("m::old@1"), ns("m::good"));
        // A store as the previous version wrote it: the entries table, no `meta`.
        let old_path = backend.store_path(&old);
        let conn = rusqlite::Connection::open(&old_path).unwrap();
        conn.execute_batch(
            "CREATE TABLE entries (key BLOB PRIMARY KEY NOT NULL, value BLOB,
             time_ns INTEGER NOT NULL, completed INTEGER NOT NULL, claim TEXT) WITHOUT ROWID;
             INSERT INTO entries VALUES (zeroblob(32), x'01', 1, 1, NULL);",
        )
        .unwrap();
        drop(conn);
        store_one(&backend, &good);
        fs::copy(
            backend.store_path(&good),
            dir.path().join("copied-0123456789abcdef.sqlite3"),
        )
        .unwrap();
        fs::write(
            dir.path().join("damaged-0123456789abcdef.sqlite3"),
            [0x5a; 4096],
        )
        .unwrap();
        assert_eq!(backend.namespaces().unwrap(), vec![good.clone()]);
        // Opened by this version: labelled, and listed from then on.
        let _ = FileBackend::new(dir.path()).core(&old).unwrap();
        assert_eq!(
            backend.namespaces().unwrap(),
            vec![good.clone(), old.clone()]
        );
        assert_eq!(backend.core(&old).unwrap().entries().unwrap().len(), 1);
    }

    #[test]
    fn entry_directories_record_their_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let backend = FileBackend::builder()
            .cache_dir(dir.path())
            .separate_files(true)
            .build();
        let (a, b) = (ns("m::a:b@2"), ns("m::old"));
        store_one(&backend, &a);
        store_one(&backend, &b);
        let label = backend.store_path(&a).join(".namespace");
        assert_eq!(fs::read_to_string(&label).unwrap(), "m::a:b@2\n");
        assert_eq!(backend.namespaces().unwrap(), vec![a.clone(), b.clone()]);
        // Unlabelled (as before this version), and renamed by hand: skipped.
        fs::remove_file(backend.store_path(&b).join(".namespace")).unwrap();
        fs::rename(
            backend.store_path(&a),
            dir.path().join("moved-0123456789abcdef"),
        )
        .unwrap();
        assert_eq!(backend.namespaces().unwrap(), vec![]);
        // Deleted by hand while in use: the next write makes and labels it again.
        let core = backend.core(&a).unwrap();
        core.put(&Key::of(&2u8).unwrap(), b"again", None).unwrap();
        assert_eq!(fs::read_to_string(&label).unwrap(), "m::a:b@2\n");
        assert_eq!(backend.namespaces().unwrap(), vec![a.clone()]);
        core.clear_cache().unwrap();
        assert_eq!(backend.namespaces().unwrap(), vec![], "empty: not listed");
    }

    /// A store nobody has open (its `-wal` and `-shm` are gone) is listed, and listing
    /// leaves no file behind.
    #[test]
    fn closed_stores_are_listed_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let name = ns("m::closed");
        {
            let backend = FileBackend::new(dir.path());
            store_one(&backend, &name);
        }
        let names = |dir: &Path| {
            let mut names: Vec<String> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let before = names(dir.path());
        assert!(before.iter().all(|n| !n.ends_with("-wal")), "{before:?}");
        assert_eq!(
            FileBackend::new(dir.path()).namespaces().unwrap(),
            vec![name]
        );
        assert_eq!(names(dir.path()), before);
    }

    #[test]
    fn missing_cache_directory_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let backend = FileBackend::new(dir.path().join("never-created"));
        assert_eq!(backend.namespaces().unwrap(), vec![]);
        let file = dir.path().join("a-file");
        fs::write(&file, b"x").unwrap();
        let err = FileBackend::new(&file).namespaces().unwrap_err();
        assert!(err.to_string().contains("a-file"), "{err}");
    }

    #[test]
    fn home_is_expanded() {
        if let Some(home) = dirs::home_dir() {
            assert_eq!(
                FileBackend::new("~/.exparrot").cache_dir(),
                home.join(".exparrot")
            );
        }
        assert_eq!(FileBackend::new("/a/b").cache_dir(), Path::new("/a/b"));
    }
}
