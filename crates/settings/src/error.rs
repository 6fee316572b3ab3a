//! The one error type of every cachier crate.

use std::fmt;

/// A boxed error from a backend's driver, kept as the [`Error::Backend`] source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in cachier.
///
/// Backend failures only reach callers that asked for them (`try_call`, management calls);
/// a plain `call` warns through `tracing` and computes uncached instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter has a value that cannot work; `param` names it and the message says what
    /// to change.
    #[error("invalid `{param}`: {message}")]
    Config {
        /// The parameter's name, as in the builder or `ParamsUpdate`.
        param: &'static str,
        /// What is wrong and what to do instead.
        message: String,
    },
    /// The store failed (unreachable server, I/O error, locked file...).
    #[error("{backend} backend: {operation} failed: {source}")]
    Backend {
        /// The backend's name (`"memory"`, `"file"`, `"redis"`...).
        backend: &'static str,
        /// What it was doing (`"get"`, `"claim"`, `"put"`...).
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The backend cannot do this (for example list its entries).
    #[error("the {backend} backend does not support {operation}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// What was asked.
        operation: &'static str,
    },
    /// The arguments (for the key) or the value could not be serialized.
    #[error("could not encode {what}: {message}")]
    Encode {
        /// `"arguments"`, `"key"` or `"value"`.
        what: &'static str,
        /// The serializer's message.
        message: String,
    },
    /// Stored bytes could not be decoded into the function's value type.
    #[error("could not decode a cached value: {message}")]
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

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
