#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod blocking;
mod builder;
mod error;
mod listen;
#[cfg(feature = "async")]
mod nonblocking;
mod ops;
mod runtime;

use std::time::Duration;

pub use crate::backend::MongoBackend;
pub use crate::builder::MongoBackendBuilder;
pub use crate::error::DriverError;
/// The driver this backend is built on, for callers who pass a client or query the
/// collection themselves (same version, so its types match).
pub use mongodb;

/// Database used when neither the builder nor the URL names one.
pub const DEFAULT_DATABASE: &str = "cachier";
/// Collection used unless the builder names another.
pub const DEFAULT_COLLECTION: &str = "cachier";
/// Name of the unique index on (`func`, `key`): cachier's index name, made unique.
pub const INDEX_NAME: &str = "func_1_key_1";
/// How long an operation waits for a usable server unless configured otherwise (the driver's
/// own default, 30 s, would stall every cached call that long while the server is down).
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);
/// How long opening a connection may take unless configured otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
