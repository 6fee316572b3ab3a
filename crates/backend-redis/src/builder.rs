//! [`RedisBackendBuilder`]: the options of a backend, the server's URL or client, and the
//! checks made before the backend is opened.

use std::fmt;
use std::time::Duration;

use cachier_core::Error;

use crate::backend::{RedisBackend, Shared};
use crate::pool::{Pool, PoolSettings};
use crate::DEFAULT_PREFIX;

/// Configures a [`RedisBackend`]; made by [`RedisBackend::builder`] or
/// [`RedisBackend::from_client`].
#[must_use]
pub struct RedisBackendBuilder {
    source: Source,
    prefix: String,
    evict_after: Option<Duration>,
    settings: PoolSettings,
}

/// Where the connections come from.
enum Source {
    Url(String),
    Client(Box<redis::Client>),
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = match &self.source {
            Source::Url(url) => cachier_core::redact_url(url),
            Source::Client(client) => format!("{:?}", client.get_connection_info().addr()),
        };
        f.debug_struct("RedisBackendBuilder")
            .field("server", &server)
            .field("prefix", &self.prefix)
            .field("evict_after", &self.evict_after)
            .field("settings", &self.settings)
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
    /// `rediss://...` (TLS, with the `tls` feature; `#insecure` accepts any certificate) or
    /// `redis+unix:///path/to.sock[?db=N&user=U&pass=P]`.
    pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
        RedisBackendBuilder::new(Source::Url(url.into()))
    }
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

    /// Checks the configuration. Does not connect: a server that is down now makes calls
    /// run uncached (with warnings) until it is back.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL the `redis` crate cannot use (naming what to change), an
    /// empty prefix, or a zero timeout or TTL.
    pub fn build(self) -> Result<RedisBackend, Error> {
        let (client, shown) = match self.source {
            Source::Url(url) => {
                let shown = cachier_core::redact_url(&url);
                let client = redis::Client::open(url.as_str()).map_err(|e| {
                    Error::config(
                        "url",
                        format!("{shown}: {} (expected redis://[user:password@]host[:port][/db], rediss://... with the `tls` feature, or redis+unix:///path/to.sock[?db=N])", cachier_core::redact_message(&url, &e.to_string())),
                    )
                })?;
                (client, shown)
            }
            Source::Client(client) => {
                let shown = format!("{:?}", client.get_connection_info().addr());
                (*client, shown)
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
        if let Some(ttl) = self.evict_after {
            if ttl < Duration::from_millis(1) {
                return Err(Error::config("evict_after", "must be at least 1 ms"));
            }
        }
        Ok(RedisBackend::new(Shared {
            pool: Pool::new(client, self.settings),
            prefix: self.prefix,
            evict_after: self.evict_after,
            shown,
        }))
    }
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
    }
}
