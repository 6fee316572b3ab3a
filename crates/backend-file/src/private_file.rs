//! The small files kept next to a store (claim locks, the open lock, the change counters):
//! opened read-write, created `0600`, never through a link.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use cachier_sqlite::{move_link_aside, no_follow};

/// Opens (or, with `create`, creates) the file at `path`, never through a link: a link found
/// there is moved aside, and then is no file (`NotFound` unless `create`).
pub(crate) fn open(path: &Path, create: bool) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600);
    no_follow(&mut options);
    match options.open(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound && is_link(path) => {
            move_link_aside(path)?;
            options.open(path)
        }
        other => other,
    }
}

/// [`open`] with `create`, refusing anything but a regular file (a directory, a FIFO).
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    let file = open(path, true)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Whether `path` is a symbolic link (not followed).
pub(crate) fn is_link(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}
