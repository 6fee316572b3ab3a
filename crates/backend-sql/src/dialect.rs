//! The one statement table both dialects share: every statement is written once here, and a
//! [`Dialect`] fills in the few fragments where SQLite and PostgreSQL differ (the clock, time
//! arithmetic, placeholders and column types).

use cachier_core::Error;

/// The schema version this crate writes; bump it (and add a step to [`MIGRATIONS`]) when the
/// table's layout changes, so existing tables are migrated instead of failing.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Statements that bring a table from version `n` (the index + 1) to `n + 1`. Empty while
/// only version 1 exists.
pub(crate) const MIGRATIONS: &[&[&str]] = &[];

/// Longest accepted table name: PostgreSQL truncates identifiers at 63 bytes and the metadata
/// table appends `_meta`.
const MAX_TABLE_LEN: usize = 58;

/// Where the two SQL dialects differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite: times are INTEGER microseconds since the Unix epoch (UTC) by SQLite's own clock.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Sqlite,
    /// PostgreSQL: times are `TIMESTAMPTZ` by the server's clock (`now()`).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

impl Dialect {
    /// Parameter `n` (1-based).
    fn p(self, n: u8) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// The store's clock.
    fn now(self) -> &'static str {
        match self {
            // `unixepoch('subsec')` has millisecond resolution and is stable within a statement.
            Dialect::Sqlite => "CAST(ROUND(unixepoch('subsec') * 1000000) AS INTEGER)",
            Dialect::Postgres => "now()",
        }
    }

    /// The store's clock shifted by parameter `n` microseconds (`sign` is `+` or `-`).
    fn now_shifted(self, sign: char, n: u8) -> String {
        match self {
            Dialect::Sqlite => format!("({} {sign} ?{n})", self.now()),
            Dialect::Postgres => format!("(now() {sign} ${n}::int8 * interval '1 microsecond')"),
        }
    }

    fn blob_type(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BLOB",
            Dialect::Postgres => "BYTEA",
        }
    }

    fn time_type(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INTEGER",
            Dialect::Postgres => "TIMESTAMPTZ",
        }
    }
}

/// A validated table name, possibly schema-qualified (`schema.table`), and its quoted forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableName {
    /// As the user wrote it.
    pub(crate) name: String,
    /// Quoted for SQL (`"schema"."table"`).
    quoted: String,
    /// The metadata table, quoted.
    quoted_meta: String,
}

impl TableName {
    /// Checks `name`: one or two dot-separated identifiers of ASCII letters, digits and
    /// underscores, not starting with a digit, the table part at most 58 characters. Nothing
    /// else ever reaches SQL text, so no name can inject SQL.
    pub(crate) fn parse(name: &str) -> Result<TableName, Error> {
        let bad = |why: &str| {
            Err(Error::config(
                "table",
                format!(
                    "{name:?} {why}; use letters, digits and underscores (not starting with a digit), optionally `schema.table`, \
                     at most {MAX_TABLE_LEN} characters per part"
                ),
            ))
        };
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > 2 {
            return bad("has more than one dot");
        }
        for part in &parts {
            if part.is_empty() {
                return bad("has an empty part");
            }
            if part.len() > MAX_TABLE_LEN {
                return bad("is too long");
            }
            if part.starts_with(|c: char| c.is_ascii_digit()) {
                return bad("starts with a digit");
            }
            if !part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return bad("contains characters that are not allowed");
            }
        }
        let quote = |parts: &[&str], suffix: &str| {
            let last = parts.len() - 1;
            parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    if i == last {
                        format!("\"{p}{suffix}\"")
                    } else {
                        format!("\"{p}\"")
                    }
                })
                .collect::<Vec<_>>()
                .join(".")
        };
        Ok(TableName {
            name: name.to_owned(),
            quoted: quote(&parts, ""),
            quoted_meta: quote(&parts, "_meta"),
        })
    }
}

/// The statements a core runs, in the order of [`Statements::sql`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stmt {
    /// `(function_id, key)` → value, stored, the store's clock now, completed, claim owner,
    /// live claim. Times are the dialect's time type (see [`Dialect`]).
    Get,
    /// `(function_id, key, value, token or NULL)`: store and release `token`'s claim.
    Put,
    /// `(function_id, key, token, lease µs)`: 1 row = claimed.
    Claim,
    /// `(function_id, key, token, lease µs)`: 1 row = still ours.
    Renew,
    /// `(function_id, key, token)`: drop our placeholder row (no value stored yet).
    ReleasePlaceholder,
    /// `(function_id, key, token)`: drop our claim, keep the value.
    Release,
    /// `(function_id, key)`: delete the row if it holds a value and no live claim.
    RemoveUnclaimed,
    /// `(function_id, key)`: drop the row's value, keeping the row and its claim.
    DropValue,
    /// `(function_id)`.
    ClearCache,
    /// `(function_id)`.
    ClearClaims,
    /// `(function_id, older than µs)`.
    DeleteStale,
    /// `(function_id)` → count.
    Len,
    /// `(function_id)` → key, value size, stored, the store's clock now, completed, claim
    /// owner, live.
    Entries,
    /// `()` → every function id with rows.
    Namespaces,
}

/// Number of [`Stmt`] variants.
pub(crate) const STMT_COUNT: usize = 14;

/// Statement texts of a [`Statements`]: each [`Stmt`], then (PostgreSQL) each write's form
/// that also notifies listeners ([`Statements::slot`]).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) const SLOTS: usize = 2 * STMT_COUNT;

/// Longest namespace (in bytes) whose changes PostgreSQL announces: a `NOTIFY` payload (the
/// key's 64 hex digits, a space and the namespace) must stay under 8000 bytes. Functions with
/// longer names write without notifying, and their near caches are not pushed to.
pub(crate) const MAX_NOTIFIED_NAMESPACE: usize = 7900;

impl Stmt {
    /// Index into [`Statements::sql`] and into per-connection caches of prepared statements.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Every statement of one table in one dialect, rendered once per backend.
#[derive(Debug, Clone)]
pub(crate) struct Statements {
    pub(crate) table: TableName,
    sql: [String; STMT_COUNT],
    /// The notifying form of each write (PostgreSQL only), by [`Stmt::index`].
    notifying: [Option<String>; STMT_COUNT],
    /// `()` → the name of the channel the writes notify (PostgreSQL; NULL while the table does
    /// not exist).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) channel_query: Option<String>,
    /// DDL: the cache table.
    pub(crate) create_table: String,
    /// DDL: the metadata table (name → value).
    pub(crate) create_meta: String,
    /// `SELECT value FROM meta WHERE name = 'schema_version'`.
    pub(crate) select_version: String,
    /// Records [`SCHEMA_VERSION`] (parameter: the version as text).
    pub(crate) upsert_version: String,
}

impl Statements {
    pub(crate) fn new(dialect: Dialect, table: TableName) -> Statements {
        let d = dialect;
        let t = &table.quoted;
        let p = |n| d.p(n);
        let now = d.now();
        let live = format!("(claim_owner IS NOT NULL AND claim_expires > {now})");
        let row = format!("function_id = {} AND key = {}", p(1), p(2));
        let sql = [
            // Get: one query per hit. The store's clock comes with the row (ages are judged by
            // it) and judges the lease; times travel as the column type itself (`TIMESTAMPTZ`
            // is 8 bytes on PostgreSQL's wire), with no arithmetic in the statement.
            format!(
                "SELECT value, stored_at, {now}, completed, claim_owner, {live} FROM {t} WHERE {row}"
            ),
            // Put: write the value and release the caller's own claim in one statement.
            format!(
                "INSERT INTO {t} AS cur (function_id, key, value, stored_at, completed, claim_owner, claim_expires) \
                 VALUES ({}, {}, {}, {now}, TRUE, NULL, NULL) \
                 ON CONFLICT (function_id, key) DO UPDATE SET value = excluded.value, stored_at = excluded.stored_at, \
                 completed = TRUE, \
                 claim_owner = CASE WHEN cur.claim_owner = {p4} THEN NULL ELSE cur.claim_owner END, \
                 claim_expires = CASE WHEN cur.claim_owner = {p4} THEN NULL ELSE cur.claim_expires END",
                p(1),
                p(2),
                p(3),
                p4 = p(4),
            ),
            // Claim: atomic; taken when free, lapsed, or already ours (a retry after a lost
            // connection must not lock its own caller out). A stored value is kept.
            format!(
                "INSERT INTO {t} AS cur (function_id, key, value, stored_at, completed, claim_owner, claim_expires) \
                 VALUES ({}, {}, NULL, {now}, FALSE, {}, {}) \
                 ON CONFLICT (function_id, key) DO UPDATE SET claim_owner = excluded.claim_owner, \
                 claim_expires = excluded.claim_expires \
                 WHERE cur.claim_owner IS NULL OR cur.claim_expires <= {now} OR cur.claim_owner = excluded.claim_owner",
                p(1),
                p(2),
                p(3),
                d.now_shifted('+', 4),
            ),
            // Renew.
            format!(
                "UPDATE {t} SET claim_expires = {} WHERE {row} AND claim_owner = {}",
                d.now_shifted('+', 4),
                p(3)
            ),
            // ReleasePlaceholder.
            format!("DELETE FROM {t} WHERE {row} AND claim_owner = {} AND NOT completed", p(3)),
            // Release.
            format!(
                "UPDATE {t} SET claim_owner = NULL, claim_expires = NULL WHERE {row} AND claim_owner = {}",
                p(3)
            ),
            // RemoveUnclaimed: an invalidation deletes a value no live computation holds.
            format!("DELETE FROM {t} WHERE {row} AND completed AND NOT {live}"),
            // DropValue: a value under a live claim goes, the claim (a placeholder) stays.
            format!("UPDATE {t} SET value = NULL, completed = FALSE WHERE {row} AND completed"),
            // ClearCache.
            format!("DELETE FROM {t} WHERE function_id = {}", p(1)),
            // ClearClaims: placeholders left behind hold no value and read as misses.
            format!(
                "UPDATE {t} SET claim_owner = NULL, claim_expires = NULL WHERE function_id = {} AND claim_owner IS NOT NULL",
                p(1)
            ),
            // DeleteStale: a live computation keeps its row (and so its claim).
            format!(
                "DELETE FROM {t} WHERE function_id = {} AND stored_at < {} AND NOT {live}",
                p(1),
                d.now_shifted('-', 2)
            ),
            // Len.
            format!("SELECT COUNT(*) FROM {t} WHERE function_id = {}", p(1)),
            // Entries: everything but the values (their first bytes only, which hold the
            // arguments' preview); the store's clock as in Get.
            format!(
                "SELECT key, CAST(COALESCE(length(value), 0) AS BIGINT), stored_at, {now}, completed, claim_owner, {live}, \
                 substr(value, 1, {prefix}) FROM {t} WHERE function_id = {}",
                p(1),
                prefix = cachier_core::codec::PREVIEW_PREFIX_LEN,
            ),
            // Namespaces.
            format!("SELECT DISTINCT function_id FROM {t}"),
        ];
        let create_table = format!(
            "CREATE TABLE IF NOT EXISTS {t} (\
             function_id TEXT NOT NULL, \
             key TEXT NOT NULL, \
             value {blob}, \
             stored_at {time} NOT NULL, \
             completed BOOLEAN NOT NULL DEFAULT FALSE, \
             claim_owner TEXT, \
             claim_expires {time}, \
             PRIMARY KEY (function_id, key))",
            blob = d.blob_type(),
            time = d.time_type(),
        );
        let mut notifying: [Option<String>; STMT_COUNT] = std::array::from_fn(|_| None);
        let mut channel_query = None;
        if d == Dialect::Postgres {
            // The channel is named after the table's OID: every session that resolves the
            // same table (whatever its search path) hears the same writes.
            let channel = format!("'cachier_' || '{t}'::regclass::oid::text");
            let key = "$2::text || ' ' || $1::text";
            let all = "'* ' || $1::text";
            for (stmt, payload) in [
                (Stmt::Put, key),
                (Stmt::ReleasePlaceholder, key),
                (Stmt::Release, key),
                (Stmt::RemoveUnclaimed, key),
                (Stmt::DropValue, key),
                (Stmt::ClearCache, all),
                (Stmt::ClearClaims, all),
                (Stmt::DeleteStale, all),
            ] {
                // One notification, delivered on commit, and only when a row changed; the
                // statement answers how many did.
                notifying[stmt.index()] = Some(format!(
                    "WITH changed AS ({} RETURNING 1), \
                     told AS (SELECT pg_notify({channel}, {payload}) FROM changed LIMIT 1) \
                     SELECT count(*) FROM changed LEFT JOIN told ON TRUE",
                    sql[stmt.index()]
                ));
            }
            channel_query = Some(format!(
                "SELECT 'cachier_' || to_regclass('{t}')::oid::text"
            ));
        }
        let m = &table.quoted_meta;
        let create_meta =
            format!("CREATE TABLE IF NOT EXISTS {m} (name TEXT PRIMARY KEY, value TEXT NOT NULL)");
        let select_version = format!("SELECT value FROM {m} WHERE name = 'schema_version'");
        let upsert_version = format!(
            "INSERT INTO {m} (name, value) VALUES ('schema_version', {}) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            p(1)
        );
        Statements {
            table,
            sql,
            notifying,
            channel_query,
            create_table,
            create_meta,
            select_version,
            upsert_version,
        }
    }

    /// The text of `stmt`.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn sql(&self, stmt: Stmt) -> &str {
        &self.sql[stmt.index()]
    }

    /// The slot of `stmt` as run for `function_id`: its notifying form where it has one and
    /// the namespace fits a payload, else the plain statement.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn slot(&self, stmt: Stmt, function_id: Option<&str>) -> usize {
        let fits = function_id.is_some_and(|id| id.len() <= MAX_NOTIFIED_NAMESPACE);
        if fits && self.notifying[stmt.index()].is_some() {
            STMT_COUNT + stmt.index()
        } else {
            stmt.index()
        }
    }

    /// The text of a slot.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn sql_at(&self, slot: usize) -> &str {
        match slot.checked_sub(STMT_COUNT) {
            Some(i) => self.notifying[i].as_deref().unwrap_or(&self.sql[i]),
            None => &self.sql[slot],
        }
    }

    /// Whether the slot's statement answers with one row holding a count (a notifying
    /// write), rather than with the number of rows it changed.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn counts_in_a_row(slot: usize) -> bool {
        slot >= STMT_COUNT
    }
}

/// What a schema set-up needs from a transaction, so that one [`ensure_schema`] serves both
/// drivers.
pub(crate) trait SchemaTx {
    /// Runs DDL or a statement without parameters or results.
    fn batch(&mut self, sql: &str) -> Result<(), Error>;
    /// The first column of the first row of `sql`, if any row.
    fn query_text(&mut self, sql: &str) -> Result<Option<String>, Error>;
    /// Runs `sql` with one text parameter.
    fn execute_text(&mut self, sql: &str, param: &str) -> Result<(), Error>;
}

/// One step of a schema set-up (see [`schema_plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SchemaStep<'s> {
    /// Runs DDL or a statement without parameters or results.
    Batch(&'s str),
    /// Records [`SCHEMA_VERSION`] ([`Statements::upsert_version`]).
    SetVersion,
}

/// What a set-up runs once it has created the metadata table and read the recorded version
/// (`found`): create the table, or migrate an older one; a newer or unreadable version is
/// refused. The decisions of [`ensure_schema`], shared with the async PostgreSQL path.
pub(crate) fn schema_plan(
    found: Option<String>,
    stmts: &Statements,
) -> Result<Vec<SchemaStep<'_>>, Error> {
    let version = match found {
        None => {
            return Ok(vec![
                SchemaStep::Batch(&stmts.create_table),
                SchemaStep::SetVersion,
            ])
        }
        Some(text) => text.trim().parse::<u32>().ok().filter(|v| *v >= 1).ok_or_else(|| {
            Error::config(
                "table",
                format!(
                    "table {:?}: its metadata holds schema version {text:?}, which is not a version number; use another table",
                    stmts.table.name
                ),
            )
        })?,
    };
    if version > SCHEMA_VERSION {
        return Err(Error::config(
            "table",
            format!(
                "table {:?} has schema version {version}, written by a newer cachier (this one knows up to {SCHEMA_VERSION}); \
                 upgrade cachier or use another table",
                stmts.table.name
            ),
        ));
    }
    let mut steps = Vec::new();
    for step in version..SCHEMA_VERSION {
        // `step` starts at 1; MIGRATIONS[0] goes from version 1 to 2.
        for sql in MIGRATIONS
            .get(step as usize - 1)
            .copied()
            .unwrap_or_default()
        {
            steps.push(SchemaStep::Batch(sql));
        }
    }
    steps.push(SchemaStep::Batch(&stmts.create_table));
    if version != SCHEMA_VERSION {
        steps.push(SchemaStep::SetVersion);
    }
    Ok(steps)
}

/// Creates the tables if missing and checks (or migrates) the schema version. Runs inside a
/// transaction that the caller holds exclusively (SQLite `BEGIN IMMEDIATE`, a PostgreSQL
/// advisory lock), so concurrent first users do not race.
pub(crate) fn ensure_schema(tx: &mut dyn SchemaTx, stmts: &Statements) -> Result<(), Error> {
    tx.batch(&stmts.create_meta)?;
    let found = tx.query_text(&stmts.select_version)?;
    for step in schema_plan(found, stmts)? {
        match step {
            SchemaStep::Batch(sql) => tx.batch(sql)?,
            SchemaStep::SetVersion => {
                tx.execute_text(&stmts.upsert_version, &SCHEMA_VERSION.to_string())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_validated() {
        for good in [
            "cachier_cache",
            "c",
            "_x1",
            "Cache",
            "public.cachier_cache",
            &"a".repeat(58),
        ] {
            assert!(TableName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "a;DROP TABLE x",
            "a\"b",
            "a.b.c",
            ".a",
            "a.",
            "tåble",
            &"a".repeat(59),
        ] {
            match TableName::parse(bad) {
                Err(Error::Config { param: "table", .. }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn names_are_quoted() {
        let t = TableName::parse("s.Tab").unwrap();
        assert_eq!(t.quoted, "\"s\".\"Tab\"");
        assert_eq!(t.quoted_meta, "\"s\".\"Tab_meta\"");
    }

    #[test]
    fn postgres_writes_notify_unless_the_namespace_is_too_long() {
        let t = TableName::parse("s.t").unwrap();
        let pg = Statements::new(Dialect::Postgres, t.clone());
        let lite = Statements::new(Dialect::Sqlite, t);
        let slot = pg.slot(Stmt::Put, Some("m::f"));
        assert!(Statements::counts_in_a_row(slot));
        assert!(pg
            .sql_at(slot)
            .contains("pg_notify('cachier_' || '\"s\".\"t\"'::regclass"));
        assert!(pg.sql_at(slot).starts_with("WITH changed AS (INSERT"));
        let long = "n".repeat(MAX_NOTIFIED_NAMESPACE + 1);
        assert_eq!(pg.slot(Stmt::Put, Some(&long)), Stmt::Put.index());
        assert_eq!(
            pg.slot(Stmt::Get, Some("m::f")),
            Stmt::Get.index(),
            "reads do not"
        );
        assert_eq!(
            pg.slot(Stmt::Claim, Some("m::f")),
            Stmt::Claim.index(),
            "claims do not"
        );
        assert_eq!(lite.slot(Stmt::Put, Some("m::f")), Stmt::Put.index());
        assert!(lite.channel_query.is_none());
        assert!(pg
            .sql_at(pg.slot(Stmt::ClearCache, Some("f")))
            .contains("'* ' || $1::text"));
    }

    #[test]
    fn dialects_differ_only_in_fragments() {
        let t = TableName::parse("t").unwrap();
        let pg = Statements::new(Dialect::Postgres, t.clone());
        let lite = Statements::new(Dialect::Sqlite, t);
        assert!(pg.sql(Stmt::Claim).contains("$4::int8"));
        assert!(lite.sql(Stmt::Claim).contains("?4"));
        assert!(!lite.sql(Stmt::Get).contains('$'));
        assert!(pg.sql(Stmt::Get).contains("now()"));
    }
}
