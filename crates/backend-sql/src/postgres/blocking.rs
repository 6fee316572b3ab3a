//! The blocking PostgreSQL driver: a small pool of `postgres` clients with prepared
//! statements, reconnecting after the server restarts or ends a connection.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ::postgres::{Client, NoTls, Statement};
use cachier_core::Error;
use parking_lot::{Condvar, Mutex};

use super::{
    connection_lost, count_of, decode_listed, decode_row, function_of, sql_params, Server,
};
use super::{NAME, SETUP_LOCK};
use crate::blocking::BlockingDriver;
use crate::dialect::{ensure_schema, SchemaTx, Statements, Stmt, SLOTS};
use crate::ops::{Listed, Param, Row};

/// A `postgres::Client` that can be dropped anywhere. The sync client closes its connection by
/// blocking on a runtime of its own, which panics on a thread that drives an async runtime (an
/// `AsyncMemoized` dropped inside async code): there the client is closed on a thread of its
/// own.
struct OwnedClient(Option<Client>);

impl std::ops::Deref for OwnedClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.0.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for OwnedClient {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("present until dropped")
    }
}

impl Drop for OwnedClient {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("cachier-pg-close".into())
                    .spawn(move || drop(client));
            }
        }
    }
}

/// One pooled connection and its prepared statements.
struct Conn {
    client: OwnedClient,
    prepared: [Option<Statement>; SLOTS],
}

impl Conn {
    fn statement(
        &mut self,
        stmts: &Statements,
        stmt: Stmt,
    ) -> Result<Statement, ::postgres::Error> {
        self.statement_at(stmts, stmt.index())
    }

    /// The prepared statement of a slot ([`Statements::slot`]).
    fn statement_at(
        &mut self,
        stmts: &Statements,
        slot: usize,
    ) -> Result<Statement, ::postgres::Error> {
        if let Some(prepared) = &self.prepared[slot] {
            return Ok(prepared.clone());
        }
        let prepared = self.client.prepare(stmts.sql_at(slot))?;
        self.prepared[slot] = Some(prepared.clone());
        Ok(prepared)
    }
}

struct PoolState {
    idle: Vec<Conn>,
    /// Connections open, idle or checked out.
    open: usize,
}

/// The blocking connections of one backend: at most `pool_size` open, kept idle between calls.
pub(crate) struct PgDriver {
    server: Arc<Server>,
    pool: Mutex<PoolState>,
    available: Condvar,
    /// One schema set-up at a time in this process.
    setup: Mutex<()>,
}

impl fmt::Debug for PgDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The backend's `Debug` is its driver's. Never the configuration: it holds the password.
        f.debug_struct("SqlBackend")
            .field("server", &self.server.label)
            .field("table", &self.server.stmts.table.name)
            .field("pool_size", &self.server.pool_size)
            .finish()
    }
}

impl PgDriver {
    pub(crate) fn new(server: Arc<Server>) -> PgDriver {
        PgDriver {
            server,
            pool: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            available: Condvar::new(),
            setup: Mutex::new(()),
        }
    }

    fn checkout(&self, op: &'static str) -> Result<Conn, Error> {
        let deadline = Instant::now() + self.server.wait_timeout;
        let mut state = self.pool.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(conn);
            }
            if state.open < self.server.pool_size {
                state.open += 1;
                break;
            }
            if Instant::now() >= deadline {
                return Err(self.server.no_free_connection(op));
            }
            self.available.wait_until(&mut state, deadline);
        }
        drop(state);
        match self.connect(op) {
            Ok(conn) => Ok(conn),
            Err(error) => {
                self.pool.lock().open -= 1;
                self.available.notify_one();
                Err(error)
            }
        }
    }

    fn checkin(&self, conn: Conn) {
        if conn.client.is_closed() {
            self.discard(conn);
            return;
        }
        self.pool.lock().idle.push(conn);
        self.available.notify_one();
    }

    fn discard(&self, conn: Conn) {
        drop(conn);
        self.pool.lock().open -= 1;
        self.available.notify_one();
    }

    /// Drops every idle connection: after one was found dead (server restart, terminated
    /// backends), the others most likely are too.
    fn purge_idle(&self) {
        let idle = {
            let mut state = self.pool.lock();
            let idle = std::mem::take(&mut state.idle);
            state.open -= idle.len();
            idle
        };
        drop(idle);
        self.available.notify_all();
    }

    fn connect(&self, op: &'static str) -> Result<Conn, Error> {
        let server = &self.server;
        server.check_down(op)?;
        let mut client = match server.config.connect(NoTls) {
            Ok(client) => client,
            Err(error) => {
                server.record_connect(Some(cachier_core::chain_message(&error)));
                return Err(Error::backend(NAME, op, error));
            }
        };
        server.record_connect(None);
        if !server.schema_ready.load(Ordering::Acquire) {
            self.ensure_schema(&mut client, op)?;
        }
        Ok(Conn {
            client: OwnedClient(Some(client)),
            prepared: std::array::from_fn(|_| None),
        })
    }

    fn ensure_schema(&self, client: &mut Client, op: &'static str) -> Result<(), Error> {
        let _one_at_a_time = self.setup.lock();
        let server = &self.server;
        if server.schema_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut tx = client
            .transaction()
            .map_err(|e| Error::backend(NAME, op, e))?;
        tx.execute(SETUP_LOCK, &[&server.stmts.table.name])
            .map_err(|e| Error::backend(NAME, op, e))?;
        ensure_schema(&mut PgTx { tx: &mut tx, op }, &server.stmts)?;
        tx.commit().map_err(|e| Error::backend(NAME, op, e))?;
        server.schema_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Runs `f` on a pooled connection; when the connection turns out dead, drops the idle
    /// ones and tries once more on a new connection (every statement is safe to repeat).
    fn with_conn<T>(
        &self,
        op: &'static str,
        mut f: impl FnMut(&mut Conn, &Statements) -> Result<T, ::postgres::Error>,
    ) -> Result<T, Error> {
        let mut retried = false;
        loop {
            let mut conn = self.checkout(op)?;
            match f(&mut conn, &self.server.stmts) {
                Ok(value) => {
                    self.checkin(conn);
                    return Ok(value);
                }
                Err(error) => {
                    let lost = connection_lost(&error, conn.client.is_closed());
                    if lost {
                        self.discard(conn);
                        self.purge_idle();
                        if !retried {
                            tracing::debug!(server = %self.server.label, error = %cachier_core::chain_message(&error), "cachier: connection lost; reconnecting");
                            retried = true;
                            continue;
                        }
                    } else {
                        self.checkin(conn);
                    }
                    return Err(Error::backend(NAME, op, error));
                }
            }
        }
    }
}

impl BlockingDriver for PgDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn statements(&self) -> &Statements {
        &self.server.stmts
    }

    fn query_row(&self, op: &'static str, params: &[Param<'_>]) -> Result<Option<Row>, Error> {
        let row = self.with_conn(op, |conn, stmts| {
            let stmt = conn.statement(stmts, Stmt::Get)?;
            conn.client.query_opt(&stmt, &sql_params(params))
        })?;
        Ok(decode_row(row))
    }

    fn query_count(
        &self,
        op: &'static str,
        stmt: Stmt,
        params: &[Param<'_>],
    ) -> Result<u64, Error> {
        let count: i64 = self.with_conn(op, |conn, stmts| {
            let prepared = conn.statement(stmts, stmt)?;
            conn.client
                .query_one(&prepared, &sql_params(params))?
                .try_get(0)
        })?;
        Ok(count_of(count))
    }

    fn query_entries(&self, op: &'static str, params: &[Param<'_>]) -> Result<Vec<Listed>, Error> {
        let rows = self.with_conn(op, |conn, stmts| {
            let stmt = conn.statement(stmts, Stmt::Entries)?;
            conn.client.query(&stmt, &sql_params(params))
        })?;
        Ok(decode_listed(&rows))
    }

    fn query_texts(
        &self,
        op: &'static str,
        stmt: Stmt,
        params: &[Param<'_>],
    ) -> Result<Vec<String>, Error> {
        let rows = self.with_conn(op, |conn, stmts| {
            let prepared = conn.statement(stmts, stmt)?;
            conn.client.query(&prepared, &sql_params(params))
        })?;
        Ok(rows
            .iter()
            .filter_map(|row| row.try_get::<_, String>(0).ok())
            .collect())
    }

    /// A write runs in its notifying form where it has one ([`Statements::slot`]).
    fn execute(&self, op: &'static str, stmt: Stmt, params: &[Param<'_>]) -> Result<u64, Error> {
        let slot = self.server.stmts.slot(stmt, function_of(params));
        self.with_conn(op, |conn, stmts| {
            let prepared = conn.statement_at(stmts, slot)?;
            if Statements::counts_in_a_row(slot) {
                let count: i64 = conn
                    .client
                    .query_one(&prepared, &sql_params(params))?
                    .try_get(0)?;
                Ok(count_of(count))
            } else {
                conn.client.execute(&prepared, &sql_params(params))
            }
        })
    }

    fn watch(
        &self,
        function_id: &str,
        sink: std::sync::Arc<dyn cachier_core::watch::ChangeSink>,
    ) -> Result<cachier_core::watch::Watch, Error> {
        Ok(self.server.watch(function_id, sink))
    }

    fn wait(
        &self,
        function_id: &str,
        key: &cachier_core::Key,
        max: std::time::Duration,
        released: &mut dyn FnMut() -> Result<bool, Error>,
    ) -> Option<Result<bool, Error>> {
        self.server.wait(function_id, key, max, released)
    }
}

struct PgTx<'t, 'c> {
    tx: &'t mut ::postgres::Transaction<'c>,
    op: &'static str,
}

impl SchemaTx for PgTx<'_, '_> {
    fn batch(&mut self, sql: &str) -> Result<(), Error> {
        self.tx
            .batch_execute(sql)
            .map_err(|e| Error::backend(NAME, self.op, e))
    }

    fn query_text(&mut self, sql: &str) -> Result<Option<String>, Error> {
        let row = self
            .tx
            .query_opt(sql, &[])
            .map_err(|e| Error::backend(NAME, self.op, e))?;
        row.map(|r| r.try_get::<_, String>(0))
            .transpose()
            .map_err(|e| Error::backend(NAME, self.op, e))
    }

    fn execute_text(&mut self, sql: &str, param: &str) -> Result<(), Error> {
        self.tx
            .execute(sql, &[&param])
            .map(drop)
            .map_err(|e| Error::backend(NAME, self.op, e))
    }
}
