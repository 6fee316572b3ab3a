//! The async path on PostgreSQL: `tokio-postgres` clients (the driver the sync `postgres`
//! crate wraps) whose connections run as tasks of the callers' runtimes, so an async hit is one
//! awaited round trip with no hop to the blocking pool. It runs the blocking driver's
//! statement table, core operations ([`Rows`]), row decoding, schema plan, error
//! classification and fail-fast state; only the pool is its own.

use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cachier_core::{AsyncCore, BoxFuture, CacheEntry, Claim, ClaimToken, Error, Key};
use parking_lot::Mutex;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::dialect::{schema_plan, SchemaStep, Statements, Stmt, SCHEMA_VERSION, STMT_COUNT};
use crate::postgres::{
    connection_lost, count_of, decode_row, sql_params, PgDriver, NAME, SETUP_LOCK,
};
use crate::{Exec, Param, Row, Rows};

/// The async connections of one backend: at most `pool_size` in use at once (callers beyond it
/// wait for a turn) and about as many open, kept idle between calls.
pub(crate) struct NativePool {
    config: Config,
    idle: Mutex<Vec<NativeConn>>,
    /// One per connection in use.
    turns: Arc<Semaphore>,
}

impl NativePool {
    pub(crate) fn new(config: &::postgres::Config, pool_size: usize) -> NativePool {
        NativePool {
            config: native_config(config),
            idle: Mutex::new(Vec::new()),
            turns: Arc::new(Semaphore::new(pool_size)),
        }
    }
}

/// The sync driver's configuration for `tokio-postgres` (the sync `Config` wraps one but does
/// not hand it out), so both paths connect alike: same hosts, credentials, timeouts and
/// options.
fn native_config(c: &::postgres::Config) -> Config {
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
struct NativeConn {
    client: Client,
    prepared: [Option<Statement>; STMT_COUNT],
    runtime: Runtime,
}

impl NativeConn {
    async fn statement(
        &mut self,
        stmts: &Statements,
        stmt: Stmt,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(prepared) = &self.prepared[stmt.index()] {
            return Ok(prepared.clone());
        }
        let prepared = self.client.prepare(stmts.sql(stmt)).await?;
        self.prepared[stmt.index()] = Some(prepared.clone());
        Ok(prepared)
    }
}

impl PgDriver {
    /// A turn to use a connection (waiting up to the connect timeout), and an idle connection
    /// this caller's runtime can use or a new one.
    async fn checkout_native(
        &self,
        op: &'static str,
    ) -> Result<(NativeConn, OwnedSemaphorePermit), Error> {
        let here = Runtime::current(op)?;
        let pool = &self.native;
        let turn = match tokio::time::timeout(self.wait_timeout, pool.turns.clone().acquire_owned())
            .await
        {
            Ok(Ok(turn)) => turn,
            _ => {
                return Err(Error::backend(
                    NAME,
                    op,
                    format!(
                        "no pooled connection free within {:?} (pool_size {})",
                        self.wait_timeout, self.max
                    ),
                ))
            }
        };
        let evicted = {
            let mut idle = pool.idle.lock();
            idle.retain(|conn| !conn.client.is_closed());
            if let Some(i) = idle.iter().rposition(|conn| conn.runtime.serves(here)) {
                return Ok((idle.swap_remove(i), turn));
            }
            // Idle connections only other runtimes can use: keep at most `pool_size` open.
            let in_use = self.max - pool.turns.available_permits();
            (idle.len() + in_use > self.max).then(|| idle.remove(0))
        };
        drop(evicted);
        Ok((self.connect_native(op, here).await?, turn))
    }

    /// Gives a connection back (before its turn, so that the caller woken next finds it).
    fn checkin_native(&self, conn: NativeConn, turn: OwnedSemaphorePermit) {
        self.native.idle.lock().push(conn);
        drop(turn);
    }

    async fn connect_native(
        &self,
        op: &'static str,
        runtime: Runtime,
    ) -> Result<NativeConn, Error> {
        self.check_down(op)?;
        // The whole handshake is bounded, not only the TCP connect: a server that accepts
        // connections but never answers times out too.
        let connected =
            tokio::time::timeout(self.wait_timeout, self.native.config.connect(NoTls)).await;
        let (mut client, connection) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(error)) => {
                self.record_connect(Some(cachier_core::chain_message(&error)));
                return Err(Error::backend(NAME, op, error));
            }
            Err(_) => {
                let why = format!("no answer within {:?}", self.wait_timeout);
                self.record_connect(Some(why.clone()));
                return Err(Error::backend(NAME, op, format!("{}: {why}", self.label)));
            }
        };
        self.record_connect(None);
        let label = self.label.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(server = %label, error = %cachier_core::chain_message(&error), "cachier: async connection ended");
            }
        });
        if !self.schema_ready.load(Ordering::Acquire) {
            self.ensure_schema_native(&mut client, op).await?;
        }
        Ok(NativeConn {
            client,
            prepared: std::array::from_fn(|_| None),
            runtime,
        })
    }

    /// The blocking driver's set-up (same lock, same plan), awaited.
    async fn ensure_schema_native(
        &self,
        client: &mut Client,
        op: &'static str,
    ) -> Result<(), Error> {
        let fail = |e| Error::backend(NAME, op, e);
        let stmts = &self.stmts;
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
        self.schema_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// The blocking `with_conn`, awaited: runs `attempt` on a pooled connection; when the
    /// connection turns out dead, drops the idle ones and tries once more on a new connection
    /// (every statement is safe to repeat).
    async fn with_native<T, F, Fut>(&self, op: &'static str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut(NativeConn) -> Fut,
        Fut: Future<Output = (NativeConn, Result<T, tokio_postgres::Error>)>,
    {
        let mut retried = false;
        loop {
            let (conn, turn) = self.checkout_native(op).await?;
            let (conn, result) = attempt(conn).await;
            match result {
                Ok(value) => {
                    self.checkin_native(conn, turn);
                    return Ok(value);
                }
                Err(error) => {
                    if connection_lost(&error, conn.client.is_closed()) {
                        drop(conn);
                        let idle = std::mem::take(&mut *self.native.idle.lock());
                        drop(idle);
                        if !retried {
                            tracing::debug!(server = %self.label, error = %cachier_core::chain_message(&error), "cachier: connection lost; reconnecting");
                            retried = true;
                            continue;
                        }
                    } else {
                        self.checkin_native(conn, turn);
                    }
                    return Err(Error::backend(NAME, op, error));
                }
            }
        }
    }
}

impl Exec for PgDriver {
    async fn query_row<'a>(
        &'a self,
        op: &'static str,
        params: &'a [Param<'a>],
    ) -> Result<Option<Row>, Error> {
        let row = self
            .with_native(op, |mut conn| async move {
                let result = async {
                    let stmt = conn.statement(&self.stmts, Stmt::Get).await?;
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
            .with_native(op, |mut conn| async move {
                let result = async {
                    let prepared = conn.statement(&self.stmts, stmt).await?;
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

    async fn execute<'a>(
        &'a self,
        op: &'static str,
        stmt: Stmt,
        params: &'a [Param<'a>],
    ) -> Result<u64, Error> {
        self.with_native(op, move |mut conn| async move {
            let result = async {
                let prepared = conn.statement(&self.stmts, stmt).await?;
                conn.client.execute(&prepared, &sql_params(params)).await
            }
            .await;
            (conn, result)
        })
        .await
    }
}

/// One function's rows through `tokio-postgres`: the native [`AsyncCore`] of the PostgreSQL
/// backend.
pub(crate) struct PgAsyncCore {
    driver: Arc<PgDriver>,
    function_id: String,
}

impl fmt::Debug for PgAsyncCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgAsyncCore")
            .field("server", &self.driver.label)
            .field("function_id", &self.function_id)
            .finish()
    }
}

impl PgAsyncCore {
    pub(crate) fn shared(driver: Arc<PgDriver>, function_id: &str) -> Arc<dyn AsyncCore> {
        Arc::new(PgAsyncCore {
            driver,
            function_id: function_id.to_owned(),
        })
    }

    fn rows(&self) -> Rows<'_, PgDriver> {
        Rows {
            exec: &*self.driver,
            function_id: &self.function_id,
        }
    }
}

impl AsyncCore for PgAsyncCore {
    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<CacheEntry>, Error>> {
        Box::pin(async move { self.rows().get(key).await })
    }
    fn put<'a>(
        &'a self,
        key: &'a Key,
        value: &'a [u8],
        claim: Option<&'a ClaimToken>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { self.rows().put(key, value, claim).await })
    }
    fn claim<'a>(&'a self, key: &'a Key, lease: Duration) -> BoxFuture<'a, Result<Claim, Error>> {
        Box::pin(async move { self.rows().claim(key, lease).await })
    }
    fn release<'a>(
        &'a self,
        key: &'a Key,
        claim: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { self.rows().release(key, claim).await })
    }
    fn clear_cache(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.rows().clear_cache().await })
    }
    fn clear_being_calculated(&self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.rows().clear_being_calculated().await })
    }
    fn delete_stale_entries(&self, older_than: Duration) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move { self.rows().delete_stale_entries(older_than).await })
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
            format!("{:?}", native_config(&sync)),
            format!("{expected:?}")
        );
    }
}
