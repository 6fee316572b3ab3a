#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod backend;
mod blocking;

pub use backend::MemoryBackend;
