//! The store operations, written once as `async fn`s over the collection: the blocking core
//! runs them on the backend's runtime, the async core awaits them on the caller's.
//!
//! A document is cachier's (`func`, `key`, `value` as binary, `time` as a UTC datetime,
//! `processing`, `completed`) plus `claim_owner` and `lease_until`. Times are written by the
//! server's clock (`$$NOW`), and claims are decided by it.

use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cachier_core::watch::{ChangeSink, Listener, Watch};
use cachier_core::{
    preview_of, CacheEntry, Claim, ClaimToken, EntryInfo, Error, Key, LiveClaim, Namespace,
};
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, DateTime, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use parking_lot::Mutex;

use crate::backend::NAME;
use crate::{listen, DriverError, INDEX_NAME};

/// How often the server-clock offset is measured again.
const CLOCK_REFRESH: Duration = Duration::from_secs(60);
/// Values up to this size cross the network in a listing, for the arguments' preview at
/// their start; larger ones are listed without one.
const PREVIEW_VALUE_MAX: i32 = 4096;

/// What every core of one backend shares: the collection, whether it is set up, the
/// measured offset of the server's clock, and the change channel.
pub(crate) struct Shared {
    pub(crate) collection: Collection<Document>,
    /// The change stream's thread and hub, started on first use (`listen.rs`).
    pub(crate) listener: Listener,
    /// How often a waiter looks while the change stream is up.
    wait_poll: Duration,
    ready: AtomicBool,
    /// Serializes the setup (an async lock: the async path awaits it on the caller's
    /// runtime); holds when and why the last attempt failed.
    setup: tokio::sync::Mutex<Option<(Instant, String)>>,
    /// Server clock minus local clock, in milliseconds.
    clock_offset_ms: AtomicI64,
    clock_sampled: Mutex<Option<Instant>>,
    clock_refreshing: AtomicBool,
}

impl Shared {
    /// The state of a collection nothing has been sent to yet, its change stream checked
    /// every `heartbeat`.
    pub(crate) fn new(
        collection: Collection<Document>,
        heartbeat: Duration,
        wait_poll: Duration,
    ) -> Shared {
        Shared {
            collection,
            listener: Listener::new(heartbeat),
            wait_poll,
            ready: AtomicBool::new(false),
            setup: tokio::sync::Mutex::new(None),
            clock_offset_ms: AtomicI64::new(0),
            clock_sampled: Mutex::new(None),
            clock_refreshing: AtomicBool::new(false),
        }
    }

    /// [`Backend::namespaces`](cachier_core::Backend::namespaces): the distinct `func`s,
    /// sorted.
    pub(crate) async fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        self.ensure_ready("namespaces").await?;
        let names = self
            .collection
            .distinct("func", doc! {})
            .await
            .map_err(|e| Error::backend(NAME, "namespaces", DriverError::from(e)))?;
        let mut out: Vec<Namespace> = names
            .iter()
            .filter_map(|name| match name {
                // The stored form is already `name@version`: it round-trips as a name.
                Bson::String(name) => Namespace::new(name, None).ok(),
                _ => None,
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Creates the unique index and measures the server clock, once (retried after a
    /// failure). Both paths await this: the blocking one on the backend's runtime.
    async fn ensure_ready(&self, operation: &'static str) -> Result<(), Error> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let waited_from = Instant::now();
        let mut setup = self.setup.lock().await;
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        // Callers that queued behind a failed attempt share its outcome instead of each
        // waiting out the server-selection timeout in turn.
        if let Some((failed_at, message)) = &*setup {
            if *failed_at >= waited_from {
                return Err(Error::backend(NAME, operation, message.clone()));
            }
        }
        let outcome = self.set_up(operation).await;
        match &outcome {
            Ok(()) => self.ready.store(true, Ordering::Release),
            Err(error) => {
                let message = match error {
                    Error::Backend { source, .. } => cachier_core::chain_message(&**source),
                    other => other.to_string(),
                };
                *setup = Some((Instant::now(), message));
            }
        }
        outcome
    }

    async fn set_up(&self, operation: &'static str) -> Result<(), Error> {
        let index = IndexModel::builder()
            .keys(doc! { "func": 1, "key": 1 })
            .options(
                IndexOptions::builder()
                    .name(INDEX_NAME.to_owned())
                    .unique(true)
                    .build(),
            )
            .build();
        self.collection.create_index(index).await.map_err(|e| {
            match error_code(&e) {
                // IndexOptionsConflict / IndexKeySpecsConflict: a non-unique index of that
                // name exists, as Python cachier creates.
                Some(85 | 86) => Error::backend(
                    NAME,
                    operation,
                    format!(
                        "collection {} has an index {INDEX_NAME:?} that is not unique (Python cachier makes one); \
                         drop it or use another collection: {}",
                        self.collection.namespace(),
                        DriverError::from(e)
                    ),
                ),
                _ => Error::backend(NAME, operation, DriverError::from(e)),
            }
        })?;
        self.sample_clock(operation).await
    }

    /// Measures the server clock's offset from `hello`'s `localTime` (the midpoint of the
    /// round trip is taken as the moment the server read its clock).
    async fn sample_clock(&self, operation: &'static str) -> Result<(), Error> {
        let database = self.collection.client().database("admin");
        let sent = SystemTime::now();
        let reply = database
            .run_command(doc! { "hello": 1 })
            .await
            .map_err(|e| Error::backend(NAME, operation, DriverError::from(e)))?;
        let received = SystemTime::now();
        let offset = match reply.get("localTime") {
            Some(Bson::DateTime(server)) => {
                let midpoint = (unix_ms(sent) + unix_ms(received)) / 2;
                server.timestamp_millis() - midpoint
            }
            _ => {
                tracing::debug!("cachier: the MongoDB server reports no localTime; using the local clock for ages");
                0
            }
        };
        self.clock_offset_ms.store(offset, Ordering::Relaxed);
        *self.clock_sampled.lock() = Some(Instant::now());
        Ok(())
    }

    /// The server's clock now, as estimated from the last sample; re-measured every minute
    /// by whichever caller notices first (the others go on with the previous sample).
    async fn server_now_ms(&self) -> i64 {
        let due = self
            .clock_sampled
            .lock()
            .is_none_or(|at| at.elapsed() >= CLOCK_REFRESH);
        if due && !self.clock_refreshing.swap(true, Ordering::AcqRel) {
            // Cleared however the sampling ends, including a caller's future being dropped.
            let _refreshing = ClearOnDrop(&self.clock_refreshing);
            if let Err(error) = self.sample_clock("clock").await {
                tracing::debug!(%error, "cachier: could not re-measure the MongoDB server clock");
                // Try again at the next interval, not on every call.
                *self.clock_sampled.lock() = Some(Instant::now());
            }
        }
        unix_ms(SystemTime::now()) + self.clock_offset_ms.load(Ordering::Relaxed)
    }
}

/// Resets a flag when dropped.
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One function's entries (the documents whose `func` is its namespace) and their operations
/// as futures: the single implementation behind both
/// [`MongoCore`](crate::blocking::MongoCore) (blocking, on the backend's runtime) and
/// [`MongoAsyncCore`](crate::nonblocking::MongoAsyncCore) (awaited on the caller's runtime).
/// Cheap to clone.
#[derive(Clone)]
pub(crate) struct Entries {
    shared: Arc<Shared>,
    func: Arc<str>,
}

/// The driver's error code of a failed command or write, if it has one.
pub(crate) fn error_code(error: &mongodb::error::Error) -> Option<i32> {
    match &*error.kind {
        ErrorKind::Command(e) => Some(e.code),
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        _ => None,
    }
}

const DUPLICATE_KEY: i32 = 11000;

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis())
        .unwrap_or(i64::MAX / 4)
        .max(1)
}

/// The server's clock in milliseconds, read inside an update pipeline. `$toLong` keeps it a
/// plain number, which every server compares correctly (SecantusDB mis-compares a raw
/// `$$NOW` with stored dates).
fn server_now_expression() -> Bson {
    Bson::Document(doc! { "$toLong": "$$NOW" })
}

/// Whether a document holds a claim whose lease is still ahead of the server's clock.
fn live_claim(doc: &Document, now_ms: i64) -> bool {
    doc.get_bool("processing").unwrap_or(false)
        && matches!(doc.get("lease_until"), Some(Bson::DateTime(until)) if until.timestamp_millis() > now_ms)
}

/// What a document says, however it was read (whole, or listed without its value).
struct State {
    time: SystemTime,
    age: Duration,
    completed: bool,
    claim: Option<LiveClaim>,
}

impl State {
    /// `has_value`: the document's `value` is binary.
    fn of(doc: &Document, has_value: bool, now_ms: i64) -> State {
        let time_ms = match doc.get("time") {
            Some(Bson::DateTime(time)) => Some(time.timestamp_millis()),
            _ => None,
        };
        let completed =
            has_value && time_ms.is_some() && doc.get_bool("completed").unwrap_or(false);
        let live = live_claim(doc, now_ms);
        let time_ms = time_ms.unwrap_or(now_ms);
        State {
            time: DateTime::from_millis(time_ms).to_system_time(),
            age: Duration::from_millis(u64::try_from(now_ms - time_ms).unwrap_or(0)),
            completed,
            claim: LiveClaim::if_live(live, doc.get_str("claim_owner").ok().map(str::to_owned)),
        }
    }
}

/// True inside a pipeline when `token` holds the claim.
fn mine(token: &ClaimToken) -> Document {
    doc! { "$eq": ["$claim_owner", { "$literal": token.as_str() }] }
}

/// Pipeline stages dropping the claim when the earlier stage set `_mine`, leaving another
/// holder's claim alone (a missing field stays missing).
fn drop_claim_if_mine() -> [Document; 2] {
    [
        doc! { "$set": {
            "processing": { "$cond": ["$_mine", false, { "$ifNull": ["$processing", false] }] },
            "claim_owner": { "$cond": ["$_mine", Bson::Null, "$claim_owner"] },
            "lease_until": { "$cond": ["$_mine", Bson::Null, "$lease_until"] },
        } },
        doc! { "$unset": "_mine" },
    ]
}

impl Entries {
    pub(crate) fn new(shared: Arc<Shared>, namespace: &Namespace) -> Entries {
        Entries {
            shared,
            func: Arc::from(namespace.as_str()),
        }
    }

    /// `Debug` of a core over these entries, without the URL.
    pub(crate) fn describe(&self, f: &mut std::fmt::Formatter<'_>, name: &str) -> std::fmt::Result {
        f.debug_struct(name)
            .field("namespace", &self.shared.collection.namespace().to_string())
            .field("func", &&*self.func)
            .finish()
    }

    fn filter(&self, key: &Key) -> Document {
        doc! { "func": &*self.func, "key": key.to_hex() }
    }

    /// Sets the backend up if needed, then awaits `future` (a driver call, which starts only
    /// when awaited), mapping its error.
    async fn run<T>(
        &self,
        operation: &'static str,
        future: impl Future<Output = mongodb::error::Result<T>>,
    ) -> Result<T, Error> {
        self.shared.ensure_ready(operation).await?;
        future
            .await
            .map_err(|e| Error::backend(NAME, operation, DriverError::from(e)))
    }

    /// Turns a stored document into an entry. A document that is not a usable value (a
    /// non-binary `value`, a missing `time`: garbage or a foreign writer's) reads as a
    /// placeholder that holds nothing, so the engine recomputes and overwrites it.
    fn entry(&self, key: &Key, doc: &Document, now_ms: i64) -> CacheEntry {
        let value: Option<Arc<[u8]>> = match doc.get("value") {
            Some(Bson::Binary(binary)) => Some(Arc::from(binary.bytes.as_slice())),
            None | Some(Bson::Null) => None,
            Some(other) => {
                tracing::warn!(
                    func = %self.func,
                    %key,
                    kind = ?other.element_type(),
                    "cachier: stored value is not binary; treating it as a miss and overwriting it"
                );
                None
            }
        };
        let state = State::of(doc, value.is_some(), now_ms);
        CacheEntry {
            value: if state.completed { value } else { None },
            time: state.time,
            age: state.age,
            claim: state.claim,
        }
    }

    /// Whether `key` has a live claim, by a light query (no value transferred).
    async fn claimed_now(&self, key: &Key) -> Result<bool, Error> {
        let c = &self.shared.collection;
        let doc = self
            .run(
                "wait",
                c.find_one(self.filter(key))
                    .projection(doc! { "_id": 0, "processing": 1, "lease_until": 1 })
                    .into_future(),
            )
            .await?;
        let now_ms = self.shared.server_now_ms().await;
        Ok(doc.is_some_and(|d| live_claim(&d, now_ms)))
    }

    /// [`Core::get`](cachier_core::Core::get): one `find_one` on the unique index.
    pub(crate) async fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        let c = &self.shared.collection;
        let doc = self
            .run("get", c.find_one(self.filter(key)).into_future())
            .await?;
        match doc {
            Some(doc) => Ok(Some(self.entry(
                key,
                &doc,
                self.shared.server_now_ms().await,
            ))),
            None => Ok(None),
        }
    }

    /// [`Core::put`](cachier_core::Core::put).
    pub(crate) async fn put(
        &self,
        key: &Key,
        value: Vec<u8>,
        claim: Option<&ClaimToken>,
    ) -> Result<(), Error> {
        let c = &self.shared.collection;
        let filter = self.filter(key);
        let binary = Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: value,
        });
        match claim {
            // Someone else's claim (or none) is left alone.
            None => {
                let update = doc! {
                    "$set": { "value": binary, "completed": true },
                    "$currentDate": { "time": true },
                    "$setOnInsert": { "processing": false },
                };
                self.run(
                    "put",
                    c.update_one(filter, update).upsert(true).into_future(),
                )
                .await?;
            }
            // The value lands and our claim goes in one atomic update.
            Some(token) => {
                let mut pipeline = vec![doc! { "$set": {
                    "value": { "$literal": binary },
                    "time": { "$toDate": server_now_expression() },
                    "completed": true,
                    "_mine": mine(token),
                } }];
                pipeline.extend(drop_claim_if_mine());
                self.run(
                    "put",
                    c.update_one(filter, pipeline).upsert(true).into_future(),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// [`Core::claim`](cachier_core::Core::claim).
    pub(crate) async fn claim(&self, key: &Key, lease: Duration) -> Result<Claim, Error> {
        let c = &self.shared.collection;
        let token = ClaimToken::new();
        let filter = self.filter(key);
        // The update takes the claim only if no live claim exists, judged by the server's
        // clock, and keeps any stored value; reading the owner back tells whether it was
        // ours. (A findAndModify would save the read, but the test server scans the whole
        // collection for it.) A racing upsert that loses on the unique index is a claim
        // someone else holds.
        let pipeline = vec![
            doc! { "$set": { "_now": server_now_expression() } },
            doc! { "$set": { "_free": { "$or": [
                { "$ne": ["$processing", true] },
                { "$not": [{ "$gt": [
                    // A lease that is not a date (a foreign writer's) counts as lapsed.
                    { "$convert": { "input": "$lease_until", "to": "long", "onError": Bson::Null, "onNull": Bson::Null } },
                    "$_now",
                ] }] },
            ] } } },
            doc! { "$set": {
                "processing": { "$cond": ["$_free", true, "$processing"] },
                "claim_owner": { "$cond": ["$_free", { "$literal": token.as_str() }, "$claim_owner"] },
                "lease_until": { "$cond": ["$_free", { "$toDate": { "$add": ["$_now", lease_ms(lease)] } }, "$lease_until"] },
                "time": { "$ifNull": ["$time", { "$toDate": "$_now" }] },
                "completed": { "$ifNull": ["$completed", false] },
            } },
            doc! { "$unset": ["_now", "_free"] },
        ];
        let owner = self
            .run("claim", async {
                match c.update_one(filter.clone(), pipeline).upsert(true).await {
                    Err(e) if error_code(&e) == Some(DUPLICATE_KEY) => return Ok(None),
                    other => other?,
                };
                c.find_one(filter)
                    .projection(doc! { "_id": 0, "claim_owner": 1 })
                    .await
            })
            .await?;
        match owner {
            Some(doc) if doc.get_str("claim_owner").ok() == Some(token.as_str()) => {
                Ok(Claim::Claimed(token))
            }
            _ => Ok(Claim::Busy),
        }
    }

    /// [`Core::renew`](cachier_core::Core::renew).
    pub(crate) async fn renew(
        &self,
        key: &Key,
        claim: &ClaimToken,
        lease: Duration,
    ) -> Result<bool, Error> {
        let c = &self.shared.collection;
        let filter = self.filter(key);
        let pipeline = vec![doc! { "$set": {
            "lease_until": { "$cond": [
                mine(claim),
                { "$toDate": { "$add": [server_now_expression(), lease_ms(lease)] } },
                "$lease_until",
            ] },
        } }];
        let owner = self
            .run("renew", async {
                c.update_one(filter.clone(), pipeline).await?;
                c.find_one(filter)
                    .projection(doc! { "_id": 0, "claim_owner": 1 })
                    .await
            })
            .await?;
        Ok(owner.is_some_and(|doc| doc.get_str("claim_owner").ok() == Some(claim.as_str())))
    }

    /// [`Core::release`](cachier_core::Core::release).
    pub(crate) async fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
        // The claim goes if it is still ours; the document stays (a placeholder reads as a
        // miss, as in cachier). The condition lives in the pipeline, not the filter: the test
        // server scans the collection for any filter beyond (func, key).
        let c = &self.shared.collection;
        let mut pipeline = vec![doc! { "$set": { "_mine": mine(claim) } }];
        pipeline.extend(drop_claim_if_mine());
        self.run(
            "release",
            c.update_one(self.filter(key), pipeline).into_future(),
        )
        .await?;
        Ok(())
    }

    /// [`Core::wait`](cachier_core::Core::wait): sleeps until the change stream tells of a
    /// change to the key (or of a deletion), then looks at a two-field projection; every
    /// `wait_poll` meanwhile, and with a 1–25 ms backoff while the stream is down or the
    /// server cannot stream. Sleeps on the timer of the runtime it runs on.
    pub(crate) async fn wait(&self, key: &Key, max: Duration) -> Result<bool, Error> {
        let hub = listen::hub(&self.shared.listener, &self.shared);
        let released = || async { Ok(!self.claimed_now(key).await?) };
        hub.wait_key_async(&self.func, key, max, self.shared.wait_poll, released)
            .await
    }

    /// [`Core::watch`](cachier_core::Core::watch): the function's messages from the change
    /// stream, which starts now if it is not running yet.
    pub(crate) fn watch(&self, sink: Arc<dyn ChangeSink>) -> Watch {
        let hub = listen::hub(&self.shared.listener, &self.shared);
        Watch::Pushed(hub.subscribe(&self.func, sink))
    }

    /// [`Core::remove`](cachier_core::Core::remove): deletes the document unless a live
    /// claim holds it (judged by the measured server clock, as stale cleanup judges it); else,
    /// or if the claim lapsed in between, unsets its value and keeps the claim.
    pub(crate) async fn remove(&self, key: &Key) -> Result<bool, Error> {
        self.shared.ensure_ready("remove").await?;
        let now_ms = self.shared.server_now_ms().await;
        let c = &self.shared.collection;
        let mut unclaimed = self.filter(key);
        unclaimed.insert("completed", true);
        unclaimed.insert(
            "$or",
            vec![
                doc! { "processing": { "$ne": true } },
                doc! { "lease_until": { "$not": { "$gt": DateTime::from_millis(now_ms) } } },
            ],
        );
        let deleted = self
            .run("remove", c.delete_one(unclaimed).into_future())
            .await?;
        if deleted.deleted_count > 0 {
            return Ok(true);
        }
        let mut completed = self.filter(key);
        completed.insert("completed", true);
        let update = doc! { "$unset": { "value": "" }, "$set": { "completed": false } };
        let dropped = self
            .run("remove", c.update_one(completed, update).into_future())
            .await?;
        Ok(dropped.modified_count > 0)
    }

    /// [`Core::clear_cache`](cachier_core::Core::clear_cache).
    pub(crate) async fn clear_cache(&self) -> Result<(), Error> {
        let c = &self.shared.collection;
        let filter = doc! { "func": &*self.func };
        self.run("clear_cache", c.delete_many(filter).into_future())
            .await?;
        Ok(())
    }

    /// [`Core::clear_being_calculated`](cachier_core::Core::clear_being_calculated).
    pub(crate) async fn clear_being_calculated(&self) -> Result<(), Error> {
        let c = &self.shared.collection;
        let filter = doc! { "func": &*self.func, "processing": true };
        let update = doc! { "$set": { "processing": false, "claim_owner": Bson::Null, "lease_until": Bson::Null } };
        self.run(
            "clear_being_calculated",
            c.update_many(filter, update).into_future(),
        )
        .await?;
        Ok(())
    }

    /// [`Core::delete_stale_entries`](cachier_core::Core::delete_stale_entries).
    pub(crate) async fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        self.shared.ensure_ready("delete_stale_entries").await?;
        let now_ms = self.shared.server_now_ms().await;
        let cutoff =
            now_ms.saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
        // Filters cannot read `$$NOW` on every server, so the cut-off comes from the measured
        // server clock. An entry being computed stays: deleting it would drop the claim.
        let filter = doc! {
            "func": &*self.func,
            "time": { "$lt": DateTime::from_millis(cutoff) },
            "$or": [
                { "processing": { "$ne": true } },
                { "lease_until": { "$not": { "$gt": DateTime::from_millis(now_ms) } } },
            ],
        };
        let c = &self.shared.collection;
        let result = self
            .run("delete_stale_entries", c.delete_many(filter).into_future())
            .await?;
        Ok(result.deleted_count)
    }

    /// [`Core::entries`](cachier_core::Core::entries).
    pub(crate) async fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
        let c = &self.shared.collection;
        let filter = doc! { "func": &*self.func };
        // Sizes are computed by the server: values never cross the network for a listing,
        // except small ones, for the arguments' preview at their start (the server cannot cut
        // binary data, so a value over `PREVIEW_VALUE_MAX` bytes is listed without one).
        let size = doc! { "$cond": [
            { "$eq": [{ "$type": "$value" }, "binData"] },
            { "$binarySize": "$value" },
            -1,
        ] };
        let projection = doc! {
            "_id": 0, "key": 1, "time": 1, "completed": 1, "processing": 1, "claim_owner": 1,
            "lease_until": 1,
            "size": size.clone(),
            "head": { "$cond": [
                { "$and": [
                    { "$gte": [size.clone(), 0] },
                    { "$lte": [size, PREVIEW_VALUE_MAX] },
                ] },
                "$value",
                Bson::Null,
            ] },
        };
        let docs = self
            .run("entries", async {
                let mut cursor = c.find(filter).projection(projection).await?;
                let mut docs = Vec::new();
                while cursor.advance().await? {
                    docs.push(cursor.deserialize_current()?);
                }
                Ok(docs)
            })
            .await?;
        let now_ms = self.shared.server_now_ms().await;
        let mut out: Vec<EntryInfo> = docs
            .iter()
            .filter_map(|doc| {
                let key = Key::from_hex(doc.get_str("key").ok()?)?;
                let size = match doc.get("size") {
                    Some(Bson::Int32(n)) => i64::from(*n),
                    Some(Bson::Int64(n)) => *n,
                    _ => -1,
                };
                let state = State::of(doc, size >= 0, now_ms);
                Some(EntryInfo {
                    key,
                    size: if state.completed {
                        size.unsigned_abs()
                    } else {
                        0
                    },
                    time: state.time,
                    age: state.age,
                    completed: state.completed,
                    claim: state.claim,
                    preview: match doc.get("head") {
                        Some(Bson::Binary(head)) if state.completed => preview_of(&head.bytes),
                        _ => None,
                    },
                })
            })
            .collect();
        out.sort_by_key(|e| e.key);
        Ok(out)
    }

    /// [`Core::len`](cachier_core::Core::len).
    pub(crate) async fn len(&self) -> Result<u64, Error> {
        let c = &self.shared.collection;
        let filter = doc! { "func": &*self.func };
        self.run("len", c.count_documents(filter).into_future())
            .await
    }
}

/// Milliseconds since the Unix epoch (negative before it), as BSON datetimes count them.
fn unix_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
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
    fn time_round_trips_through_bson() {
        let now = SystemTime::now();
        let ms = unix_ms(now);
        assert_eq!(unix_ms(DateTime::from_millis(ms).to_system_time()), ms);
    }
}
