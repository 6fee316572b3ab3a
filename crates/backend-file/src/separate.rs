//! `separate_files` mode: one file per entry, `<dir>/<64 hex digits of the key>`, replaced
//! atomically (written to a temporary file in the same directory, then renamed over).
//!
//! File layout (little endian): `b"CHR2"`, flags (bit 0: completed), 3 reserved bytes,
//! time (ns since the Unix epoch, i64), value length (u64), SHA-256 of the value (first 8
//! bytes), then the value. A file that is short, long, or fails the checksum is damaged.
//!
//! `<dir>/.namespace` holds the function's namespace (then a newline), for listing tools.
//!
//! Nothing is opened through a symbolic link: a link at `<dir>` or at `.namespace` is moved
//! aside before use, and an entry file that is a link is damage (a miss, then replaced).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use cachier_core::codec::PREVIEW_PREFIX_LEN;
use cachier_core::{preview_of, Key};
use cachier_sqlite::{move_link_aside, no_follow};
use sha2::{Digest, Sha256};

use crate::clock::{from_nanos, to_nanos};

const MAGIC: &[u8; 4] = b"CHR2";
const HEADER: usize = 32;
const FLAG_COMPLETED: u8 = 1;
/// The file in each entry directory that records its function's namespace.
pub(crate) const NAMESPACE_FILE: &str = ".namespace";
/// The directory in each entry directory that holds the lock files of claims.
pub(crate) const CLAIMS_DIR: &str = ".claims";
/// Temporary files older than this are leftovers of a crashed writer.
const TMP_MAX_AGE: Duration = Duration::from_secs(600);
/// How many temporary names a write tries when the first ones are taken.
const TMP_ATTEMPTS: usize = 16;
/// Why a file that is a symbolic link is not read.
const LINK: &str = "a symbolic link (not followed)";

/// A decoded entry file.
#[derive(Debug)]
pub(crate) struct EntryFile {
    pub(crate) value: Vec<u8>,
    pub(crate) time: SystemTime,
    pub(crate) completed: bool,
}

/// Why an entry file could not be read.
pub(crate) enum ReadError {
    Io(io::Error),
    Damaged(String),
}

fn checksum(value: &[u8]) -> [u8; 8] {
    Sha256::digest(value)[..8].try_into().expect("8 bytes")
}

pub(crate) fn encode(value: &[u8], time: SystemTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + value.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[FLAG_COMPLETED, 0, 0, 0]);
    out.extend_from_slice(&to_nanos(time).to_le_bytes());
    out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(value));
    out.extend_from_slice(value);
    out
}

/// A decoded header: time, completed, value length; or why it is damaged.
type HeaderRead = Result<(SystemTime, bool, usize), String>;

fn header(bytes: &[u8]) -> HeaderRead {
    if bytes.len() < HEADER {
        return Err(format!(
            "{} bytes, shorter than the {HEADER}-byte header",
            bytes.len()
        ));
    }
    if &bytes[..4] != MAGIC {
        return Err("not a cachier entry file (bad magic)".into());
    }
    let time = from_nanos(i64::from_le_bytes(bytes[8..16].try_into().expect("8")));
    let len = u64::from_le_bytes(bytes[16..24].try_into().expect("8"));
    let len = usize::try_from(len).map_err(|_| format!("value length {len} too large"))?;
    Ok((time, bytes[4] & FLAG_COMPLETED != 0, len))
}

pub(crate) fn decode(bytes: &[u8]) -> Result<EntryFile, String> {
    let (time, completed, len) = header(bytes)?;
    let value = &bytes[HEADER..];
    if value.len() != len {
        return Err(format!(
            "value is {} bytes, header says {len} (truncated?)",
            value.len()
        ));
    }
    if checksum(value) != bytes[24..32] {
        return Err("checksum mismatch".into());
    }
    Ok(EntryFile {
        value: value.to_vec(),
        time,
        completed,
    })
}

/// An entry file as listed: its header, and its value's size from the file's size.
#[derive(Debug)]
pub(crate) struct ListedFile {
    pub(crate) size: u64,
    pub(crate) time: SystemTime,
    pub(crate) completed: bool,
    /// The preview of the arguments the value carries.
    pub(crate) preview: Option<String>,
}

/// Opens `path` for reading, never through a link. `Ok(None)`: it is a link.
fn open_no_follow(path: &Path) -> io::Result<Option<fs::File>> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    no_follow(&mut options);
    match options.open(path) {
        Ok(file) => Ok(Some(file)),
        Err(error)
            if error.kind() != io::ErrorKind::NotFound
                && fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) =>
        {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Reads the whole file at `path`, never through a link. `Ok(None)`: it is a link.
fn read_no_follow(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let Some(mut file) = open_no_follow(path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(file.metadata().map_or(0, |m| m.len() as usize));
    file.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// The namespace recorded in the entry directory `dir`; `None` if there is none (a directory
/// written before namespaces were recorded, or not an entry directory).
pub(crate) fn stored_namespace(dir: &Path) -> io::Result<Option<String>> {
    let path = dir.join(NAMESPACE_FILE);
    match read_no_follow(&path).and_then(|bytes| {
        bytes.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {LINK}", path.display()),
            )
        })
    }) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))?;
            Ok(Some(text.strip_suffix('\n').unwrap_or(&text).to_owned()))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Whether the entry directory `dir` holds at least one entry file (stops at the first).
pub(crate) fn has_entry_files(dir: &Path) -> io::Result<bool> {
    for entry in fs::read_dir(dir)? {
        if entry?
            .file_name()
            .to_str()
            .and_then(Key::from_hex)
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One function's entry directory.
#[derive(Debug)]
pub(crate) struct SeparateStore {
    dir: PathBuf,
    namespace: String,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl SeparateStore {
    /// Uses `dir` (created by the caller) for `namespace`'s entries, records the namespace
    /// there, and removes temporary files a crashed writer left. Neither needs to succeed
    /// (the directory may be read-only): entries stored there are read all the same.
    pub(crate) fn open(dir: PathBuf, namespace: &str) -> io::Result<SeparateStore> {
        let store = SeparateStore {
            dir,
            namespace: namespace.to_owned(),
        };
        if let Err(error) = store.label() {
            tracing::debug!(dir = %store.dir.display(), %error, "cachier: entry directory not labelled");
        }
        if let Err(error) = store.remove_tmp_files(TMP_MAX_AGE) {
            tracing::debug!(dir = %store.dir.display(), %error, "cachier: leftover temporary files not removed");
        }
        Ok(store)
    }

    /// Moves aside a link planted at the directory, so that nothing is read, written or
    /// removed through it (the directory is then missing: an empty cache).
    pub(crate) fn guard(&self) -> io::Result<()> {
        move_link_aside(&self.dir)
    }

    /// Writes `.namespace` unless it exists (atomically: a reader sees all of it or none).
    /// A link there is moved aside and replaced.
    pub(crate) fn label(&self) -> io::Result<()> {
        self.guard()?;
        let path = self.dir.join(NAMESPACE_FILE);
        move_link_aside(&path)?;
        if fs::symlink_metadata(&path).is_ok() {
            return Ok(());
        }
        self.replace(&path, format!("{}\n", self.namespace).as_bytes())
    }

    /// The entry directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The namespace of the function whose entries these are.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    pub(crate) fn path(&self, key: &Key) -> PathBuf {
        self.dir.join(key.to_hex())
    }

    pub(crate) fn read(&self, key: &Key) -> Result<Option<EntryFile>, ReadError> {
        self.guard().map_err(ReadError::Io)?;
        match read_no_follow(&self.path(key)) {
            Ok(Some(bytes)) => decode(&bytes).map(Some).map_err(ReadError::Damaged),
            Ok(None) => Err(ReadError::Damaged(LINK.into())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(ReadError::Io(error)),
        }
    }

    /// The header of the file at `path` (reading only its first bytes) and the file's size;
    /// `None` if the file is gone, `Err` inside for a damaged header.
    fn read_header(path: &Path) -> io::Result<Option<(HeaderRead, u64)>> {
        let mut buf = [0u8; HEADER];
        Ok(Self::read_head(path, &mut buf)?.map(|(header, size, _)| (header, size)))
    }

    /// [`Self::read_header`], reading up to `buf.len()` bytes from the file's start into
    /// `buf` (the header, then the value's first bytes), and how many it read.
    fn read_head(path: &Path, buf: &mut [u8]) -> io::Result<Option<(HeaderRead, u64, usize)>> {
        let mut file = match open_no_follow(path) {
            Ok(Some(file)) => file,
            Ok(None) => return Ok(Some((Err(LINK.into()), 0, 0))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let size = file.metadata()?.len();
        let mut read = 0;
        while read < buf.len() {
            match file.read(&mut buf[read..])? {
                0 => break,
                n => read += n,
            }
        }
        Ok(Some((header(&buf[..read.min(HEADER)]), size, read)))
    }

    /// The stored time of `key`'s file, reading only its header.
    fn read_time(path: &Path) -> io::Result<Option<SystemTime>> {
        // A damaged file counts as infinitely old: stale cleanup removes it.
        Ok(Self::read_header(path)?.map(|(header, _)| {
            header
                .map(|(time, _, _)| time)
                .unwrap_or(SystemTime::UNIX_EPOCH)
        }))
    }

    /// Every entry file, from its header, size and the value's first bytes (its preview)
    /// only: values are never read whole. A damaged header, or a size that disagrees with
    /// it, is reported as the `Err` beside its key.
    pub(crate) fn list(&self) -> io::Result<Vec<(Key, Result<ListedFile, String>)>> {
        let mut out = Vec::new();
        let mut buf = [0u8; HEADER + PREVIEW_PREFIX_LEN];
        for (key, path) in self.entries()? {
            let Some((header, size, read)) = Self::read_head(&path, &mut buf)? else {
                continue; // removed since the directory was read
            };
            let listed = header.and_then(|(time, completed, len)| {
                if size.checked_sub(HEADER as u64) == Some(len as u64) {
                    Ok(ListedFile {
                        size: len as u64,
                        time,
                        completed,
                        preview: buf.get(HEADER..read).and_then(preview_of),
                    })
                } else {
                    Err(format!(
                        "{size} bytes, header says {} (truncated?)",
                        HEADER + len
                    ))
                }
            });
            out.push((key, listed));
        }
        Ok(out)
    }

    /// Writes `key`'s file atomically: readers see the old file or the new one, never a mix.
    /// (A link at its path is replaced, not followed.)
    pub(crate) fn write(&self, key: &Key, value: &[u8]) -> io::Result<()> {
        self.guard()?;
        self.replace(&self.path(key), &encode(value, SystemTime::now()))
    }

    /// Writes `bytes` to a new temporary file in the directory, then renames it over
    /// `target`. A name already taken (by anything, a link included) is skipped, never
    /// opened.
    fn replace(&self, target: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut attempts = 0;
        let (tmp, mut file) = loop {
            let tmp = self.dir.join(format!(
                ".tmp-{}-{}",
                std::process::id(),
                TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true).mode(0o600);
            no_follow(&mut options);
            match options.open(&tmp) {
                Ok(file) => break (tmp, file),
                Err(error)
                    if error.kind() == io::ErrorKind::AlreadyExists
                        && attempts + 1 < TMP_ATTEMPTS =>
                {
                    attempts += 1;
                }
                Err(error) => return Err(error),
            }
        };
        let written = file.write_all(bytes);
        drop(file);
        let renamed = written.and_then(|()| fs::rename(&tmp, target));
        if renamed.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        renamed
    }

    /// Entry files: names of 64 hex digits.
    fn entries(&self) -> io::Result<Vec<(Key, PathBuf)>> {
        self.guard()?;
        let listing = match fs::read_dir(&self.dir) {
            Ok(listing) => listing,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut out = Vec::new();
        for entry in listing {
            let entry = entry?;
            if let Some(key) = entry.file_name().to_str().and_then(Key::from_hex) {
                out.push((key, entry.path()));
            }
        }
        Ok(out)
    }

    pub(crate) fn keys(&self) -> io::Result<Vec<Key>> {
        Ok(self.entries()?.into_iter().map(|(key, _)| key).collect())
    }

    pub(crate) fn clear(&self) -> io::Result<()> {
        for (_, path) in self.entries()? {
            remove_if_present(&path)?;
        }
        self.remove_tmp_files(Duration::from_secs(60))
    }

    /// Entries stored before `cutoff` (damaged files included).
    pub(crate) fn older_than(&self, cutoff: SystemTime) -> io::Result<Vec<(Key, PathBuf)>> {
        let mut out = Vec::new();
        for (key, path) in self.entries()? {
            if Self::read_time(&path)?.is_some_and(|time| time < cutoff) {
                out.push((key, path));
            }
        }
        Ok(out)
    }

    pub(crate) fn remove_file(&self, path: &Path) -> io::Result<bool> {
        self.guard()?;
        remove_if_present(path)
    }

    fn remove_tmp_files(&self, older_than: Duration) -> io::Result<()> {
        self.guard()?;
        let listing = match fs::read_dir(&self.dir) {
            Ok(listing) => listing,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        let now = SystemTime::now();
        for entry in listing.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(".tmp-") {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() >= older_than)
                .unwrap_or(false);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Temporary names taken by planted links are skipped: nothing is created through them.
    #[test]
    fn temporary_names_taken_by_links_are_skipped() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("entries");
        let outside = root.path().join("outside");
        fs::create_dir(&dir).unwrap();
        fs::create_dir(&outside).unwrap();
        let store = SeparateStore::open(dir.clone(), "tests::tmp").unwrap();
        let next = TMP_COUNTER.load(Ordering::Relaxed);
        for n in next..next + 4 {
            std::os::unix::fs::symlink(
                outside.join(format!("victim-{n}")),
                dir.join(format!(".tmp-{}-{n}", std::process::id())),
            )
            .unwrap();
        }
        let key = Key::of(&1u8).unwrap();
        store.write(&key, b"value").unwrap();
        let Ok(Some(entry)) = store.read(&key) else {
            panic!("written")
        };
        assert_eq!(entry.value, b"value");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn entry_files_round_trip_and_reject_damage() {
        let now = SystemTime::now();
        let bytes = encode(b"hello", now);
        let entry = decode(&bytes).expect("round trip");
        assert_eq!(entry.value, b"hello");
        assert!(entry.completed);
        assert_eq!(to_nanos(entry.time), to_nanos(now));
        for cut in [0, 3, HEADER - 1, HEADER, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(decode(&flipped).unwrap_err().contains("checksum"));
        assert!(decode(b"garbage garbage garbage garbage garbage")
            .unwrap_err()
            .contains("magic"));
    }
}
