//! The conformance suite: cachier's behaviour and this project's fixes of its defects (see
//! docs/ARCHITECTURE.md), written once and run against every backend.
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

use std::sync::Arc;

use cachier::store::Backend;
// The helpers live in cachier-testkit, which backend crates use without the facade.
#[cfg(feature = "private-redis")]
pub use cachier_testkit::private_redis;
pub use cachier_testkit::{
    capture_logs, error_report, eventually, fresh_dir, service_url, services_required, unique_name,
    with_user_info, Counter, MALFORMED_URLS, MALFORMED_URL_SECRET,
};

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
        "memory" => Arc::new(cachier::backends::memory::MemoryBackend::new()),
        #[cfg(feature = "file")]
        "file" => Arc::new(cachier::backends::file::FileBackend::new(rest)),
        #[cfg(feature = "file")]
        "file-separate" => Arc::new(
            cachier::backends::file::FileBackend::builder()
                .cache_dir(rest)
                .separate_files(true)
                .build(),
        ),
        #[cfg(feature = "redis")]
        "redis" => Arc::new(
            cachier::backends::redis::RedisBackend::from_url(rest)
                .unwrap_or_else(|e| panic!("backend spec {spec:?}: {e}")),
        ),
        #[cfg(feature = "sqlite")]
        "sqlite" => Arc::new(
            cachier::backends::sql::SqlBackend::sqlite(rest)
                .unwrap_or_else(|e| panic!("backend spec {spec:?}: {e}")),
        ),
        #[cfg(feature = "postgres")]
        "postgres" => Arc::new(
            cachier::backends::sql::SqlBackend::postgres(rest)
                .unwrap_or_else(|e| panic!("backend spec {spec:?}: {e}")),
        ),
        #[cfg(feature = "mongo")]
        "mongo" => {
            // One client per URL for the whole process: each client opens a pool and monitors.
            type Backends = parking_lot::Mutex<
                std::collections::HashMap<String, cachier::backends::mongo::MongoBackend>,
            >;
            static BACKENDS: std::sync::LazyLock<Backends> =
                std::sync::LazyLock::new(Default::default);
            let mut backends = BACKENDS.lock();
            let backend = match backends.get(rest) {
                Some(backend) => backend.clone(),
                None => {
                    let backend = cachier::backends::mongo::MongoBackend::from_url(rest)
                        .unwrap_or_else(|e| panic!("backend spec {spec:?}: {e}"));
                    backends.insert(rest.to_owned(), backend.clone());
                    backend
                }
            };
            Arc::new(backend)
        }
        #[cfg(feature = "s3")]
        "s3" => {
            // One client per URL for the whole process: it keeps its connections and its
            // measure of the server's clock.
            type Backends = parking_lot::Mutex<
                std::collections::HashMap<String, cachier::backends::s3::S3Backend>,
            >;
            static BACKENDS: std::sync::LazyLock<Backends> =
                std::sync::LazyLock::new(Default::default);
            let mut backends = BACKENDS.lock();
            let backend = match backends.get(rest) {
                Some(backend) => backend.clone(),
                None => {
                    let backend = cachier::backends::s3::S3Backend::from_url(rest)
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

/// Whether a spec's store is shared by processes (multi-process tests need it).
pub fn spec_is_shared(spec: &str) -> bool {
    !spec.starts_with("memory")
}

/// The behaviour suite for one backend: `$spec` is an expression of type
/// `fn() -> Option<String>` (a spec for [`backend_from_spec`], `None` = skip).
#[macro_export]
macro_rules! conformance_tests {
    ($spec:expr) => {
        $crate::conformance_tests!(@cases cases, $spec;
            hit_after_miss, different_args_are_different_entries, tuple_and_list_arguments,
            functions_do_not_share_entries, same_name_shares_entries, version_invalidates,
            custom_key_function, skip_cache, overwrite_cache, clear_cache,
            invalidate_recomputes_one_entry, invalidate_during_a_computation_keeps_single_flight,
            precache_value,
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
        #[cfg(feature = "macros")]
        $crate::conformance_tests!(@cases cases, $spec;
            auto_version_hides_entries_of_an_edited_function
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
            async_cancelled_leader_releases_claim, async_errors_not_cached, async_management_calls,
            async_invalidate
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
/// whose tests all hold the lock of `globals.rs`, so no other test sees their changes.
#[macro_export]
macro_rules! global_conformance_tests {
    ($spec:expr) => {
        $crate::global_conformance_tests!(@cases $spec;
            disable_and_enable_caching, enable_caching_after_build, stale_after_applies_dynamically,
            next_time_applies_dynamically, allow_none_applies_dynamically,
            wait_for_calc_timeout_applies_dynamically, entry_size_limit_is_read_at_build,
            preview_args_is_read_at_build
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
            killed_computation_is_taken_over, stress_no_duplicate_computations,
            hash_map_argument_is_a_hit_in_another_process,
            invalidation_reaches_other_processes, near_cache_sees_other_processes_changes
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
