//! [`SqlBackend`]: the store of every function's rows, handing out one core per function. Its
//! constructors are in `builder.rs`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use cachier_core::{Backend, Core, Error, Namespace};

use crate::blocking::{BlockingDriver, SqlCore};
use crate::dialect::Stmt;

/// The SQL store: SQLite or PostgreSQL, one table shared by every function (each function's
/// rows carry its namespace). Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct SqlBackend {
    /// SQLite's or PostgreSQL's blocking driver.
    pub(crate) driver: Arc<dyn BlockingDriver>,
    /// The async PostgreSQL pool on the same server; `None` for SQLite, whose async calls run
    /// the blocking core on tokio's blocking pool.
    #[cfg(all(feature = "async", feature = "postgres"))]
    pub(crate) async_pool: Option<Arc<crate::postgres::PgAsyncPool>>,
}

impl fmt::Debug for SqlBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The driver's Debug never shows credentials.
        fmt::Debug::fmt(&self.driver, f)
    }
}

impl SqlBackend {
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
        Ok(Arc::new(SqlCore::new(
            self.driver.clone(),
            namespace.as_str(),
        )))
    }

    /// PostgreSQL: the native async store (`tokio-postgres` on the caller's runtime).
    /// SQLite: the blocking `core` on tokio's blocking pool.
    #[cfg(feature = "async")]
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    fn async_core(
        &self,
        namespace: &Namespace,
        core: &Arc<dyn Core>,
    ) -> Result<Arc<dyn cachier_core::AsyncCore>, Error> {
        #[cfg(feature = "postgres")]
        if let Some(pool) = &self.async_pool {
            let native = crate::nonblocking::SqlAsyncCore::new(pool.clone(), namespace.as_str());
            return Ok(Arc::new(native));
        }
        Ok(Arc::new(cachier_core::OffloadedCore(core.clone())))
    }
}
