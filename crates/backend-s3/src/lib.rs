#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod blocking;
mod builder;
mod clock;
mod format;
#[cfg(feature = "async")]
mod nonblocking;
mod ops;
mod runtime;

use std::time::Duration;

pub use crate::backend::S3Backend;
pub use crate::builder::S3BackendBuilder;
/// The client this backend is built on, for callers who configure it themselves
/// ([`S3Backend::from_s3_builder`]) or make raw requests (same version, so its types match).
pub use object_store;

/// Folder of the cache in the bucket unless the builder or URL names another.
pub const DEFAULT_PREFIX: &str = "cachier";
/// Version of the entry objects' format (`src/format.rs`); objects of another version read
/// as misses and are overwritten.
pub const FORMAT_VERSION: u8 = 1;
/// How long opening a connection may take unless configured otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one request may take unless configured otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request is retried (5xx, throttling, connection failures) unless configured
/// otherwise.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(3);
