//! The async PostgreSQL pool: `tokio-postgres` clients (the driver the sync `postgres` crate
//! wraps) whose connections run as tasks of the callers' runtimes, so an async hit is one
//! awaited round trip with no hop to the blocking pool. It shares the blocking driver's
//! [`Server`] (statement table, schema set-up, fail-fast state), error classification and row
//! decoding; only the pool is its own.

use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use cachier_core::Error;
use parking_lot::Mutex;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::{
    connection_lost, count_of, decode_listed, decode_row, function_of, sql_params, Server,
};
use super::{NAME, SETUP_LOCK};
use crate::dialect::{schema_plan, SchemaStep, Statements, Stmt, SCHEMA_VERSION, SLOTS};
use crate::ops::{Connection, Listed, Param, Row};

/// The async connections of one backend: at most `pool_size` in use at once (callers beyond it
/// wait for a turn) and about as many open, kept idle between calls.
pub(crate) struct PgAsyncPool {
    server: Arc<Server>,
    /// The server's configuration for `tokio-postgres`.
    config: Config,
    idle: Mutex<Vec<AsyncConn>>,
    /// One per connection in use.
    turns: Arc<Semaphore>,
}

impl fmt::Debug for PgAsyncPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the configuration: it holds the password.
        f.debug_struct("PgAsyncPool")
            .field("server", &self.server.label)
            .field("pool_size", &self.server.pool_size)
            .finish()
    }
}

/// The sync driver's configuration for `tokio-postgres` (the sync `Config` wraps one but does
/// not hand it out), so both paths connect alike: same hosts, credentials, timeouts and
/// options.
fn async_config(c: &::postgres::Config) -> Config {
    use tokio_postgres::config::Host;
    let mut n = Config::new();
    if let Some(user) = c.get_user() {
        n.user(user);
    }
    if let Some(password) = c.get_password() {
        n.password(password);
    }
    if let Some(dbname) = c.get_dbname() {
        n.dbname(dbname);
    }
    if let Some(options) = c.get_options() {
        n.options(options);
    }
    if let Some(name) = c.get_application_name() {
        n.application_name(name);
    }
    n.ssl_mode(c.get_ssl_mode());
    n.ssl_negotiation(c.get_ssl_negotiation());
    for host in c.get_hosts() {
        match host {
            Host::Tcp(name) => n.host(name),
            #[cfg(unix)]
            Host::Unix(path) => n.host_path(path),
        };
    }
    for addr in c.get_hostaddrs() {
        n.hostaddr(*addr);
    }
    for port in c.get_ports() {
        n.port(*port);
    }
    if let Some(timeout) = c.get_connect_timeout() {
        n.connect_timeout(*timeout);
    }
    if let Some(timeout) = c.get_tcp_user_timeout() {
        n.tcp_user_timeout(*timeout);
    }
    n.keepalives(c.get_keepalives());
    n.keepalives_idle(c.get_keepalives_idle());
    if let Some(interval) = c.get_keepalives_interval() {
        n.keepalives_interval(interval);
    }
    if let Some(retries) = c.get_keepalives_retries() {
        n.keepalives_retries(retries);
    }
    n.target_session_attrs(c.get_target_session_attrs());
    n.channel_binding(c.get_channel_binding());
    n.load_balance_hosts(c.get_load_balance_hosts());
    n
}

/// Which runtime drives a connection's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Runtime {
    id: tokio::runtime::Id,
    /// Worker threads drive it whenever the runtime is alive; a current-thread runtime only
    /// while its thread is inside `block_on`.
    always_driven: bool,
}

impl Runtime {
    fn current(op: &'static str) -> Result<Runtime, Error> {
        let handle = Handle::try_current().map_err(|e| Error::backend(NAME, op, e))?;
        Ok(Runtime {
            id: handle.id(),
            always_driven: handle.runtime_flavor() != RuntimeFlavor::CurrentThread,
        })
    }

    /// Whether a caller on `caller` may use a connection driven by `self`: a connection of
    /// another, idle current-thread runtime would never answer.
    fn serves(self, caller: Runtime) -> bool {
        self.always_driven || self.id == caller.id
    }
}

/// One async connection and its prepared statements.
struct AsyncConn {
    client: Client,
    prepared: [Option<Statement>; SLOTS],
    runtime: Runtime,
}

impl AsyncConn {
    async fn statement(
        &mut self,
        stmts: &Statements,
        stmt: Stmt,
    ) -> Result<Statement, tokio_postgres::Error> {
        self.statement_at(stmts, stmt.index()).await
    }

    /// The prepared statement of a slot ([`Statements::slot`]).
    async fn statement_at(
        &mut self,
        stmts: &Statements,
        slot: usize,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(prepared) = &self.prepared[slot] {
            return Ok(prepared.clone());
        }
        let prepared = self.client.prepare(stmts.sql_at(slot)).await?;
        self.prepared[slot] = Some(prepared.clone());
        Ok(prepared)
    }
}

impl PgAsyncPool {
    /// The server both pools share (its change listener included).
    pub(crate) fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// The pool of `server`, empty: connections are opened by the callers that need them.
    pub(crate) fn new(server: Arc<Server>) -> PgAsyncPool {
        PgAsyncPool {
            config: async_config(&server.config),
            idle: Mutex::new(Vec::new()),
            turns: Arc::new(Semaphore::new(server.pool_size)),
            server,
        }
    }

    /// A turn to use a connection (waiting up to the connect timeout), and an idle connection
    /// this caller's runtime can use or a new one.
    async fn checkout(&self, op: &'static str) -> Result<(AsyncConn, OwnedSemaphorePermit), Error> {
        let here = Runtime::current(op)?;
        let max = self.server.pool_size;
        let waited =
            tokio::time::timeout(self.server.wait_timeout, self.turns.clone().acquire_owned())
                .await;
        let Ok(Ok(turn)) = waited else {
            return Err(self.server.no_free_connection(op));
        };
        let evicted = {
            let mut idle = self.idle.lock();
            idle.retain(|conn| !conn.client.is_closed());
            if let Some(i) = idle.iter().rposition(|conn| conn.runtime.serves(here)) {
                return Ok((idle.swap_remove(i), turn));
            }
            // Idle connections only other runtimes can use: keep at most `pool_size` open.
            let in_use = max - self.turns.available_permits();
            (idle.len() + in_use > max).then(|| idle.remove(0))
        };
        drop(evicted);
        Ok((self.connect(op, here).await?, turn))
    }

    /// Gives a connection back (before its turn, so that the caller woken next finds it).
    fn checkin(&self, conn: AsyncConn, turn: OwnedSemaphorePermit) {
        self.idle.lock().push(conn);
        drop(turn);
    }

    async fn connect(&self, op: &'static str, runtime: Runtime) -> Result<AsyncConn, Error> {
        let server = &self.server;
        server.check_down(op)?;
        // The whole handshake is bounded, not only the TCP connect: a server that accepts
        // connections but never answers times out too.
        let connected = tokio::time::timeout(server.wait_timeout, self.config.connect(NoTls)).await;
        let (mut client, connection) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(error)) => {
                server.record_connect(Some(cachier_core::chain_message(&error)));
                return Err(Error::backend(NAME, op, error));
            }
            Err(_) => {
                let why = format!("no answer within {:?}", server.wait_timeout);
                server.record_connect(Some(why.clone()));
                return Err(Error::backend(NAME, op, format!("{}: {why}", server.label)));
            }
        };
        server.record_connect(None);
        let label = server.label.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(server = %label, error = %cachier_core::chain_message(&error), "cachier: async connection ended");
            }
        });
        if !server.schema_ready.load(Ordering::Acquire) {
            self.ensure_schema(&mut client, op).await?;
        }
        Ok(AsyncConn {
            client,
            prepared: std::array::from_fn(|_| None),
            runtime,
        })
    }

    /// The blocking driver's set-up (same lock, same plan), awaited.
    async fn ensure_schema(&self, client: &mut Client, op: &'static str) -> Result<(), Error> {
        let fail = |e| Error::backend(NAME, op, e);
        let stmts = &self.server.stmts;
        let tx = client.transaction().await.map_err(fail)?;
        tx.execute(SETUP_LOCK, &[&stmts.table.name])
            .await
            .map_err(fail)?;
        tx.batch_execute(&stmts.create_meta).await.map_err(fail)?;
        let found = match tx
            .query_opt(&stmts.select_version, &[])
            .await
            .map_err(fail)?
        {
            Some(row) => Some(row.try_get::<_, String>(0).map_err(fail)?),
            None => None,
        };
        for step in schema_plan(found, stmts)? {
            match step {
                SchemaStep::Batch(sql) => tx.batch_execute(sql).await.map_err(fail)?,
                SchemaStep::SetVersion => {
                    tx.execute(&stmts.upsert_version, &[&SCHEMA_VERSION.to_string()])
                        .await
                        .map_err(fail)?;
                }
            }
        }
        tx.commit().await.map_err(fail)?;
        self.server.schema_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// The blocking driver's `with_conn`, awaited: runs `attempt` on a pooled connection; when
    /// the connection turns out dead, drops the idle ones and tries once more on a new
    /// connection (every statement is safe to repeat).
    async fn with_conn<T, F, Fut>(&self, op: &'static str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut(AsyncConn) -> Fut,
        Fut: Future<Output = (AsyncConn, Result<T, tokio_postgres::Error>)>,
    {
        let mut retried = false;
        loop {
            let (conn, turn) = self.checkout(op).await?;
            let (conn, result) = attempt(conn).await;
            match result {
                Ok(value) => {
                    self.checkin(conn, turn);
                    return Ok(value);
                }
                Err(error) => {
                    if connection_lost(&error, conn.client.is_closed()) {
                        drop(conn);
                        let idle = std::mem::take(&mut *self.idle.lock());
                        drop(idle);
                        if !retried {
                            tracing::debug!(server = %self.server.label, error = %cachier_core::chain_message(&error), "cachier: connection lost; reconnecting");
                            retried = true;
                            continue;
                        }
                    } else {
                        self.checkin(conn, turn);
                    }
                    return Err(Error::backend(NAME, op, error));
                }
            }
        }
    }
}

impl Connection for PgAsyncPool {
    async fn query_row<'a>(
        &'a self,
        op: &'static str,
        params: &'a [Param<'a>],
    ) -> Result<Option<Row>, Error> {
        let row = self
            .with_conn(op, |mut conn| async move {
                let result = async {
                    let stmt = conn.statement(&self.server.stmts, Stmt::Get).await?;
                    conn.client.query_opt(&stmt, &sql_params(params)).await
                }
                .await;
                (conn, result)
            })
            .await?;
        Ok(decode_row(row))
    }

    async fn query_count<'a>(
        &'a self,
        op: &'static str,
        stmt: Stmt,
        params: &'a [Param<'a>],
    ) -> Result<u64, Error> {
        let count: i64 = self
            .with_conn(op, |mut conn| async move {
                let result = async {
                    let prepared = conn.statement(&self.server.stmts, stmt).await?;
                    conn.client
                        .query_one(&prepared, &sql_params(params))
                        .await?
                        .try_get(0)
                }
                .await;
                (conn, result)
            })
            .await?;
        Ok(count_of(count))
    }

    async fn query_entries<'a>(
        &'a self,
        op: &'static str,
        params: &'a [Param<'a>],
    ) -> Result<Vec<Listed>, Error> {
        let rows = self
            .with_conn(op, |mut conn| async move {
                let result = async {
                    let stmt = conn.statement(&self.server.stmts, Stmt::Entries).await?;
                    conn.client.query(&stmt, &sql_params(params)).await
                }
                .await;
                (conn, result)
            })
            .await?;
        Ok(decode_listed(&rows))
    }

    async fn execute<'a>(
        &'a self,
        op: &'static str,
        stmt: Stmt,
        params: &'a [Param<'a>],
    ) -> Result<u64, Error> {
        // A write runs in its notifying form where it has one, as on the blocking path.
        let slot = self.server.stmts.slot(stmt, function_of(params));
        self.with_conn(op, move |mut conn| async move {
            let result = async {
                let prepared = conn.statement_at(&self.server.stmts, slot).await?;
                let params = sql_params(params);
                if Statements::counts_in_a_row(slot) {
                    let count: i64 = conn
                        .client
                        .query_one(&prepared, &params)
                        .await?
                        .try_get(0)?;
                    Ok(count_of(count))
                } else {
                    conn.client.execute(&prepared, &params).await
                }
            }
            .await;
            (conn, result)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_async_config_is_the_sync_one() {
        let url = "postgres://alice:pw@db1:5433,db2/app?connect_timeout=7&application_name=x\
                   &options=-c%20statement_timeout%3D5s&keepalives_idle=30&target_session_attrs=read-write\
                   &hostaddr=127.0.0.1,127.0.0.2&load_balance_hosts=random";
        let sync = crate::postgres::parse_config(url).unwrap();
        let expected: Config = url.parse().unwrap();
        assert_eq!(
            format!("{:?}", async_config(&sync)),
            format!("{expected:?}")
        );
    }
}
