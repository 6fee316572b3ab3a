//! PostgreSQL, through two pools on one [`Server`]: the blocking driver ([`PgDriver`], the
//! `postgres` crate) and, with the `async` feature, the async pool (`PgAsyncPool`,
//! `tokio-postgres` on the callers' runtimes). What both need is here: the configuration, the
//! state they share, the classification of errors and the decoding of rows.

mod blocking;
mod listen;
#[cfg(feature = "async")]
mod nonblocking;

pub(crate) use blocking::PgDriver;
#[cfg(feature = "async")]
pub(crate) use nonblocking::PgAsyncPool;

use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::postgres::error::SqlState;
use ::postgres::types::{FromSql, ToSql, Type};
use ::postgres::Config;
use cachier_core::watch::{ChangeSink, Watch};
use cachier_core::{Error, Key};
use parking_lot::Mutex;

use crate::dialect::{Dialect, Statements, TableName, MAX_NOTIFIED_NAMESPACE};
use crate::ops::{warn_unreadable_row, Listed, Param, Row};
use crate::DEFAULT_CONNECT_TIMEOUT;

const NAME: &str = "postgres";

/// After a failed connection attempt, further attempts fail at once for this long, so that
/// calls against a server that does not answer do not each wait for the connect timeout.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Takes a lock that serializes schema set-up across processes and machines, for the
/// transaction's duration: concurrent CREATE TABLE IF NOT EXISTS can otherwise fail on
/// PostgreSQL's catalog. Parameter: the table name.
const SETUP_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext($1))";

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

/// One server as both pools see it. Shared, so that the schema is set up once and a failed
/// connection attempt on either path makes both fail fast.
pub(crate) struct Server {
    /// How to connect: the caller's configuration with the connect timeout settled.
    config: Config,
    /// Where it connects, without the password.
    label: String,
    stmts: Statements,
    /// Most connections each pool has in use at once.
    pool_size: usize,
    /// The connect timeout; also bounds the wait for a free pooled connection.
    wait_timeout: Duration,
    schema_ready: AtomicBool,
    /// Until when connecting is not retried, and why.
    down: Mutex<Option<(Instant, String)>>,
    /// The change channel, started on first use.
    listener: cachier_core::watch::Listener,
    /// How often a waiter looks at the table while the change channel is up.
    wait_poll: Duration,
}

impl Server {
    /// The server of `config`; the connect timeout is the builder's, else the URL's, else
    /// [`DEFAULT_CONNECT_TIMEOUT`]. Connects to nothing yet.
    pub(crate) fn new(
        mut config: Config,
        table: TableName,
        pool_size: usize,
        connect_timeout: Option<Duration>,
        push: Push,
    ) -> Arc<Server> {
        let timeout = connect_timeout
            .or(config.get_connect_timeout().copied())
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        config.connect_timeout(timeout);
        if config.get_application_name().is_none() {
            config.application_name("cachier");
        }
        Arc::new(Server {
            label: label(&config),
            config,
            stmts: Statements::new(Dialect::Postgres, table),
            pool_size,
            wait_timeout: timeout,
            schema_ready: AtomicBool::new(false),
            down: Mutex::new(None),
            listener: cachier_core::watch::Listener::new(push.heartbeat),
            wait_poll: push.wait_poll,
        })
    }

    /// [`Core::watch`](cachier_core::Core::watch) of `function_id`: pushed through the
    /// backend's listener, unless the namespace is too long for a notification's payload.
    pub(crate) fn watch(self: &Arc<Self>, function_id: &str, sink: Arc<dyn ChangeSink>) -> Watch {
        if function_id.len() > MAX_NOTIFIED_NAMESPACE {
            return Watch::Unwatched;
        }
        let hub = listen::hub(&self.listener, self);
        Watch::Pushed(hub.subscribe(function_id, sink))
    }

    /// [`Core::wait`](cachier_core::Core::wait) of `key` of `function_id` through the
    /// listener (`None` for a namespace too long to be notified: the caller polls).
    pub(crate) fn wait(
        self: &Arc<Self>,
        function_id: &str,
        key: &Key,
        max: Duration,
        released: &mut dyn FnMut() -> Result<bool, Error>,
    ) -> Option<Result<bool, Error>> {
        if function_id.len() > MAX_NOTIFIED_NAMESPACE {
            return None;
        }
        let hub = listen::hub(&self.listener, self);
        Some(hub.wait_key(function_id, key, max, self.wait_poll, released))
    }

    /// [`Server::wait`] for async callers, awaited on the caller's runtime.
    #[cfg(feature = "async")]
    pub(crate) async fn wait_async<F>(
        self: &Arc<Self>,
        function_id: &str,
        key: &Key,
        max: Duration,
        released: impl FnMut() -> F,
    ) -> Option<Result<bool, Error>>
    where
        F: std::future::Future<Output = Result<bool, Error>>,
    {
        if function_id.len() > MAX_NOTIFIED_NAMESPACE {
            return None;
        }
        let hub = listen::hub(&self.listener, self);
        Some(
            hub.wait_key_async(function_id, key, max, self.wait_poll, released)
                .await,
        )
    }

    /// Fails at once while a recent connection attempt failed.
    fn check_down(&self, op: &'static str) -> Result<(), Error> {
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
    fn record_connect(&self, failure: Option<String>) {
        *self.down.lock() = failure.map(|why| (Instant::now() + RETRY_AFTER, why));
    }

    /// The error of a caller that waited the whole timeout for a pooled connection.
    fn no_free_connection(&self, op: &'static str) -> Error {
        Error::backend(
            NAME,
            op,
            format!(
                "no pooled connection free within {:?} (pool_size {})",
                self.wait_timeout, self.pool_size
            ),
        )
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

/// Whether `error` means the connection is gone (as opposed to a failed statement); `closed`
/// is the client's own view.
fn connection_lost(error: &::postgres::Error, closed: bool) -> bool {
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

/// The settings of the change channel ([`listen`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Push {
    pub(crate) heartbeat: Duration,
    pub(crate) wait_poll: Duration,
}

/// The function a statement's parameters are for: its first, in every statement of a function.
fn function_of<'a>(params: &[Param<'a>]) -> Option<&'a str> {
    match params.first() {
        Some(Param::Text(id)) => Some(id),
        _ => None,
    }
}

fn sql_params<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
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

/// Decodes a [`Stmt::Get`](crate::dialect::Stmt::Get) row; an unreadable one is a miss, with
/// a warning.
fn decode_row(row: Option<::postgres::Row>) -> Option<Row> {
    row.and_then(|row| match read_row(&row) {
        Ok(row) => Some(row),
        Err(error) => {
            warn_unreadable_row(NAME, &error);
            None
        }
    })
}

/// A `TIMESTAMPTZ` as microseconds since the Unix epoch. On the wire it is 8 bytes,
/// microseconds since 2000-01-01; read as they are, with no conversion that could overflow
/// (`infinity` reads as the farthest time).
struct Micros(i64);

/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

impl<'a> FromSql<'a> for Micros {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> Result<Micros, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw
            .try_into()
            .map_err(|_| format!("a timestamp of {} bytes, not 8", raw.len()))?;
        Ok(Micros(
            i64::from_be_bytes(bytes).saturating_add(PG_EPOCH_US),
        ))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
}

fn micros_at(row: &::postgres::Row, column: usize) -> Result<i64, ::postgres::Error> {
    Ok(row.try_get::<_, Micros>(column)?.0)
}

fn read_row(row: &::postgres::Row) -> Result<Row, ::postgres::Error> {
    Ok(Row {
        value: row.try_get(0)?,
        stored_us: micros_at(row, 1)?,
        now_us: micros_at(row, 2)?,
        completed: row.try_get(3)?,
        claim_owner: row.try_get(4)?,
        live: row.try_get::<_, Option<bool>>(5)?.unwrap_or(false),
    })
}

/// Decodes the rows of [`Stmt::Entries`](crate::dialect::Stmt::Entries); unreadable ones are
/// skipped with a warning.
fn decode_listed(rows: &[::postgres::Row]) -> Vec<Listed> {
    rows.iter()
        .filter_map(|row| match read_listed(row) {
            Ok(listed) => Some(listed),
            Err(error) => {
                warn_unreadable_row(NAME, &error);
                None
            }
        })
        .collect()
}

fn read_listed(row: &::postgres::Row) -> Result<Listed, ::postgres::Error> {
    Ok(Listed {
        key: row.try_get(0)?,
        size: row.try_get(1)?,
        stored_us: micros_at(row, 2)?,
        now_us: micros_at(row, 3)?,
        completed: row.try_get(4)?,
        claim_owner: row.try_get(5)?,
        live: row.try_get::<_, Option<bool>>(6)?.unwrap_or(false),
        head: row.try_get(7)?,
    })
}

/// A count as the core reports it.
fn count_of(count: i64) -> u64 {
    count.max(0).unsigned_abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_unix_microseconds() {
        let read = |pg_us: i64| {
            Micros::from_sql(&Type::TIMESTAMPTZ, &pg_us.to_be_bytes())
                .unwrap()
                .0
        };
        assert_eq!(read(0), PG_EPOCH_US, "2000-01-01");
        assert_eq!(read(-PG_EPOCH_US), 0, "the Unix epoch");
        assert_eq!(read(i64::MAX), i64::MAX, "infinity saturates");
        assert!(Micros::from_sql(&Type::TIMESTAMPTZ, &[1, 2, 3]).is_err());
        assert!(Micros::accepts(&Type::TIMESTAMPTZ));
        assert!(!Micros::accepts(&Type::INT8));
    }

    #[test]
    fn debug_and_errors_hide_the_password() {
        let config = parse_config("postgres://alice:hunter2@127.0.0.1:1/db").unwrap();
        let push = Push {
            heartbeat: Duration::from_millis(500),
            wait_poll: Duration::from_millis(250),
        };
        let table = TableName::parse("t").unwrap();
        let driver = PgDriver::new(Server::new(config, table, 2, None, push));
        let debug = format!("{driver:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("alice@127.0.0.1:1/db"), "{debug}");
        let error = parse_config("postgres://alice:hunter2@h:notaport/db")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }
}
