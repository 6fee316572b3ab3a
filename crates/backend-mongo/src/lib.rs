#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod core;
mod error;
#[cfg(feature = "async")]
mod nonblocking;
mod runtime;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cachier_core::{redact_message, redact_url, Backend, Core, Error, Namespace};
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, IndexModel};
use parking_lot::Mutex;

use crate::core::Entries;
pub use crate::core::MongoCore;
pub use crate::error::DriverError;
#[cfg(feature = "async")]
use crate::nonblocking::MongoAsyncCore;
/// The driver this backend is built on, for callers who pass a client or query the
/// collection themselves (same version, so its types match).
pub use mongodb;

/// The backend's name in logs and errors.
const NAME: &str = "mongo";

/// Database used when neither the builder nor the URL names one.
pub const DEFAULT_DATABASE: &str = "cachier";
/// Collection used unless the builder names another.
pub const DEFAULT_COLLECTION: &str = "cachier";
/// Name of the unique index on (`func`, `key`): cachier's index name, made unique.
pub const INDEX_NAME: &str = "func_1_key_1";
/// How long an operation waits for a usable server unless configured otherwise (the driver's
/// own default, 30 s, would stall every cached call that long while the server is down).
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);
/// How long opening a connection may take unless configured otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the server-clock offset is measured again.
const CLOCK_REFRESH: Duration = Duration::from_secs(60);

/// A MongoDB store: one collection holding the entries of every memoized function, told apart
/// by their `func` field. Cheap to clone; clones share the client and its connection pool.
#[derive(Clone)]
pub struct MongoBackend {
    shared: Arc<Shared>,
}

/// What every core of one backend shares: the collection, whether it is set up, and the
/// measured offset of the server's clock.
pub(crate) struct Shared {
    pub(crate) collection: Collection<Document>,
    ready: AtomicBool,
    /// Serializes the setup (an async lock: the async path awaits it on the caller's
    /// runtime); holds when and why the last attempt failed.
    setup: tokio::sync::Mutex<Option<(Instant, String)>>,
    /// Server clock minus local clock, in milliseconds.
    clock_offset_ms: AtomicI64,
    clock_sampled: Mutex<Option<Instant>>,
    clock_refreshing: AtomicBool,
}

impl fmt::Debug for MongoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The namespace only: the URL (and any credentials in it) never reaches a log.
        f.debug_struct("MongoBackend")
            .field("namespace", &self.shared.collection.namespace().to_string())
            .finish()
    }
}

impl MongoBackend {
    /// Connects to `url` (`mongodb://` or `mongodb+srv://`) with the defaults: the URL's
    /// database or [`DEFAULT_DATABASE`], collection [`DEFAULT_COLLECTION`]. The connection is
    /// made lazily, so an unreachable server is reported by the first operation, not here.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL the driver cannot parse.
    pub fn from_url(url: &str) -> Result<MongoBackend, Error> {
        MongoBackend::builder(url).build()
    }

    /// A builder for a backend connecting to `url`.
    pub fn builder(url: impl Into<String>) -> MongoBackendBuilder {
        MongoBackendBuilder::new(Source::Url(url.into()))
    }

    /// A builder over a client the caller already has (its pool is shared).
    ///
    /// The client's background tasks run on the runtime it was created in: that runtime must
    /// keep running (a multi-thread runtime, or [`MongoBackend::builder`] instead), because a
    /// synchronous cache call blocks its thread while it waits for the server.
    pub fn from_client(client: Client) -> MongoBackendBuilder {
        MongoBackendBuilder::new(Source::Client(client))
    }

    /// A backend over a collection the caller already has (see [`MongoBackend::from_client`]
    /// about its runtime).
    pub fn from_collection(collection: Collection<Document>) -> MongoBackend {
        MongoBackend {
            shared: Arc::new(Shared {
                collection,
                ready: AtomicBool::new(false),
                setup: tokio::sync::Mutex::new(None),
                clock_offset_ms: AtomicI64::new(0),
                clock_sampled: Mutex::new(None),
                clock_refreshing: AtomicBool::new(false),
            }),
        }
    }

    /// The collection holding the entries (for inspection and maintenance).
    pub fn collection(&self) -> &Collection<Document> {
        &self.shared.collection
    }

    /// Runs `future` (typically a raw driver call on [`MongoBackend::collection`]) to
    /// completion on the runtime this backend's calls use, from synchronous code. Safe to call
    /// from inside another tokio runtime (the calling thread blocks until it finishes).
    ///
    /// # Errors
    /// Only if the runtime cannot be started; the future's own result is returned as is.
    pub fn block_on<F>(&self, future: F) -> Result<F::Output, Error>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        runtime::block_on("block_on", future)
    }
}

impl Backend for MongoBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn core(&self, namespace: &Namespace) -> Result<Arc<dyn Core>, Error> {
        // Nothing is sent here: the index is made on first use, so building a memoized
        // function never fails or stalls because the server is down.
        Ok(Arc::new(MongoCore::new(Entries::new(
            self.shared.clone(),
            namespace,
        ))))
    }

    /// The driver's own async API, awaited on the caller's runtime (no blocking-pool hop);
    /// the same operations as the blocking core, which runs them on the backend's runtime.
    #[cfg(feature = "async")]
    fn async_core(
        &self,
        namespace: &Namespace,
        core: &Arc<dyn Core>,
    ) -> Result<Arc<dyn cachier_core::AsyncCore>, Error> {
        let _ = core;
        Ok(Arc::new(MongoAsyncCore::new(Entries::new(
            self.shared.clone(),
            namespace,
        ))))
    }

    fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        let shared = self.shared.clone();
        let names = runtime::block_on("namespaces", async move {
            shared.ensure_ready("namespaces").await?;
            shared
                .collection
                .distinct("func", doc! {})
                .await
                .map_err(|e| Error::backend(NAME, "namespaces", DriverError::from(e)))
        })??;
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
}

/// Where a builder's client comes from.
#[derive(Clone)]
enum Source {
    Url(String),
    Client(Client),
}

/// Configures a [`MongoBackend`].
#[derive(Clone)]
#[must_use]
pub struct MongoBackendBuilder {
    source: Source,
    database: Option<String>,
    collection: Option<String>,
    server_selection_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
}

impl fmt::Debug for MongoBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Url(url) => redact_url(url),
            Source::Client(_) => "<client>".to_owned(),
        };
        f.debug_struct("MongoBackendBuilder")
            .field("source", &source)
            .field("database", &self.database)
            .field("collection", &self.collection)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl MongoBackendBuilder {
    fn new(source: Source) -> Self {
        MongoBackendBuilder {
            source,
            database: None,
            collection: None,
            server_selection_timeout: None,
            connect_timeout: None,
        }
    }

    /// The database (default: the URL's, else [`DEFAULT_DATABASE`]).
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }

    /// The collection (default [`DEFAULT_COLLECTION`]).
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collection = Some(name.into());
        self
    }

    /// How long an operation waits for a usable server before failing (default: the URL's
    /// `serverSelectionTimeoutMS`, else [`DEFAULT_SERVER_SELECTION_TIMEOUT`]). While the
    /// server is down every cached call pays this once, then computes uncached. Applies to
    /// URL sources only: a caller's client keeps its own settings.
    pub fn server_selection_timeout(mut self, timeout: Duration) -> Self {
        self.server_selection_timeout = Some(timeout);
        self
    }

    /// How long opening a connection may take (default: the URL's `connectTimeoutMS`, else
    /// [`DEFAULT_CONNECT_TIMEOUT`]). URL sources only.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Creates the client (for a URL source; no connection is made yet).
    ///
    /// # Errors
    /// [`Error::Config`] for an unparsable URL, a zero timeout or an invalid database or
    /// collection name.
    pub fn build(self) -> Result<MongoBackend, Error> {
        for (param, value) in [
            ("server_selection_timeout", self.server_selection_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(Error::config(param, "must be longer than zero"));
            }
        }
        let collection = self
            .collection
            .unwrap_or_else(|| DEFAULT_COLLECTION.to_owned());
        check_name("collection", &collection)?;
        let (client, url_database) = match self.source {
            Source::Client(client) => {
                let database = client.default_database().map(|db| db.name().to_owned());
                (client, database)
            }
            Source::Url(url) => {
                let mut options = parse_url(&url)?;
                options.server_selection_timeout = self
                    .server_selection_timeout
                    .or(options.server_selection_timeout)
                    .or(Some(DEFAULT_SERVER_SELECTION_TIMEOUT));
                options.connect_timeout = self
                    .connect_timeout
                    .or(options.connect_timeout)
                    .or(Some(DEFAULT_CONNECT_TIMEOUT));
                if options.app_name.is_none() {
                    options.app_name = Some("cachier".to_owned());
                }
                let database = options.default_database.clone();
                // The client spawns its monitors on the current runtime: create it on ours.
                let client =
                    runtime::block_on("connect", async move { Client::with_options(options) })?
                        .map_err(|e| {
                            Error::config(
                                "url",
                                redact_message(&url, &DriverError::from(e).to_string()),
                            )
                        })?;
                (client, database)
            }
        };
        let database = self
            .database
            .or(url_database)
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        check_name("database", &database)?;
        Ok(MongoBackend::from_collection(
            client.database(&database).collection(&collection),
        ))
    }
}

fn check_name(param: &'static str, name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::config(param, "must not be empty"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| matches!(c, '\0' | '$') || (param == "database" && "/\\. \"".contains(*c)))
    {
        return Err(Error::config(
            param,
            format!("{name:?} contains {bad:?}, which MongoDB does not allow there"),
        ));
    }
    Ok(())
}

fn parse_url(url: &str) -> Result<ClientOptions, Error> {
    if !(url.starts_with("mongodb://") || url.starts_with("mongodb+srv://")) {
        return Err(Error::config(
            "url",
            format!(
                "{:?} is not a MongoDB URL: it must start with mongodb:// or mongodb+srv://",
                redact_url(url)
            ),
        ));
    }
    let owned = url.to_owned();
    runtime::block_on("connect", async move { ClientOptions::parse(owned).await })?.map_err(|e| {
        Error::config(
            "url",
            format!(
                "{}: {}",
                redact_url(url),
                redact_message(url, &DriverError::from(e).to_string())
            ),
        )
    })
}

impl Shared {
    /// Creates the unique index and measures the server clock, once (retried after a
    /// failure). Both paths await this: the blocking one on the backend's runtime.
    pub(crate) async fn ensure_ready(&self, operation: &'static str) -> Result<(), Error> {
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
            match core::error_code(&e) {
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
    pub(crate) async fn server_now_ms(&self) -> i64 {
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

pub(crate) fn unix_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact_url("mongodb://user:s3cret@host:27017/db?x=1"),
            "mongodb://user:***@host:27017/db?x=1"
        );
        assert_eq!(redact_url("mongodb://host/db"), "mongodb://host/db");
        assert_eq!(
            redact_message("mongodb://u:s3cret@h/", "bad s3cret here"),
            "bad *** here"
        );
    }

    #[test]
    fn bad_urls_are_config_errors() {
        let err = MongoBackend::from_url("redis://u:pw@localhost").unwrap_err();
        assert!(matches!(err, Error::Config { param: "url", .. }), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
        let err = MongoBackend::from_url("mongodb://u:pw@").unwrap_err();
        assert!(matches!(err, Error::Config { param: "url", .. }), "{err}");
        assert!(!err.to_string().contains(":pw"), "{err}");
    }

    #[test]
    fn bad_names_and_timeouts_are_config_errors() {
        let b = || MongoBackend::builder("mongodb://127.0.0.1:1/");
        assert!(matches!(
            b().database("a.b").build(),
            Err(Error::Config {
                param: "database",
                ..
            })
        ));
        assert!(matches!(
            b().collection("").build(),
            Err(Error::Config {
                param: "collection",
                ..
            })
        ));
        assert!(matches!(
            b().server_selection_timeout(Duration::ZERO).build(),
            Err(Error::Config {
                param: "server_selection_timeout",
                ..
            })
        ));
    }

    /// The test server's URL, or `None` with a loud SKIPPED line (a failure when
    /// `CACHIER_REQUIRE_SERVICES` or `CI` is set), as the conformance suite does.
    fn server_url(test: &str) -> Option<String> {
        cachier_testkit::service_url("CACHIER_TEST_MONGO_URL", test)
    }

    fn inside_a_runtime<T>(body: impl FnOnce() -> T) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move { body() })
    }

    /// A synchronous call made from async code (a thread inside a tokio runtime) must not
    /// panic with "cannot start a runtime from within a runtime".
    #[test]
    fn calls_work_inside_a_callers_runtime() {
        let backend = MongoBackend::builder("mongodb://127.0.0.1:1/?directConnection=true")
            .server_selection_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let core = backend
            .core(&Namespace::new("runtime::closed", None).unwrap())
            .unwrap();
        let key = cachier_core::Key::of(&1u8).unwrap();
        let (answer, failed) =
            inside_a_runtime(|| (backend.block_on(async { 7 }).unwrap(), core.get(&key)));
        assert_eq!(answer, 7);
        assert!(failed.unwrap_err().is_backend());

        let Some(url) = server_url("calls_work_inside_a_callers_runtime") else {
            return;
        };
        let backend = MongoBackend::builder(url)
            .collection("runtime_tests")
            .build()
            .unwrap();
        let core = backend
            .core(&Namespace::new(&format!("runtime::{}", std::process::id()), None).unwrap())
            .unwrap();
        inside_a_runtime(|| {
            core.put(&key, b"bytes", None).unwrap();
            let entry = core.get(&key).unwrap().expect("stored");
            assert_eq!(entry.completed_value().map(|v| &v[..]), Some(&b"bytes"[..]));
            core.clear_cache().unwrap();
            assert_eq!(core.len().unwrap(), 0);
        });
    }

    /// The async core's tests: a native core must answer while tokio's blocking pool is busy,
    /// on either kind of runtime, and fail fast on a dead server.
    #[cfg(feature = "async")]
    mod nonblocking {
        use std::process::{Child, Command, Stdio};
        use std::sync::mpsc;

        use cachier_core::{AsyncCore, Claim, Key, OffloadedCore};

        use super::*;

        /// A current-thread runtime whose only blocking thread is kept busy until the returned
        /// sender is dropped (or a minute passes): an offloaded core stalls on it.
        fn starved_runtime() -> (tokio::runtime::Runtime, mpsc::Sender<()>) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .max_blocking_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let (release, hold) = mpsc::channel::<()>();
            let (started, running) = mpsc::channel();
            runtime.spawn_blocking(move || {
                started.send(()).unwrap();
                let _ = hold.recv_timeout(Duration::from_secs(60));
            });
            running.recv().unwrap();
            (runtime, release)
        }

        fn cores(backend: &MongoBackend, case: &str) -> (Arc<dyn Core>, Arc<dyn AsyncCore>) {
            let namespace =
                Namespace::new(&format!("async::{case}::{}", std::process::id()), None).unwrap();
            let core = backend.core(&namespace).unwrap();
            let native = backend.async_core(&namespace, &core).unwrap();
            (core, native)
        }

        /// Every operation of the contract, awaited on the caller's runtime.
        async fn exercise(core: &dyn AsyncCore) {
            let key = Key::of(&7u8).unwrap();
            core.clear_cache().await.unwrap();
            assert!(core.get(&key).await.unwrap().is_none());
            let Claim::Claimed(token) = core.claim(&key, Duration::from_secs(10)).await.unwrap()
            else {
                panic!("a fresh key must be claimable");
            };
            assert!(matches!(
                core.claim(&key, Duration::from_secs(10)).await.unwrap(),
                Claim::Busy
            ));
            assert!(core.get(&key).await.unwrap().unwrap().being_calculated);
            assert!(!core.wait(&key, Duration::from_millis(30)).await.unwrap());
            core.put(&key, b"native", Some(&token)).await.unwrap();
            assert!(core.wait(&key, Duration::from_secs(1)).await.unwrap());
            let entry = core.get(&key).await.unwrap().expect("stored");
            assert_eq!(
                entry.completed_value().map(|v| &v[..]),
                Some(&b"native"[..])
            );
            assert!(!entry.being_calculated);
            let Claim::Claimed(token) = core.claim(&key, Duration::from_secs(10)).await.unwrap()
            else {
                panic!("a released key must be claimable");
            };
            core.release(&key, &token).await.unwrap();
            assert!(matches!(
                core.claim(&key, Duration::from_secs(10)).await.unwrap(),
                Claim::Claimed(_)
            ));
            core.clear_being_calculated().await.unwrap();
            assert!(!core.get(&key).await.unwrap().unwrap().being_calculated);
            assert_eq!(
                core.delete_stale_entries(Duration::from_secs(3600))
                    .await
                    .unwrap(),
                0
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(core.delete_stale_entries(Duration::ZERO).await.unwrap(), 1);
            core.clear_cache().await.unwrap();
            assert!(core.get(&key).await.unwrap().is_none());
        }

        #[test]
        fn native_core_never_uses_the_blocking_pool() {
            let Some(url) = server_url("native_core_never_uses_the_blocking_pool") else {
                return;
            };
            let backend = MongoBackend::builder(url)
                .collection("runtime_tests")
                .build()
                .unwrap();
            let (core, native) = cores(&backend, "starved");
            let (runtime, release) = starved_runtime();
            runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(20), exercise(&*native))
                    .await
                    .expect("the native core must not wait for the blocking pool");
                // The control: the default offloaded core stalls behind the busy thread, so
                // this test would catch a core that is not native.
                let offloaded = OffloadedCore(core.clone());
                let key = Key::of(&7u8).unwrap();
                assert!(
                    tokio::time::timeout(Duration::from_millis(500), offloaded.get(&key))
                        .await
                        .is_err(),
                    "the offloaded core should have stalled"
                );
            });
            drop(release);
            drop(runtime);
        }

        #[test]
        fn native_core_works_on_a_multi_thread_runtime() {
            let Some(url) = server_url("native_core_works_on_a_multi_thread_runtime") else {
                return;
            };
            let backend = MongoBackend::builder(url)
                .collection("runtime_tests")
                .build()
                .unwrap();
            let (_, native) = cores(&backend, "multi");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let native = native.clone();
                tokio::spawn(async move { exercise(&*native).await })
                    .await
                    .unwrap();
            });
        }

        #[test]
        fn dead_server_times_out() {
            let backend = MongoBackend::builder("mongodb://127.0.0.1:1/?directConnection=true")
                .server_selection_timeout(Duration::from_millis(200))
                .build()
                .unwrap();
            let (_, native) = cores(&backend, "dead");
            let (runtime, release) = starved_runtime();
            let key = Key::of(&1u8).unwrap();
            let started = Instant::now();
            let error = runtime
                .block_on(async {
                    tokio::time::timeout(Duration::from_secs(10), native.get(&key)).await
                })
                .expect("the server-selection timeout applies")
                .unwrap_err();
            assert!(error.is_backend(), "{error}");
            assert!(started.elapsed() < Duration::from_secs(5));
            drop(release);
        }

        /// A SecantusDB server of this test's own, on a free port.
        struct Server {
            binary: String,
            port: u16,
            child: Child,
        }

        impl Server {
            fn start(binary: &str, port: u16) -> Server {
                let child = Command::new(binary)
                    .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--storage-path", ":memory:", "--log-level", "WARNING"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start the test server");
                let deadline = Instant::now() + Duration::from_secs(20);
                while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                    assert!(Instant::now() < deadline, "the test server did not start");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Server {
                    binary: binary.to_owned(),
                    port,
                    child,
                }
            }

            fn restart(mut self) -> Server {
                self.stop();
                Server::start(&self.binary, self.port)
            }

            fn stop(&mut self) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }

        impl Drop for Server {
            fn drop(&mut self) {
                self.stop();
            }
        }

        /// Needs `CACHIER_TEST_SECANTUSD`, the path of `secantusd-py`: the test stops and
        /// restarts a server of its own (the shared one is left alone).
        #[test]
        fn native_core_reconnects_after_a_server_restart() {
            let Some(binary) = cachier_testkit::service_url(
                "CACHIER_TEST_SECANTUSD",
                "native_core_reconnects_after_a_server_restart",
            ) else {
                return;
            };
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let server = Server::start(&binary, port);
            let backend =
                MongoBackend::builder(format!("mongodb://127.0.0.1:{port}/?directConnection=true"))
                    .server_selection_timeout(Duration::from_millis(500))
                    .build()
                    .unwrap();
            let (_, native) = cores(&backend, "restart");
            let key = Key::of(&3u8).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                native.put(&key, b"before", None).await.unwrap();
                assert!(native.get(&key).await.unwrap().is_some());
            });
            let mut server = server;
            server.stop();
            let down = runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), native.get(&key)).await
            });
            assert!(down.expect("times out").is_err(), "the server is down");
            let _server = server.restart();
            // The driver reconnects by itself; the first operations may still see the old pool.
            let deadline = Instant::now() + Duration::from_secs(15);
            runtime.block_on(async {
                loop {
                    match native.put(&key, b"after", None).await {
                        Ok(()) => break,
                        Err(error) => {
                            assert!(Instant::now() < deadline, "no reconnection: {error}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                let entry = native.get(&key).await.unwrap().expect("stored again");
                assert_eq!(entry.completed_value().map(|v| &v[..]), Some(&b"after"[..]));
            });
        }
    }

    #[test]
    fn debug_never_shows_credentials() {
        let builder = MongoBackend::builder("mongodb://user:s3cret@127.0.0.1:1/db");
        assert!(!format!("{builder:?}").contains("s3cret"));
        let backend = builder.build().unwrap();
        let shown = format!("{backend:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("db.cachier"),
            "{shown}"
        );
    }
}
