//! Configuring a [`MongoBackend`]: the builder, URL parsing and the name checks.

use std::fmt;
use std::time::Duration;

use cachier_core::{redact_message, redact_url, watch, Error};
use mongodb::options::ClientOptions;
use mongodb::Client;

use crate::{
    runtime, DriverError, MongoBackend, DEFAULT_COLLECTION, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DATABASE, DEFAULT_SERVER_SELECTION_TIMEOUT,
};

impl MongoBackend {
    /// Connects to `url` (`mongodb://` or `mongodb+srv://`) with the defaults: the URL's
    /// database or [`DEFAULT_DATABASE`], collection [`DEFAULT_COLLECTION`]. The connection is
    /// made lazily, so an unreachable server is reported by the first operation, not here.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL the driver cannot parse.
    pub fn from_url(url: &str) -> Result<MongoBackend, Error> {
        MongoBackend::builder(url).build()
    }

    /// A builder for a backend connecting to `url`.
    pub fn builder(url: impl Into<String>) -> MongoBackendBuilder {
        MongoBackendBuilder::new(Source::Url(url.into()))
    }
}

/// Where a builder's client comes from.
#[derive(Clone)]
pub(crate) enum Source {
    Url(String),
    Client(Client),
}

/// Configures a [`MongoBackend`]; made by [`MongoBackend::builder`] or
/// [`MongoBackend::from_client`].
#[derive(Clone)]
#[must_use]
///
/// ```
/// use std::time::Duration;
/// use cachier_backend_mongo::MongoBackend;
///
/// // Creates the client only: the server is first contacted by a call.
/// let backend = MongoBackend::builder("mongodb://127.0.0.1:27017")
///     .database("cache")
///     .collection("memoized")
///     .server_selection_timeout(Duration::from_secs(2))
///     .build()?;
/// let square = cachier_core::memoize("docs::square", |x: u64| x * x).backend(backend).build()?;
/// # let _ = square;
/// // square.call(12) reads and writes MongoDB; with the server down it computes uncached.
/// # Ok::<(), cachier_core::Error>(())
/// ```
pub struct MongoBackendBuilder {
    source: Source,
    database: Option<String>,
    collection: Option<String>,
    server_selection_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    heartbeat: Duration,
    wait_poll: Duration,
}

impl fmt::Debug for MongoBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Url(url) => redact_url(url),
            Source::Client(_) => "<client>".to_owned(),
        };
        f.debug_struct("MongoBackendBuilder")
            .field("source", &source)
            .field("database", &self.database)
            .field("collection", &self.collection)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("heartbeat", &self.heartbeat)
            .field("wait_poll", &self.wait_poll)
            .finish()
    }
}

impl MongoBackendBuilder {
    pub(crate) fn new(source: Source) -> Self {
        MongoBackendBuilder {
            source,
            database: None,
            collection: None,
            server_selection_timeout: None,
            connect_timeout: None,
            heartbeat: watch::DEFAULT_HEARTBEAT,
            wait_poll: watch::DEFAULT_WAIT_POLL,
        }
    }

    /// The database (default: the URL's, else [`DEFAULT_DATABASE`]).
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }

    /// The collection (default [`DEFAULT_COLLECTION`]).
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collection = Some(name.into());
        self
    }

    /// How long an operation waits for a usable server before failing (default: the URL's
    /// `serverSelectionTimeoutMS`, else [`DEFAULT_SERVER_SELECTION_TIMEOUT`]). While the
    /// server is down every cached call pays this once, then computes uncached. Applies to
    /// URL sources only: a caller's client keeps its own settings.
    pub fn server_selection_timeout(mut self, timeout: Duration) -> Self {
        self.server_selection_timeout = Some(timeout);
        self
    }

    /// How long opening a connection may take (default: the URL's `connectTimeoutMS`, else
    /// [`DEFAULT_CONNECT_TIMEOUT`]). URL sources only.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long the change stream (which keeps near caches coherent and wakes waiters) may
    /// wait for events before it answers anyway (default 500 ms). A stream that does not
    /// answer within twice this is found down, and near caches stop serving then.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// How often a caller waiting for a computation in another process looks at the store
    /// while the change stream is up (default 250 ms): the end of a claim is announced, so
    /// this only bounds how late a lapsed lease (a crashed holder) is noticed. While the
    /// stream is down, or on a server that cannot stream changes, waiters look every 25 ms
    /// at most.
    pub fn wait_poll(mut self, interval: Duration) -> Self {
        self.wait_poll = interval;
        self
    }

    /// Creates the client (for a URL source; no connection is made yet).
    ///
    /// # Errors
    /// [`Error::Config`] for an unparsable URL, a zero timeout or an invalid database or
    /// collection name.
    pub fn build(self) -> Result<MongoBackend, Error> {
        for (param, value) in [
            ("server_selection_timeout", self.server_selection_timeout),
            ("connect_timeout", self.connect_timeout),
            ("heartbeat", Some(self.heartbeat)),
            ("wait_poll", Some(self.wait_poll)),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(Error::config(param, "must be longer than zero"));
            }
        }
        let collection = self
            .collection
            .unwrap_or_else(|| DEFAULT_COLLECTION.to_owned());
        check_name("collection", &collection)?;
        let (client, url_database) = match self.source {
            Source::Client(client) => {
                let database = client.default_database().map(|db| db.name().to_owned());
                (client, database)
            }
            Source::Url(url) => {
                let mut options = parse_url(&url)?;
                options.server_selection_timeout = self
                    .server_selection_timeout
                    .or(options.server_selection_timeout)
                    .or(Some(DEFAULT_SERVER_SELECTION_TIMEOUT));
                options.connect_timeout = self
                    .connect_timeout
                    .or(options.connect_timeout)
                    .or(Some(DEFAULT_CONNECT_TIMEOUT));
                if options.app_name.is_none() {
                    options.app_name = Some("cachier".to_owned());
                }
                let database = options.default_database.clone();
                // The client spawns its monitors on the current runtime: create it on ours.
                let client =
                    runtime::block_on("connect", async move { Client::with_options(options) })?
                        .map_err(|e| {
                            Error::config(
                                "url",
                                redact_message(&url, &DriverError::from(e).to_string()),
                            )
                        })?;
                (client, database)
            }
        };
        let database = self
            .database
            .or(url_database)
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        check_name("database", &database)?;
        Ok(MongoBackend::over(
            client.database(&database).collection(&collection),
            self.heartbeat,
            self.wait_poll,
        ))
    }
}

/// Refuses a database or collection name MongoDB would reject, before any round trip.
fn check_name(param: &'static str, name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::config(param, "must not be empty"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| matches!(c, '\0' | '$') || (param == "database" && "/\\. \"".contains(*c)))
    {
        return Err(Error::config(
            param,
            format!("{name:?} contains {bad:?}, which MongoDB does not allow there"),
        ));
    }
    Ok(())
}

/// The driver's options for `url`, with the URL redacted from any error.
fn parse_url(url: &str) -> Result<ClientOptions, Error> {
    if !(url.starts_with("mongodb://") || url.starts_with("mongodb+srv://")) {
        return Err(Error::config(
            "url",
            format!(
                "{:?} is not a MongoDB URL: it must start with mongodb:// or mongodb+srv://",
                redact_url(url)
            ),
        ));
    }
    let owned = url.to_owned();
    runtime::block_on("connect", async move { ClientOptions::parse(owned).await })?.map_err(|e| {
        Error::config(
            "url",
            format!(
                "{}: {}",
                redact_url(url),
                redact_message(url, &DriverError::from(e).to_string())
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact_url("mongodb://user:s3cret@host:27017/db?x=1"),
            "mongodb://user:***@host:27017/db?x=1"
        );
        assert_eq!(redact_url("mongodb://host/db"), "mongodb://host/db");
        assert_eq!(
            redact_message("mongodb://u:s3cret@h/", "bad s3cret here"),
            "bad *** here"
        );
    }

    #[test]
    fn bad_urls_are_config_errors() {
        let err = MongoBackend::from_url("redis://u:pw@localhost").unwrap_err();
        assert!(matches!(err, Error::Config { param: "url", .. }), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
        let err = MongoBackend::from_url("mongodb://u:pw@").unwrap_err();
        assert!(matches!(err, Error::Config { param: "url", .. }), "{err}");
        assert!(!err.to_string().contains(":pw"), "{err}");
    }

    #[test]
    fn bad_names_and_timeouts_are_config_errors() {
        let b = || MongoBackend::builder("mongodb://127.0.0.1:1/");
        assert!(matches!(
            b().database("a.b").build(),
            Err(Error::Config {
                param: "database",
                ..
            })
        ));
        assert!(matches!(
            b().collection("").build(),
            Err(Error::Config {
                param: "collection",
                ..
            })
        ));
        assert!(matches!(
            b().server_selection_timeout(Duration::ZERO).build(),
            Err(Error::Config {
                param: "server_selection_timeout",
                ..
            })
        ));
    }

    #[test]
    fn debug_never_shows_credentials() {
        let builder = MongoBackend::builder("mongodb://user:s3cret@127.0.0.1:1/db");
        assert!(!format!("{builder:?}").contains("s3cret"));
        let backend = builder.build().unwrap();
        let shown = format!("{backend:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("db.cachier"),
            "{shown}"
        );
    }
}
