#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
// Without a driver feature no backend can exist (every constructor returns a configuration
// error naming the feature), so the code after those constructors is unreachable.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(unreachable_code, unused_variables, dead_code)
)]

mod dialect;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(all(feature = "async", feature = "postgres"))]
mod postgres_async;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, UNIX_EPOCH};

use cachier_core::{
    Backend, CacheEntry, Claim, ClaimToken, Core, EntryInfo, Error, Key, Namespace,
};

pub use dialect::DEFAULT_TABLE;
use dialect::{Statements, Stmt, TableName};

/// How long a connection attempt to a server may take unless the URL or builder says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most connections a PostgreSQL pool opens unless the builder says otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Durations are clamped to this (100 years) before they reach SQL, so no interval overflows.
const MAX_MICROS: i64 = 100 * 366 * 24 * 3600 * 1_000_000;

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros())
        .unwrap_or(i64::MAX)
        .min(MAX_MICROS)
}

/// A statement parameter, converted by each driver to its own type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Bytes(&'a [u8]),
    Micros(i64),
}

/// One row of [`Stmt::Get`], as both drivers read it.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) stored_us: i64,
    pub(crate) age_us: i64,
    pub(crate) completed: bool,
    pub(crate) claim_owner: Option<String>,
    pub(crate) live: bool,
}

/// One row of [`Stmt::Entries`].
#[derive(Debug)]
pub(crate) struct Listed {
    pub(crate) key: String,
    pub(crate) size: i64,
    pub(crate) stored_us: i64,
    pub(crate) age_us: i64,
    pub(crate) completed: bool,
    pub(crate) claim_owner: Option<String>,
    pub(crate) live: bool,
}

/// What the shared [`SqlCore`] needs from a database driver: run the statements of the
/// dialect table. Connection handling, retries and schema set-up are the driver's.
pub(crate) trait Driver: Send + Sync + fmt::Debug {
    /// `"sqlite"` or `"postgres"`, for errors and logs.
    fn name(&self) -> &'static str;
    /// The statement table.
    fn statements(&self) -> &Statements;
    /// Runs [`Stmt::Get`]; a row whose columns cannot be read is reported as `None` (a miss
    /// that the next `put` overwrites) with a warning.
    fn query_row(&self, op: &'static str, params: &[Param<'_>]) -> Result<Option<Row>, Error>;
    /// Runs a statement returning one integer (a count).
    fn query_count(&self, op: &'static str, stmt: Stmt, params: &[Param<'_>])
        -> Result<u64, Error>;
    /// Runs a statement; returns the number of rows it changed.
    fn execute(&self, op: &'static str, stmt: Stmt, params: &[Param<'_>]) -> Result<u64, Error>;
    /// Runs [`Stmt::Entries`]; unreadable rows are skipped with a warning.
    fn query_entries(&self, op: &'static str, params: &[Param<'_>]) -> Result<Vec<Listed>, Error>;
    /// Runs a statement returning one text column.
    fn query_texts(
        &self,
        op: &'static str,
        stmt: Stmt,
        params: &[Param<'_>],
    ) -> Result<Vec<String>, Error>;
    /// The database file, for SQLite.
    fn path(&self) -> Option<&Path> {
        None
    }
    /// A native async store for `function_id`, from drivers with an async API (PostgreSQL);
    /// `None` runs the blocking driver on tokio's blocking pool.
    #[cfg(feature = "async")]
    fn native_async(
        self: Arc<Self>,
        function_id: &str,
    ) -> Option<Arc<dyn cachier_core::AsyncCore>> {
        let _ = function_id;
        None
    }
}

/// The statements a core operation runs, as futures, so that one [`Rows`] serves the blocking
/// driver (whose futures are ready when created: see [`finish`]) and the async one.
pub(crate) trait Exec: Sync {
    /// [`Driver::query_row`].
    fn query_row<'a>(
        &'a self,
        op: &'static str,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send + 'a;
    /// [`Driver::query_count`].
    fn query_count<'a>(
        &'a self,
        op: &'static str,
        stmt: Stmt,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a;
    /// [`Driver::execute`].
    fn execute<'a>(
        &'a self,
        op: &'static str,
        stmt: Stmt,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a;
}

/// The blocking drivers: each statement runs when its future is created.
impl Exec for dyn Driver {
    fn query_row<'a>(
        &'a self,
        op: &'static str,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send + 'a {
        std::future::ready(Driver::query_row(self, op, params))
    }
    fn query_count<'a>(
        &'a self,
        op: &'static str,
        stmt: Stmt,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a {
        std::future::ready(Driver::query_count(self, op, stmt, params))
    }
    fn execute<'a>(
        &'a self,
        op: &'static str,
        stmt: Stmt,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a {
        std::future::ready(Driver::execute(self, op, stmt, params))
    }
}

/// Completes a core operation on a blocking driver. Its statement futures are ready when
/// created, so the operation finishes within one poll: nothing ever waits here.
fn finish<T>(operation: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    match pin!(operation).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(Error::backend(
            "sql",
            "blocking call",
            "a blocking statement did not complete at once",
        )),
    }
}

/// The core operations on one function's rows, written once for the blocking [`SqlCore`]
/// and the async core: the statements, their parameters and the decoding of their results.
pub(crate) struct Rows<'a, E: ?Sized> {
    exec: &'a E,
    function_id: &'a str,
}

impl<E: Exec + ?Sized> Rows<'_, E> {
    fn fid(&self) -> Param<'_> {
        Param::Text(self.function_id)
    }

    async fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        let key = key.to_hex();
        let params = [self.fid(), Param::Text(&key)];
        let Some(row) = self.exec.query_row("get", &params).await? else {
            return Ok(None);
        };
        let time = UNIX_EPOCH + Duration::from_micros(row.stored_us.max(0).unsigned_abs());
        Ok(Some(CacheEntry {
            value: row.value.map(Arc::from),
            time,
            age: Duration::from_micros(row.age_us.max(0).unsigned_abs()),
            completed: row.completed,
            being_calculated: row.live,
            claim_owner: if row.live { row.claim_owner } else { None },
        }))
    }

    async fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error> {
        let key = key.to_hex();
        let token = Param::OptText(claim.map(ClaimToken::as_str));
        let params = [self.fid(), Param::Text(&key), Param::Bytes(value), token];
        self.exec.execute("put", Stmt::Put, &params).await?;
        Ok(())
    }

    async fn claim(&self, key: &Key, lease: Duration) -> Result<Claim, Error> {
        let key = key.to_hex();
        let token = ClaimToken::new();
        let params = [
            self.fid(),
            Param::Text(&key),
            Param::Text(token.as_str()),
            Param::Micros(micros(lease)),
        ];
        match self.exec.execute("claim", Stmt::Claim, &params).await? {
            0 => Ok(Claim::Busy),
            _ => Ok(Claim::Claimed(token)),
        }
    }

    async fn renew(&self, key: &Key, claim: &ClaimToken, lease: Duration) -> Result<bool, Error> {
        let key = key.to_hex();
        let params = [
            self.fid(),
            Param::Text(&key),
            Param::Text(claim.as_str()),
            Param::Micros(micros(lease)),
        ];
        Ok(self.exec.execute("renew", Stmt::Renew, &params).await? > 0)
    }

    async fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
        let key = key.to_hex();
        let params = [self.fid(), Param::Text(&key), Param::Text(claim.as_str())];
        if self
            .exec
            .execute("release", Stmt::ReleasePlaceholder, &params)
            .await?
            == 0
        {
            self.exec.execute("release", Stmt::Release, &params).await?;
        }
        Ok(())
    }

    async fn clear_cache(&self) -> Result<(), Error> {
        let params = [self.fid()];
        self.exec
            .execute("clear_cache", Stmt::ClearCache, &params)
            .await?;
        Ok(())
    }

    async fn clear_being_calculated(&self) -> Result<(), Error> {
        let params = [self.fid()];
        self.exec
            .execute("clear_being_calculated", Stmt::ClearClaims, &params)
            .await?;
        Ok(())
    }

    async fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        let params = [self.fid(), Param::Micros(micros(older_than))];
        self.exec
            .execute("delete_stale_entries", Stmt::DeleteStale, &params)
            .await
    }

    async fn len(&self) -> Result<u64, Error> {
        let params = [self.fid()];
        self.exec.query_count("len", Stmt::Len, &params).await
    }
}

/// The SQL store: SQLite or PostgreSQL, one table shared by every function (each function's
/// rows carry its namespace). Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct SqlBackend {
    driver: Arc<dyn Driver>,
}

impl fmt::Debug for SqlBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The driver's Debug never shows credentials.
        fmt::Debug::fmt(&self.driver, f)
    }
}

impl SqlBackend {
    /// A backend from a URL: `sqlite:///absolute/path.db`, `sqlite:relative/path.db`,
    /// `sqlite::memory:`, or `postgres://user@host:port/database` (`postgresql://` too).
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown scheme, a malformed URL or a driver not compiled in.
    /// The server is not contacted here: an unreachable server shows up on the first call.
    pub fn from_url(url: &str) -> Result<SqlBackend, Error> {
        SqlBackend::builder(url)?.build()
    }

    /// A builder for a backend from a URL (see [`SqlBackend::from_url`]), to set the table
    /// name, pool size or connect timeout.
    ///
    /// # Errors
    /// As [`SqlBackend::from_url`].
    pub fn builder(url: &str) -> Result<SqlBackendBuilder, Error> {
        Ok(SqlBackendBuilder::new(Target::parse(url)?))
    }

    /// An SQLite backend on the database file at `path` (created if missing), or an in-memory
    /// database for `":memory:"`.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty path or when the `sqlite` feature is off.
    pub fn sqlite(path: impl AsRef<Path>) -> Result<SqlBackend, Error> {
        SqlBackendBuilder::new(Target::sqlite(path.as_ref())?).build()
    }

    /// A PostgreSQL backend from a URL (`postgres://user@host:port/database`) or a libpq-style
    /// `key=value` string.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed URL or when the `postgres` feature is off.
    pub fn postgres(url: &str) -> Result<SqlBackend, Error> {
        SqlBackendBuilder::new(Target::postgres(url)?).build()
    }

    /// The table holding the entries.
    pub fn table(&self) -> &str {
        &self.driver.statements().table.name
    }

    /// The SQLite database file (`None` for PostgreSQL and in-memory SQLite): the cache is
    /// not a directory, so `cache_dpath()` is `None` as in cachier, but the file is here.
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.driver.path()
    }
}

impl Backend for SqlBackend {
    fn name(&self) -> &'static str {
        self.driver.name()
    }

    fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        let ids = self
            .driver
            .query_texts("namespaces", Stmt::Namespaces, &[])?;
        // Rows written by hand with an invalid name are not listed.
        Ok(ids
            .iter()
            .filter_map(|id| Namespace::new(id, None).ok())
            .collect())
    }

    fn core(&self, namespace: &Namespace) -> Result<Arc<dyn Core>, Error> {
        Ok(Arc::new(SqlCore {
            driver: self.driver.clone(),
            function_id: namespace.as_str().to_owned(),
        }))
    }

    /// PostgreSQL: the native async store (`tokio-postgres` on the caller's runtime).
    /// SQLite: the blocking `core` on tokio's blocking pool.
    #[cfg(feature = "async")]
    fn async_core(
        &self,
        namespace: &Namespace,
        core: &Arc<dyn Core>,
    ) -> Result<Arc<dyn cachier_core::AsyncCore>, Error> {
        match self.driver.clone().native_async(namespace.as_str()) {
            Some(native) => Ok(native),
            None => Ok(Arc::new(cachier_core::OffloadedCore(core.clone()))),
        }
    }
}

/// Where a backend connects.
enum Target {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::Location),
    #[cfg(feature = "postgres")]
    Postgres(Box<::postgres::Config>),
}

impl Target {
    fn parse(url: &str) -> Result<Target, Error> {
        let (scheme, rest) = url.split_once(':').unwrap_or(("", url));
        match scheme {
            "sqlite" => {
                // sqlite:///abs/path, sqlite://relative (as sqlite:relative), sqlite:path, sqlite::memory:
                let path = match rest.strip_prefix("//") {
                    Some(after) => after,
                    None => rest,
                };
                Target::sqlite(Path::new(path))
            }
            "postgres" | "postgresql" => Target::postgres(url),
            _ => Err(Error::config(
                "url",
                format!(
                    "unknown SQL URL scheme {scheme:?}; use sqlite:///path/to/file.db, sqlite::memory: or postgres://user@host/database"
                ),
            )),
        }
    }

    fn sqlite(path: &Path) -> Result<Target, Error> {
        if path.as_os_str().is_empty() {
            return Err(Error::config(
                "url",
                "an SQLite URL needs a path: sqlite:///path/to/file.db or sqlite::memory:",
            ));
        }
        #[cfg(feature = "sqlite")]
        {
            Ok(Target::Sqlite(sqlite::Location::new(path)))
        }
        #[cfg(not(feature = "sqlite"))]
        {
            Err(Error::config("url", "SQLite support is not compiled in: enable the `sqlite` feature of cachier-backend-sql (`sql-sqlite` of cachier)"))
        }
    }

    fn postgres(url: &str) -> Result<Target, Error> {
        #[cfg(feature = "postgres")]
        {
            postgres::parse_config(url).map(|c| Target::Postgres(Box::new(c)))
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = url;
            Err(Error::config(
                "url",
                "PostgreSQL support is not compiled in: enable the `postgres` feature of cachier-backend-sql (`sql-postgres` of cachier)",
            ))
        }
    }
}

/// Configures an [`SqlBackend`]: the table name (validated), the pool size and the connect
/// timeout.
#[must_use]
pub struct SqlBackendBuilder {
    target: Target,
    table: String,
    pool_size: usize,
    connect_timeout: Option<Duration>,
}

impl fmt::Debug for SqlBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlBackendBuilder")
            .field("table", &self.table)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl SqlBackendBuilder {
    fn new(target: Target) -> Self {
        SqlBackendBuilder {
            target,
            table: DEFAULT_TABLE.to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: None,
        }
    }

    /// A builder from a caller's PostgreSQL connection configuration (host, credentials,
    /// options...), for callers that already build one.
    #[cfg(feature = "postgres")]
    pub fn postgres_config(config: ::postgres::Config) -> Self {
        SqlBackendBuilder::new(Target::Postgres(Box::new(config)))
    }

    /// The table holding the entries (default `cachier_cache`), optionally `schema.table`.
    /// Checked by [`SqlBackendBuilder::build`]: letters, digits and underscores only.
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = name.into();
        self
    }

    /// Most PostgreSQL connections open at once (default 16); callers beyond it wait for one.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// How long connecting to the server may take (default: the URL's `connect_timeout`, else
    /// 5 s). Also bounds the wait for a free pooled connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Checks the configuration and builds the backend. No connection is made yet: the
    /// schema is created (or checked) by the first operation that reaches the database.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid table name, a zero pool size or a zero timeout.
    pub fn build(self) -> Result<SqlBackend, Error> {
        let table = TableName::parse(&self.table)?;
        if self.pool_size == 0 {
            return Err(Error::config("pool_size", "must be at least 1"));
        }
        if self.connect_timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::config("connect_timeout", "must be longer than zero"));
        }
        let driver: Arc<dyn Driver> = match self.target {
            #[cfg(feature = "sqlite")]
            Target::Sqlite(location) => Arc::new(sqlite::SqliteDriver::new(location, table)?),
            #[cfg(feature = "postgres")]
            Target::Postgres(config) => Arc::new(postgres::PgDriver::new(
                *config,
                table,
                self.pool_size,
                self.connect_timeout,
            )),
        };
        Ok(SqlBackend { driver })
    }
}

/// One function's rows in the table.
struct SqlCore {
    driver: Arc<dyn Driver>,
    function_id: String,
}

impl SqlCore {
    fn rows(&self) -> Rows<'_, dyn Driver> {
        Rows {
            exec: &*self.driver,
            function_id: &self.function_id,
        }
    }
}

impl Core for SqlCore {
    fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        finish(self.rows().get(key))
    }

    fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error> {
        finish(self.rows().put(key, value, claim))
    }

    fn claim(&self, key: &Key, lease: Duration) -> Result<Claim, Error> {
        finish(self.rows().claim(key, lease))
    }

    fn renew(&self, key: &Key, claim: &ClaimToken, lease: Duration) -> Result<bool, Error> {
        finish(self.rows().renew(key, claim, lease))
    }

    fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
        finish(self.rows().release(key, claim))
    }

    fn clear_cache(&self) -> Result<(), Error> {
        finish(self.rows().clear_cache())
    }

    fn clear_being_calculated(&self) -> Result<(), Error> {
        finish(self.rows().clear_being_calculated())
    }

    fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        finish(self.rows().delete_stale_entries(older_than))
    }

    fn len(&self) -> Result<u64, Error> {
        finish(self.rows().len())
    }

    fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
        let rows = self
            .driver
            .query_entries("entries", &[Param::Text(&self.function_id)])?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                // A key written by hand that is not 64 hex digits is not one of ours.
                let key = Key::from_hex(&row.key)?;
                Some(EntryInfo {
                    key,
                    size: row.size.max(0).unsigned_abs(),
                    time: UNIX_EPOCH + Duration::from_micros(row.stored_us.max(0).unsigned_abs()),
                    age: Duration::from_micros(row.age_us.max(0).unsigned_abs()),
                    completed: row.completed,
                    being_calculated: row.live,
                    claim_owner: if row.live { row.claim_owner } else { None },
                })
            })
            .collect())
    }
}

/// Logs a row that cannot be read; it is served as a miss and overwritten by the next `put`.
pub(crate) fn warn_unreadable_row(backend: &'static str, error: &dyn std::error::Error) {
    let error = cachier_core::chain_message(error);
    tracing::warn!(backend, %error, "cachier: a cache row cannot be read; treating it as a miss and overwriting it");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_clamped_for_sql() {
        assert_eq!(micros(Duration::from_millis(1500)), 1_500_000);
        assert_eq!(micros(Duration::MAX), MAX_MICROS);
    }

    #[test]
    fn urls_need_a_known_scheme_and_a_compiled_driver() {
        for bad in ["mysql://h/db", "sqlite:", "nonsense"] {
            match SqlBackend::from_url(bad) {
                Err(Error::Config { param: "url", .. }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
