//! The one error type of every cachier crate.

use std::fmt;

use std::sync::Arc;

/// A boxed error from a backend's driver, as [`Error::backend`] takes it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A driver's or serializer's error as [`Error`] keeps it: shared, so that [`Error`] is
/// `Clone` (one failure can be handed to every caller waiting on it).
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in cachier.
///
/// Backend failures only reach callers that asked for them (`try_call`, management calls);
/// a plain `call` warns through `tracing` and computes uncached instead.
///
/// The message is complete: for [`Error::Backend`] it includes the driver's error and all its
/// causes (the server's own words), because warnings log only the message. So that reporters
/// that also print [`source`](std::error::Error::source) chains (`anyhow`, `eyre`) do not
/// repeat it, `source()` returns `None`; the driver's error itself stays in the variant.
/// Branch on [`Error::kind`] rather than on the variants: it also tells a timeout from a
/// store that cannot be reached.
///
/// ```
/// use cachier_settings::{Error, ErrorKind};
///
/// fn advice(error: &Error) -> &'static str {
///     match error.kind() {
///         ErrorKind::Timeout | ErrorKind::Unavailable => "retry later",
///         ErrorKind::Configuration => "fix the configuration",
///         ErrorKind::Corrupt => "clear the cache",
///         _ => "report it",
///     }
/// }
///
/// let error = Error::config("stale_after", "must be longer than zero");
/// assert_eq!(advice(&error), "fix the configuration");
/// assert!(error.to_string().contains("stale_after"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// A parameter has a value that cannot work; `param` names it and the message says what
    /// to change.
    Config {
        /// The parameter's name, as in the builder or `ParamsUpdate`.
        param: &'static str,
        /// What is wrong and what to do instead.
        message: String,
    },
    /// The store failed (unreachable server, I/O error, locked file...).
    Backend {
        /// The backend's name (`"memory"`, `"file"`, `"redis"`...).
        backend: &'static str,
        /// What it was doing (`"get"`, `"claim"`, `"put"`...).
        operation: &'static str,
        /// What kind of failure: [`ErrorKind::Unavailable`] or [`ErrorKind::Timeout`].
        kind: ErrorKind,
        /// The driver's error, for inspecting it (its message and causes are already in
        /// this error's message, so [`source`](std::error::Error::source) does not return
        /// it again).
        source: SharedError,
    },
    /// The backend cannot do this (for example list its entries).
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// What was asked.
        operation: &'static str,
    },
    /// The arguments (for the key) or the value could not be serialized.
    Encode {
        /// `"arguments"`, `"key"` or `"value"`.
        what: &'static str,
        /// The serializer's message.
        message: String,
        /// The serializer's error, where there is one (its message is `message`).
        source: Option<SharedError>,
    },
    /// Stored bytes could not be decoded into the function's value type.
    Decode {
        /// The deserializer's message, or what is wrong with the bytes.
        message: String,
        /// The deserializer's error, where there is one (its message is `message`).
        source: Option<SharedError>,
    },
}

/// What kind of failure an [`Error`] is, for callers that handle some differently (retry a
/// timeout, alert on corrupt data, fix a configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A parameter or URL cannot work ([`Error::Config`]).
    Configuration,
    /// The store cannot be reached or used: connection refused or lost, I/O failure,
    /// authentication refused, a read-only or full disk.
    Unavailable,
    /// The store did not answer in time.
    Timeout,
    /// Stored data cannot be read back ([`Error::Decode`]).
    Corrupt,
    /// The backend cannot do this ([`Error::Unsupported`]).
    Unsupported,
    /// The arguments or the value cannot be serialized ([`Error::Encode`]).
    Encode,
}

impl Error {
    /// A configuration error for `param`.
    pub fn config(param: &'static str, message: impl fmt::Display) -> Self {
        Error::Config {
            param,
            message: message.to_string(),
        }
    }

    /// A backend error: `backend` failed while doing `operation`.
    pub fn backend(
        backend: &'static str,
        operation: &'static str,
        source: impl Into<BoxError>,
    ) -> Self {
        let source: SharedError = Arc::from(source.into());
        let kind = if timed_out(&*source) {
            ErrorKind::Timeout
        } else {
            ErrorKind::Unavailable
        };
        Error::Backend {
            backend,
            operation,
            kind,
            source,
        }
    }

    /// A backend error of a known `kind`, for drivers that report it other than through an
    /// `io::Error` among the causes.
    pub fn backend_of_kind(
        kind: ErrorKind,
        backend: &'static str,
        operation: &'static str,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Backend {
            backend,
            operation,
            kind,
            source: Arc::from(source.into()),
        }
    }

    /// An encoding error for `what` (`"arguments"`, `"key"`, `"value"`), keeping `source`.
    pub fn encode(what: &'static str, source: impl Into<BoxError>) -> Self {
        let source: SharedError = Arc::from(source.into());
        Error::Encode {
            what,
            message: source.to_string(),
            source: Some(source),
        }
    }

    /// A decoding error: the deserializer's `source`, or (without one) what is wrong.
    pub fn decode(message: impl fmt::Display, source: Option<BoxError>) -> Self {
        Error::Decode {
            message: message.to_string(),
            source: source.map(Arc::from),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } => ErrorKind::Configuration,
            Error::Backend { kind, .. } => *kind,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Encode { .. } => ErrorKind::Encode,
            Error::Decode { .. } => ErrorKind::Corrupt,
        }
    }

    /// True for [`Error::Backend`]: the store failed, not the caller's input.
    pub fn is_backend(&self) -> bool {
        matches!(self, Error::Backend { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { param, message } => write!(f, "invalid `{param}`: {message}"),
            Error::Backend {
                backend,
                operation,
                source,
                ..
            } => write!(
                f,
                "{backend} backend: {operation} failed: {}",
                chain_message(&**source)
            ),
            Error::Unsupported { backend, operation } => {
                write!(f, "the {backend} backend does not support {operation}")
            }
            Error::Encode { what, message, .. } => write!(f, "could not encode {what}: {message}"),
            Error::Decode { message, .. } => {
                write!(f, "could not decode a cached value: {message}")
            }
        }
    }
}

/// No variant has a source to report: see [`Error`].
impl std::error::Error for Error {}

/// Whether an I/O timeout (an `io::Error` of kind `TimedOut`, or `WouldBlock` from a socket
/// with a read timeout) is among the causes of `error`.
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(cause) = next {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) {
                return true;
            }
        }
        next = cause.source();
    }
    false
}

/// The message of `error` followed by those of its sources, each separated by `": "`, leaving
/// out any that the text so far already contains (a driver whose message repeats its cause's).
/// For showing an error with its causes when they are not part of its message (a driver's
/// `"db error"` whose source holds the server's message).
pub fn chain_message(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        let message = message.trim();
        if !message.is_empty() && !text.contains(message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(message);
        }
        source = cause.source();
    }
    text
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::{chain_message, Error};

    /// A driver error in the style of `tokio_postgres::Error`: a generic message, the
    /// server's in its source.
    #[derive(Debug)]
    struct Generic(Server);
    #[derive(Debug)]
    struct Server;

    impl fmt::Display for Generic {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("db error")
        }
    }
    impl std::error::Error for Generic {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    impl fmt::Display for Server {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("FATAL: role \"x\" does not exist")
        }
    }
    impl std::error::Error for Server {}

    #[test]
    fn backend_errors_name_their_causes_once() {
        let error = Error::backend("postgres", "get", Generic(Server));
        assert_eq!(
            error.to_string(),
            "postgres backend: get failed: db error: FATAL: role \"x\" does not exist"
        );
        assert!(std::error::Error::source(&error).is_none());
        assert_eq!(chain_message(&error), error.to_string());
        // A cause whose text is already there is not repeated.
        let io = std::io::Error::other(Server);
        assert_eq!(chain_message(&io), "FATAL: role \"x\" does not exist");
    }

    #[test]
    fn kinds() {
        use super::ErrorKind;
        use std::io;
        let backend = |kind| Error::backend("redis", "get", io::Error::new(kind, "boom"));
        assert_eq!(backend(io::ErrorKind::TimedOut).kind(), ErrorKind::Timeout);
        assert_eq!(
            backend(io::ErrorKind::ConnectionRefused).kind(),
            ErrorKind::Unavailable
        );
        let wrapped = Error::backend("postgres", "get", Generic(Server));
        assert_eq!(wrapped.kind(), ErrorKind::Unavailable);
        assert_eq!(
            Error::config("lease", "zero").kind(),
            ErrorKind::Configuration
        );
        assert_eq!(
            Error::decode("truncated value", None).kind(),
            ErrorKind::Corrupt
        );
        let encode = Error::encode("value", io::Error::other("not serializable"));
        assert_eq!(encode.kind(), ErrorKind::Encode);
        assert!(matches!(
            &encode,
            Error::Encode {
                source: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn clones_keep_the_source() {
        let error = Error::backend("postgres", "get", Generic(Server));
        let copy = error.clone();
        assert_eq!(copy.to_string(), error.to_string());
        let Error::Backend { source, .. } = copy else {
            panic!("a backend error")
        };
        assert!(
            source.downcast_ref::<Generic>().is_some(),
            "the driver's error is kept"
        );
    }
}
