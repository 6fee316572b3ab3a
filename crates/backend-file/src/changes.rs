//! Change counters that every process using a function's store shares: a small file next to
//! the store (`<stem>.changes`), mapped into each process's memory. Each write bumps the
//! counter of its key's slot (or, for a change to many keys, the function's own counter),
//! after the write is done; a near hit compares the two counters it read before its value was
//! read from the store, with two loads and no system call. Waiters watch their key's counter
//! the same way.
//!
//! A counter only grows, and a slot is shared by many keys (a change to one makes the near
//! cache drop the others of its slot: a store read, never a stale value). The file is created
//! with the store and removed only with it, when no process has the store open
//! (`remove_unused_store`); a process that finds it replaced
//! keeps its old mapping and no longer hears others, so the near cache of a function is only
//! as coherent as its cache directory is left alone (deleting files under a running process
//! is not supported, as for the store itself).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use cachier_core::watch::{ChangeCounters, Stamp};
use cachier_core::Key;

use crate::private_file;

/// Slots of keys; a power of two.
const SLOTS: usize = 4096;
/// The function's own counter follows the slots.
const ALL: usize = SLOTS;
const LEN: usize = (SLOTS + 1) * size_of::<u64>();

/// The mapped counters of one function.
pub(crate) struct Changes {
    counters: NonNull<AtomicU64>,
    path: PathBuf,
}

// SAFETY: the mapping is shared memory used only through atomics, and lives until drop.
unsafe impl Send for Changes {}
// SAFETY: as above: every access is an atomic operation.
unsafe impl Sync for Changes {}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes").field("path", &self.path).finish()
    }
}

impl Changes {
    /// Maps the counters at `path`, creating the file (zeroed) if needed. A link at `path` is
    /// moved aside, never followed.
    pub(crate) fn open(path: &Path) -> io::Result<Changes> {
        let file = private_file::open_regular(path)?;
        let meta = file.metadata()?;
        if meta.len() < LEN as u64 {
            // Growing fills with zeros; every process that maps it sees one file.
            file.set_len(LEN as u64)?;
        }
        Ok(Changes {
            counters: map(&file)?,
            path: path.to_owned(),
        })
    }

    fn counter(&self, index: usize) -> &AtomicU64 {
        debug_assert!(index <= ALL);
        // SAFETY: `index` is within the mapping of `SLOTS + 1` aligned counters.
        unsafe { &*self.counters.as_ptr().add(index) }
    }

    /// A write to `key` (or, with `None`, to any entries) is done.
    pub(crate) fn bump(&self, key: Option<&Key>) {
        let index = key.map_or(ALL, slot);
        self.counter(index).fetch_add(1, Ordering::AcqRel);
    }

    /// The counters `key`'s changes move: its slot's and the function's.
    pub(crate) fn read(&self, key: &Key) -> (u64, u64) {
        (
            self.counter(slot(key)).load(Ordering::Acquire),
            self.counter(ALL).load(Ordering::Acquire),
        )
    }
}

fn slot(key: &Key) -> usize {
    let bytes = key.as_bytes();
    (u16::from_le_bytes([bytes[0], bytes[1]]) as usize) & (SLOTS - 1)
}

impl ChangeCounters for Changes {
    fn stamp(&self, key: &Key) -> Stamp {
        let (slot_count, all) = self.read(key);
        Stamp {
            slot: slot(key) as u32,
            key: slot_count,
            all,
        }
    }

    #[inline]
    fn unchanged(&self, stamp: &Stamp) -> bool {
        self.counter(stamp.slot as usize).load(Ordering::Acquire) == stamp.key
            && self.counter(ALL).load(Ordering::Acquire) == stamp.all
    }
}

fn map(file: &File) -> io::Result<NonNull<AtomicU64>> {
    // SAFETY: a fresh shared mapping of a file of at least LEN bytes; the kernel chooses the
    // address. Pages are aligned, so every counter is.
    let address = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if address == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(address.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

impl Drop for Changes {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`, used by nothing after drop.
        unsafe {
            libc::munmap(self.counters.as_ptr().cast(), LEN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn two_mappings_of_one_file_see_each_others_bumps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.changes");
        let (a, b) = (Changes::open(&path).unwrap(), Changes::open(&path).unwrap());
        let (k1, k2) = (Key::from_bytes([1; 32]), Key::from_bytes([2; 32]));
        let stamp = b.stamp(&k1);
        a.bump(Some(&k2));
        assert!(b.unchanged(&stamp), "another slot's change");
        a.bump(Some(&k1));
        assert!(!b.unchanged(&stamp));
        let stamp = b.stamp(&k1);
        a.bump(None);
        assert!(!b.unchanged(&stamp), "a change to every key");
    }

    #[test]
    fn a_link_at_the_counters_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"keep me").unwrap();
        let path = dir.path().join("f.changes");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let changes = Changes::open(&path).unwrap();
        changes.bump(None);
        assert_eq!(fs::read(&target).unwrap(), b"keep me");
        assert!(!fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
