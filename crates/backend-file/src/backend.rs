//! [`FileBackend`]: one store per function in the cache directory, and the listing of their
//! namespaces.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cachier_core::{Backend, Core, Error, Namespace};
use parking_lot::Mutex;

use crate::blocking::{FileCore, Layout};
use crate::claims::Claims;
use crate::error::io_error;
use crate::separate::{self, SeparateStore};
use crate::single::{self, SingleStore, Stored};
use crate::{file_stem, FileBackendBuilder, BACKEND};

/// The file backend: a cache directory shared by every thread and process of a machine. One
/// store per memoized function; see the crate docs for the layout. Clones share their stores.
#[derive(Clone)]
pub struct FileBackend {
    inner: Arc<BackendInner>,
}

struct BackendInner {
    dir: PathBuf,
    separate_files: bool,
    cores: Mutex<HashMap<Namespace, Arc<dyn Core>>>,
}

impl fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBackend")
            .field("cache_dir", &self.inner.dir)
            .field("separate_files", &self.inner.separate_files)
            .finish()
    }
}

impl FileBackend {
    /// A backend keeping one SQLite store per function in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> FileBackend {
        FileBackend::builder().cache_dir(dir).build()
    }

    /// Starts configuring a backend.
    pub fn builder() -> FileBackendBuilder {
        FileBackendBuilder::default()
    }

    /// The backend a builder describes: `dir` is the cache directory as given (home expanded).
    pub(crate) fn configured(dir: PathBuf, separate_files: bool) -> FileBackend {
        FileBackend {
            inner: Arc::new(BackendInner {
                dir,
                separate_files,
                cores: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The cache directory (what `cache_dpath()` returns).
    pub fn cache_dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether entries are kept one file each.
    pub fn separate_files(&self) -> bool {
        self.inner.separate_files
    }

    /// Where `namespace`'s entries live: its SQLite file, or with `separate_files` the
    /// directory holding one file per entry (named by the key's 64 hex digits,
    /// [`Key::to_hex`](cachier_core::Key::to_hex)).
    pub fn store_path(&self, namespace: &Namespace) -> PathBuf {
        let stem = file_stem(namespace.as_str());
        if self.inner.separate_files {
            SeparateStore::store_path(&self.inner.dir, &stem)
        } else {
            SingleStore::store_path(&self.inner.dir, &stem)
        }
    }
}

impl Backend for FileBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn core(&self, namespace: &Namespace) -> Result<Arc<dyn Core>, Error> {
        if self.inner.dir.as_os_str().is_empty() {
            return Err(Error::config(
                "cache_dir",
                "is empty; give the directory for the cache files",
            ));
        }
        let mut cores = self.inner.cores.lock();
        if let Some(core) = cores.get(namespace) {
            return Ok(core.clone());
        }
        let dir = &self.inner.dir;
        let core: Arc<dyn Core> = if self.inner.separate_files {
            Arc::new(FileCore::<SeparateStore>::new(dir, namespace))
        } else {
            Arc::new(FileCore::<SingleStore>::new(dir, namespace))
        };
        cores.insert(namespace.clone(), core.clone());
        Ok(core)
    }

    /// The namespaces of this layout's stores in the cache directory that hold entries,
    /// read from the name each store records (not guessed from file names). Stores written
    /// before names were recorded are skipped (a debug log says which); so are stores that
    /// cannot be read (a warning says why) and stores renamed by hand (their namespace
    /// would open another file).
    fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        let dir = &self.inner.dir;
        let listing = match fs::read_dir(dir) {
            Ok(listing) => listing,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(io_error("namespaces", dir, error)),
        };
        let mut names = BTreeSet::new();
        for entry in listing {
            let entry = entry.map_err(|e| io_error("namespaces", dir, e))?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let path = entry.path();
            let read = if self.inner.separate_files {
                if file_name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                listed_directory(&path, file_name)
            } else {
                let Some(stem) = file_name.strip_suffix(single::SUFFIX) else {
                    continue;
                };
                listed_database(&path, stem)
            };
            match read {
                Ok(Some(name)) => {
                    names.insert(name);
                }
                Ok(None) => {}
                Err(why) => {
                    tracing::warn!(path = %path.display(), why, "cachier: store skipped while listing namespaces");
                }
            }
        }
        Ok(names.into_iter().collect())
    }
}

/// Why a store was left out of a listing, when it is worth a debug line.
fn unlisted(path: &Path, why: &str) -> Result<Option<Namespace>, String> {
    tracing::debug!(path = %path.display(), why, "cachier: store not listed");
    Ok(None)
}

/// Checks a recorded namespace against the store's file name `stem`.
fn checked_namespace(path: &Path, stem: &str, recorded: &str) -> Result<Option<Namespace>, String> {
    if file_stem(recorded) != stem {
        return unlisted(
            path,
            "renamed or copied: its recorded namespace names another file",
        );
    }
    Namespace::new(recorded, None)
        .map(Some)
        .map_err(|e| format!("bad recorded namespace {recorded:?}: {e}"))
}

/// The namespace of the SQLite store at `path` (file name `<stem>.sqlite3`) if it has
/// entries.
fn listed_database(path: &Path, stem: &str) -> Result<Option<Namespace>, String> {
    match single::stored_namespace(path)? {
        Stored::Unlabelled => unlisted(path, "written before namespaces were recorded"),
        Stored::Namespace(_, false) => Ok(None),
        Stored::Namespace(recorded, true) => checked_namespace(path, stem, &recorded),
    }
}

/// The namespace of the entry directory `path` (named `stem`) if it has entries (entry files
/// or claims in flight).
fn listed_directory(path: &Path, stem: &str) -> Result<Option<Namespace>, String> {
    let Some(recorded) = separate::stored_namespace(path).map_err(|e| e.to_string())? else {
        return unlisted(
            path,
            "no .namespace file (written before namespaces were recorded)",
        );
    };
    let has_entries = separate::has_entry_files(path).map_err(|e| e.to_string())?
        || !Claims::new(path.join(separate::CLAIMS_DIR))
            .marked_keys()
            .map_err(|e| e.to_string())?
            .is_empty();
    if !has_entries {
        return Ok(None);
    }
    checked_namespace(path, stem, &recorded)
}
