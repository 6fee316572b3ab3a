//! The conformance suite and the multi-process tests, blocking and async, against a real
//! server at `CACHIER_TEST_MONGO_URL` (scripts/test.sh starts SecantusDB and sets it).
//!
//! What only the MongoDB backend does (the unique index, the documents' shape, garbage
//! documents, lease renewal, an unreachable server, refused credentials, the native async
//! core) is tested in its own crate, `crates/backend-mongo/tests/`. Only the suite's
//! oversized-value case stays here: it is the suite's own case, run with a value over
//! MongoDB's 16 MiB document limit.
#![cfg(feature = "mongo")]

use cachier::backends::mongo::MongoBackend;
use cachier_conformance::service_url;

fn spec() -> Option<String> {
    service_url("CACHIER_TEST_MONGO_URL", "mongo").map(|url| format!("mongo:{url}"))
}

cachier_conformance::conformance_tests!(spec);

mod multiprocess {
    cachier_conformance::multiprocess_tests!(super::spec);
}

/// Async callers, through the backend's native async core (`MongoAsyncCore`).
#[cfg(feature = "async")]
mod asynchronous {
    cachier_conformance::async_conformance_tests!(super::spec);
    cachier_conformance::async_multiprocess_tests!(super::spec);
}

/// A value over the 16 MiB document limit: returned uncached, and its claim freed at once.
#[test]
fn oversized_value_releases_claim() {
    let Some(url) = service_url("CACHIER_TEST_MONGO_URL", "oversized_value_releases_claim") else {
        return;
    };
    let backend = MongoBackend::from_url(&url).unwrap();
    cachier_conformance::cases::oversized_value_releases_claim(
        std::sync::Arc::new(backend),
        17 << 20,
    );
}
