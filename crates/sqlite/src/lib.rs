#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cachier_core::Error;
use parking_lot::Mutex;
pub use rusqlite;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

/// How long a writer waits for another writer before `SQLITE_BUSY` (several seconds: under
/// load from several processes a short timeout turns contention into errors).
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections kept per database; more are closed when returned.
const MAX_IDLE: usize = 16;

/// How often a database checks that its file was not replaced by another process.
const IDENTITY_CHECK: Duration = Duration::from_secs(1);

/// How long a read-only connection opened because the file could not be written is reused
/// before opening read-write is tried again (the disk may have room again).
const READ_ONLY_RETRY: Duration = Duration::from_secs(1);

/// The files SQLite keeps beside a database, by suffix.
const SIDECARS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// How a [`Database`] opens its file.
#[derive(Debug, Clone)]
#[must_use]
pub struct OpenOptions {
    busy_timeout: Duration,
    file_mode: Option<u32>,
    recover_corrupt: bool,
    no_symlinks: bool,
    read_only_fallback: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            file_mode: None,
            recover_corrupt: false,
            no_symlinks: false,
            read_only_fallback: false,
        }
    }
}

impl OpenOptions {
    /// How long a statement waits for a lock held by another connection (default 10 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Creates a missing database file with this mode (for example `0o600`) before SQLite
    /// opens it; SQLite then gives its `-wal` and `-shm` files the same mode.
    pub fn file_mode(mut self, mode: u32) -> Self {
        self.file_mode = Some(mode);
        self
    }

    /// Moves a damaged database file aside and starts a fresh one instead of failing (for
    /// caches, whose content can always be recomputed).
    pub fn recover_corrupt(mut self, on: bool) -> Self {
        self.recover_corrupt = on;
        self
    }

    /// Never opens or creates the database, its `-wal`, `-shm` and `-journal` files or its
    /// recovery lock through a symbolic link: a link found at one of those paths is renamed
    /// to `<name>.symlink-<time>-<pid>` with a warning, and a real file takes its place. For
    /// databases in a directory the library owns, where a link can only be damage (a path the
    /// user chose may well be a link on purpose). The directory holding the database may
    /// itself be a link.
    pub fn no_symlinks(mut self, on: bool) -> Self {
        self.no_symlinks = on;
        self
    }

    /// When the database cannot be opened for writing (read-only file system, no permission,
    /// full disk), opens it read-only instead, so that what it holds can still be read;
    /// writes then fail. Opening read-write is tried again a second later. Without the `-wal`
    /// and `-shm` files, which cannot be created there, the file is opened as immutable (as a
    /// snapshot); a damaged file is then never moved aside.
    pub fn read_only_fallback(mut self, on: bool) -> Self {
        self.read_only_fallback = on;
        self
    }
}

/// Which file a connection has open: (device, inode).
type FileId = (u64, u64);

type Init = dyn Fn(&Connection) -> rusqlite::Result<()> + Send + Sync;

struct Pooled {
    conn: Connection,
    file: Option<FileId>,
    generation: u64,
    /// For a read-only fallback connection: when it was opened, in ms since [`EPOCH`].
    read_only_since: Option<u64>,
}

struct Inner {
    path: PathBuf,
    backend: &'static str,
    options: OpenOptions,
    init: Box<Init>,
    idle: Mutex<Vec<Pooled>>,
    /// Bumped when the file is replaced: older connections are closed instead of reused.
    generation: AtomicU64,
    /// The file the newest connection opened.
    current: Mutex<Option<FileId>>,
    /// When the file's identity was last checked, in ms since [`EPOCH`].
    last_check_ms: AtomicU64,
    /// Serialises recoveries inside this process (the lock file does across processes).
    recovering: Mutex<()>,
    /// Whether the newest connection had to be opened read-only (warned about once).
    read_only: AtomicBool,
    /// The one connection of an in-memory database (which lives as long as it does).
    memory: Option<Mutex<Connection>>,
}

/// One SQLite database file shared by threads and processes: a pool of WAL-mode connections.
/// Cheap to clone.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.inner.path)
            .field("idle", &self.inner.idle.lock().len())
            .finish()
    }
}

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

fn file_id(path: &Path) -> Option<FileId> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Database {
    /// Opens (creating if needed) the database at `path`, runs `init` on every new connection
    /// (create tables there), and checks that the file is usable.
    ///
    /// `backend` names the backend in errors.
    ///
    /// # Errors
    /// [`Error::Backend`] with operation `"open"` when the file cannot be created or opened,
    /// or is damaged and `recover_corrupt` is off.
    pub fn open(
        path: impl Into<PathBuf>,
        backend: &'static str,
        options: OpenOptions,
        init: impl Fn(&Connection) -> rusqlite::Result<()> + Send + Sync + 'static,
    ) -> Result<Database, Error> {
        let db = Database {
            inner: Arc::new(Inner {
                path: path.into(),
                backend,
                options,
                init: Box::new(init),
                idle: Mutex::new(Vec::new()),
                generation: AtomicU64::new(0),
                current: Mutex::new(None),
                last_check_ms: AtomicU64::new(now_ms()),
                recovering: Mutex::new(()),
                read_only: AtomicBool::new(false),
                memory: None,
            }),
        };
        // Open one connection now, so a bad path or a damaged file shows at once.
        db.with("open", |_| Ok(()))?;
        Ok(db)
    }

    /// A private in-memory database (`sqlite::memory:`): one connection, shared by the threads
    /// of this process in turn, gone with the last clone. `init` runs once; `path()` is
    /// `":memory:"`.
    ///
    /// # Errors
    /// [`Error::Backend`] with operation `"open"` when SQLite or `init` fails.
    pub fn open_in_memory(
        backend: &'static str,
        init: impl Fn(&Connection) -> rusqlite::Result<()> + Send + Sync + 'static,
    ) -> Result<Database, Error> {
        let conn = Connection::open_in_memory().map_err(|e| backend_error(backend, "open", e))?;
        init(&conn).map_err(|e| backend_error(backend, "open", e))?;
        Ok(Database {
            inner: Arc::new(Inner {
                path: PathBuf::from(":memory:"),
                backend,
                options: OpenOptions::default(),
                init: Box::new(init),
                idle: Mutex::new(Vec::new()),
                generation: AtomicU64::new(0),
                current: Mutex::new(None),
                last_check_ms: AtomicU64::new(now_ms()),
                recovering: Mutex::new(()),
                read_only: AtomicBool::new(false),
                memory: Some(Mutex::new(conn)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a pooled connection; `operation` names it in errors. With
    /// `recover_corrupt`, a damaged file is replaced and `f` runs once more.
    ///
    /// # Errors
    /// [`Error::Backend`] carrying the rusqlite error.
    pub fn with<T>(
        &self,
        operation: &'static str,
        mut f: impl FnMut(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        if let Some(memory) = &self.inner.memory {
            return f(&mut memory.lock()).map_err(|e| self.error(operation, e));
        }
        self.check_identity();
        let mut pooled = self.take(operation)?;
        match f(&mut pooled.conn) {
            Ok(value) => {
                self.give_back(pooled);
                Ok(value)
            }
            Err(error)
                if self.inner.options.recover_corrupt
                    && pooled.read_only_since.is_none()
                    && is_corrupt(&error) =>
            {
                self.recover(pooled.file, &error)?;
                drop(pooled);
                let mut fresh = self.take(operation)?;
                let outcome = f(&mut fresh.conn);
                self.give_back(fresh);
                outcome.map_err(|e| self.error(operation, e))
            }
            Err(error) => {
                self.give_back(pooled);
                Err(self.error(operation, error))
            }
        }
    }

    /// Runs `f` inside `BEGIN IMMEDIATE` (the write lock is taken at once, so a
    /// read-modify-write cannot interleave with another writer) and commits if it succeeds.
    ///
    /// # Errors
    /// As [`Database::with`].
    pub fn immediate<T>(
        &self,
        operation: &'static str,
        mut f: impl FnMut(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        self.with(operation, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
    }

    /// `source` as this database's [`Error::Backend`].
    pub fn error(&self, operation: &'static str, source: rusqlite::Error) -> Error {
        backend_error(self.inner.backend, operation, source)
    }

    /// Closes idle connections and forgets the file, so the next operation reopens it (for
    /// example after the file was deleted on purpose).
    pub fn reopen(&self) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        self.inner.idle.lock().clear();
    }

    /// Notices a file replaced or deleted by another process (at most once a second).
    fn check_identity(&self) {
        let now = now_ms();
        let last = self.inner.last_check_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < IDENTITY_CHECK.as_millis() as u64 {
            return;
        }
        if self
            .inner
            .last_check_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let current = *self.inner.current.lock();
        if current.is_some() && file_id(&self.inner.path) != current {
            tracing::debug!(path = %self.inner.path.display(), "cachier: database file replaced; reopening");
            self.reopen();
        }
    }

    fn take(&self, operation: &'static str) -> Result<Pooled, Error> {
        let generation = self.inner.generation.load(Ordering::SeqCst);
        {
            let mut idle = self.inner.idle.lock();
            let now = now_ms();
            while let Some(pooled) = idle.pop() {
                let expired = pooled.read_only_since.is_some_and(|since| {
                    now.saturating_sub(since) >= READ_ONLY_RETRY.as_millis() as u64
                });
                if pooled.generation == generation && !expired {
                    return Ok(pooled);
                }
            }
        }
        self.connect(generation).map_err(|e| match e {
            Failure::Io(io) => Error::backend(self.inner.backend, operation, io),
            Failure::Sqlite(sqlite) => self.error(operation, sqlite),
        })
    }

    fn give_back(&self, pooled: Pooled) {
        if pooled.generation != self.inner.generation.load(Ordering::SeqCst) {
            return;
        }
        let mut idle = self.inner.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(pooled);
        }
    }

    /// A new connection, recovering a damaged file first if allowed.
    fn connect(&self, generation: u64) -> Result<Pooled, Failure> {
        match self.connect_once(generation) {
            Err(Failure::Sqlite(error))
                if self.inner.options.recover_corrupt && is_corrupt(&error) =>
            {
                let file = file_id(&self.inner.path);
                self.recover(file, &error)
                    .map_err(|e| Failure::Io(io::Error::other(e.to_string())))?;
                self.connect_once(self.inner.generation.load(Ordering::SeqCst))
            }
            other => other,
        }
    }

    /// A read-write connection; failing that, with `read_only_fallback`, a read-only one.
    fn connect_once(&self, generation: u64) -> Result<Pooled, Failure> {
        let inner = &*self.inner;
        let error = match self.connect_read_write(generation) {
            Ok(pooled) => {
                if inner.read_only.swap(false, Ordering::Relaxed) {
                    tracing::info!(path = %inner.path.display(), "cachier: database writable again");
                }
                return Ok(pooled);
            }
            Err(error) if inner.options.read_only_fallback && is_unwritable(&error) => error,
            Err(error) => return Err(error),
        };
        match self.connect_read_only(generation) {
            Ok(pooled) => {
                if !inner.read_only.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        path = %inner.path.display(),
                        error = %error,
                        "cachier: database cannot be written; reading it read-only (new results are not stored)"
                    );
                }
                Ok(pooled)
            }
            Err(read_only) => {
                tracing::debug!(path = %inner.path.display(), %read_only, "cachier: read-only open failed too");
                Err(error)
            }
        }
    }

    /// The path to give SQLite. With `no_symlinks`: links at the database's paths moved
    /// aside, and the directory resolved (SQLite's `NOFOLLOW` refuses a link anywhere in the
    /// path, and the directory may be one).
    fn sqlite_path(&self) -> Result<PathBuf, Failure> {
        let inner = &*self.inner;
        if !inner.options.no_symlinks {
            return Ok(inner.path.clone());
        }
        move_link_aside(&inner.path).map_err(Failure::Io)?;
        for suffix in SIDECARS {
            move_link_aside(&sidecar(&inner.path, suffix)).map_err(Failure::Io)?;
        }
        resolve_directory(&inner.path).map_err(Failure::Io)
    }

    fn open_flags(&self, base: OpenFlags) -> OpenFlags {
        let mut flags = base | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        if self.inner.options.no_symlinks {
            flags |= OpenFlags::SQLITE_OPEN_NOFOLLOW;
        }
        flags
    }

    fn connect_read_write(&self, generation: u64) -> Result<Pooled, Failure> {
        let inner = &*self.inner;
        let path = self.sqlite_path()?;
        if let Some(mode) = inner.options.file_mode {
            let mut create = fs::OpenOptions::new();
            create.create(true).append(true).mode(mode);
            if inner.options.no_symlinks {
                no_follow(&mut create);
            }
            create.open(&path).map_err(Failure::Io)?;
        }
        let flags =
            self.open_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE);
        let conn = Connection::open_with_flags(&path, flags)?;
        conn.busy_timeout(inner.options.busy_timeout)?;
        set_wal(&conn, inner.options.busy_timeout)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        (inner.init)(&conn)?;
        Ok(self.pooled(conn, generation, None))
    }

    /// A read-only connection: an ordinary one if SQLite can use (or make) the `-shm` file,
    /// else one that takes the file as immutable. Without a usable `-shm` no other connection
    /// can be writing; a snapshot is still refused while the `-wal` holds commits the file
    /// does not have yet (it would serve entries since replaced or cleared).
    fn connect_read_only(&self, generation: u64) -> Result<Pooled, Failure> {
        let path = self.sqlite_path()?;
        let flags = self.open_flags(OpenFlags::SQLITE_OPEN_READ_ONLY);
        let conn = match self.read_only_connection(&path, flags) {
            Ok(conn) => conn,
            Err(error) => {
                let wal_empty = match fs::symlink_metadata(sidecar(&path, "-wal")) {
                    Ok(meta) => meta.len() == 0,
                    Err(wal) => wal.kind() == io::ErrorKind::NotFound,
                };
                if !wal_empty {
                    return Err(error.into());
                }
                self.read_only_connection(Path::new(&immutable_uri(&path)), flags)?
            }
        };
        Ok(self.pooled(conn, generation, Some(now_ms())))
    }

    fn read_only_connection(&self, path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(self.inner.options.busy_timeout)?;
        // Reads the schema: fails now if the file cannot be read this way.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })?;
        match (self.inner.init)(&conn) {
            // What `init` would create or record cannot be written: reads go on without it.
            Err(error) if error.sqlite_error_code() == Some(ErrorCode::ReadOnly) => Ok(conn),
            Err(error) => Err(error),
            Ok(()) => Ok(conn),
        }
    }

    fn pooled(&self, conn: Connection, generation: u64, read_only_since: Option<u64>) -> Pooled {
        let file = file_id(&self.inner.path);
        *self.inner.current.lock() = file;
        Pooled {
            conn,
            file,
            generation,
            read_only_since,
        }
    }

    /// Moves the damaged file aside (unless another thread or process already did) and makes
    /// every connection reopen.
    fn recover(&self, damaged: Option<FileId>, cause: &rusqlite::Error) -> Result<(), Error> {
        let inner = &*self.inner;
        let _local = inner.recovering.lock();
        let lock_path = sidecar(&inner.path, "-recover.lock");
        let mut options = fs::OpenOptions::new();
        options
            .create(true)
            .truncate(false)
            .write(true)
            .mode(inner.options.file_mode.unwrap_or(0o644));
        if inner.options.no_symlinks {
            no_follow(&mut options);
            move_link_aside(&lock_path).map_err(|e| Error::backend(inner.backend, "recover", e))?;
        }
        let lock = options
            .open(&lock_path)
            .map_err(|e| Error::backend(inner.backend, "recover", e))?;
        flock(&lock, libc::LOCK_EX).map_err(|e| Error::backend(inner.backend, "recover", e))?;
        let now = file_id(&inner.path);
        if now.is_some() && now == damaged {
            let stamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let aside = sidecar(
                &inner.path,
                &format!(".corrupt-{stamp}-{}", std::process::id()),
            );
            tracing::warn!(
                path = %inner.path.display(),
                moved_to = %aside.display(),
                error = %cause,
                "cachier: damaged database file moved aside; starting a fresh one (its entries will be recomputed)"
            );
            fs::rename(&inner.path, &aside)
                .map_err(|e| Error::backend(inner.backend, "recover", e))?;
            for suffix in ["-wal", "-journal"] {
                let from = sidecar(&inner.path, suffix);
                if fs::symlink_metadata(&from).is_ok() {
                    let _ = fs::rename(&from, sidecar(&aside, suffix));
                }
            }
            let _ = fs::remove_file(sidecar(&inner.path, "-shm"));
        }
        self.reopen();
        drop(lock);
        Ok(())
    }
}

/// Why a connection could not be opened.
enum Failure {
    Io(io::Error),
    Sqlite(rusqlite::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(error) => error.fmt(f),
            Failure::Sqlite(error) => error.fmt(f),
        }
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Failure::Sqlite(error)
    }
}

/// True for a failure to open that a read-only connection may get around: the file system is
/// read-only or full, or the file or directory may not be written.
fn is_unwritable(failure: &Failure) -> bool {
    match failure {
        Failure::Io(error) => matches!(
            error.raw_os_error(),
            Some(libc::EROFS | libc::EACCES | libc::EPERM | libc::ENOSPC | libc::EDQUOT)
        ),
        Failure::Sqlite(error) => matches!(
            error.sqlite_error_code(),
            Some(
                ErrorCode::ReadOnly
                    | ErrorCode::CannotOpen
                    | ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::PermissionDenied
            )
        ),
    }
}

/// Renames a symbolic link found at `path` to `<path>.symlink-<time>-<pid>` (the link
/// itself, never its target), with a warning. Nothing happens when `path` is not a link.
///
/// # Errors
/// The rename's failure, but not its finding the link gone (another process moved it).
pub fn move_link_aside(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {}
        _ => return Ok(()),
    }
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let aside = sidecar(path, &format!(".symlink-{stamp}-{}", std::process::id()));
    match fs::rename(path, &aside) {
        Ok(()) => {
            tracing::warn!(
                path = %path.display(),
                moved_to = %aside.display(),
                "cachier: symbolic link inside the cache directory moved aside, not followed"
            );
            Ok(())
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// Makes `options` refuse to open a symbolic link (where the platform can).
pub fn no_follow(options: &mut fs::OpenOptions) {
    #[cfg(unix)]
    options.custom_flags(libc::O_NOFOLLOW);
    #[cfg(not(unix))]
    let _ = options;
}

/// `path` with its directory resolved to a path free of links (its file name is kept as it
/// is), for opening with `SQLITE_OPEN_NOFOLLOW`, which refuses a link anywhere in the path.
///
/// # Errors
/// When `path` has no file name or its directory cannot be resolved.
pub fn resolve_directory(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Ok(fs::canonicalize(dir)?.join(name))
}

/// An SQLite URI opening `path` as immutable: no locks, no `-wal` or `-shm` (for files that
/// nothing can change, such as those on a read-only file system).
fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            uri.push(byte as char);
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// `path` with `suffix` appended to its file name.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `flock(2)` on `file`, retried when a signal interrupts it. With `LOCK_NB`, a lock held
/// elsewhere is an error of kind `WouldBlock`.
pub fn flock(file: &fs::File, operation: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Switches to WAL, retrying while another connection holds the lock the switch needs.
fn set_wal(conn: &Connection, patience: Duration) -> rusqlite::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        match conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
        {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => return Err(wal_refused(&mode)),
            Err(error) if is_busy(&error) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => return Err(error),
        }
    }
}

fn wal_refused(mode: &str) -> rusqlite::Error {
    let message =
        format!("journal_mode=WAL refused (got {mode}): the file system may not support WAL");
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some(message),
    )
}

/// `source` as an [`Error::Backend`] of `backend` doing `operation`.
pub fn backend_error(
    backend: &'static str,
    operation: &'static str,
    source: rusqlite::Error,
) -> Error {
    Error::backend(backend, operation, source)
}

/// True for `SQLITE_BUSY` / `SQLITE_LOCKED`: another connection holds a lock.
pub fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// True when SQLite says the file is damaged or is not a database.
pub fn is_corrupt(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(path: &Path, options: OpenOptions) -> Result<Database, Error> {
        Database::open(path, "test", options, |conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS kv(k INTEGER PRIMARY KEY, v TEXT NOT NULL)",
            )
        })
    }

    fn put(db: &Database, k: i64, v: &str) {
        db.with("put", |c| {
            c.prepare_cached("INSERT OR REPLACE INTO kv VALUES (?1, ?2)")?
                .execute((k, v))
        })
        .unwrap();
    }

    fn get(db: &Database, k: i64) -> Option<String> {
        db.with("get", |c| {
            use rusqlite::OptionalExtension;
            c.prepare_cached("SELECT v FROM kv WHERE k = ?1")?
                .query_row([k], |r| r.get(0))
                .optional()
        })
        .unwrap()
    }

    #[test]
    fn wal_mode_pool_and_threads() {
        let dir = tempfile::tempdir().unwrap();
        let db = kv(
            &dir.path().join("a.db"),
            OpenOptions::default().file_mode(0o600),
        )
        .unwrap();
        let mode: String = db
            .with("mode", |c| {
                c.query_row("PRAGMA journal_mode", [], |r| r.get(0))
            })
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = db
            .with("sync", |c| {
                c.query_row("PRAGMA synchronous", [], |r| r.get(0))
            })
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        put(&db, t * 1000 + i, &format!("{t}-{i}"));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        for t in 0..8 {
            assert_eq!(
                get(&db, t * 1000 + 199).as_deref(),
                Some(format!("{t}-199").as_str())
            );
        }
        let mode = fs::metadata(dir.path().join("a.db")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(db.inner.idle.lock().len() <= MAX_IDLE);
    }

    #[test]
    fn errors_name_backend_and_operation() {
        let dir = tempfile::tempdir().unwrap();
        let db = kv(&dir.path().join("b.db"), OpenOptions::default()).unwrap();
        let err = db
            .with("select", |c| c.execute("SELECT * FROM missing", []))
            .unwrap_err();
        let text = err.to_string();
        assert!(err.is_backend(), "{text}");
        assert!(text.contains("test backend: select failed"), "{text}");
        let bad = kv(
            &dir.path().join("no-such-dir").join("c.db"),
            OpenOptions::default(),
        )
        .unwrap_err();
        assert!(bad.to_string().contains("open failed"), "{bad}");
    }

    #[test]
    fn garbage_file_is_an_error_or_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        fs::write(&path, vec![0x5au8; 10_000]).unwrap();
        let err = kv(&path, OpenOptions::default()).unwrap_err();
        assert!(err.is_backend(), "{err}");
        let db = kv(&path, OpenOptions::default().recover_corrupt(true)).unwrap();
        put(&db, 1, "one");
        assert_eq!(get(&db, 1).as_deref(), Some("one"));
        let aside: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "the damaged file was kept aside");
    }

    #[test]
    fn replaced_file_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let db = kv(&path, OpenOptions::default()).unwrap();
        put(&db, 1, "old");
        // Another process deletes the database by hand and starts over.
        for suffix in ["", "-wal", "-shm"] {
            let _ = fs::remove_file(sidecar(&path, suffix));
        }
        let other = kv(&path, OpenOptions::default()).unwrap();
        put(&other, 2, "new");
        std::thread::sleep(IDENTITY_CHECK + Duration::from_millis(50));
        assert_eq!(get(&db, 2).as_deref(), Some("new"));
        assert_eq!(get(&db, 1), None);
    }

    /// A link the user chose is followed as before; with `no_symlinks` links at the database
    /// and its sidecar paths are moved aside and what they point to is left alone.
    #[test]
    fn links_are_moved_aside_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.db");
        put(&kv(&real, OpenOptions::default()).unwrap(), 1, "one");
        let chosen = dir.path().join("chosen.db");
        std::os::unix::fs::symlink(&real, &chosen).unwrap();
        let db = kv(&chosen, OpenOptions::default()).unwrap();
        assert_eq!(get(&db, 1).as_deref(), Some("one"), "followed");
        drop(db);

        let owned = dir.path().join("owned.db");
        std::os::unix::fs::symlink(&real, &owned).unwrap();
        for suffix in SIDECARS {
            let target = dir.path().join(format!("victim{suffix}"));
            std::os::unix::fs::symlink(&target, sidecar(&owned, suffix)).unwrap();
        }
        let before = fs::read(&real).unwrap();
        let db = kv(&owned, OpenOptions::default().no_symlinks(true)).unwrap();
        assert_eq!(get(&db, 1), None, "a fresh database, not the linked one");
        put(&db, 2, "two");
        assert!(!fs::symlink_metadata(&owned)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), before);
        for suffix in SIDECARS {
            assert!(
                !dir.path().join(format!("victim{suffix}")).exists(),
                "{suffix}"
            );
        }
        let aside = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".symlink-")
            })
            .count();
        assert_eq!(aside, 1 + SIDECARS.len());
    }

    /// The immutable URI of a path with characters that mean something in a URI.
    #[test]
    fn immutable_uri_names_awkward_paths() {
        let dir = tempfile::tempdir().unwrap();
        let awkward = dir.path().join("a b?c#d%e&f=ü");
        fs::create_dir(&awkward).unwrap();
        let path = awkward.join("x.db");
        put(&kv(&path, OpenOptions::default()).unwrap(), 7, "seven");
        let uri = immutable_uri(&path);
        let conn = Connection::open_with_flags(
            &uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap();
        let v: String = conn
            .query_row("SELECT v FROM kv WHERE k = 7", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, "seven");
    }

    #[test]
    fn immediate_transactions_commit_or_roll_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = kv(&dir.path().join("t.db"), OpenOptions::default()).unwrap();
        db.immediate("tx", |tx| tx.execute("INSERT INTO kv VALUES (1, 'a')", []))
            .unwrap();
        let failed = db.immediate("tx", |tx| {
            tx.execute("INSERT INTO kv VALUES (2, 'b')", [])?;
            tx.execute("INSERT INTO nowhere VALUES (1)", [])
        });
        assert!(failed.is_err());
        assert_eq!(get(&db, 1).as_deref(), Some("a"));
        assert_eq!(get(&db, 2), None, "rolled back");
    }
}
