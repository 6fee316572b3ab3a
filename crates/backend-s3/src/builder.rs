//! Configuring an [`S3Backend`]: the builder and URL parsing.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cachier_core::{redact_url, Error};
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::client::ClientOptions;
use object_store::path::Path;
use object_store::{BackoffConfig, RetryConfig};
use percent_encoding::percent_decode_str;

use crate::clock::{ClockConnector, ServerClock};
use crate::ops::Shared;
use crate::{
    runtime, S3Backend, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PREFIX, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETRY_TIMEOUT,
};

impl S3Backend {
    /// Opens the store a URL names: `s3://bucket/prefix?endpoint=...&region=...`.
    ///
    /// The path is the prefix ([`DEFAULT_PREFIX`] without one). Credentials come from the
    /// usual environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`...), or from the URL's user info (`s3://KEY_ID:SECRET@bucket`,
    /// percent-encoded), which errors and logs never show. Query parameters: `endpoint`
    /// (an S3-compatible server; `http://` allowed) and `region`. Nothing is sent here: an
    /// unreachable endpoint is reported by the first operation.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that is not `s3://`, has no bucket, an invalid prefix or an
    /// unknown parameter.
    pub fn from_url(url: &str) -> Result<S3Backend, Error> {
        S3BackendBuilder::from_url(url)?.build()
    }

    /// A builder for a backend over `bucket`, with credentials, region and endpoint from the
    /// environment unless set on the builder.
    pub fn builder(bucket: impl Into<String>) -> S3BackendBuilder {
        S3BackendBuilder::new(Source::Bucket(bucket.into()))
    }

    /// A builder over a client the caller configured (bucket, credentials, region, endpoint,
    /// client options, retries). The backend sets two things on it: conditional writes on
    /// ETags, which its claims need, and its own HTTP connector, which reads the server's
    /// clock from every reply and keeps the connections on the backend's runtime (a connector
    /// set on `builder` is replaced).
    pub fn from_s3_builder(builder: AmazonS3Builder) -> S3BackendBuilder {
        S3BackendBuilder::new(Source::Client(Box::new(builder)))
    }
}

/// Where a builder's client comes from.
#[derive(Clone)]
pub(crate) enum Source {
    Bucket(String),
    Client(Box<AmazonS3Builder>),
}

/// Configures an [`S3Backend`]; made by [`S3Backend::builder`], [`S3Backend::from_url`] or
/// [`S3Backend::from_s3_builder`].
#[derive(Clone)]
#[must_use]
///
/// ```
/// use std::time::Duration;
/// use cachier_backend_s3::S3Backend;
///
/// // Creates the client only: nothing is sent until a call.
/// let backend = S3Backend::builder("my-bucket")
///     .prefix("cache")
///     .region("eu-west-1")
///     .endpoint("http://127.0.0.1:9000") // an S3-compatible server; leave out for AWS
///     .request_timeout(Duration::from_secs(5))
///     .build()?;
/// let square = cachier_core::memoize("docs::square", |x: u64| x * x).backend(backend).build()?;
/// # let _ = square;
/// // square.call(12) reads and writes the bucket; with it unreachable it computes uncached.
/// # Ok::<(), cachier_core::Error>(())
/// ```
pub struct S3BackendBuilder {
    source: Source,
    prefix: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    credentials: Option<(String, String)>,
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    retry: Option<RetryConfig>,
}

impl fmt::Debug for S3BackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Bucket(bucket) => bucket.as_str(),
            Source::Client(_) => "<client>",
        };
        f.debug_struct("S3BackendBuilder")
            .field("source", &source)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_deref().map(redact_url))
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(id, _)| format!("{id}:***")),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

impl S3BackendBuilder {
    pub(crate) fn new(source: Source) -> Self {
        S3BackendBuilder {
            source,
            prefix: None,
            region: None,
            endpoint: None,
            credentials: None,
            connect_timeout: None,
            request_timeout: None,
            retry: None,
        }
    }

    /// The folder of the cache in the bucket (default [`DEFAULT_PREFIX`]; `""` for the
    /// bucket's root). Each function's entries live under `{prefix}/{namespace}/`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// The bucket's region (default: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// An S3-compatible endpoint (`https://...`, or `http://...` for a local server), reached
    /// with path-style requests (default: `AWS_ENDPOINT`, else AWS).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Static credentials (default: the environment's, then the instance's).
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.credentials = Some((access_key_id.into(), secret_access_key.into()));
        self
    }

    /// How long opening a connection may take (default [`DEFAULT_CONNECT_TIMEOUT`]). Not for
    /// a caller's client, which keeps its own options.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long one request may take (default [`DEFAULT_REQUEST_TIMEOUT`]). Not for a
    /// caller's client.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// How failed requests are retried: 5xx replies (a throttling `503 SlowDown` included),
    /// `429` and connection failures, with exponential backoff (default: four retries within
    /// [`DEFAULT_RETRY_TIMEOUT`], from 50 ms doubling to 1 s). While the endpoint is down, each
    /// cached call pays this once, then computes uncached. Not for a caller's client.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self
    }

    /// A builder from a URL (see [`S3Backend::from_url`]).
    pub(crate) fn from_url(url: &str) -> Result<S3BackendBuilder, Error> {
        let bad = |why: &str| Error::config("url", format!("{}: {why}", redact_url(url)));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not an S3 URL: it must start with s3://"))?;
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, Some(path)),
            None => (rest, None),
        };
        let (user_info, bucket) = match authority.rsplit_once('@') {
            Some((user_info, bucket)) => (Some(user_info), bucket),
            None => (None, authority),
        };
        if bucket.is_empty() {
            return Err(bad("no bucket (s3://bucket/prefix)"));
        }
        let mut builder = S3Backend::builder(decode(bucket, &bad)?);
        if let Some(user_info) = user_info {
            let (id, secret) = user_info
                .split_once(':')
                .ok_or_else(|| bad("user info must be ACCESS_KEY_ID:SECRET"))?;
            builder = builder.credentials(decode(id, &bad)?, decode(secret, &bad)?);
        }
        if let Some(path) = path.filter(|p| !p.trim_matches('/').is_empty()) {
            builder = builder.prefix(decode(path.trim_matches('/'), &bad)?);
        }
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value, &bad)?;
            builder = match name {
                "endpoint" => builder.endpoint(value),
                "region" => builder.region(value),
                other => {
                    return Err(bad(&format!(
                        "unknown parameter {other:?} (known: endpoint, region)"
                    )))
                }
            };
        }
        Ok(builder)
    }

    /// Creates the client (nothing is sent yet).
    ///
    /// # Errors
    /// [`Error::Config`] for an empty bucket, an invalid prefix, a zero timeout, or settings
    /// the client refuses.
    pub fn build(self) -> Result<S3Backend, Error> {
        for (param, value) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(Error::config(param, "must be longer than zero"));
            }
        }
        let prefix = self.prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        let prefix = Path::parse(&prefix).map_err(|e| {
            Error::config(
                "prefix",
                format!("{prefix:?} is not a valid object path: {e}"),
            )
        })?;
        let mut builder = match self.source {
            Source::Client(builder) => *builder,
            Source::Bucket(bucket) => {
                if bucket.is_empty() {
                    return Err(Error::config("bucket", "must not be empty"));
                }
                let options = ClientOptions::new()
                    .with_connect_timeout(self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
                    .with_timeout(self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT));
                AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_client_options(options)
                    .with_retry(self.retry.unwrap_or_else(default_retry))
            }
        };
        if let Some(region) = self.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = self.endpoint {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        if let Some((id, secret)) = self.credentials {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let clock = Arc::new(ServerClock::default());
        let runtime = runtime::runtime("connect")?;
        let store = builder
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_http_connector(ClockConnector {
                clock: clock.clone(),
                runtime: runtime.handle().clone(),
            })
            .build()
            .map_err(|e| Error::config("client", e))?;
        let bucket = store.to_string();
        Ok(S3Backend::new(Shared::new(
            Arc::new(store),
            clock,
            bucket,
            prefix,
        )))
    }
}

/// The retries of a client the backend creates: a few, quickly, so that an outage costs a
/// call about a second rather than the client's default three minutes.
fn default_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: DEFAULT_RETRY_TIMEOUT,
    }
}

fn decode(part: &str, bad: &impl Fn(&str) -> Error) -> Result<String, Error> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| bad("not UTF-8 once percent-decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(builder: &S3BackendBuilder) -> String {
        format!("{builder:?}")
    }

    #[test]
    fn urls_give_bucket_prefix_endpoint_region_and_credentials() {
        let b = S3BackendBuilder::from_url(
            "s3://KEY:se%2Fcret@my-bucket/team/cache/?endpoint=http://127.0.0.1:9000&region=eu-west-1",
        )
        .unwrap();
        assert!(matches!(&b.source, Source::Bucket(bucket) if bucket == "my-bucket"));
        assert_eq!(b.prefix.as_deref(), Some("team/cache"));
        assert_eq!(b.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(b.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            b.credentials,
            Some(("KEY".to_owned(), "se/cret".to_owned()))
        );
        assert!(!shown(&b).contains("se/cret") && !shown(&b).contains("se%2Fcret"));
        let plain = S3BackendBuilder::from_url("s3://bucket").unwrap();
        assert_eq!(plain.prefix, None);
    }

    #[test]
    fn bad_urls_are_config_errors_without_secrets() {
        for url in [
            "redis://KEY:s3cret@bucket",
            "s3://KEY:s3cret@/prefix",
            "s3://KEY:s3cret@bucket?secret=s3cret",
            "s3://s3cret@bucket",
        ] {
            let err = S3Backend::from_url(url).unwrap_err();
            assert!(
                matches!(err, Error::Config { param: "url", .. }),
                "{url}: {err}"
            );
            assert!(!err.to_string().contains("s3cret"), "{url}: {err}");
        }
    }

    #[test]
    fn bad_prefixes_and_timeouts_are_config_errors() {
        let b = || S3Backend::builder("bucket").endpoint("http://127.0.0.1:1");
        assert!(matches!(
            b().prefix("a//b").build(),
            Err(Error::Config {
                param: "prefix",
                ..
            })
        ));
        assert!(matches!(
            b().connect_timeout(Duration::ZERO).build(),
            Err(Error::Config {
                param: "connect_timeout",
                ..
            })
        ));
        assert!(matches!(
            S3Backend::builder("").build(),
            Err(Error::Config {
                param: "bucket",
                ..
            })
        ));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let backend = S3Backend::builder("bucket")
            .endpoint("http://127.0.0.1:1")
            .credentials("KEY", "s3cret")
            .build()
            .unwrap();
        assert!(!format!("{backend:?}").contains("s3cret"));
    }
}
