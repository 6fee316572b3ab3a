//! The blocking store: [`SqlCore`] completes each operation of [`Ops`] with
//! `cachier_core::block_on` on a [`BlockingDriver`] (SQLite or PostgreSQL), whose statements
//! run when their futures are created, so one poll finishes an operation on the caller's thread.

use std::fmt;
use std::future::{ready, Future};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cachier_core::watch::{ChangeSink, Watch};
use cachier_core::{
    block_on, poll_until_released, CacheEntry, Capabilities, Claim, ClaimToken, Core, EntryInfo,
    Error, Key,
};

use crate::dialect::{Statements, Stmt};
use crate::ops::{Connection, Listed, Ops, Param, Row};

/// A database driver with a blocking API: runs the statements of the dialect table on its own
/// connections. Connection handling, retries and schema set-up are the driver's.
pub(crate) trait BlockingDriver: Send + Sync + fmt::Debug {
    /// `"sqlite"` or `"postgres"`, for errors and logs.
    fn name(&self) -> &'static str;
    /// The statement table.
    fn statements(&self) -> &Statements;
    /// See [`Connection::query_row`].
    fn query_row(&self, op: &'static str, params: &[Param<'_>]) -> Result<Option<Row>, Error>;
    /// See [`Connection::query_count`].
    fn query_count(&self, op: &'static str, stmt: Stmt, params: &[Param<'_>])
        -> Result<u64, Error>;
    /// See [`Connection::query_entries`].
    fn query_entries(&self, op: &'static str, params: &[Param<'_>]) -> Result<Vec<Listed>, Error>;
    /// See [`Connection::execute`].
    fn execute(&self, op: &'static str, stmt: Stmt, params: &[Param<'_>]) -> Result<u64, Error>;
    /// Runs a statement returning one text column; values that are not text are skipped.
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
    /// See [`Core::watch`]; by default nothing tells of changes.
    fn watch(&self, function_id: &str, sink: Arc<dyn ChangeSink>) -> Result<Watch, Error> {
        let _ = (function_id, sink);
        Ok(Watch::Unwatched)
    }
    /// See [`Core::wait`], with `released` asking the table whether the claim ended; `None`
    /// when the driver cannot be told (the caller polls).
    fn wait(
        &self,
        function_id: &str,
        key: &Key,
        max: Duration,
        released: &mut dyn FnMut() -> Result<bool, Error>,
    ) -> Option<Result<bool, Error>> {
        let _ = (function_id, key, max, released);
        None
    }
}

/// A blocking driver as a [`Connection`]: each statement runs when its future is created.
impl Connection for dyn BlockingDriver {
    fn query_row<'a>(
        &'a self,
        op: &'static str,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send + 'a {
        ready(BlockingDriver::query_row(self, op, params))
    }

    fn query_count<'a>(
        &'a self,
        op: &'static str,
        stmt: Stmt,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a {
        ready(BlockingDriver::query_count(self, op, stmt, params))
    }

    fn query_entries<'a>(
        &'a self,
        op: &'static str,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<Vec<Listed>, Error>> + Send + 'a {
        ready(BlockingDriver::query_entries(self, op, params))
    }

    fn execute<'a>(
        &'a self,
        op: &'static str,
        stmt: Stmt,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a {
        ready(BlockingDriver::execute(self, op, stmt, params))
    }
}

/// One function's rows in the table, through the blocking driver.
pub(crate) struct SqlCore {
    driver: Arc<dyn BlockingDriver>,
    function_id: String,
}

impl SqlCore {
    pub(crate) fn new(driver: Arc<dyn BlockingDriver>, function_id: &str) -> SqlCore {
        SqlCore {
            driver,
            function_id: function_id.to_owned(),
        }
    }

    fn ops(&self) -> Ops<'_, dyn BlockingDriver> {
        Ops::new(&*self.driver, &self.function_id)
    }
}

impl Core for SqlCore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            leases: true,
            listing: true,
            // A database, not a directory of entries (as in cachier).
            cache_dir: None,
            in_process: false,
        }
    }

    fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        block_on(self.ops().get(key))
    }

    fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error> {
        block_on(self.ops().put(key, value, claim))
    }

    fn claim(&self, key: &Key, lease: Duration) -> Result<Claim, Error> {
        block_on(self.ops().claim(key, lease))
    }

    fn renew(&self, key: &Key, claim: &ClaimToken, lease: Duration) -> Result<bool, Error> {
        block_on(self.ops().renew(key, claim, lease))
    }

    fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
        block_on(self.ops().release(key, claim))
    }

    /// PostgreSQL: the writes notify the table's channel, which the backend's listener hears.
    /// SQLite: unwatched.
    fn watch(&self, sink: Arc<dyn ChangeSink>) -> Result<Watch, Error> {
        self.driver.watch(&self.function_id, sink)
    }

    /// PostgreSQL: sleeps until the end of the key's claim is notified, looking at the table
    /// every `wait_poll` meanwhile. SQLite: polls.
    fn wait(&self, key: &Key, max: Duration) -> Result<bool, Error> {
        let mut released = || Ok(!self.get(key)?.is_some_and(|e| e.being_calculated()));
        match self.driver.wait(&self.function_id, key, max, &mut released) {
            Some(outcome) => outcome,
            None => poll_until_released(self, key, max),
        }
    }

    fn remove(&self, key: &Key) -> Result<bool, Error> {
        block_on(self.ops().remove(key))
    }

    fn clear_cache(&self) -> Result<(), Error> {
        block_on(self.ops().clear_cache())
    }

    fn clear_being_calculated(&self) -> Result<(), Error> {
        block_on(self.ops().clear_being_calculated())
    }

    fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        block_on(self.ops().delete_stale_entries(older_than))
    }

    fn len(&self) -> Result<u64, Error> {
        block_on(self.ops().len())
    }

    fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
        block_on(self.ops().entries())
    }
}
