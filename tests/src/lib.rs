//! The conformance suite: cachier's behaviour (reference §8) and DESIGN §4's fixes, written
//! once and run against every backend.
//!
//! A backend plugs in with one line in a file under `tests/tests/`:
//!
//! ```ignore
//! cachier_conformance::conformance_tests!(|| Some("memory".to_string()));
//! ```
//!
//! The closure returns a *backend spec* (see [`backend_from_spec`]) or `None` to skip (see
//! [`service_url`]): the same spec lets child processes open the same store.

#[cfg(feature = "async")]
pub mod async_cases;
pub mod cases;
pub mod faults;
pub mod globals;
pub mod multiprocess;
#[cfg(feature = "private-redis")]
pub mod private_redis;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cachier::Backend;

/// Opens the store a spec names:
/// - `memory` (a new private store),
/// - `file:<dir>` / `file-separate:<dir>` (the file backend, one store or one file per entry),
///
/// and, as their features are enabled, the other backends.
pub fn backend_from_spec(spec: &str) -> Arc<dyn Backend> {
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    let _ = rest;
    match kind {
        #[cfg(feature = "memory")]
        "memory" => Arc::new(cachier::MemoryBackend::new()),
        #[cfg(feature = "file")]
        "file" => Arc::new(cachier::FileBackend::new(rest)),
        #[cfg(feature = "file")]
        "file-separate" => Arc::new(
            cachier::FileBackend::builder()
                .cache_dir(rest)
                .separate_files(true)
                .build(),
        ),
        #[cfg(feature = "redis")]
        "redis" => Arc::new(
            cachier::RedisBackend::from_url(rest)
                .unwrap_or_else(|e| panic!("backend spec {spec:?}: {e}")),
        ),
        #[cfg(feature = "sqlite")]
        "sqlite" => Arc::new(
            cachier::SqlBackend::sqlite(rest)
                .unwrap_or_else(|e| panic!("backend spec {spec:?}: {e}")),
        ),
        #[cfg(feature = "postgres")]
        "postgres" => Arc::new(
            cachier::SqlBackend::postgres(rest)
                .unwrap_or_else(|e| panic!("backend spec {spec:?}: {e}")),
        ),
        #[cfg(feature = "mongo")]
        "mongo" => {
            // One client per URL for the whole process: each client opens a pool and monitors.
            type Backends =
                parking_lot::Mutex<std::collections::HashMap<String, cachier::MongoBackend>>;
            static BACKENDS: std::sync::LazyLock<Backends> =
                std::sync::LazyLock::new(Default::default);
            let mut backends = BACKENDS.lock();
            let backend = match backends.get(rest) {
                Some(backend) => backend.clone(),
                None => {
                    let backend = cachier::MongoBackend::from_url(rest)
                        .unwrap_or_else(|e| panic!("backend spec {spec:?}: {e}"));
                    backends.insert(rest.to_owned(), backend.clone());
                    backend
                }
            };
            Arc::new(backend)
        }
        other => panic!("backend spec {spec:?}: unknown or not compiled in ({other})"),
    }
}

/// Service URLs whose password ([`MALFORMED_URL_SECRET`]) is written without percent-encoding
/// (an unencoded `/`, `?`, `#` or `@`, a password in the query, no scheme...): none may ever
/// show it.
pub const MALFORMED_URLS: &[&str] = &[
    "redis://user:S3cret/Pw@127.0.0.1:1/0",
    "redis://u:S3cret#Pw@127.0.0.1:1/0",
    "redis://u:S3cret?Pw@127.0.0.1:1/0",
    "redis://u:S3c@ret@127.0.0.1:1/0",
    "redis://S3cret/Pw@127.0.0.1:1/0",
    "rediss://:S3cret@127.0.0.1:1/0",
    "rediss://:S3cret/Pw@127.0.0.1:1/0",
    "redis+unix:///nonexistent/cachier.sock?pass=S3cret",
    "redis+unix:///nonexistent/cachier.sock?db=1&password=S3cret",
    "postgres://user:S3cret?Pw@127.0.0.1:1/test",
    "postgres://user:S3cret/Pw@127.0.0.1:1/test",
    "postgres://user:S3cret#Pw@127.0.0.1:1/test",
    "postgresql://user:S3c@ret@127.0.0.1:1/test",
    "postgres://user:S3cret?Pw@127.0.0.1:notaport/test",
    "postgres://user@127.0.0.1:1/test?password=S3cret",
    "postgres://S3cret/Pw@127.0.0.1:1/test",
    "postgres://S3cret?Pw@127.0.0.1:1/test",
    "mongodb://u:S3cret/Pw@127.0.0.1:1/?serverSelectionTimeoutMS=300",
    "mongodb://u:S3cret?Pw@127.0.0.1:1/",
    "mongodb://u:S3cret@127.0.0.1:1,127.0.0.1:2/?serverSelectionTimeoutMS=300",
    "mongodb+srv://u:S3cret/Pw@cluster.invalid/",
    "u:S3cret@127.0.0.1:1/0",
    "ftp://u:S3cret/Pw@127.0.0.1/x",
];

/// The password of every [`MALFORMED_URLS`] entry.
pub const MALFORMED_URL_SECRET: &str = "S3cret";

/// Whether a spec's store is shared by processes (multi-process tests need it).
pub fn spec_is_shared(spec: &str) -> bool {
    !spec.starts_with("memory")
}

/// The URL of a test server from `var`. When unset: a failure naming the variable if `CI` or
/// `CACHIER_REQUIRE_SERVICES` is set, otherwise a loud SKIPPED line and `None`.
pub fn service_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if services_required() {
                panic!(
                    "{var} is not set: start the server (scripts/test.sh does) and export {var}"
                );
            }
            eprintln!(
                "SKIPPED {test}: {var} is not set (scripts/test.sh starts the server and sets it)"
            );
            None
        }
    }
}

/// `url` with its user info replaced by `user_info` (`user` or `user:password`), to reach the
/// same test server with credentials it refuses.
pub fn with_user_info(url: &str, user_info: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let hosts_at = match rest.find(['/', '?']) {
        Some(end) => rest[..end].rfind('@').map_or(0, |at| at + 1),
        None => rest.rfind('@').map_or(0, |at| at + 1),
    };
    format!("{scheme}://{user_info}@{}", &rest[hosts_at..])
}

/// Everything an error reporter shows of `error`: its message and those of its sources, one
/// a line (what `anyhow` prints with `{:#}` or `{:?}`).
pub fn error_report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut lines = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        lines.push(cause.to_string());
        source = cause.source();
    }
    lines.join("\n")
}

/// Whether missing services are failures (`CI` or `CACHIER_REQUIRE_SERVICES` set) rather than
/// loud skips.
pub fn services_required() -> bool {
    ["CI", "CACHIER_REQUIRE_SERVICES"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false"))
}

/// A namespace no other test uses, so tests share a server safely.
pub fn unique_name(case: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "conformance::{case}::{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory for one test's files, under the target directory.
pub fn fresh_dir(label: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("cachier-conformance");
    let dir = base.join(unique_name(label).replace("::", "-"));
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

/// Counts calls of a test function.
#[derive(Clone, Default, Debug)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds one and returns the new count.
    pub fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    /// The count.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Runs `body` with a `tracing` subscriber on this thread and returns what it logged.
pub fn capture_logs(body: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<parking_lot::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, body);
    let bytes = buffer.0.lock().clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The behaviour suite for one backend: `$spec` is an expression of type
/// `fn() -> Option<String>` (a spec for [`backend_from_spec`], `None` = skip).
#[macro_export]
macro_rules! conformance_tests {
    ($spec:expr) => {
        $crate::conformance_tests!(@cases cases, $spec;
            hit_after_miss, different_args_are_different_entries, tuple_and_list_arguments,
            functions_do_not_share_entries, same_name_shares_entries, version_invalidates,
            custom_key_function, skip_cache, overwrite_cache, clear_cache, precache_value,
            stale_after, stale_after_zero_always_recomputes, next_time_returns_stale_then_refreshes,
            next_time_refreshes_once_and_serves_stale_to_all, next_time_failed_refresh_keeps_stale,
            max_age_stricter_than_stale_after, max_age_looser_than_stale_after,
            max_age_alone, always_stale_recomputes, max_age_with_next_time,
            none_not_served_by_default, allow_none_serves_none, per_call_allow_none,
            placeholder_never_served, errors_are_not_cached, panic_releases_claim,
            concurrent_misses_compute_once, waiter_gets_in_flight_value_promptly,
            wait_for_calc_timeout_ok, wait_for_calc_timeout_slow,
            clear_being_calculated_lets_next_caller_compute, clear_being_calculated_empty,
            entry_size_limit_not_cached, entry_size_limit_cached, invalid_entry_size_limit,
            cleanup_stale_deletes_old_entries, cleanup_interval_limits_runs,
            delete_stale_entries_directly, garbage_value_is_a_miss, verbose_traces_decisions,
            strict_mode_returns_ok_when_healthy, statistics_count_calls,
            statistics_count_wait_timeouts, listing_namespaces_and_entries,
            claim_after_another_stored_serves_it, refused_put_releases_claim,
            queued_refresh_keeps_its_claim
        );
    };
    (@cases $module:ident, $spec:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let spec: fn() -> Option<String> = $spec;
                if let Some(spec) = spec() {
                    $crate::$module::$case(&spec);
                }
            }
        )*
    };
}

/// The async path for one backend (see [`conformance_tests!`]).
#[cfg(feature = "async")]
#[macro_export]
macro_rules! async_conformance_tests {
    ($spec:expr) => {
        $crate::conformance_tests!(@cases async_cases, $spec;
            async_hit_after_miss, async_skip_and_overwrite, async_stale_and_max_age,
            async_concurrent_misses_compute_once, async_next_time_refreshes_once,
            async_cancelled_leader_releases_claim, async_errors_not_cached, async_management_calls
        );
    };
}

/// Multi-process single flight for async callers.
#[cfg(feature = "async")]
#[macro_export]
macro_rules! async_multiprocess_tests {
    ($spec:expr) => {
        $crate::multiprocess_tests!(@cases $spec; async_processes_compute_once);
    };
}

/// Tests that change the global settings. Instantiate them only in `tests/tests/globals.rs`,
/// whose tests all hold [`globals::LOCK`], so no other test sees their changes.
#[macro_export]
macro_rules! global_conformance_tests {
    ($spec:expr) => {
        $crate::global_conformance_tests!(@cases $spec;
            disable_and_enable_caching, enable_caching_after_build, stale_after_applies_dynamically,
            next_time_applies_dynamically, allow_none_applies_dynamically,
            wait_for_calc_timeout_applies_dynamically, entry_size_limit_is_read_at_build
        );
    };
    (@cases $spec:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let spec: fn() -> Option<String> = $spec;
                if let Some(spec) = spec() {
                    let _guard = $crate::globals::lock();
                    $crate::globals::$case(&spec);
                }
            }
        )*
    };
}

/// Multi-process tests for backends shared between processes.
#[macro_export]
macro_rules! multiprocess_tests {
    ($spec:expr) => {
        $crate::multiprocess_tests!(@cases $spec;
            value_from_one_process_is_a_hit_in_another, processes_compute_once,
            killed_computation_is_taken_over, stress_no_duplicate_computations
        );
    };
    (@cases $spec:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let spec: fn() -> Option<String> = $spec;
                if let Some(spec) = spec() {
                    $crate::multiprocess::$case(&spec, env!("CARGO_BIN_EXE_conformance-worker"));
                }
            }
        )*
    };
}
