//! [`SqlBackendBuilder`] and the constructors of [`SqlBackend`]: URLs, paths and options are
//! checked here, and the drivers made (no server is contacted yet).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cachier_core::{watch, Error};

use crate::dialect::TableName;
use crate::{SqlBackend, DEFAULT_POOL_SIZE, DEFAULT_TABLE};

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
}

/// Where a backend connects.
enum Target {
    #[cfg(feature = "sqlite")]
    Sqlite(crate::sqlite::Location),
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
            Ok(Target::Sqlite(crate::sqlite::Location::new(path)))
        }
        #[cfg(not(feature = "sqlite"))]
        {
            Err(Error::config("url", "SQLite support is not compiled in: enable the `sqlite` feature of cachier-rs-backend-sql (`sql-sqlite` of cachier-rs)"))
        }
    }

    fn postgres(url: &str) -> Result<Target, Error> {
        #[cfg(feature = "postgres")]
        {
            crate::postgres::parse_config(url).map(|c| Target::Postgres(Box::new(c)))
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = url;
            Err(Error::config(
                "url",
                "PostgreSQL support is not compiled in: enable the `postgres` feature of cachier-rs-backend-sql (`sql-postgres` of cachier-rs)",
            ))
        }
    }
}

/// Configures an [`SqlBackend`]: the table name (validated), the pool size and the connect
/// timeout.
///
/// ```
/// # fn main() -> Result<(), cachier_core::Error> {
/// # #[cfg(feature = "sqlite")] {
/// use std::time::Duration;
/// use cachier_backend_sql::SqlBackend;
///
/// // `postgres://user@host/db` the same way (feature `postgres`).
/// let backend = SqlBackend::builder("sqlite::memory:")?
///     .table("memoized")
///     .pool_size(4)
///     .connect_timeout(Duration::from_secs(2))
///     .build()?;
/// let square = cachier_core::memoize("docs::square", |x: u64| x * x).backend(backend).build()?;
/// assert_eq!(square.call(12), 144);
/// assert_eq!(square.call(12), 144);
/// assert_eq!(square.stats().hits, 1);
/// # }
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct SqlBackendBuilder {
    target: Target,
    table: String,
    pool_size: usize,
    connect_timeout: Option<Duration>,
    heartbeat: Duration,
    wait_poll: Duration,
}

impl fmt::Debug for SqlBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlBackendBuilder")
            .field("table", &self.table)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("heartbeat", &self.heartbeat)
            .field("wait_poll", &self.wait_poll)
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
            heartbeat: watch::DEFAULT_HEARTBEAT,
            wait_poll: watch::DEFAULT_WAIT_POLL,
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

    /// PostgreSQL: how often the change channel (which keeps near caches coherent and wakes
    /// waiters) is checked with an empty query (default 500 ms). A channel that dies without
    /// a word is found down within twice this, and near caches stop serving then. SQLite has
    /// no channel.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// PostgreSQL: how often a caller waiting for a computation in another process looks at
    /// the table while the change channel is up (default 250 ms): the end of a claim is
    /// notified, so this only bounds how late a lapsed lease (a crashed holder) is noticed.
    /// While the channel is down, waiters look every 25 ms at most. SQLite always polls so.
    pub fn wait_poll(mut self, interval: Duration) -> Self {
        self.wait_poll = interval;
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
        if self.heartbeat.is_zero() {
            return Err(Error::config("heartbeat", "must be longer than zero"));
        }
        if self.wait_poll.is_zero() {
            return Err(Error::config("wait_poll", "must be longer than zero"));
        }
        match self.target {
            #[cfg(feature = "sqlite")]
            Target::Sqlite(location) => Ok(SqlBackend {
                driver: Arc::new(crate::sqlite::SqliteDriver::new(location, table)?),
                #[cfg(all(feature = "async", feature = "postgres"))]
                async_pool: None,
            }),
            #[cfg(feature = "postgres")]
            Target::Postgres(config) => {
                use crate::postgres::{PgDriver, Push, Server};
                // Both pools share the server's schema set-up, fail-fast state and change
                // channel.
                let push = Push {
                    heartbeat: self.heartbeat,
                    wait_poll: self.wait_poll,
                };
                let server =
                    Server::new(*config, table, self.pool_size, self.connect_timeout, push);
                Ok(SqlBackend {
                    driver: Arc::new(PgDriver::new(server.clone())),
                    #[cfg(feature = "async")]
                    async_pool: Some(Arc::new(crate::postgres::PgAsyncPool::new(server))),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
