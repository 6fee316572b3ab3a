#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod blocking;
mod builder;
mod changes;
mod claims;
mod clock;
mod error;
mod names;
mod open_lock;
mod private_file;
mod separate;
mod single;

pub use backend::FileBackend;
pub use builder::FileBackendBuilder;
pub use names::file_stem;
pub use open_lock::{remove_unused_store, Removal};

/// The backend's name in errors and logs.
const BACKEND: &str = "file";
