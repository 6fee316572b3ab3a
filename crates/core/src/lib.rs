#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod backend;
pub mod codec;
mod engine;
mod key;
mod lease;
mod options;
mod pool;

pub use backend::{poll_until_released, Backend, CacheEntry, Claim, ClaimToken, Core};
pub use cachier_settings::{BoxError, Error, Result};
pub use engine::{
    memoize, memoize_fallible, DefaultBackend, LocalOptions, Memoize, Memoized, DEFAULT_LEASE,
};
pub use key::{Key, KeyHasher, KeyHasherBuilder, Namespace};
pub use options::{CallOptions, MaxAge};
