//! The one error type of every cachier crate.

use std::fmt;

/// A boxed error from a backend's driver, kept as the [`Error::Backend`] source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in cachier.
///
/// Backend failures only reach callers that asked for them (`try_call`, management calls);
/// a plain `call` warns through `tracing` and computes uncached instead.
///
/// The message is complete: for [`Error::Backend`] it includes the driver's error and all its
/// causes (the server's own words), because warnings log only the message. So that reporters
/// that also print [`source`](std::error::Error::source) chains (`anyhow`, `eyre`) do not
/// repeat it, `source()` returns `None`; the driver's error itself stays in the variant.
#[derive(Debug)]
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
        /// The driver's error, for inspecting it (its message and causes are already in
        /// this error's message, so [`source`](std::error::Error::source) does not return
        /// it again).
        source: BoxError,
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
    },
    /// Stored bytes could not be decoded into the function's value type.
    Decode {
        /// The deserializer's message.
        message: String,
    },
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
        Error::Backend {
            backend,
            operation,
            source: source.into(),
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
            } => write!(
                f,
                "{backend} backend: {operation} failed: {}",
                chain_message(&**source)
            ),
            Error::Unsupported { backend, operation } => {
                write!(f, "the {backend} backend does not support {operation}")
            }
            Error::Encode { what, message } => write!(f, "could not encode {what}: {message}"),
            Error::Decode { message } => write!(f, "could not decode a cached value: {message}"),
        }
    }
}

/// No variant has a source to report: see [`Error`].
impl std::error::Error for Error {}

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
}
