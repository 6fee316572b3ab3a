//! [`RedisBackendBuilder`]: the options of a backend, the server's URL or client, and the
//! checks made before the backend is opened.

use std::fmt;
use std::time::Duration;

use cachier_core::Error;

use crate::backend::{RedisBackend, Shared};
use crate::pool::{Pool, PoolSettings, Server};
use crate::DEFAULT_PREFIX;
use cachier_core::watch::{self, Listener};

/// Attempts of a cluster request beyond the first (each after a redirection, a reconnection or
/// a short wait while the cluster is down): enough to follow a resharding's `MOVED` and `ASK`,
/// few enough that a call while a slot has no primary fails within a few hundred milliseconds
/// (the call then runs uncached, with a warning).
const CLUSTER_RETRIES: u32 = 3;
/// Bounds (ms) of the wait before retrying a cluster request refused with `CLUSTERDOWN` or
/// `TRYAGAIN`.
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (10, 100);

/// Configures a [`RedisBackend`]; made by [`RedisBackend::builder`] or
/// [`RedisBackend::from_client`].
#[must_use]
///
/// ```
/// use std::time::Duration;
/// use cachier_backend_redis::RedisBackend;
///
/// // Checks the configuration only: the server is first contacted by a call.
/// let backend = RedisBackend::builder("redis://127.0.0.1:6379/0")
///     .prefix("myapp")                                  // keys are `myapp:{function}:{key}`
///     .evict_after(Duration::from_secs(7 * 24 * 3600)) // let Redis expire old entries
///     .connect_timeout(Duration::from_secs(2))
///     .build()?;
/// let square = cachier_core::memoize("docs::square", |x: u64| x * x).backend(backend).build()?;
/// # let _ = square;
/// // square.call(12) reads and writes Redis; with Redis down it computes uncached.
/// # Ok::<(), cachier_core::Error>(())
/// ```
pub struct RedisBackendBuilder {
    source: Source,
    prefix: String,
    evict_after: Option<Duration>,
    settings: PoolSettings,
    heartbeat: Duration,
    wait_poll: Duration,
}

/// Where the connections come from.
enum Source {
    Url(String),
    Client(Box<redis::Client>),
    /// The seed nodes of a cluster, one URL each.
    Cluster(Vec<String>),
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = match &self.source {
            Source::Url(url) => cachier_core::redact_url(url),
            Source::Client(client) => format!("{:?}", client.get_connection_info().addr()),
            Source::Cluster(seeds) => shown_seeds(seeds),
        };
        f.debug_struct("RedisBackendBuilder")
            .field("server", &server)
            .field("prefix", &self.prefix)
            .field("evict_after", &self.evict_after)
            .field("settings", &self.settings)
            .field("heartbeat", &self.heartbeat)
            .field("wait_poll", &self.wait_poll)
            .finish()
    }
}

impl RedisBackend {
    /// The backend of the server at `url`, with default settings.
    ///
    /// # Errors
    /// See [`RedisBackendBuilder::build`].
    pub fn from_url(url: &str) -> Result<RedisBackend, Error> {
        RedisBackend::builder(url).build()
    }

    /// A builder for the server at `url`: `redis://[user:password@]host[:port][/db]`,
    /// `rediss://...` (TLS, with the `tls` feature; `#insecure` accepts any certificate),
    /// `redis+unix:///path/to.sock[?db=N&user=U&pass=P]`, or a Redis Cluster:
    /// `redis+cluster://[user:password@]host1[:port],host2[:port]/` (`rediss+cluster://`
    /// with TLS), naming one or more seed nodes.
    pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
        RedisBackendBuilder::new(Source::Url(url.into()))
    }

    /// A builder for the Redis Cluster reached through `seeds`, one node URL each
    /// (`redis://[user:password@]host:port`, or `rediss://...`); every node must take the same
    /// credentials. Any reachable seed is enough: the others are found from it.
    pub fn cluster<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> RedisBackendBuilder {
        RedisBackendBuilder::new(Source::Cluster(seeds.into_iter().map(Into::into).collect()))
    }
}

/// The seed node URLs of a `redis+cluster://` (or `rediss+cluster://`) URL, or why it is not
/// one (without its credentials). `None` when `url` is not a cluster URL.
fn cluster_seeds(url: &str) -> Option<Result<Vec<String>, String>> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "redis+cluster" => "redis",
        "rediss+cluster" => "rediss",
        _ => return None,
    };
    // Hosts end at the first '/', '?' or '#' after the user info (whose password may hold
    // any of them).
    let (authority, tail) = {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let at = rest[..end].rfind('@').or_else(|| rest.rfind('@'));
        let hosts_start = at.map_or(0, |at| at + 1);
        let end = rest[hosts_start..]
            .find(['/', '?', '#'])
            .map_or(rest.len(), |i| hosts_start + i);
        (&rest[..end], &rest[end..])
    };
    let (user_info, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let (path, suffix) = tail.split_at(tail.find(['?', '#']).unwrap_or(tail.len()));
    if !matches!(path, "" | "/" | "/0") {
        return Some(Err(format!("a cluster has database 0 only, not {path:?}")));
    }
    let mut seeds = Vec::new();
    for host in hosts.split(',') {
        if host.is_empty() {
            return Some(Err("an empty host in the list of seed nodes".into()));
        }
        seeds.push(format!("{scheme}://{user_info}{host}/{suffix}"));
    }
    Some(Ok(seeds))
}

/// Seed URLs as they may be shown (no password).
fn shown_seeds(seeds: &[String]) -> String {
    let shown: Vec<String> = seeds.iter().map(|s| cachier_core::redact_url(s)).collect();
    shown.join(",")
}

impl RedisBackendBuilder {
    /// A builder on a client the caller made (see [`RedisBackend::from_client`]).
    pub(crate) fn for_client(client: redis::Client) -> RedisBackendBuilder {
        RedisBackendBuilder::new(Source::Client(Box::new(client)))
    }

    fn new(source: Source) -> RedisBackendBuilder {
        RedisBackendBuilder {
            source,
            prefix: DEFAULT_PREFIX.to_owned(),
            evict_after: None,
            settings: PoolSettings {
                connect_timeout: Duration::from_secs(1),
                response_timeout: Duration::from_secs(2),
                reconnect_backoff: Duration::from_millis(250),
                max_idle: 16,
            },
            heartbeat: watch::DEFAULT_HEARTBEAT,
            wait_poll: watch::DEFAULT_WAIT_POLL,
        }
    }

    /// The first part of every key (default `"cachier"`): separates applications sharing a
    /// server.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Lets the server delete an entry this long after it was stored (a TTL; cachier never
    /// expires Redis keys). Without it entries stay until cleared or cleaned up.
    pub fn evict_after(mut self, ttl: Duration) -> Self {
        self.evict_after = Some(ttl);
        self
    }

    /// How long opening a connection may take (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// How long one request may wait for its reply (default 2 s): a hung server fails the
    /// call (a warning and an uncached result by default) instead of blocking it.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.settings.response_timeout = timeout;
        self
    }

    /// After a failed connection attempt, operations fail at once for this long before the
    /// next attempt (default 250 ms), so an unreachable server costs calls nothing.
    pub fn reconnect_backoff(mut self, backoff: Duration) -> Self {
        self.settings.reconnect_backoff = backoff;
        self
    }

    /// Connections kept open between calls (default 16); more are opened under load and
    /// closed after use.
    pub fn max_idle_connections(mut self, n: usize) -> Self {
        self.settings.max_idle = n;
        self
    }

    /// How often the change channel (which keeps near caches coherent and wakes waiters) is
    /// checked with a `PING` (default 500 ms). A channel that dies without a word is found
    /// down within twice this, and near caches stop serving then.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// How often a caller waiting for a computation in another process looks at the store
    /// while the change channel is up (default 250 ms): the end of a claim is announced, so
    /// this only bounds how late a lapsed lease (a crashed holder) is noticed. While the
    /// channel is down, waiters look every 25 ms at most.
    pub fn wait_poll(mut self, interval: Duration) -> Self {
        self.wait_poll = interval;
        self
    }

    /// Checks the configuration. Does not connect: a server that is down now makes calls
    /// run uncached (with warnings) until it is back.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL the `redis` crate cannot use (naming what to change), an
    /// empty prefix, or a zero timeout or TTL.
    pub fn build(self) -> Result<RedisBackend, Error> {
        let settings = self.settings;
        let mut seeds = Vec::new();
        let (server, shown) = match self.source {
            Source::Url(url) => {
                let shown = cachier_core::redact_url(&url);
                let explain = |message: &str| {
                    Error::config(
                        "url",
                        format!("{shown}: {} (expected redis://[user:password@]host[:port][/db], rediss://... with the `tls` feature, redis+unix:///path/to.sock[?db=N], or redis+cluster://[user:password@]host1[:port],host2[:port]/)", cachier_core::redact_message(&url, message)),
                    )
                };
                let server = match cluster_seeds(&url) {
                    Some(found) => {
                        seeds = found.map_err(|message| explain(&message))?;
                        cluster_client(&seeds, &settings).map_err(|e| explain(&e.to_string()))?
                    }
                    None => Server::Single(
                        redis::Client::open(url.as_str()).map_err(|e| explain(&e.to_string()))?,
                    ),
                };
                (server, shown)
            }
            Source::Client(client) => {
                let shown = format!("{:?}", client.get_connection_info().addr());
                (Server::Single(*client), shown)
            }
            Source::Cluster(given) => {
                let shown = shown_seeds(&given);
                let server = cluster_client(&given, &settings).map_err(|e| {
                    let mut message = e.to_string();
                    for seed in &given {
                        message = cachier_core::redact_message(seed, &message);
                    }
                    Error::config("cluster", format!("{shown}: {message}"))
                })?;
                seeds = given;
                (server, shown)
            }
        };
        if self.prefix.is_empty() || self.prefix.chars().any(char::is_control) {
            return Err(Error::config(
                "prefix",
                "must be non-empty text without control characters",
            ));
        }
        let positive = |param: &'static str, d: Duration| {
            if d.is_zero() {
                Err(Error::config(param, "must be longer than zero"))
            } else {
                Ok(())
            }
        };
        positive("connect_timeout", self.settings.connect_timeout)?;
        positive("response_timeout", self.settings.response_timeout)?;
        positive("heartbeat", self.heartbeat)?;
        positive("wait_poll", self.wait_poll)?;
        if let Some(ttl) = self.evict_after {
            if ttl < Duration::from_millis(1) {
                return Err(Error::config("evict_after", "must be at least 1 ms"));
            }
        }
        Ok(RedisBackend::new(Shared {
            pool: Pool::new(server, settings),
            prefix: self.prefix,
            evict_after: self.evict_after,
            shown,
            seeds,
            listener: Listener::new(self.heartbeat),
            wait_poll: self.wait_poll,
        }))
    }
}

/// The cluster client of `seeds`, with the pool's timeouts and a short retry policy.
fn cluster_client(seeds: &[String], settings: &PoolSettings) -> redis::RedisResult<Server> {
    if seeds.is_empty() {
        return Err(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "no seed node",
        )));
    }
    let (min_wait, max_wait) = CLUSTER_RETRY_WAIT_MS;
    redis::cluster::ClusterClientBuilder::new(seeds.iter().map(String::as_str))
        .connection_timeout(settings.connect_timeout)
        .response_timeout(settings.response_timeout)
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(min_wait)
        .max_retry_wait(max_wait)
        .build()
        .map(Server::Cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configuration_is_a_config_error() {
        let check = |result: Result<RedisBackend, Error>, param: &str| match result {
            Err(Error::Config { param: p, message }) => {
                assert_eq!(p, param);
                assert!(!message.contains("s3cret"), "{message}");
            }
            other => panic!("expected a config error for {param}, got {other:?}"),
        };
        check(RedisBackend::from_url("http://user:s3cret@host/"), "url");
        check(
            RedisBackend::from_url("redis://user:s3cret@host/notadb"),
            "url",
        );
        check(
            RedisBackend::builder("redis://127.0.0.1/")
                .prefix("")
                .build(),
            "prefix",
        );
        check(
            RedisBackend::builder("redis://127.0.0.1/")
                .evict_after(Duration::ZERO)
                .build(),
            "evict_after",
        );
        check(
            RedisBackend::builder("redis://127.0.0.1/")
                .response_timeout(Duration::ZERO)
                .build(),
            "response_timeout",
        );
        #[cfg(not(feature = "tls"))]
        check(RedisBackend::from_url("rediss://127.0.0.1/"), "url");
        check(
            RedisBackend::from_url("redis+cluster://user:s3cret@h1:7000,h2:7001/5"),
            "url",
        );
        check(
            RedisBackend::from_url("redis+cluster://user:s3cret@h1:7000,,h2:7001/"),
            "url",
        );
        check(
            RedisBackend::cluster(Vec::<String>::new()).build(),
            "cluster",
        );
    }

    #[test]
    fn cluster_urls_name_their_seeds() {
        assert_eq!(cluster_seeds("redis://h/"), None);
        assert_eq!(
            cluster_seeds("redis+cluster://u:p@h1:7000,h2/?protocol=resp3"),
            Some(Ok(vec![
                "redis://u:p@h1:7000/?protocol=resp3".to_owned(),
                "redis://u:p@h2/?protocol=resp3".to_owned(),
            ]))
        );
        assert_eq!(
            cluster_seeds("rediss+cluster://h1:7000/#insecure"),
            Some(Ok(vec!["rediss://h1:7000/#insecure".to_owned()]))
        );
        let backend =
            RedisBackend::from_url("redis+cluster://user:s3cret@127.0.0.1:1,127.0.0.1:2/")
                .expect("a cluster URL");
        let shown = format!("{backend:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(backend.cluster_client().is_some() && backend.client().is_none());
    }
}
