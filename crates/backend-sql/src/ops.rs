//! The store operations of one function ([`Ops`]), written once as `async fn`s over a
//! [`Connection`]: the statements each runs, their parameters and the decoding of their
//! results. The blocking store completes them with `cachier_core::block_on` on a blocking
//! driver, whose futures are ready when created; the async store awaits them on the async
//! PostgreSQL pool.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cachier_core::{preview_of, CacheEntry, Claim, ClaimToken, EntryInfo, Error, Key, LiveClaim};

use crate::dialect::Stmt;

/// Durations are clamped to this (100 years) before they reach SQL, so no interval overflows.
const MAX_MICROS: i64 = 100 * 366 * 24 * 3600 * 1_000_000;

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros())
        .unwrap_or(i64::MAX)
        .min(MAX_MICROS)
}

/// A duration read from SQL in microseconds; a negative one (a clock set back) is zero.
fn from_micros(us: i64) -> Duration {
    Duration::from_micros(us.max(0).unsigned_abs())
}

/// A `stored_at` read from SQL in microseconds since the Unix epoch.
fn time_of(stored_us: i64) -> SystemTime {
    UNIX_EPOCH + from_micros(stored_us)
}

/// How old a value stored at `stored_us` is at `now_us`, both by the store's clock.
fn age_of(stored_us: i64, now_us: i64) -> Duration {
    from_micros(now_us.saturating_sub(stored_us))
}

/// A statement parameter, converted by each driver to its own type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Bytes(&'a [u8]),
    Micros(i64),
}

/// One row of [`Stmt::Get`], as every driver reads it: times in microseconds since the Unix
/// epoch, both by the store's clock.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) stored_us: i64,
    /// The store's clock when it ran the statement, which the value's age is measured by.
    pub(crate) now_us: i64,
    pub(crate) completed: bool,
    pub(crate) claim_owner: Option<String>,
    pub(crate) live: bool,
}

/// One row of [`Stmt::Entries`].
#[derive(Debug)]
pub(crate) struct Listed {
    pub(crate) key: String,
    pub(crate) size: i64,
    pub(crate) stored_us: i64,
    pub(crate) now_us: i64,
    pub(crate) completed: bool,
    pub(crate) claim_owner: Option<String>,
    pub(crate) live: bool,
    /// The value's first bytes, which hold the arguments' preview.
    pub(crate) head: Option<Vec<u8>>,
}

/// Logs a row that cannot be read; it is served as a miss and overwritten by the next `put`.
pub(crate) fn warn_unreadable_row(backend: &'static str, error: &dyn std::error::Error) {
    let error = cachier_core::chain_message(error);
    tracing::warn!(backend, %error, "cachier: a cache row cannot be read; treating it as a miss and overwriting it");
}

/// What the operations need from a connection: run a statement of the dialect table and read
/// its result. Connection handling, retries and schema set-up are the connection's own. A
/// blocking driver runs the statement when the future is created; the async pool when it is
/// awaited.
pub(crate) trait Connection: Sync {
    /// Runs [`Stmt::Get`]; a row whose columns cannot be read is reported as `None` (a miss
    /// that the next `put` overwrites) with a warning.
    fn query_row<'a>(
        &'a self,
        op: &'static str,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send + 'a;
    /// Runs a statement returning one integer (a count).
    fn query_count<'a>(
        &'a self,
        op: &'static str,
        stmt: Stmt,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a;
    /// Runs [`Stmt::Entries`]; unreadable rows are skipped with a warning.
    fn query_entries<'a>(
        &'a self,
        op: &'static str,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<Vec<Listed>, Error>> + Send + 'a;
    /// Runs a statement; returns the number of rows it changed.
    fn execute<'a>(
        &'a self,
        op: &'static str,
        stmt: Stmt,
        params: &'a [Param<'a>],
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a;
}

/// The operations on one function's rows over a connection, each the `Core` method of the same
/// name. Each takes `self` by value (two references), so that its future owns what it borrows
/// and the async store can box it as is.
pub(crate) struct Ops<'a, C: ?Sized> {
    conn: &'a C,
    function_id: &'a str,
}

impl<'a, C: Connection + ?Sized> Ops<'a, C> {
    pub(crate) fn new(conn: &'a C, function_id: &'a str) -> Self {
        Ops { conn, function_id }
    }

    fn function(&self) -> Param<'a> {
        Param::Text(self.function_id)
    }

    pub(crate) async fn get(self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        let key = key.to_hex();
        let params = [self.function(), Param::Text(&key)];
        let Some(row) = self.conn.query_row("get", &params).await? else {
            return Ok(None);
        };
        Ok(Some(CacheEntry {
            value: row.value.filter(|_| row.completed).map(Arc::from),
            time: time_of(row.stored_us),
            age: age_of(row.stored_us, row.now_us),
            claim: LiveClaim::if_live(row.live, row.claim_owner),
        }))
    }

    pub(crate) async fn put(
        self,
        key: &Key,
        value: &[u8],
        claim: Option<&ClaimToken>,
    ) -> Result<(), Error> {
        let key = key.to_hex();
        let token = Param::OptText(claim.map(ClaimToken::as_str));
        let params = [
            self.function(),
            Param::Text(&key),
            Param::Bytes(value),
            token,
        ];
        self.conn.execute("put", Stmt::Put, &params).await?;
        Ok(())
    }

    pub(crate) async fn claim(self, key: &Key, lease: Duration) -> Result<Claim, Error> {
        let key = key.to_hex();
        let token = ClaimToken::new();
        let params = [
            self.function(),
            Param::Text(&key),
            Param::Text(token.as_str()),
            Param::Micros(micros(lease)),
        ];
        match self.conn.execute("claim", Stmt::Claim, &params).await? {
            0 => Ok(Claim::Busy),
            _ => Ok(Claim::Claimed(token)),
        }
    }

    pub(crate) async fn renew(
        self,
        key: &Key,
        claim: &ClaimToken,
        lease: Duration,
    ) -> Result<bool, Error> {
        let key = key.to_hex();
        let params = [
            self.function(),
            Param::Text(&key),
            Param::Text(claim.as_str()),
            Param::Micros(micros(lease)),
        ];
        Ok(self.conn.execute("renew", Stmt::Renew, &params).await? > 0)
    }

    /// Deletes the caller's placeholder row (no value yet), else clears its claim on a stored
    /// value.
    pub(crate) async fn release(self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
        let key = key.to_hex();
        let params = [
            self.function(),
            Param::Text(&key),
            Param::Text(claim.as_str()),
        ];
        let dropped = self
            .conn
            .execute("release", Stmt::ReleasePlaceholder, &params)
            .await?;
        if dropped == 0 {
            self.conn.execute("release", Stmt::Release, &params).await?;
        }
        Ok(())
    }

    /// Deletes the row unless a live claim holds it; else (or if the claim lapsed between
    /// the two statements) drops its value and keeps the claim.
    pub(crate) async fn remove(self, key: &Key) -> Result<bool, Error> {
        let key = key.to_hex();
        let params = [self.function(), Param::Text(&key)];
        let deleted = self
            .conn
            .execute("remove", Stmt::RemoveUnclaimed, &params)
            .await?;
        if deleted > 0 {
            return Ok(true);
        }
        let dropped = self
            .conn
            .execute("remove", Stmt::DropValue, &params)
            .await?;
        Ok(dropped > 0)
    }

    pub(crate) async fn clear_cache(self) -> Result<(), Error> {
        let params = [self.function()];
        self.conn
            .execute("clear_cache", Stmt::ClearCache, &params)
            .await?;
        Ok(())
    }

    pub(crate) async fn clear_being_calculated(self) -> Result<(), Error> {
        let params = [self.function()];
        self.conn
            .execute("clear_being_calculated", Stmt::ClearClaims, &params)
            .await?;
        Ok(())
    }

    pub(crate) async fn delete_stale_entries(self, older_than: Duration) -> Result<u64, Error> {
        let params = [self.function(), Param::Micros(micros(older_than))];
        self.conn
            .execute("delete_stale_entries", Stmt::DeleteStale, &params)
            .await
    }

    pub(crate) async fn len(self) -> Result<u64, Error> {
        let params = [self.function()];
        self.conn.query_count("len", Stmt::Len, &params).await
    }

    pub(crate) async fn entries(self) -> Result<Vec<EntryInfo>, Error> {
        let params = [self.function()];
        let listed = self.conn.query_entries("entries", &params).await?;
        Ok(listed
            .into_iter()
            .filter_map(|row| {
                // A key written by hand that is not 64 hex digits is not one of ours.
                let key = Key::from_hex(&row.key)?;
                Some(EntryInfo {
                    key,
                    size: row.size.max(0).unsigned_abs(),
                    time: time_of(row.stored_us),
                    age: age_of(row.stored_us, row.now_us),
                    completed: row.completed,
                    claim: LiveClaim::if_live(row.live, row.claim_owner),
                    preview: row.head.as_deref().and_then(preview_of),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_measured_by_the_store_clock_and_never_negative() {
        assert_eq!(age_of(1_000, 3_500), Duration::from_micros(2_500));
        assert_eq!(age_of(5_000, 3_500), Duration::ZERO, "a clock set back");
        assert_eq!(
            age_of(i64::MIN, i64::MAX),
            Duration::from_micros(i64::MAX as u64)
        );
    }

    #[test]
    fn durations_are_clamped_for_sql() {
        assert_eq!(micros(Duration::from_millis(1500)), 1_500_000);
        assert_eq!(micros(Duration::MAX), MAX_MICROS);
    }
}
