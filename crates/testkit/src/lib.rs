//! Test helpers of cachier's crates, and the store contract suite ([`store_contract_tests!`]).
//!
//! It depends on `cachier-core` and small crates only, never on the facade `cachier`: backend
//! crates dev-depend on it without the facade (which depends on them) entering their builds.
//! The conformance suite (`cachier-conformance`) re-exports these helpers.

pub mod contract;
#[cfg(feature = "private-mongo")]
pub mod private_mongo;
#[cfg(feature = "private-redis")]
pub mod private_redis;
#[cfg(any(feature = "private-mongo", feature = "private-redis"))]
mod process;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    "redis+cluster://u:S3cret/Pw@127.0.0.1:1,127.0.0.1:2/",
    "redis+cluster://u:S3cret@127.0.0.1:1,127.0.0.1:2/5",
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

/// The first `Some` of `check`, polled every 20 ms; fails after 10 s (a server coming back,
/// a value landing in another process).
#[track_caller]
pub fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
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

/// The store contract for one backend, called directly on its `Core` (and, with the `async`
/// feature, on its `AsyncCore`), as `#[test]` functions in the calling module:
///
/// ```ignore
/// cachier_testkit::store_contract_tests!(unleased: |_dir| Some(Arc::new(MemoryBackend::new())));
/// ```
///
/// The closure is a [`contract::Open`]: it opens the store (file stores in the scratch
/// directory it gets), or returns `None` to skip (see [`service_url`]). `leased:` stores need
/// a heartbeat (their capabilities declare leases) and get the renewal and lapse cases;
/// `unleased:` stores hold a claim exactly as long as its holder lives, and get a case that
/// says so instead.
///
/// `known_violations = [case, ...]` names cases the backend is known to fail: they must go on
/// failing (see [`contract::run`]), so the list stays true.
#[macro_export]
macro_rules! store_contract_tests {
    (leased: $open:expr $(, known_violations = [$($known:ident),* $(,)?])? $(,)?) => {
        const KNOWN_VIOLATIONS: &[&str] = &[$($(stringify!($known)),*)?];
        $crate::store_contract_tests!(@common $open);
        $crate::store_contract_tests!(@cases $open;
            renew_extends_the_holders_lease, renew_fails_after_clear_being_calculated,
            renew_fails_after_a_takeover, lapsed_lease_frees_the_key
        );
    };
    (unleased: $open:expr $(, known_violations = [$($known:ident),* $(,)?])? $(,)?) => {
        const KNOWN_VIOLATIONS: &[&str] = &[$($(stringify!($known)),*)?];
        $crate::store_contract_tests!(@common $open);
        $crate::store_contract_tests!(@cases $open; claims_need_no_heartbeat);
    };
    (@common $open:expr) => {
        $crate::store_contract_tests!(@cases $open;
            get_of_absent_key_is_none, put_then_get_returns_the_value, put_overwrites,
            values_are_bytes_exact, claim_then_busy,
            placeholder_is_being_calculated_without_a_value, claim_keeps_the_stored_value,
            claim_is_atomic_across_threads, put_with_the_live_token_releases_the_claim,
            put_with_a_foreign_token_keeps_the_claim,
            put_of_a_superseded_holder_keeps_the_new_claim, release_frees_the_claim,
            release_is_idempotent, release_with_a_wrong_token_keeps_the_claim,
            wait_without_a_claim_returns_at_once, wait_times_out_while_claimed,
            wait_wakes_promptly_after_release, wait_wakes_promptly_after_put,
            remove_deletes_one_entry, remove_under_a_claim_keeps_the_claim,
            remove_then_release_leaves_a_miss,
            clear_cache_is_per_namespace, clear_cache_under_a_claim_leaves_get_and_claim_agreeing,
            clear_being_calculated_drops_claims_and_keeps_values,
            delete_stale_entries_deletes_only_older_ones,
            delete_stale_entries_keeps_entries_being_calculated, len_and_is_empty,
            entries_list_keys_and_sizes, entries_show_the_previews_values_carry,
            namespaces_list_namespaces_with_entries
        );
        $crate::__store_contract_async_tests!($open);
    };
    (@cases $open:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let open: $crate::contract::Open = $open;
                $crate::contract::run(stringify!($case), KNOWN_VIOLATIONS, || {
                    $crate::contract::$case(open)
                });
            }
        )*
    };
}

/// The contract's async cases (the testkit's `async` feature is on).
#[cfg(feature = "async")]
#[doc(hidden)]
#[macro_export]
macro_rules! __store_contract_async_tests {
    ($open:expr) => {
        $crate::store_contract_tests!(@cases $open;
            async_get_and_put, async_claim_busy_and_release, async_foreign_tokens_keep_the_claim,
            async_claim_is_atomic, async_wait, async_management, async_remove
        );
    };
}

/// Nothing: the testkit's `async` feature is off.
#[cfg(not(feature = "async"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __store_contract_async_tests {
    ($open:expr) => {};
}

/// The cases of a store that pushes its changes ([`contract::push`]): another instance's
/// writes reach a sink and a near cache within [`contract::push::PUSH_BOUND`], and so does a
/// waiter's wake-up.
/// `open` should make the store's fallback poll long, so that only a pushed message can wake
/// a waiter that soon. `deletes_everywhere:` for a store whose messages cannot name a deleted
/// entry (see [`contract::push::Deletes`]).
#[macro_export]
macro_rules! store_push_tests {
    ($open:expr) => {
        $crate::store_push_tests!(@cases $open, $crate::contract::push::Deletes::Named);
    };
    (deletes_everywhere: $open:expr) => {
        $crate::store_push_tests!(@cases $open, $crate::contract::push::Deletes::Everywhere);
    };
    (@cases $open:expr, $deletes:expr) => {
        #[test]
        fn pushed_changes_reach_another_instance() {
            $crate::contract::push::pushed_changes_reach_another_instance($open, $deletes);
        }

        #[test]
        fn a_waiter_wakes_on_another_instances_put() {
            $crate::contract::push::a_waiter_wakes_on_another_instances_put($open);
        }

        #[test]
        fn near_cache_sees_another_instances_writes() {
            $crate::contract::push::near_cache_sees_another_instances_writes($open);
        }

        $crate::__store_push_async_tests!($open);
    };
}

/// The async push case (the testkit's `async` feature).
#[cfg(feature = "async")]
#[doc(hidden)]
#[macro_export]
macro_rules! __store_push_async_tests {
    ($open:expr) => {
        #[test]
        fn an_async_waiter_wakes_on_another_instances_put() {
            $crate::contract::push::an_async_waiter_wakes_on_another_instances_put($open);
        }
    };
}

/// Nothing: the testkit's `async` feature is off.
#[cfg(not(feature = "async"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __store_push_async_tests {
    ($open:expr) => {};
}

/// The cross-process case for a store shared by processes (not the memory store, not an
/// in-memory SQLite database): real processes race for one key and exactly one wins. The
/// test binary re-executes itself as the children, which open the store with the same
/// [`contract::Open`] in the same scratch directory.
#[macro_export]
macro_rules! store_contract_process_tests {
    ($open:expr) => {
        #[test]
        fn claim_is_atomic_across_processes() {
            let open: $crate::contract::Open = $open;
            $crate::contract::claim_is_atomic_across_processes(
                open,
                module_path!(),
                "claim_is_atomic_across_processes",
            );
        }
    };
}
