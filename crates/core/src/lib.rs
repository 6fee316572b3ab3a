#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "async")]
mod r#async;
mod backend;
pub mod codec;
mod drive;
mod engine;
mod key;
mod lease;
mod options;
mod pool;
#[cfg(feature = "runtime")]
mod runtime;
pub mod stats;
mod unheard;
pub mod watch;

pub use backend::{
    claim_then_get, poll_until_released, preview_of, Backend, Backoff, CacheEntry, Capabilities,
    Claim, ClaimAndGet, ClaimToken, Core, EntryInfo, LiveClaim,
};
pub use cachier_settings::{
    chain_message, parse_bytes, parse_duration, redact_message, redact_url, BoxError, Error,
    ErrorKind, NearCache, Result, SharedError,
};
pub use drive::block_on;
pub use engine::{
    memoize, memoize_fallible, Blocking, DefaultBackend, Kind, Memoize, Memoized, Shared,
    DEFAULT_LEASE,
};
#[cfg(feature = "async")]
pub use engine::{memoize_async, memoize_async_fallible, Async, AsyncMemoized};
pub use key::{push_hex, Key, KeyHasher, KeyHasherBuilder, Namespace};
pub use options::{CallOptions, MaxAge};
#[cfg(feature = "async")]
pub use r#async::{claim_then_get_async, AsyncCore, BoxFuture, OffloadedCore};
#[cfg(feature = "runtime")]
pub use runtime::DriverRuntime;
pub use stats::{all_stats, FunctionStats, LatencySnapshot, StatsSnapshot};
pub use unheard::{eprint_if_unheard, warnings_unheard};
