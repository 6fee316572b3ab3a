//! The file system's errors as this backend reports them.

use std::io;
use std::path::Path;

use cachier_core::Error;

use crate::BACKEND;

/// An I/O error that names the path it concerns.
pub(crate) fn io_error(operation: &'static str, path: &Path, error: io::Error) -> Error {
    Error::backend(
        BACKEND,
        operation,
        io::Error::new(error.kind(), format!("{}: {error}", path.display())),
    )
}
