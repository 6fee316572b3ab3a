//! Who has a function's store open, so that its files can be removed when nobody does.
//!
//! Every process holds a shared `flock` on `<stem>.open.lock` in the cache directory for as
//! long as it has the function's store open: taken before the store is opened, released when
//! the function's core is dropped (for a `#[cachier]` function, when the process ends).
//! [`remove_unused_store`] takes that lock exclusively without waiting, so it succeeds only
//! while no process has the store open; it then removes the store (if it holds no entry), its
//! claims directory and its change counters, and the lock file last. A process that opens the
//! store meanwhile waits for its shared lock until the removal is done, finds the lock file
//! gone, and takes the new one before creating the store again.
//!
//! Processes of builds that predate this lock do not take it: remove stores only when none of
//! those runs.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cachier_core::{Error, Namespace};
use cachier_sqlite::no_follow;
use rusqlite::{Connection, OpenFlags};

use crate::error::io_error;
use crate::private_file;
use crate::{file_stem, separate, single};

/// The file next to a function's store whose shared locks mark the processes using it.
pub(crate) const OPEN_LOCK_SUFFIX: &str = ".open.lock";
/// The file next to a function's store that holds its change counters.
pub(crate) const CHANGES_SUFFIX: &str = ".changes";

/// A shared lock on a store's open lock, held for as long as the store is open.
#[derive(Debug)]
pub(crate) struct OpenLock {
    _file: File,
}

impl OpenLock {
    /// Takes the shared lock at `path`, waiting while a removal holds it; a lock file removed
    /// meanwhile is taken again under its new inode, so the lock held is always the one a
    /// removal would have to take.
    pub(crate) fn shared(path: &Path) -> io::Result<OpenLock> {
        loop {
            let file = match private_file::open_regular(path) {
                // A directory this process cannot write (a read-only disk serving hits): the
                // lock file may still be there to lock, and if not, no removal can happen
                // here either.
                Err(error) if fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) => {
                    let mut options = fs::OpenOptions::new();
                    options.read(true);
                    no_follow(&mut options);
                    options.open(path).map_err(|_| error)?
                }
                other => other?,
            };
            cachier_sqlite::flock(&file, libc::LOCK_SH)?;
            if names(path, &file) {
                return Ok(OpenLock { _file: file });
            }
        }
    }
}

/// Whether `path` still names the open `file`.
fn names(path: &Path, file: &File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// What [`remove_unused_store`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Nobody had the store open and it held no entry: its files are gone.
    Removed,
    /// A process has the store open (this one included, while it keeps a function or core of
    /// it): nothing was removed.
    InUse,
    /// The store holds entries (or files it does not know): nothing was removed.
    NotEmpty,
    /// There is no store of this function in the directory.
    Absent,
}

/// Removes the files of `namespace`'s store in `cache_dir` (the store, its SQLite `-wal` and
/// `-shm` files or its entry directory, its claims directory, its `<stem>.changes` counters
/// and its open lock) if no process has the store open and it holds no entry; other
/// functions' files are never touched. `cachier clear` calls it after clearing a function.
///
/// Safe against processes using the store: each holds a shared lock on `<stem>.open.lock`
/// while it has the store open, and this takes that lock exclusively without waiting, so a
/// store in use is left alone ([`Removal::InUse`]). This process's own functions and cores of
/// the store count as users: drop them first.
///
/// # Errors
/// When a file cannot be examined or removed (the cause is kept).
pub fn remove_unused_store(
    cache_dir: &Path,
    namespace: &Namespace,
    separate_files: bool,
) -> Result<Removal, Error> {
    let stem = file_stem(namespace.as_str());
    let at = |suffix: &str| cache_dir.join(format!("{stem}{suffix}"));
    let lock_path = at(OPEN_LOCK_SUFFIX);
    let changes = at(CHANGES_SUFFIX);
    let (store, claims) = if separate_files {
        let dir = cache_dir.join(&stem);
        let claims = dir.join(separate::CLAIMS_DIR);
        (dir, claims)
    } else {
        (at(single::SUFFIX), at(single::CLAIMS_SUFFIX))
    };
    let fail = |path: &Path| {
        let path = path.to_owned();
        move |e: io::Error| io_error("remove_unused_store", &path, e)
    };
    let exists = |path: &Path| fs::symlink_metadata(path).is_ok();
    if ![&store, &claims, &changes, &lock_path]
        .iter()
        .any(|path| exists(path))
    {
        return Ok(Removal::Absent);
    }
    let lock = private_file::open_regular(&lock_path).map_err(fail(&lock_path))?;
    match cachier_sqlite::flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(Removal::InUse),
        Err(error) => return Err(fail(&lock_path)(error)),
    }
    if !names(&lock_path, &lock) {
        return Ok(Removal::InUse); // replaced meanwhile: someone is opening the store
    }
    let empty = if separate_files {
        separate_store_is_empty(&store).map_err(fail(&store))?
    } else {
        single_store_is_empty(&store)?
    };
    if !empty {
        return Ok(Removal::NotEmpty);
    }
    if separate_files {
        remove_claims_dir(&claims).map_err(fail(&claims))?;
        remove_if_present(&store.join(separate::NAMESPACE_FILE)).map_err(fail(&store))?;
        remove_dir_if_present(&store).map_err(fail(&store))?;
    } else {
        for path in [
            store.clone(),
            sidecar(&store, "-wal"),
            sidecar(&store, "-shm"),
        ] {
            remove_if_present(&path).map_err(fail(&path))?;
        }
        remove_claims_dir(&claims).map_err(fail(&claims))?;
    }
    remove_if_present(&changes).map_err(fail(&changes))?;
    // Last, still locked: a process waiting for it finds it gone and takes a new one.
    remove_if_present(&lock_path).map_err(fail(&lock_path))?;
    drop(lock);
    Ok(Removal::Removed)
}

/// Whether the single store at `path` holds no row (a missing store is empty). A file that is
/// not one of our databases is not empty: it stays.
fn single_store_is_empty(path: &Path) -> Result<bool, Error> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Ok(false), // a link or a directory: not ours to remove
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(error) => return Err(io_error("remove_unused_store", path, error)),
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| Error::backend(crate::BACKEND, "remove_unused_store", e))?;
    let rows: rusqlite::Result<bool> =
        conn.query_row("SELECT EXISTS (SELECT 1 FROM entries)", [], |r| r.get(0));
    // Closing the last connection checkpoints the write-ahead log and deletes it.
    drop(conn);
    Ok(matches!(rows, Ok(false)))
}

/// Whether the entry directory at `dir` holds nothing but its namespace file and claims
/// directory (a missing one is empty).
fn separate_store_is_empty(dir: &Path) -> io::Result<bool> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(error) => return Err(error),
    };
    for entry in listing {
        let name = entry?.file_name();
        if name != separate::NAMESPACE_FILE && name != separate::CLAIMS_DIR {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes a claims directory: with nobody using the store, its lock files are leftovers
/// (only regular files are removed; anything else keeps the directory).
fn remove_claims_dir(dir: &Path) -> io::Result<()> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in listing {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            remove_if_present(&entry.path())?;
        }
    }
    remove_dir_if_present(dir)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

fn remove_dir_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_dir(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// `path` with `suffix` appended to its file name (`x.sqlite3` → `x.sqlite3-wal`).
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
