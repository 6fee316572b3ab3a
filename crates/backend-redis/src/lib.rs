#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod blocking;
mod builder;
mod listen;
#[cfg(feature = "async")]
mod nonblocking;
mod ops;
mod pool;
mod scripts;

pub use crate::backend::RedisBackend;
pub use crate::builder::RedisBackendBuilder;
/// The `redis` crate this backend is built on, so callers can build a [`redis::Client`] for
/// [`RedisBackend::from_client`] without matching versions.
pub use redis;

/// The key prefix unless [`RedisBackendBuilder::prefix`] changes it (cachier's).
pub const DEFAULT_PREFIX: &str = "cachier";
