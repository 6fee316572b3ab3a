#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// How a [`Database`] opens its file.
#[derive(Debug, Clone)]
#[must_use]
pub struct OpenOptions {
    busy_timeout: Duration,
    file_mode: Option<u32>,
    recover_corrupt: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            file_mode: None,
            recover_corrupt: false,
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
}

/// Which file a connection has open: (device, inode).
type FileId = (u64, u64);

type Init = dyn Fn(&Connection) -> rusqlite::Result<()> + Send + Sync;

struct Pooled {
    conn: Connection,
    file: Option<FileId>,
    generation: u64,
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
            Err(error) if self.inner.options.recover_corrupt && is_corrupt(&error) => {
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
            while let Some(pooled) = idle.pop() {
                if pooled.generation == generation {
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

    fn connect_once(&self, generation: u64) -> Result<Pooled, Failure> {
        let inner = &*self.inner;
        if let Some(mode) = inner.options.file_mode {
            if let Err(error) = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(mode)
                .open(&inner.path)
            {
                return Err(Failure::Io(error));
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&inner.path, flags)?;
        conn.busy_timeout(inner.options.busy_timeout)?;
        set_wal(&conn, inner.options.busy_timeout)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        (inner.init)(&conn)?;
        let file = file_id(&inner.path);
        *inner.current.lock() = file;
        Ok(Pooled {
            conn,
            file,
            generation,
        })
    }

    /// Moves the damaged file aside (unless another thread or process already did) and makes
    /// every connection reopen.
    fn recover(&self, damaged: Option<FileId>, cause: &rusqlite::Error) -> Result<(), Error> {
        let inner = &*self.inner;
        let _local = inner.recovering.lock();
        let lock_path = sidecar(&inner.path, "-recover.lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(inner.options.file_mode.unwrap_or(0o644))
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
                if from.exists() {
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

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Failure::Sqlite(error)
    }
}

/// `path` with `suffix` appended to its file name.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn flock(file: &fs::File, operation: libc::c_int) -> io::Result<()> {
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
