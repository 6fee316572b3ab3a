//! A small pool of synchronous connections that outlives server restarts.
//!
//! Idle connections are reused; a connection that breaks is dropped, and when one taken from
//! the idle list turns out dead (the server restarted), every idle one is dropped and the
//! operation retried once on a fresh connection, so a restart costs no failed call. Every
//! connection has a connect and a response timeout, and after a failed connect no new one is
//! tried for `reconnect_backoff`: a dead or unreachable server makes calls fail fast instead
//! of hanging them.
//!
//! With the `async` feature the pool also keeps one multiplexed async connection per tokio
//! runtime for [`AsyncCore`](cachier_core::AsyncCore): the same retry, timeouts and backoff,
//! awaited on the caller's runtime. Both paths send the same [`Request`]s.
//!
//! On a Redis Cluster ([`Server::Cluster`]) each pooled connection is a cluster connection of
//! the `redis` crate: it routes each request to the primary of its key's slot and follows
//! `MOVED` and `ASK` redirections. One that fails on its connections (a primary died) is
//! dropped like a broken single-server connection, and the next one reads the cluster's map
//! afresh from the seed nodes, so a replica promoted since is found without a restart.

use std::time::{Duration, Instant};

use cachier_core::{BoxError, Error, ErrorKind};
use parking_lot::Mutex;
use redis::cluster::{ClusterClient, ClusterConnection};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Client, Connection, ConnectionLike, FromRedisValue, RedisError, RedisResult};

/// What the connections are opened to.
// One per backend, never moved on a hot path: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Server {
    /// One server.
    Single(Client),
    /// A Redis Cluster, reached through its seed nodes.
    Cluster(ClusterClient),
}

/// One node of a cluster, as `CLUSTER SLOTS` names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Node {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Node {
    fn routing(&self) -> RoutingInfo {
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: self.host.clone(),
            port: self.port,
        })
    }
}

/// One request as both paths send it: built once, sent by [`Pool::run`] or
/// [`Pool::run_async`] (possibly twice, on a fresh connection after a dead one).
pub(crate) enum Request<'a> {
    Cmd(redis::Cmd),
    /// A pipeline; on a cluster it goes to the node of its first key, so all its keys must
    /// share one slot.
    Pipe(redis::Pipeline),
    /// A script; on a cluster all its keys must share one slot.
    Script(redis::ScriptInvocation<'a>),
    /// A command for one node of a cluster (a `SCAN` step of one primary); on a single server,
    /// simply the command.
    At(&'a Node, redis::Cmd),
}

/// A pooled synchronous connection.
pub(crate) enum SyncConnection {
    Single(Connection),
    Cluster(Box<ClusterConnection>),
}

impl SyncConnection {
    fn as_dyn(&mut self) -> &mut dyn ConnectionLike {
        match self {
            SyncConnection::Single(con) => con,
            SyncConnection::Cluster(con) => &mut **con,
        }
    }
}

impl Request<'_> {
    pub(crate) fn send<T: FromRedisValue>(&self, con: &mut SyncConnection) -> RedisResult<T> {
        if let SyncConnection::Cluster(con) = con {
            let reply = match self {
                Request::At(node, cmd) => con.route_command(cmd, node.routing())?,
                // The blocking cluster connection refuses `Pipeline::query`, but sends a packed
                // pipeline to the node of its first key, and again after a redirection.
                Request::Pipe(pipe) => redis::Value::Array(con.req_packed_commands(
                    &pipe.get_packed_pipeline(),
                    0,
                    pipe.len(),
                )?),
                _ => return self.send_on(&mut **con),
            };
            return redis::from_redis_value(reply).map_err(RedisError::from);
        }
        self.send_on(con.as_dyn())
    }

    fn send_on<T: FromRedisValue>(&self, con: &mut dyn ConnectionLike) -> RedisResult<T> {
        match self {
            Request::Cmd(cmd) | Request::At(_, cmd) => cmd.query(con),
            Request::Pipe(pipe) => pipe.query(con),
            Request::Script(script) => script.invoke(con),
        }
    }

    #[cfg(feature = "async")]
    async fn send_async<T: FromRedisValue>(&self, con: &mut AsyncConnection) -> RedisResult<T> {
        match con {
            AsyncConnection::Single(con) => self.send_on_async(con).await,
            AsyncConnection::Cluster(con) => {
                if let Request::At(node, cmd) = self {
                    let reply = con.route_command(cmd.clone(), node.routing()).await?;
                    return redis::from_redis_value(reply).map_err(RedisError::from);
                }
                self.send_on_async(con).await
            }
        }
    }

    #[cfg(feature = "async")]
    async fn send_on_async<T: FromRedisValue>(
        &self,
        con: &mut (impl redis::aio::ConnectionLike + Send),
    ) -> RedisResult<T> {
        match self {
            Request::Cmd(cmd) | Request::At(_, cmd) => cmd.query_async(con).await,
            Request::Pipe(pipe) => pipe.query_async(con).await,
            Request::Script(script) => script.invoke_async(con).await,
        }
    }
}

/// A cached async connection (multiplexed: cloned by each caller).
#[cfg(feature = "async")]
#[derive(Clone)]
enum AsyncConnection {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// Runtimes with a cached async connection at once: a connection's driver task lives on the
/// runtime that opened it, so each runtime gets its own; the oldest goes beyond this.
#[cfg(feature = "async")]
const MAX_RUNTIMES: usize = 8;

/// Timeouts and sizes of a [`Pool`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) reconnect_backoff: Duration,
    pub(crate) max_idle: usize,
}

pub(crate) struct Pool {
    server: Server,
    settings: PoolSettings,
    idle: Mutex<Vec<SyncConnection>>,
    /// Set after a failed connect: no new attempt before the instant; the text says why.
    /// Shared by both paths: a server found down by one is down for the other.
    down: Mutex<Option<(Instant, String)>>,
    /// The async connection of each runtime that made async calls, most recent last.
    #[cfg(feature = "async")]
    multiplexed: Mutex<Vec<(tokio::runtime::Id, AsyncConnection)>>,
}

/// The error of an operation while connecting is suspended.
#[derive(Debug)]
struct Unreachable {
    retry_in: Duration,
    last_error: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server unreachable (last error: {}); next connection attempt in {} ms",
            self.last_error,
            self.retry_in.as_millis()
        )
    }
}

impl std::error::Error for Unreachable {}

/// Credentials the server refused, with its reason: the `redis` crate reports only
/// "Password authentication failed" and drops the server's reply.
#[derive(Debug)]
struct Refused {
    error: RedisError,
    /// The server's reply to the same `AUTH`, as it worded it.
    reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.reason)
    }
}

/// The reason is in the message.
impl std::error::Error for Refused {}

/// The `AUTH` command a connection made with `client` sends, if it sends one.
fn auth_command(client: &Client) -> Option<redis::Cmd> {
    let settings = client.get_connection_info().redis_settings();
    let password = settings.password()?;
    let mut auth = redis::cmd("AUTH");
    if let Some(user) = settings.username() {
        auth.arg(user);
    }
    auth.arg(password);
    Some(auth)
}

/// A client for the same server that connects without credentials.
fn without_credentials(client: &Client) -> Option<Client> {
    let info = client
        .get_connection_info()
        .clone()
        .set_redis_settings(redis::RedisConnectionInfo::default());
    Client::open(info).ok()
}

/// The server's words in a reply to a command: its error code and message.
fn server_reason(error: &RedisError) -> String {
    match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => error.to_string(),
    }
}

fn refused(error: &RedisError) -> bool {
    error.kind() == redis::ErrorKind::AuthenticationFailed
}

/// True when the connection itself failed (not a command): it cannot be reused.
fn broken(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

/// True when a reused connection was found dead, and a fresh one is worth one retry (a
/// timeout is not: the server may be hung, and a retry would double the wait).
fn dropped(error: &RedisError) -> bool {
    (error.is_connection_dropped() || error.is_io_error() || error.is_unrecoverable_error())
        && !error.is_timeout()
}

impl Pool {
    pub(crate) fn new(server: Server, settings: PoolSettings) -> Pool {
        Pool {
            server,
            settings,
            idle: Mutex::new(Vec::new()),
            down: Mutex::new(None),
            #[cfg(feature = "async")]
            multiplexed: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn server(&self) -> &Server {
        &self.server
    }

    pub(crate) fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Whether the connections go to a cluster (keys of one request must share a slot, and
    /// walks visit every primary).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.server, Server::Cluster(_))
    }

    /// Runs `op` on a connection. `op` may run twice (once more on a fresh connection when a
    /// pooled one was dead), so it must be safe to repeat.
    pub(crate) fn run<T>(
        &self,
        operation: &'static str,
        mut op: impl FnMut(&mut SyncConnection) -> RedisResult<T>,
    ) -> Result<T, Error> {
        let reused = self.idle.lock().pop();
        let (mut con, reused) = match reused {
            Some(con) => (con, true),
            None => (self.connect(operation)?, false),
        };
        match op(&mut con) {
            Ok(value) => {
                self.check_in(con);
                Ok(value)
            }
            Err(error) if reused && dropped(&error) => {
                drop(con);
                self.idle.lock().clear();
                let mut con = self.connect(operation)?;
                let outcome = op(&mut con);
                self.finish(con, outcome, operation)
            }
            Err(error) => self.finish(con, Err(error), operation),
        }
    }

    fn finish<T>(
        &self,
        con: SyncConnection,
        outcome: RedisResult<T>,
        operation: &'static str,
    ) -> Result<T, Error> {
        match outcome {
            Ok(value) => {
                self.check_in(con);
                Ok(value)
            }
            Err(error) => {
                if !broken(&error) {
                    self.check_in(con);
                }
                Err(failed(operation, error))
            }
        }
    }

    fn check_in(&self, mut con: SyncConnection) {
        if !con.as_dyn().is_open() {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < self.settings.max_idle {
            idle.push(con);
        }
    }

    fn connect(&self, operation: &'static str) -> Result<SyncConnection, Error> {
        self.check_up(operation)?;
        #[cfg(feature = "tls")]
        install_crypto_provider();
        let settings = &self.settings;
        let connected = match &self.server {
            Server::Single(client) => client
                .get_connection_with_timeout(settings.connect_timeout)
                .and_then(|con| {
                    con.set_read_timeout(Some(settings.response_timeout))?;
                    con.set_write_timeout(Some(settings.response_timeout))?;
                    Ok(SyncConnection::Single(con))
                }),
            // The timeouts are the cluster client's (set when it was built).
            Server::Cluster(client) => client
                .get_connection()
                .map(|con| SyncConnection::Cluster(Box::new(con))),
        }
        .map_err(|error| self.explained(error));
        self.connected(connected, operation)
    }

    /// `error`, with the server's reason when it refused the credentials.
    fn explained(&self, error: RedisError) -> BoxError {
        if !refused(&error) {
            return Box::new(error);
        }
        match self.refusal_reason() {
            Some(reason) => Box::new(Refused { error, reason }),
            None => Box::new(error),
        }
    }

    /// Asks the server why it refuses the credentials: the same `AUTH`, sent on a connection
    /// opened without them.
    fn refusal_reason(&self) -> Option<String> {
        let Server::Single(client) = &self.server else {
            return None;
        };
        let auth = auth_command(client)?;
        let mut con = without_credentials(client)?
            .get_connection_with_timeout(self.settings.connect_timeout)
            .ok()?;
        con.set_read_timeout(Some(self.settings.response_timeout))
            .ok()?;
        auth.query::<()>(&mut con)
            .err()
            .map(|error| server_reason(&error))
    }

    /// Fails at once while connecting is suspended after a failed attempt.
    fn check_up(&self, operation: &'static str) -> Result<(), Error> {
        if let Some((until, last_error)) = &*self.down.lock() {
            let now = Instant::now();
            if now < *until {
                let retry_in = *until - now;
                return Err(Error::backend(
                    "redis",
                    operation,
                    Unreachable {
                        retry_in,
                        last_error: last_error.clone(),
                    },
                ));
            }
        }
        Ok(())
    }

    /// Records a connection attempt's outcome (a failure suspends connecting for
    /// `reconnect_backoff`).
    fn connected<C>(
        &self,
        outcome: Result<C, BoxError>,
        operation: &'static str,
    ) -> Result<C, Error> {
        match outcome {
            Ok(con) => {
                *self.down.lock() = None;
                Ok(con)
            }
            Err(error) => {
                if !self.settings.reconnect_backoff.is_zero() {
                    *self.down.lock() = Some((
                        Instant::now() + self.settings.reconnect_backoff,
                        cachier_core::chain_message(&*error),
                    ));
                }
                let kind = match error.downcast_ref::<RedisError>() {
                    Some(redis) if redis.is_timeout() => ErrorKind::Timeout,
                    _ => ErrorKind::Unavailable,
                };
                Err(Error::backend_of_kind(kind, "redis", operation, error))
            }
        }
    }
}

#[cfg(feature = "async")]
impl Pool {
    /// [`Pool::run`] for the async path: sends `request` on this runtime's multiplexed
    /// connection (opened on first use), never blocking the executor. A cached connection
    /// found dead (the server restarted, or its runtime is gone) is replaced and the request
    /// sent once more.
    pub(crate) async fn run_async<T: FromRedisValue>(
        &self,
        operation: &'static str,
        request: &Request<'_>,
    ) -> Result<T, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::backend("redis", operation, e))?
            .id();
        let cached = self
            .multiplexed
            .lock()
            .iter()
            .find(|(id, _)| *id == runtime)
            .map(|(_, con)| con.clone());
        let (mut con, reused) = match cached {
            Some(con) => (con, true),
            None => (self.connect_async(operation, runtime).await?, false),
        };
        let outcome = match request.send_async(&mut con).await {
            Err(error) if reused && dropped(&error) => {
                self.forget(runtime);
                let mut con = self.connect_async(operation, runtime).await?;
                request.send_async(&mut con).await
            }
            outcome => outcome,
        };
        outcome.map_err(|error| {
            if broken(&error) {
                self.forget(runtime);
            }
            failed(operation, error)
        })
    }

    fn forget(&self, runtime: tokio::runtime::Id) {
        self.multiplexed.lock().retain(|(id, _)| *id != runtime);
    }

    async fn connect_async(
        &self,
        operation: &'static str,
        runtime: tokio::runtime::Id,
    ) -> Result<AsyncConnection, Error> {
        self.check_up(operation)?;
        #[cfg(feature = "tls")]
        install_crypto_provider();
        let opened = match &self.server {
            Server::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.settings.connect_timeout))
                    .set_response_timeout(Some(self.settings.response_timeout));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(AsyncConnection::Single)
            }
            Server::Cluster(client) => client
                .get_async_connection()
                .await
                .map(AsyncConnection::Cluster),
        };
        let outcome = match opened {
            Ok(con) => Ok(con),
            Err(error) => Err(self.explained_async(error).await),
        };
        let con = self.connected(outcome, operation)?;
        let mut cached = self.multiplexed.lock();
        cached.retain(|(id, _)| *id != runtime);
        if cached.len() >= MAX_RUNTIMES {
            cached.remove(0);
        }
        cached.push((runtime, con.clone()));
        Ok(con)
    }
}

#[cfg(feature = "async")]
impl Pool {
    /// [`Pool::explained`] without blocking the runtime.
    async fn explained_async(&self, error: RedisError) -> BoxError {
        if !refused(&error) {
            return Box::new(error);
        }
        match self.refusal_reason_async().await {
            Some(reason) => Box::new(Refused { error, reason }),
            None => Box::new(error),
        }
    }

    async fn refusal_reason_async(&self) -> Option<String> {
        let Server::Single(client) = &self.server else {
            return None;
        };
        let auth = auth_command(client)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.connect_timeout))
            .set_response_timeout(Some(self.settings.response_timeout));
        let mut con = without_credentials(client)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .ok()?;
        auth.query_async::<()>(&mut con)
            .await
            .err()
            .map(|error| server_reason(&error))
    }
}

/// rustls needs a process-wide crypto provider; it picks one by itself only when exactly one
/// is compiled in. Install ring's unless the program installed another.
#[cfg(feature = "tls")]
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

/// The error of a failed `operation`: a timeout when the server did not answer in time.
pub(crate) fn failed(operation: &'static str, error: RedisError) -> Error {
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Unavailable
    };
    Error::backend_of_kind(kind, "redis", operation, error)
}
