#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a driver feature no backend can exist (every constructor returns a configuration
// error naming the feature), so the code after those constructors is unreachable and what it
// imports unused.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(unreachable_code, unused_variables, unused_imports, dead_code)
)]

mod backend;
mod blocking;
mod builder;
mod dialect;
#[cfg(all(feature = "async", feature = "postgres"))]
mod nonblocking;
mod ops;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::time::Duration;

pub use backend::SqlBackend;
pub use builder::SqlBackendBuilder;

/// The table holding the entries unless the builder says otherwise (cachier's).
pub const DEFAULT_TABLE: &str = "cachier_cache";

/// How long a connection attempt to a server may take unless the URL or builder says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most connections a PostgreSQL pool opens unless the builder says otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;
