//! The PostgreSQL driver: a small pool of `postgres` clients with prepared statements,
//! reconnecting after the server restarts or ends a connection.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ::postgres::error::SqlState;
use ::postgres::types::ToSql;
use ::postgres::{Client, Config, NoTls, Statement};
use cachier_core::Error;
use parking_lot::{Condvar, Mutex};

use crate::dialect::{ensure_schema, Dialect, SchemaTx, Statements, Stmt, TableName, STMT_COUNT};
use crate::{warn_unreadable_row, Driver, Listed, Param, Row, DEFAULT_CONNECT_TIMEOUT};

pub(crate) const NAME: &str = "postgres";

/// After a failed connection attempt, further attempts fail at once for this long, so that
/// calls against a server that does not answer do not each wait for the connect timeout.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Parses a URL or `key=value` string. The error never repeats the password.
pub(crate) fn parse_config(url: &str) -> Result<Config, Error> {
    Config::from_str(url).map_err(|e| {
        Error::config(
            "url",
            format!(
                "{} is not a valid PostgreSQL URL ({}); expected postgres://user@host:port/database",
                cachier_core::redact_url(url),
                cachier_core::redact_message(url, &cachier_core::chain_message(&e))
            ),
        )
    })
}

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
    prepared: [Option<Statement>; STMT_COUNT],
}

impl Conn {
    fn statement(
        &mut self,
        stmts: &Statements,
        stmt: Stmt,
    ) -> Result<Statement, ::postgres::Error> {
        if let Some(prepared) = &self.prepared[stmt.index()] {
            return Ok(prepared.clone());
        }
        let prepared = self.client.prepare(stmts.sql(stmt))?;
        self.prepared[stmt.index()] = Some(prepared.clone());
        Ok(prepared)
    }
}

struct PoolState {
    idle: Vec<Conn>,
    /// Connections open, idle or checked out.
    open: usize,
}

/// Takes a lock that serializes schema set-up across processes and machines, for the
/// transaction's duration: concurrent CREATE TABLE IF NOT EXISTS can otherwise fail on
/// PostgreSQL's catalog. Parameter: the table name.
pub(crate) const SETUP_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext($1))";

pub(crate) struct PgDriver {
    config: Config,
    pub(crate) stmts: Statements,
    pool: Mutex<PoolState>,
    available: Condvar,
    pub(crate) max: usize,
    pub(crate) wait_timeout: Duration,
    pub(crate) schema_ready: AtomicBool,
    setup: Mutex<()>,
    /// Until when connecting is not retried, and why.
    down: Mutex<Option<(Instant, String)>>,
    /// Where it connects, without the password.
    pub(crate) label: String,
    /// The async path's connections (`tokio-postgres`, driven by the callers' runtimes).
    #[cfg(feature = "async")]
    pub(crate) native: crate::postgres_async::NativePool,
}

impl fmt::Debug for PgDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlBackend")
            .field("server", &self.label)
            .field("table", &self.stmts.table.name)
            .field("pool_size", &self.max)
            .finish()
    }
}

fn label(config: &Config) -> String {
    use ::postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    // The driver takes the user info up to the first `@`: from a URL whose unencoded
    // password holds `/`, `?` or `#` before its `:`, a "user name" may be the password.
    let user = match config.get_user() {
        Some(user) if user.contains(['/', '?', '#', '@', ':']) => "***@".to_owned(),
        Some(user) => format!("{user}@"),
        None => String::new(),
    };
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

impl PgDriver {
    pub(crate) fn new(
        mut config: Config,
        table: TableName,
        pool_size: usize,
        connect_timeout: Option<Duration>,
    ) -> PgDriver {
        let timeout = connect_timeout
            .or(config.get_connect_timeout().copied())
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        config.connect_timeout(timeout);
        if config.get_application_name().is_none() {
            config.application_name("cachier");
        }
        PgDriver {
            label: label(&config),
            #[cfg(feature = "async")]
            native: crate::postgres_async::NativePool::new(&config, pool_size),
            config,
            stmts: Statements::new(Dialect::Postgres, table),
            pool: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            available: Condvar::new(),
            max: pool_size,
            wait_timeout: timeout,
            schema_ready: AtomicBool::new(false),
            setup: Mutex::new(()),
            down: Mutex::new(None),
        }
    }

    fn checkout(&self, op: &'static str) -> Result<Conn, Error> {
        let deadline = Instant::now() + self.wait_timeout;
        let mut state = self.pool.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(conn);
            }
            if state.open < self.max {
                state.open += 1;
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::backend(
                    NAME,
                    op,
                    format!(
                        "no pooled connection free within {:?} (pool_size {})",
                        self.wait_timeout, self.max
                    ),
                ));
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

    /// Fails at once while a recent connection attempt failed (both paths share this state).
    pub(crate) fn check_down(&self, op: &'static str) -> Result<(), Error> {
        if let Some((until, why)) = &*self.down.lock() {
            if Instant::now() < *until {
                return Err(Error::backend(
                    NAME,
                    op,
                    format!(
                        "{} is unreachable (retrying within {RETRY_AFTER:?}): {why}",
                        self.label
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Records the outcome of a connection attempt: after a failure, attempts fail at once for
    /// [`RETRY_AFTER`].
    pub(crate) fn record_connect(&self, failure: Option<String>) {
        *self.down.lock() = failure.map(|why| (Instant::now() + RETRY_AFTER, why));
    }

    fn connect(&self, op: &'static str) -> Result<Conn, Error> {
        self.check_down(op)?;
        let mut client = match self.config.connect(NoTls) {
            Ok(client) => client,
            Err(error) => {
                self.record_connect(Some(cachier_core::chain_message(&error)));
                return Err(Error::backend(NAME, op, error));
            }
        };
        self.record_connect(None);
        if !self.schema_ready.load(Ordering::Acquire) {
            self.ensure_schema(&mut client, op)?;
        }
        Ok(Conn {
            client: OwnedClient(Some(client)),
            prepared: std::array::from_fn(|_| None),
        })
    }

    fn ensure_schema(&self, client: &mut Client, op: &'static str) -> Result<(), Error> {
        let _one_at_a_time = self.setup.lock();
        if self.schema_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut tx = client
            .transaction()
            .map_err(|e| Error::backend(NAME, op, e))?;
        tx.execute(SETUP_LOCK, &[&self.stmts.table.name])
            .map_err(|e| Error::backend(NAME, op, e))?;
        ensure_schema(&mut PgTx { tx: &mut tx, op }, &self.stmts)?;
        tx.commit().map_err(|e| Error::backend(NAME, op, e))?;
        self.schema_ready.store(true, Ordering::Release);
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
            match f(&mut conn, &self.stmts) {
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
                            tracing::debug!(server = %self.label, error = %cachier_core::chain_message(&error), "cachier: connection lost; reconnecting");
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

/// Whether `error` means the connection is gone (as opposed to a failed statement); `closed`
/// is the client's own view.
pub(crate) fn connection_lost(error: &::postgres::Error, closed: bool) -> bool {
    if closed || error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        return [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code);
    }
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

pub(crate) fn sql_params<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| -> &(dyn ToSql + Sync) {
            match p {
                Param::Text(s) => s,
                Param::OptText(s) => s,
                Param::Bytes(b) => b,
                Param::Micros(m) => m,
            }
        })
        .collect()
}

/// Decodes a [`Stmt::Get`] row; an unreadable one is a miss, with a warning.
pub(crate) fn decode_row(row: Option<::postgres::Row>) -> Option<Row> {
    row.and_then(|row| match read_row(&row) {
        Ok(row) => Some(row),
        Err(error) => {
            warn_unreadable_row(NAME, &error);
            None
        }
    })
}

fn read_row(row: &::postgres::Row) -> Result<Row, ::postgres::Error> {
    Ok(Row {
        value: row.try_get(0)?,
        stored_us: row.try_get(1)?,
        age_us: row.try_get(2)?,
        completed: row.try_get(3)?,
        claim_owner: row.try_get(4)?,
        live: row.try_get::<_, Option<bool>>(5)?.unwrap_or(false),
    })
}

/// A count as the core reports it.
pub(crate) fn count_of(count: i64) -> u64 {
    count.max(0).unsigned_abs()
}

fn read_listed(row: &::postgres::Row) -> Result<Listed, ::postgres::Error> {
    Ok(Listed {
        key: row.try_get(0)?,
        size: row.try_get(1)?,
        stored_us: row.try_get(2)?,
        age_us: row.try_get(3)?,
        completed: row.try_get(4)?,
        claim_owner: row.try_get(5)?,
        live: row.try_get::<_, Option<bool>>(6)?.unwrap_or(false),
    })
}

impl Driver for PgDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    #[cfg(feature = "async")]
    fn native_async(
        self: std::sync::Arc<Self>,
        function_id: &str,
    ) -> Option<std::sync::Arc<dyn cachier_core::AsyncCore>> {
        Some(crate::postgres_async::PgAsyncCore::shared(
            self,
            function_id,
        ))
    }

    fn statements(&self) -> &Statements {
        &self.stmts
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
        Ok(rows
            .iter()
            .filter_map(|row| match read_listed(row) {
                Ok(listed) => Some(listed),
                Err(error) => {
                    warn_unreadable_row(NAME, &error);
                    None
                }
            })
            .collect())
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

    fn execute(&self, op: &'static str, stmt: Stmt, params: &[Param<'_>]) -> Result<u64, Error> {
        self.with_conn(op, |conn, stmts| {
            let prepared = conn.statement(stmts, stmt)?;
            conn.client.execute(&prepared, &sql_params(params))
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_errors_hide_the_password() {
        let config = parse_config("postgres://alice:hunter2@127.0.0.1:1/db").unwrap();
        let driver = PgDriver::new(config, TableName::parse("t").unwrap(), 2, None);
        let debug = format!("{driver:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("alice@127.0.0.1:1/db"), "{debug}");
        let error = parse_config("postgres://alice:hunter2@h:notaport/db")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }
}
