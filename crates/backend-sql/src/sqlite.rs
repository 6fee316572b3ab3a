//! The blocking SQLite driver, on `cachier-sqlite`'s shared plumbing (WAL, busy timeout, connection
//! pool, recovery of a damaged file).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cachier_core::Error;
use cachier_sqlite::rusqlite::{
    self, types::ToSql, Connection, OptionalExtension, TransactionBehavior,
};
use cachier_sqlite::{Database, OpenOptions};

use crate::blocking::BlockingDriver;
use crate::dialect::{ensure_schema, Dialect, SchemaTx, Statements, Stmt, TableName};
use crate::ops::{warn_unreadable_row, Listed, Param, Row};

const NAME: &str = "sqlite";

/// Where the SQLite database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    File(PathBuf),
    Memory,
}

impl Location {
    pub(crate) fn new(path: &Path) -> Location {
        if path.as_os_str() == ":memory:" {
            Location::Memory
        } else {
            Location::File(path.to_owned())
        }
    }
}

pub(crate) struct SqliteDriver {
    db: Database,
    stmts: Arc<Statements>,
}

impl fmt::Debug for SqliteDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlBackend")
            .field("sqlite", &self.db.path())
            .field("table", &self.stmts.table.name)
            .finish()
    }
}

impl SqliteDriver {
    pub(crate) fn new(location: Location, table: TableName) -> Result<SqliteDriver, Error> {
        let stmts = Arc::new(Statements::new(Dialect::Sqlite, table));
        let init_stmts = stmts.clone();
        let db = match location {
            Location::File(path) => {
                // A cache's content can always be recomputed: a damaged file is moved aside.
                let options = OpenOptions::default().recover_corrupt(true);
                Database::open(path, NAME, options, move |conn| init(conn, &init_stmts))?
            }
            Location::Memory => {
                Database::open_in_memory(NAME, move |conn| init(conn, &init_stmts))?
            }
        };
        Ok(SqliteDriver { db, stmts })
    }
}

/// Runs on every new connection: creates the tables if missing and checks the schema
/// version, inside `BEGIN IMMEDIATE` so that processes opening a new file do not race.
fn init(conn: &Connection, stmts: &Statements) -> rusqlite::Result<()> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let mut schema = LiteTx {
        conn: &tx,
        error: None,
    };
    match ensure_schema(&mut schema, stmts) {
        Ok(()) => tx.commit(),
        Err(error) => Err(schema
            .error
            .take()
            .unwrap_or_else(|| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))),
    }
}

/// [`SchemaTx`] on an SQLite transaction; keeps the driver's own error so that the pool's
/// error handling (busy, damaged file) still sees it.
struct LiteTx<'c> {
    conn: &'c Connection,
    error: Option<rusqlite::Error>,
}

impl LiteTx<'_> {
    fn keep<T>(&mut self, result: rusqlite::Result<T>) -> Result<T, Error> {
        result.map_err(|e| {
            let message = e.to_string();
            self.error = Some(e);
            Error::backend(NAME, "open", message)
        })
    }
}

impl SchemaTx for LiteTx<'_> {
    fn batch(&mut self, sql: &str) -> Result<(), Error> {
        let result = self.conn.execute_batch(sql);
        self.keep(result)
    }

    fn query_text(&mut self, sql: &str) -> Result<Option<String>, Error> {
        let result = self
            .conn
            .query_row(sql, [], |r| r.get::<_, String>(0))
            .optional();
        self.keep(result)
    }

    fn execute_text(&mut self, sql: &str, param: &str) -> Result<(), Error> {
        let result = self.conn.execute(sql, [param]).map(drop);
        self.keep(result)
    }
}

fn sql_params<'a>(params: &'a [Param<'a>]) -> Vec<&'a dyn ToSql> {
    params
        .iter()
        .map(|p| -> &dyn ToSql {
            match p {
                Param::Text(s) => s,
                Param::OptText(s) => s,
                Param::Bytes(b) => b,
                Param::Micros(m) => m,
            }
        })
        .collect()
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        value: row.get(0)?,
        stored_us: row.get(1)?,
        now_us: row.get(2)?,
        completed: row.get(3)?,
        claim_owner: row.get(4)?,
        live: row.get::<_, Option<bool>>(5)?.unwrap_or(false),
    })
}

fn read_listed(row: &rusqlite::Row<'_>) -> rusqlite::Result<Listed> {
    Ok(Listed {
        key: row.get(0)?,
        size: row.get(1)?,
        stored_us: row.get(2)?,
        now_us: row.get(3)?,
        completed: row.get(4)?,
        claim_owner: row.get(5)?,
        live: row.get::<_, Option<bool>>(6)?.unwrap_or(false),
        head: row.get(7)?,
    })
}

impl BlockingDriver for SqliteDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn statements(&self) -> &Statements {
        &self.stmts
    }

    fn query_row(&self, op: &'static str, params: &[Param<'_>]) -> Result<Option<Row>, Error> {
        let sql = self.stmts.sql(Stmt::Get);
        self.db.with(op, |conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let mut rows = stmt.query(&*sql_params(params))?;
            match rows.next()? {
                None => Ok(None),
                Some(row) => match read_row(row) {
                    Ok(row) => Ok(Some(row)),
                    Err(error) => {
                        warn_unreadable_row(NAME, &error);
                        Ok(None)
                    }
                },
            }
        })
    }

    fn query_count(
        &self,
        op: &'static str,
        stmt: Stmt,
        params: &[Param<'_>],
    ) -> Result<u64, Error> {
        let sql = self.stmts.sql(stmt);
        let count: i64 = self.db.with(op, |conn| {
            conn.prepare_cached(sql)?
                .query_row(&*sql_params(params), |r| r.get(0))
        })?;
        Ok(count.max(0).unsigned_abs())
    }

    fn query_entries(&self, op: &'static str, params: &[Param<'_>]) -> Result<Vec<Listed>, Error> {
        let sql = self.stmts.sql(Stmt::Entries);
        self.db.with(op, |conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let mut rows = stmt.query(&*sql_params(params))?;
            let mut listed = Vec::new();
            while let Some(row) = rows.next()? {
                match read_listed(row) {
                    Ok(entry) => listed.push(entry),
                    Err(error) => warn_unreadable_row(NAME, &error),
                }
            }
            Ok(listed)
        })
    }

    fn query_texts(
        &self,
        op: &'static str,
        stmt: Stmt,
        params: &[Param<'_>],
    ) -> Result<Vec<String>, Error> {
        let sql = self.stmts.sql(stmt);
        self.db.with(op, |conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let texts = stmt.query_map(&*sql_params(params), |r| r.get::<_, String>(0))?;
            // A function id that is not text (written by hand) is skipped.
            Ok(texts.filter_map(Result::ok).collect())
        })
    }

    fn execute(&self, op: &'static str, stmt: Stmt, params: &[Param<'_>]) -> Result<u64, Error> {
        let sql = self.stmts.sql(stmt);
        let changed = self.db.with(op, |conn| {
            conn.prepare_cached(sql)?.execute(&*sql_params(params))
        })?;
        Ok(changed as u64)
    }

    fn path(&self) -> Option<&Path> {
        Some(self.db.path()).filter(|p| p.as_os_str() != ":memory:")
    }
}
