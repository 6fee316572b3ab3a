#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod blocking;
mod budget;
mod builder;

pub use backend::MemoryBackend;
pub use builder::MemoryBackendBuilder;
