//! Claims as OS file locks: one lock file per claimed key, `flock(LOCK_EX | LOCK_NB)`-ed and
//! kept open by the claimer until it stores its result or releases the claim. The kernel drops
//! the lock when the process dies, so a crashed computation is noticed at once, with no lease
//! to wait out.
//!
//! The lock file's path is the claim's name; a claim is live only while its file is at that
//! path *and* locked. So:
//! - a claimer locks the file, then checks that the path still names the file it locked (a
//!   release or `clear_being_calculated` may have unlinked it in between) and retries if not;
//! - a release unlinks the path (if it still names the claimer's file) before unlocking;
//! - `clear_being_calculated` unlinks every lock file: the next caller creates a new one and
//!   computes although the old holder still runs (its lock now guards a nameless file).
//!
//! Nothing is opened or created through a symbolic link: a link at the directory (or at the
//! directory holding it, when that belongs to the cache) or at a lock file is moved aside.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use cachier_core::{ClaimToken, Error, Key};
use cachier_sqlite::move_link_aside;
use parking_lot::Mutex;

use crate::error::io_error;
use crate::private_file;

/// What a lock file says about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// No lock file: nobody claims the key.
    Absent,
    /// A lock file nobody holds (its process died); it has been removed.
    Dead,
    /// Someone holds the lock.
    Live,
}

impl Liveness {
    pub(crate) fn is_live(&self) -> bool {
        matches!(self, Liveness::Live)
    }
}

/// The lock files of one function.
#[derive(Debug)]
pub(crate) struct Claims {
    dir: PathBuf,
    /// Directories that must not be links: `dir`, and its parent when the cache owns it.
    guarded: Vec<PathBuf>,
    /// Claims this process holds: their open, locked files.
    held: Mutex<HashMap<(Key, String), File>>,
}

enum Lock {
    Acquired,
    Busy,
}

fn flock(file: &File, operation: libc::c_int) -> io::Result<Lock> {
    match cachier_sqlite::flock(file, operation) {
        Ok(()) => Ok(Lock::Acquired),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(Lock::Busy),
        Err(error) => Err(error),
    }
}

/// Whether `path` still names the open `file` (a link to it does not).
fn names(path: &Path, file: &File) -> bool {
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Creates `dir` (0700) and its missing parents.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates `dir`, a directory inside the cache directory, as [`create_dir`] does; a link at
/// `dir` is moved aside first (only the cache directory, which the user chose, may be one).
pub(crate) fn create_owned_dir(dir: &Path) -> io::Result<()> {
    move_link_aside(dir)?;
    create_dir(dir)
}

impl Claims {
    /// The lock files in `dir`.
    pub(crate) fn new(dir: PathBuf) -> Claims {
        Claims {
            guarded: vec![dir.clone()],
            dir,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// The lock files in `dir`, whose parent belongs to the cache too (and so must not be a
    /// link either).
    pub(crate) fn in_owned_parent(dir: PathBuf) -> Claims {
        let mut claims = Claims::new(dir);
        if let Some(parent) = claims.dir.parent() {
            claims.guarded.insert(0, parent.to_owned());
        }
        claims
    }

    /// Moves aside links planted at the directories, before anything is opened in them.
    fn guard(&self) -> io::Result<()> {
        for dir in &self.guarded {
            move_link_aside(dir)?;
        }
        Ok(())
    }

    pub(crate) fn path(&self, key: &Key) -> PathBuf {
        self.dir.join(format!("{}.lock", key.to_hex()))
    }

    /// Claims `key` unless a live claim exists: `Ok(None)` means busy.
    pub(crate) fn acquire(&self, key: &Key) -> io::Result<Option<ClaimToken>> {
        self.guard()?;
        let path = self.path(key);
        loop {
            let file = match private_file::open(&path, true) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    create_owned_dir(&self.dir)?;
                    private_file::open(&path, true)?
                }
                other => other?,
            };
            match flock(&file, libc::LOCK_EX | libc::LOCK_NB)? {
                Lock::Busy => return Ok(None),
                Lock::Acquired if names(&path, &file) => {
                    // The file stays empty: freeing a data block when it is unlinked costs
                    // milliseconds on file systems mounted with `discard`.
                    let token = ClaimToken::new();
                    self.held
                        .lock()
                        .insert((*key, token.as_str().to_owned()), file);
                    return Ok(Some(token));
                }
                // Unlinked between our open and our lock: try again with a fresh file.
                Lock::Acquired => continue,
            }
        }
    }

    /// Drops this process's claim `token` on `key`, if it holds it; true if it did.
    pub(crate) fn release(&self, key: &Key, token: &ClaimToken) -> io::Result<bool> {
        let Some(file) = self.held.lock().remove(&(*key, token.as_str().to_owned())) else {
            return Ok(false);
        };
        let path = self.path(key);
        if names(&path, &file) {
            match fs::remove_file(&path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        drop(file); // closing unlocks
        Ok(true)
    }

    /// Whether `key` is claimed now. A lock file left by a dead process is removed.
    pub(crate) fn probe(&self, key: &Key) -> io::Result<Liveness> {
        self.guard()?;
        let path = self.path(key);
        let file = match private_file::open(&path, false) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Liveness::Absent),
            Err(error) => return Err(error),
        };
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB)? {
            Lock::Busy => Ok(Liveness::Live),
            Lock::Acquired => {
                // Nobody holds it: its claimer died. Remove it while we hold the lock, so a
                // claimer that opened it meanwhile notices and retries.
                if names(&path, &file) {
                    let _ = fs::remove_file(&path);
                }
                Ok(Liveness::Dead)
            }
        }
    }

    /// Whether `key` is claimed now, as [`Claims::probe`] finds it; an error is reported as
    /// `operation`'s.
    pub(crate) fn is_live(&self, key: &Key, operation: &'static str) -> Result<bool, Error> {
        self.probe(key)
            .map(|liveness| liveness.is_live())
            .map_err(|e| self.error(operation, e))
    }

    /// An I/O error of `operation` on these lock files, naming their directory.
    pub(crate) fn error(&self, operation: &'static str, error: io::Error) -> Error {
        io_error(operation, &self.dir, error)
    }

    /// Whether a lock file exists for `key` (a claim marker), without opening it.
    pub(crate) fn marker_exists(&self, key: &Key) -> bool {
        fs::symlink_metadata(self.path(key)).is_ok()
    }

    /// Unlinks every lock file: every claim, live or dead, stops counting.
    pub(crate) fn clear_all(&self) -> io::Result<u64> {
        self.guard()?;
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(error),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().ends_with(".lock") {
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(removed)
    }

    /// The keys that have a lock file (live or not).
    pub(crate) fn marked_keys(&self) -> io::Result<Vec<Key>> {
        self.guard()?;
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            if let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".lock")) {
                if let Some(key) = Key::from_hex(hex) {
                    keys.push(key);
                }
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_exclusive_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::new(dir.path().join("claims"));
        let other = Claims::new(dir.path().join("claims"));
        let key = Key::of(&1u32).unwrap();
        assert_eq!(claims.probe(&key).unwrap(), Liveness::Absent);
        let token = claims.acquire(&key).unwrap().expect("first claim");
        assert!(
            claims.acquire(&key).unwrap().is_none(),
            "same process, second claim: busy"
        );
        assert!(
            other.acquire(&key).unwrap().is_none(),
            "another handle: busy"
        );
        assert_eq!(other.probe(&key).unwrap(), Liveness::Live);
        // clear_being_calculated: the next caller may claim although the holder still runs.
        assert_eq!(other.clear_all().unwrap(), 1);
        let second = other.acquire(&key).unwrap().expect("claim after clearing");
        assert!(claims.release(&key, &token).unwrap());
        assert!(
            other.probe(&key).unwrap().is_live(),
            "the old holder's release left the new claim alone"
        );
        assert!(other.release(&key, &second).unwrap());
        assert_eq!(claims.probe(&key).unwrap(), Liveness::Absent);
        assert!(
            !claims.release(&key, &second).unwrap(),
            "releasing twice is a no-op"
        );
    }

    #[test]
    fn abandoned_lock_file_is_dead() {
        let dir = tempfile::tempdir().unwrap();
        let claims = Claims::new(dir.path().to_owned());
        let key = Key::of(&2u32).unwrap();
        // What a killed process leaves: the file, unlocked.
        fs::write(claims.path(&key), "1234-0000000000000000").unwrap();
        assert!(claims.marker_exists(&key));
        assert_eq!(claims.probe(&key).unwrap(), Liveness::Dead);
        assert!(
            !claims.marker_exists(&key),
            "the dead claim's file was removed"
        );
        assert!(claims.acquire(&key).unwrap().is_some());
    }
}
