//! The store operations, written once as `async fn`s over the object store: the blocking core
//! runs them on the backend's runtime, the async core awaits them on the caller's.
//!
//! Each entry is one object, `{prefix}/{namespace}/{key hex}` (see [`crate::format`]). A claim
//! is a conditional write of that object: `If-None-Match: *` when it does not exist, else
//! `If-Match` on the ETag just read. Of many callers writing against the same state, S3 lets
//! exactly one write succeed and refuses the others with `412 Precondition Failed`; a refused
//! caller reads again and finds the winner's live claim. The value stays in the object during a
//! claim, so a stale value keeps being served while it is recomputed. Times and leases are
//! milliseconds by the server's clock ([`ServerClock`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cachier_core::codec::PREVIEW_PREFIX_LEN;
use cachier_core::{
    preview_of, Backoff, CacheEntry, Claim, ClaimAndGet, ClaimToken, EntryInfo, Error, Key,
    LiveClaim, Namespace,
};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use object_store::path::{Path, PathPart};
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use parking_lot::Mutex;

use crate::backend::NAME;
use crate::clock::{from_unix_ms, ServerClock};
use crate::format::{Header, Record, StoredClaim, Unreadable, MAX_HEADER};

/// Longest pause between two looks of a waiting caller (a look is a GET).
const WAIT_POLL_MAX: Duration = Duration::from_millis(40);
/// How many times an operation reads again after a refused conditional write before it
/// gives up: each refusal means another writer changed the object in between.
const MAX_ROUNDS: usize = 16;
/// How many objects a listing reads at once.
const LIST_CONCURRENCY: usize = 16;
/// Bound on the remembered writes and hints (entries of crashed or abandoned claims are
/// forgotten wholesale beyond it; a forgotten one costs a read, never a wrong answer).
const MEMORY_BOUND: usize = 4096;

/// What this process last wrote with a claim: the object's ETag and content, so that the
/// holder's `put`, `renew` and `release` write against it without reading it first.
#[derive(Clone)]
struct Written {
    token: ClaimToken,
    e_tag: String,
    record: Record,
}

/// What every core of one backend shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) clock: Arc<ServerClock>,
    pub(crate) bucket: String,
    pub(crate) prefix: Path,
    /// Claims this process holds, by object.
    written: Mutex<HashMap<Path, Written>>,
    /// Objects a `get` just found missing: a claim on them first tries to create the object,
    /// saving a read. Only a hint: a wrong one costs one refused write.
    absent: Mutex<HashSet<Path>>,
}

impl Shared {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        clock: Arc<ServerClock>,
        bucket: String,
        prefix: Path,
    ) -> Shared {
        Shared {
            store,
            clock,
            bucket,
            prefix,
            written: Mutex::new(HashMap::new()),
            absent: Mutex::new(HashSet::new()),
        }
    }

    /// [`Backend::namespaces`](cachier_core::Backend::namespaces): the namespaces' folders
    /// under the prefix, decoded, sorted.
    pub(crate) async fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(|e| driver("namespaces", e))?;
        let mut out: Vec<Namespace> = listed
            .common_prefixes
            .iter()
            .filter_map(|dir| {
                let part = dir.filename()?;
                let name = percent_encoding::percent_decode_str(part)
                    .decode_utf8()
                    .ok()?;
                // The stored form is already `name@version`: it round-trips as a name.
                Namespace::new(&name, None).ok()
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// A store error, with the client's whole message (the server's words included).
fn driver(operation: &'static str, error: object_store::Error) -> Error {
    Error::backend(NAME, operation, error)
}

/// The lease in milliseconds, at least one.
fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// An object as read: what it holds (or why it cannot be read) and its version.
struct Fetched {
    record: Result<Record, Unreadable>,
    version: UpdateVersion,
    last_modified_ms: i64,
}

/// The state a conditional write expects.
enum Expect {
    Absent,
    Version(UpdateVersion),
}

/// The entries of one memoized function: the objects under `{prefix}/{namespace}/`.
#[derive(Clone)]
pub(crate) struct Entries {
    shared: Arc<Shared>,
    namespace: Arc<str>,
    dir: Path,
}

impl Entries {
    pub(crate) fn new(shared: Arc<Shared>, namespace: &Namespace) -> Entries {
        // Percent-encoding makes the namespace one path segment: a `/` in it is `%2F`, and
        // `.` and `..` are escaped, so no name reaches outside its own folder.
        let dir = shared
            .prefix
            .clone()
            .join(PathPart::from(namespace.as_str()));
        Entries {
            shared,
            namespace: Arc::from(namespace.as_str()),
            dir,
        }
    }

    /// `Debug` of a core over these entries, without any credential.
    pub(crate) fn describe(&self, f: &mut std::fmt::Formatter<'_>, name: &str) -> std::fmt::Result {
        f.debug_struct(name)
            .field("bucket", &self.shared.bucket)
            .field("dir", &self.dir.as_ref())
            .finish()
    }

    fn path(&self, key: &Key) -> Path {
        self.dir.clone().join(key.to_hex())
    }

    fn now_ms(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    /// Reads an object whole, or `None` when there is none.
    async fn fetch(&self, operation: &'static str, path: &Path) -> Result<Option<Fetched>, Error> {
        let store = &self.shared.store;
        let result = match store.get_opts(path, GetOptions::default()).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(driver(operation, e)),
        };
        let version = UpdateVersion {
            e_tag: result.meta.e_tag.clone(),
            version: result.meta.version.clone(),
        };
        let last_modified_ms = result.meta.last_modified.timestamp_millis();
        let bytes = result.bytes().await.map_err(|e| driver(operation, e))?;
        Ok(Some(Fetched {
            record: Record::decode(bytes),
            version,
            last_modified_ms,
        }))
    }

    /// Writes `record` if the object is still as `expect` says: its ETag, or `None` when
    /// another writer changed it first.
    async fn write(
        &self,
        operation: &'static str,
        path: &Path,
        record: &Record,
        expect: Expect,
    ) -> Result<Option<String>, Error> {
        let mode = match expect {
            Expect::Absent => PutMode::Create,
            Expect::Version(version) => PutMode::Update(version),
        };
        let payload = PutPayload::from_bytes(record.encode());
        let opts = PutOptions::from(mode);
        match self.shared.store.put_opts(path, payload, opts).await {
            Ok(result) => match result.e_tag {
                Some(e_tag) => Ok(Some(e_tag)),
                None => Err(Error::backend(
                    NAME,
                    operation,
                    "the store returned no ETag: conditional writes need one",
                )),
            },
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotFound { .. },
            ) => Ok(None),
            Err(e) => Err(driver(operation, e)),
        }
    }

    /// The entry a read found, judged by the server's clock `now_ms`. An object that is not
    /// an entry of this format (garbage, a foreign writer's, a later format) reads as a
    /// placeholder that holds nothing, so the engine recomputes and overwrites it.
    fn entry(&self, key: &Key, fetched: &Fetched, now_ms: i64) -> CacheEntry {
        match &fetched.record {
            Ok(record) => entry_of(record, now_ms),
            Err(why) => {
                tracing::warn!(
                    namespace = %self.namespace,
                    %key,
                    "cachier: stored object is unreadable ({why}); treating it as a miss and overwriting it"
                );
                placeholder(fetched.last_modified_ms, now_ms)
            }
        }
    }

    fn remember(&self, path: Path, written: Written) {
        let mut map = self.shared.written.lock();
        if map.len() >= MEMORY_BOUND {
            map.clear();
        }
        map.insert(path, written);
    }

    /// What this process wrote with `token` on `path`, if that is its latest write there.
    fn recall(&self, path: &Path, token: &ClaimToken) -> Option<Written> {
        let map = self.shared.written.lock();
        map.get(path).filter(|w| &w.token == token).cloned()
    }

    fn forget(&self, path: &Path, token: &ClaimToken) {
        let mut map = self.shared.written.lock();
        if map.get(path).is_some_and(|w| &w.token == token) {
            map.remove(path);
        }
    }

    /// [`Core::get`](cachier_core::Core::get): one GET.
    pub(crate) async fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        let path = self.path(key);
        match self.fetch("get", &path).await? {
            Some(fetched) => Ok(Some(self.entry(key, &fetched, self.now_ms()))),
            None => {
                let mut absent = self.shared.absent.lock();
                if absent.len() >= MEMORY_BOUND {
                    absent.clear();
                }
                absent.insert(path);
                Ok(None)
            }
        }
    }

    /// [`Core::claim_and_get`](cachier_core::Core::claim_and_get): the claim, and the entry
    /// it was written over (the claim's write succeeded against exactly that state, so no
    /// second read is needed).
    pub(crate) async fn claim_and_get(
        &self,
        key: &Key,
        lease: Duration,
    ) -> Result<ClaimAndGet, Error> {
        let path = self.path(key);
        let token = ClaimToken::new();
        let mut known_absent = self.shared.absent.lock().remove(&path);
        for _ in 0..MAX_ROUNDS {
            let now = self.now_ms();
            let claim = StoredClaim {
                token: token.as_str().to_owned(),
                lease_until_ms: now.saturating_add(lease_ms(lease)),
            };
            let (record, expect) = if known_absent {
                known_absent = false;
                let record = Record {
                    value: None,
                    time_ms: now,
                    claim: Some(claim),
                };
                (record, Expect::Absent)
            } else {
                match self.fetch("claim", &path).await? {
                    None => {
                        let record = Record {
                            value: None,
                            time_ms: now,
                            claim: Some(claim),
                        };
                        (record, Expect::Absent)
                    }
                    Some(fetched) => {
                        let record = match fetched.record {
                            Ok(current) => {
                                if let Some(held) = live(&current.claim, now) {
                                    if held.token == token.as_str() {
                                        // Our own write, whose reply was lost and retried.
                                        let entry = entry_of(&current, now);
                                        return Ok(claimed(token, entry));
                                    }
                                    return Ok(ClaimAndGet {
                                        claim: Claim::Busy,
                                        entry: Ok(None),
                                    });
                                }
                                Record {
                                    claim: Some(claim),
                                    ..current
                                }
                            }
                            Err(_) => Record {
                                value: None,
                                time_ms: now,
                                claim: Some(claim),
                            },
                        };
                        (record, Expect::Version(fetched.version))
                    }
                }
            };
            if let Some(e_tag) = self.write("claim", &path, &record, expect).await? {
                let entry = entry_of(&record, now);
                self.remember(
                    path,
                    Written {
                        token: token.clone(),
                        e_tag,
                        record,
                    },
                );
                return Ok(claimed(token, entry));
            }
        }
        // The object kept changing under us: someone is busy with it.
        Ok(ClaimAndGet {
            claim: Claim::Busy,
            entry: Ok(None),
        })
    }

    /// [`Core::claim`](cachier_core::Core::claim).
    pub(crate) async fn claim(&self, key: &Key, lease: Duration) -> Result<Claim, Error> {
        Ok(self.claim_and_get(key, lease).await?.claim)
    }

    /// [`Core::put`](cachier_core::Core::put): with the holder's token, one write against the
    /// claim's own ETag; otherwise (or if the object changed since) a read, then a write that
    /// keeps another holder's live claim.
    pub(crate) async fn put(
        &self,
        key: &Key,
        value: Vec<u8>,
        claim: Option<&ClaimToken>,
    ) -> Result<(), Error> {
        let path = self.path(key);
        let value = Bytes::from(value);
        if let Some(token) = claim {
            if let Some(written) = self.recall(&path, token) {
                let record = Record {
                    value: Some(value.clone()),
                    time_ms: self.now_ms(),
                    claim: None,
                };
                let expect = Expect::Version(UpdateVersion {
                    e_tag: Some(written.e_tag),
                    version: None,
                });
                let done = self.write("put", &path, &record, expect).await?.is_some();
                self.forget(&path, token);
                if done {
                    return Ok(());
                }
            }
        }
        for _ in 0..MAX_ROUNDS {
            let now = self.now_ms();
            let mut record = Record {
                value: Some(value.clone()),
                time_ms: now,
                claim: None,
            };
            let expect = match self.fetch("put", &path).await? {
                None => Expect::Absent,
                Some(fetched) => {
                    if let Ok(current) = &fetched.record {
                        // Another holder's live claim stays; the caller's own goes.
                        record.claim = live(&current.claim, now)
                            .filter(|held| Some(held.token.as_str()) != claim.map(|t| t.as_str()))
                            .cloned();
                    }
                    Expect::Version(fetched.version)
                }
            };
            if self.write("put", &path, &record, expect).await?.is_some() {
                return Ok(());
            }
        }
        Err(contended("put"))
    }

    /// [`Core::renew`](cachier_core::Core::renew): rewrites the object with a later lease if
    /// the claim is still the token's.
    pub(crate) async fn renew(
        &self,
        key: &Key,
        token: &ClaimToken,
        lease: Duration,
    ) -> Result<bool, Error> {
        let path = self.path(key);
        let mut known = self.recall(&path, token).map(|w| {
            (
                w.record,
                UpdateVersion {
                    e_tag: Some(w.e_tag),
                    version: None,
                },
            )
        });
        for _ in 0..MAX_ROUNDS {
            let (current, version) = match known.take() {
                Some(known) => known,
                None => match self.fetch("renew", &path).await? {
                    Some(Fetched {
                        record: Ok(record),
                        version,
                        ..
                    }) => (record, version),
                    _ => return Ok(false),
                },
            };
            if current.claim.as_ref().map(|c| c.token.as_str()) != Some(token.as_str()) {
                self.forget(&path, token);
                return Ok(false);
            }
            let record = Record {
                claim: Some(StoredClaim {
                    token: token.as_str().to_owned(),
                    lease_until_ms: self.now_ms().saturating_add(lease_ms(lease)),
                }),
                ..current
            };
            if let Some(e_tag) = self
                .write("renew", &path, &record, Expect::Version(version))
                .await?
            {
                self.remember(
                    path,
                    Written {
                        token: token.clone(),
                        e_tag,
                        record,
                    },
                );
                return Ok(true);
            }
        }
        Err(contended("renew"))
    }

    /// [`Core::release`](cachier_core::Core::release): rewrites the object without the claim
    /// if it is still the token's; the value (or the empty placeholder) stays.
    pub(crate) async fn release(&self, key: &Key, token: &ClaimToken) -> Result<(), Error> {
        let path = self.path(key);
        let mut known = self.recall(&path, token).map(|w| {
            (
                w.record,
                UpdateVersion {
                    e_tag: Some(w.e_tag),
                    version: None,
                },
            )
        });
        self.forget(&path, token);
        for _ in 0..MAX_ROUNDS {
            let (current, version) = match known.take() {
                Some(known) => known,
                None => match self.fetch("release", &path).await? {
                    Some(Fetched {
                        record: Ok(record),
                        version,
                        ..
                    }) => (record, version),
                    _ => return Ok(()),
                },
            };
            if current.claim.as_ref().map(|c| c.token.as_str()) != Some(token.as_str()) {
                return Ok(());
            }
            let record = Record {
                claim: None,
                ..current
            };
            if self
                .write("release", &path, &record, Expect::Version(version))
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(contended("release"))
    }

    /// [`Core::remove`](cachier_core::Core::remove). Under a live claim the object is rewritten
    /// without its value (a conditional write, so the claim stays and its holder's `put` fills
    /// the entry again); otherwise it is deleted. A delete cannot be conditional here, so a
    /// claim written between the read and the delete goes with it: its holder still stores its
    /// value, and at worst one caller computes the key once more (never a wrong value).
    pub(crate) async fn remove(&self, key: &Key) -> Result<bool, Error> {
        let path = self.path(key);
        for _ in 0..MAX_ROUNDS {
            let Some(Fetched {
                record: Ok(current),
                version,
                ..
            }) = self.fetch("remove", &path).await?
            else {
                return Ok(false);
            };
            if current.value.is_none() {
                return Ok(false);
            }
            let now = self.now_ms();
            let Some(claim) = live(&current.claim, now).cloned() else {
                self.delete("remove", vec![path]).await?;
                return Ok(true);
            };
            let record = Record {
                value: None,
                claim: Some(claim),
                ..current
            };
            if self
                .write("remove", &path, &record, Expect::Version(version))
                .await?
                .is_some()
            {
                return Ok(true);
            }
        }
        Err(contended("remove"))
    }

    /// [`Core::wait`](cachier_core::Core::wait): polls with a backoff, sleeping on the timer
    /// of the runtime it runs on.
    pub(crate) async fn wait(&self, key: &Key, max: Duration) -> Result<bool, Error> {
        let path = self.path(key);
        let mut backoff = Backoff::until(max).capped(WAIT_POLL_MAX);
        loop {
            let claimed = match self.fetch("wait", &path).await? {
                Some(Fetched {
                    record: Ok(record), ..
                }) => live(&record.claim, self.now_ms()).is_some(),
                _ => false,
            };
            if !claimed {
                return Ok(true);
            }
            match backoff.next_pause() {
                Some(pause) => tokio::time::sleep(pause).await,
                None => return Ok(false),
            }
        }
    }

    /// Every object of this function (the listing is paginated by the client).
    async fn list(&self, operation: &'static str) -> Result<Vec<ObjectMeta>, Error> {
        self.shared
            .store
            .list(Some(&self.dir))
            .try_collect()
            .await
            .map_err(|e| driver(operation, e))
    }

    /// The header of a listed object, by a ranged GET of its first bytes (never the value,
    /// but its first `value_head` bytes after the header, returned beside it); `None` when
    /// it went away meanwhile.
    async fn header(
        &self,
        operation: &'static str,
        meta: &ObjectMeta,
        value_head: usize,
    ) -> Result<Option<Listed>, Error> {
        if meta.size == 0 {
            return Ok(Some((Err(Unreadable::Garbage), Bytes::new())));
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(
                0..meta.size.min((MAX_HEADER + value_head) as u64),
            )),
            ..GetOptions::default()
        };
        let result = match self.shared.store.get_opts(&meta.location, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(driver(operation, e)),
        };
        let bytes = result.bytes().await.map_err(|e| driver(operation, e))?;
        let header = Header::decode(&bytes[..bytes.len().min(MAX_HEADER)]);
        let value_head = match &header {
            Ok(h) => bytes.slice(h.len.min(bytes.len())..),
            Err(_) => Bytes::new(),
        };
        Ok(Some((header, value_head)))
    }

    /// The headers of every object of this function, read a few at a time, each with the
    /// first `value_head` bytes of its value.
    async fn headers(
        &self,
        operation: &'static str,
        value_head: usize,
    ) -> Result<Vec<(ObjectMeta, Listed)>, Error> {
        let listed = self.list(operation).await?;
        let read: Vec<_> = stream::iter(listed)
            .map(|meta| async move {
                let header = self.header(operation, &meta, value_head).await?;
                Ok::<_, Error>(header.map(|h| (meta, h)))
            })
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(read.into_iter().flatten().collect())
    }

    /// Deletes objects in batches (one request per thousand on S3); returns how many.
    async fn delete(&self, operation: &'static str, paths: Vec<Path>) -> Result<u64, Error> {
        let count = paths.len() as u64;
        let paths = stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut deleted = self.shared.store.delete_stream(paths);
        while let Some(result) = deleted.next().await {
            match result {
                // Gone already: deleted all the same.
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(driver(operation, e)),
            }
        }
        Ok(count)
    }

    /// [`Core::clear_cache`](cachier_core::Core::clear_cache).
    pub(crate) async fn clear_cache(&self) -> Result<(), Error> {
        let paths = self
            .list("clear_cache")
            .await?
            .into_iter()
            .map(|m| m.location)
            .collect();
        self.delete("clear_cache", paths).await?;
        Ok(())
    }

    /// [`Core::clear_being_calculated`](cachier_core::Core::clear_being_calculated): every
    /// object that records a claim is rewritten without it.
    pub(crate) async fn clear_being_calculated(&self) -> Result<(), Error> {
        let claimed: Vec<Path> = self
            .headers("clear_being_calculated", 0)
            .await?
            .into_iter()
            .filter(|(_, (h, _))| h.as_ref().is_ok_and(|h| h.claim.is_some()))
            .map(|(meta, _)| meta.location)
            .collect();
        stream::iter(claimed)
            .map(|path| async move { self.drop_claim(&path).await })
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Rewrites one object without its claim, whoever holds it.
    async fn drop_claim(&self, path: &Path) -> Result<(), Error> {
        for _ in 0..MAX_ROUNDS {
            let (record, version) = match self.fetch("clear_being_calculated", path).await? {
                Some(Fetched {
                    record: Ok(record),
                    version,
                    ..
                }) if record.claim.is_some() => (record, version),
                _ => return Ok(()),
            };
            let record = Record {
                claim: None,
                ..record
            };
            if self
                .write(
                    "clear_being_calculated",
                    path,
                    &record,
                    Expect::Version(version),
                )
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(contended("clear_being_calculated"))
    }

    /// [`Core::delete_stale_entries`](cachier_core::Core::delete_stale_entries): entries
    /// stored longer than `older_than` ago by the server's clock, except under a live claim.
    pub(crate) async fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        let headers = self.headers("delete_stale_entries", 0).await?;
        let now = self.now_ms();
        let cutoff = now.saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
        let stale: Vec<Path> = headers
            .into_iter()
            .filter(|(meta, (header, _))| match header {
                Ok(h) => h.time_ms < cutoff && live(&h.claim, now).is_none(),
                // Unreadable objects go by their last write.
                Err(_) => meta.last_modified.timestamp_millis() < cutoff,
            })
            .map(|(meta, _)| meta.location)
            .collect();
        self.delete("delete_stale_entries", stale).await
    }

    /// [`Core::entries`](cachier_core::Core::entries): the listing, and each object's header
    /// and its value's first bytes (the arguments' preview) by a ranged read (values never
    /// cross the network).
    pub(crate) async fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
        let headers = self.headers("entries", PREVIEW_PREFIX_LEN).await?;
        let now = self.now_ms();
        let mut out: Vec<EntryInfo> = headers
            .into_iter()
            .filter_map(|(meta, (header, value_head))| {
                let key = Key::from_hex(meta.location.filename()?)?;
                Some(match header {
                    Ok(h) => {
                        let age = Duration::from_millis(
                            now.saturating_sub(h.time_ms).max(0).unsigned_abs(),
                        );
                        EntryInfo {
                            key,
                            size: if h.completed {
                                meta.size.saturating_sub(h.len as u64)
                            } else {
                                0
                            },
                            time: from_unix_ms(h.time_ms),
                            age,
                            completed: h.completed,
                            claim: live(&h.claim, now).map(owner),
                            preview: h.completed.then(|| preview_of(&value_head)).flatten(),
                        }
                    }
                    Err(_) => EntryInfo::of(
                        key,
                        &placeholder(meta.last_modified.timestamp_millis(), now),
                    ),
                })
            })
            .collect();
        out.sort_by_key(|e| e.key);
        Ok(out)
    }

    /// [`Core::len`](cachier_core::Core::len): the number of objects (placeholders included).
    pub(crate) async fn len(&self) -> Result<u64, Error> {
        Ok(self.list("len").await?.len() as u64)
    }
}

/// A listed object's header, and the first bytes of its value read with it.
type Listed = (Result<Header, Unreadable>, Bytes);

/// The claim recorded in an object if its lease is ahead of the server's clock `now`.
fn live(claim: &Option<StoredClaim>, now: i64) -> Option<&StoredClaim> {
    claim.as_ref().filter(|c| c.lease_until_ms > now)
}

fn owner(claim: &StoredClaim) -> LiveClaim {
    LiveClaim {
        owner: Some(claim.token.clone()),
    }
}

/// The entry `record` holds, read at the server's clock `now`: built here only.
fn entry_of(record: &Record, now: i64) -> CacheEntry {
    CacheEntry {
        value: record.value.as_deref().map(Arc::from),
        time: from_unix_ms(record.time_ms),
        age: Duration::from_millis(now.saturating_sub(record.time_ms).max(0).unsigned_abs()),
        claim: live(&record.claim, now).map(owner),
    }
}

/// An entry that holds nothing, last written at `time`.
fn placeholder(time: i64, now: i64) -> CacheEntry {
    entry_of(
        &Record {
            value: None,
            time_ms: time,
            claim: None,
        },
        now,
    )
}

fn claimed(token: ClaimToken, entry: CacheEntry) -> ClaimAndGet {
    ClaimAndGet {
        claim: Claim::Claimed(token),
        entry: Ok(Some(entry)),
    }
}

/// The error of an operation whose conditional writes kept being refused.
fn contended(operation: &'static str) -> Error {
    Error::backend(
        NAME,
        operation,
        format!(
            "the object changed under {MAX_ROUNDS} conditional writes in a row (other writers keep updating it)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_is_at_least_a_millisecond() {
        assert_eq!(lease_ms(Duration::ZERO), 1);
        assert_eq!(lease_ms(Duration::from_secs(2)), 2000);
        assert!(lease_ms(Duration::MAX) > 0);
    }

    #[test]
    fn entries_show_values_only_when_completed_and_claims_only_while_live() {
        let record = Record {
            value: Some(Bytes::from_static(b"v")),
            time_ms: 1_000,
            claim: Some(StoredClaim {
                token: "1-ab".to_owned(),
                lease_until_ms: 2_000,
            }),
        };
        let entry = entry_of(&record, 1_500);
        assert_eq!(entry.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(entry.age, Duration::from_millis(500));
        assert_eq!(entry.claim_owner(), Some("1-ab"));
        assert!(!entry_of(&record, 2_000).being_calculated());
        let empty = placeholder(1_000, 900);
        assert!(!empty.is_completed() && !empty.being_calculated());
        assert_eq!(empty.age, Duration::ZERO);
    }
}
