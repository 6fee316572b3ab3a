//! Single-store mode: one SQLite database (WAL) per function.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use cachier_core::codec::PREVIEW_PREFIX_LEN;
use cachier_core::{preview_of, CacheEntry, Error, Key, LiveClaim};
use cachier_sqlite::{Database, OpenOptions};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::clock::{from_nanos, to_nanos};
use crate::BACKEND;

/// How a database's file name ends, after its function's file stem.
pub(crate) const SUFFIX: &str = ".sqlite3";
/// How the name of the directory of its lock files ends, after the same stem.
pub(crate) const CLAIMS_SUFFIX: &str = ".claims";

/// `meta` holds the function's namespace (row `namespace`), so that listing tools get the
/// original name back instead of guessing it from the sanitised file name.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS entries (
    key BLOB PRIMARY KEY NOT NULL,
    value BLOB,
    time_ns INTEGER NOT NULL,
    completed INTEGER NOT NULL,
    claim TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID";

/// Records `namespace` in `meta` unless it is there already (read first: a store opened
/// again takes no write lock).
fn record_namespace(conn: &Connection, namespace: &str) -> rusqlite::Result<()> {
    let recorded: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM meta WHERE name = 'namespace')",
        [],
        |r| r.get(0),
    )?;
    if !recorded {
        conn.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('namespace', ?1)",
            [namespace],
        )?;
    }
    Ok(())
}

/// What a store file says about itself, for [`crate::FileBackend`]'s listing.
pub(crate) enum Stored {
    /// The namespace recorded in it, and whether it holds any entry.
    Namespace(String, bool),
    /// A store written before namespaces were recorded.
    Unlabelled,
}

/// Reads the namespace recorded in the store at `path` and whether it has entries. It only
/// reads and never creates a file; the connection is read-write all the same, so that, when it
/// is the last one to close, SQLite checkpoints and removes the `-wal` and `-shm` files as
/// usual (a read-only one would leave them behind). SQLite falls back to read-only for a
/// write-protected file. A symbolic link is refused, not followed.
pub(crate) fn stored_namespace(path: &Path) -> Result<Stored, String> {
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err("a symbolic link (not followed)".into());
    }
    let resolved = cachier_sqlite::resolve_directory(path).map_err(|e| e.to_string())?;
    read_namespace(&resolved).map_err(|e| e.to_string())
}

fn read_namespace(path: &Path) -> rusqlite::Result<Stored> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(cachier_sqlite::DEFAULT_BUSY_TIMEOUT)?;
    let (namespace, has_entries): (Option<String>, bool) = match conn.query_row(
        "SELECT (SELECT value FROM meta WHERE name = 'namespace'), EXISTS (SELECT 1 FROM entries)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    ) {
        Ok(row) => row,
        // No `meta` table: written before this version.
        Err(rusqlite::Error::SqliteFailure(_, Some(message)))
            if message.starts_with("no such table") =>
        {
            return Ok(Stored::Unlabelled)
        }
        Err(error) => return Err(error),
    };
    Ok(match namespace {
        Some(namespace) => Stored::Namespace(namespace, has_entries),
        None => Stored::Unlabelled,
    })
}

/// A row as listed: everything but the value.
pub(crate) struct Listed {
    /// The value's length; `None` for a placeholder.
    pub(crate) size: Option<u64>,
    pub(crate) time: SystemTime,
    pub(crate) completed: bool,
    pub(crate) claim: Option<String>,
    /// The preview of the arguments the value carries.
    pub(crate) preview: Option<String>,
}

/// One function's database.
#[derive(Debug)]
pub(crate) struct SingleStore {
    db: Database,
}

/// A row as read.
pub(crate) struct Row {
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) time: SystemTime,
    pub(crate) completed: bool,
    pub(crate) claim: Option<String>,
}

impl Row {
    pub(crate) fn entry(self, being_calculated: bool, owner: Option<String>) -> CacheEntry {
        CacheEntry {
            value: self.value.filter(|_| self.completed).map(Arc::from),
            time: self.time,
            age: SystemTime::now()
                .duration_since(self.time)
                .unwrap_or_default(),
            claim: LiveClaim::if_live(being_calculated, owner.or(self.claim)),
        }
    }
}

impl SingleStore {
    /// Opens (or creates) the store of `namespace` at `path`. Every new connection makes
    /// sure the schema and the namespace record exist, so a file deleted by hand or replaced
    /// after damage is labelled again. Links planted at the store's paths are moved aside,
    /// never followed; a store that cannot be written (read-only or full disk) is still read.
    pub(crate) fn open(path: PathBuf, namespace: &str) -> Result<SingleStore, Error> {
        let options = OpenOptions::default()
            .file_mode(0o600)
            .recover_corrupt(true)
            .no_symlinks(true)
            .read_only_fallback(true);
        let namespace = namespace.to_owned();
        let db = Database::open(path, BACKEND, options, move |conn| {
            conn.execute_batch(SCHEMA)?;
            record_namespace(conn, &namespace)
        })?;
        Ok(SingleStore { db })
    }

    pub(crate) fn read(&self, key: &Key) -> Result<Option<Row>, Error> {
        self.db.with("get", |conn| {
            conn.prepare_cached(
                "SELECT value, time_ns, completed, claim FROM entries WHERE key = ?1",
            )?
            .query_row([key.as_bytes().as_slice()], |r| {
                Ok(Row {
                    value: r.get(0)?,
                    time: from_nanos(r.get(1)?),
                    completed: r.get(2)?,
                    claim: r.get(3)?,
                })
            })
            .optional()
        })
    }

    /// Stores a completed value; clears the claim marker if it is `claim`'s.
    pub(crate) fn write(&self, key: &Key, value: &[u8], claim: Option<&str>) -> Result<(), Error> {
        let now = to_nanos(SystemTime::now());
        self.db.with("put", |conn| {
            conn.prepare_cached(
                "INSERT INTO entries (key, value, time_ns, completed, claim) VALUES (?1, ?2, ?3, 1, NULL)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, time_ns = excluded.time_ns,
                 completed = 1, claim = CASE WHEN claim = ?4 THEN NULL ELSE claim END",
            )?
            .execute(params![key.as_bytes().as_slice(), value, now, claim])
        })?;
        Ok(())
    }

    /// Writes the claim marker (a placeholder row if there is no entry; a value is kept).
    pub(crate) fn mark(&self, key: &Key, claim: &str) -> Result<(), Error> {
        let now = to_nanos(SystemTime::now());
        self.db.with("claim", |conn| {
            conn.prepare_cached(
                "INSERT INTO entries (key, value, time_ns, completed, claim) VALUES (?1, NULL, ?2, 0, ?3)
                 ON CONFLICT (key) DO UPDATE SET claim = excluded.claim",
            )?
            .execute(params![key.as_bytes().as_slice(), now, claim])
        })?;
        Ok(())
    }

    /// Clears the marker if it is `claim`'s, dropping a placeholder row with it.
    pub(crate) fn unmark(
        &self,
        key: &Key,
        claim: &str,
        operation: &'static str,
    ) -> Result<(), Error> {
        self.db.with(operation, |conn| {
            conn.prepare_cached(
                "DELETE FROM entries WHERE key = ?1 AND claim = ?2 AND value IS NULL",
            )?
            .execute(params![key.as_bytes().as_slice(), claim])?;
            conn.prepare_cached("UPDATE entries SET claim = NULL WHERE key = ?1 AND claim = ?2")?
                .execute(params![key.as_bytes().as_slice(), claim])
        })?;
        Ok(())
    }

    /// Drops the completed value of `key`, keeping its row (and claim marker `claim`) as a
    /// placeholder; false when the row no longer holds a value under that marker.
    pub(crate) fn drop_value(&self, key: &Key, claim: Option<&str>) -> Result<bool, Error> {
        let changed = self.db.with("remove", |conn| {
            conn.prepare_cached(
                "UPDATE entries SET value = NULL, completed = 0
                 WHERE key = ?1 AND claim IS ?2 AND completed = 1",
            )?
            .execute(params![key.as_bytes().as_slice(), claim])
        })?;
        Ok(changed > 0)
    }

    /// Deletes the row of `key` if its claim marker is still `claim`; false when it is not.
    pub(crate) fn delete_row(&self, key: &Key, claim: Option<&str>) -> Result<bool, Error> {
        let deleted = self.db.with("remove", |conn| {
            conn.prepare_cached("DELETE FROM entries WHERE key = ?1 AND claim IS ?2")?
                .execute(params![key.as_bytes().as_slice(), claim])
        })?;
        Ok(deleted > 0)
    }

    /// Deletes every value; a claimed key keeps its claim marker as a placeholder, since
    /// its claim (a lock held by a live process) outlives the clear.
    pub(crate) fn clear(&self) -> Result<(), Error> {
        self.db.immediate("clear_cache", |tx| {
            tx.execute("DELETE FROM entries WHERE claim IS NULL", [])?;
            tx.execute(
                "UPDATE entries SET value = NULL, completed = 0 WHERE claim IS NOT NULL",
                [],
            )
        })?;
        Ok(())
    }

    pub(crate) fn clear_marks(&self) -> Result<(), Error> {
        self.db.immediate("clear_being_calculated", |tx| {
            tx.execute("DELETE FROM entries WHERE value IS NULL", [])?;
            tx.execute(
                "UPDATE entries SET claim = NULL WHERE claim IS NOT NULL",
                [],
            )
        })?;
        Ok(())
    }

    /// Keys of entries stored before `cutoff`, with their claim markers.
    pub(crate) fn older_than(
        &self,
        cutoff: SystemTime,
    ) -> Result<Vec<(Key, Option<String>)>, Error> {
        let cutoff = to_nanos(cutoff);
        self.db.with("delete_stale_entries", |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT key, claim FROM entries WHERE time_ns < ?1")?;
            let rows = stmt.query_map([cutoff], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (key, claim) = row?;
                if let Ok(bytes) = <[u8; 32]>::try_from(key.as_slice()) {
                    out.push((Key::from_bytes(bytes), claim));
                }
            }
            Ok(out)
        })
    }

    /// Deletes `keys` if they are still older than `cutoff`; returns how many went.
    pub(crate) fn delete(&self, keys: &[Key], cutoff: SystemTime) -> Result<u64, Error> {
        let cutoff = to_nanos(cutoff);
        self.db.immediate("delete_stale_entries", |tx| {
            let mut stmt =
                tx.prepare_cached("DELETE FROM entries WHERE key = ?1 AND time_ns < ?2")?;
            let mut n = 0;
            for key in keys {
                n += stmt.execute(params![key.as_bytes().as_slice(), cutoff])? as u64;
            }
            Ok(n)
        })
    }

    /// Every row without its value: `length(value)` is read from the record header, and of
    /// the value only its first bytes (its preview), so a large value's overflow pages are
    /// never loaded.
    pub(crate) fn list(&self) -> Result<Vec<(Key, Listed)>, Error> {
        const LIST: &str =
            "SELECT key, length(value), time_ns, completed, claim, substr(value, 1, 123) FROM entries";
        const _: () = assert!(PREVIEW_PREFIX_LEN == 123, "the prefix LIST reads");
        self.db.with("entries", |conn| {
            let mut stmt = conn.prepare_cached(LIST)?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    Listed {
                        size: r.get::<_, Option<i64>>(1)?.map(|n| n.max(0) as u64),
                        time: from_nanos(r.get(2)?),
                        completed: r.get(3)?,
                        claim: r.get(4)?,
                        preview: r
                            .get::<_, Option<Vec<u8>>>(5)?
                            .as_deref()
                            .and_then(preview_of),
                    },
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (key, listed) = row?;
                if let Ok(bytes) = <[u8; 32]>::try_from(key.as_slice()) {
                    out.push((Key::from_bytes(bytes), listed));
                }
            }
            Ok(out)
        })
    }

    /// Rows: entries and placeholders.
    pub(crate) fn count(&self) -> Result<u64, Error> {
        self.db
            .with("len", |conn| {
                conn.prepare_cached("SELECT COUNT(*) FROM entries")?
                    .query_row([], |r| r.get::<_, i64>(0))
            })
            .map(|n| n as u64)
    }
}
