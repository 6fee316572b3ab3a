//! Helpers shared by the SQL backend's own cases (`sqlite.rs`, `postgres.rs`).
// Each test file uses what it needs of these.
#![allow(dead_code)]

use cachier_backend_sql::SqlBackend;
use cachier_core::{memoize, Memoized};
use cachier_testkit::{unique_name, Counter};

/// `f(x) = x * 1000 + n` where `n` counts calls, on `backend`.
pub fn numbered(backend: SqlBackend, calls: &Counter) -> Memoized<u64, u64> {
    let calls = calls.clone();
    memoize(&unique_name("sql"), move |x: u64| {
        x * 1000 + calls.bump() as u64
    })
    .backend(backend)
    .build()
    .expect("build")
}

/// A table name no other test uses.
pub fn unique_table() -> String {
    let id = unique_name("t");
    let id = id.rsplit("::").next().unwrap_or_default();
    format!(
        "cachier_test_{}",
        id.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}
