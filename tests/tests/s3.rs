//! The conformance suite and the multi-process tests, blocking and async, against a real
//! server at `CACHIER_TEST_S3_URL` (scripts/test.sh starts moto and sets it).
//!
//! What only the S3 backend does (the objects' layout, conditional writes refused by the
//! server, garbage objects, namespaces that look like paths, an endpoint that stops, throttling)
//! is tested in its own crate, `crates/backend-s3/tests/`. Only the URL dispatch stays here.
#![cfg(feature = "s3")]

use cachier_conformance::service_url;

fn spec() -> Option<String> {
    service_url("CACHIER_TEST_S3_URL", "s3").map(|url| format!("s3:{url}"))
}

cachier_conformance::conformance_tests!(spec);

mod multiprocess {
    cachier_conformance::multiprocess_tests!(super::spec);
}

/// Async callers, through the backend's native async core (`S3AsyncCore`).
#[cfg(feature = "async")]
mod asynchronous {
    cachier_conformance::async_conformance_tests!(super::spec);
    cachier_conformance::async_multiprocess_tests!(super::spec);
}

/// `s3://` URLs open the S3 backend, and its errors never show the secret.
#[test]
fn s3_urls_open_the_backend_without_showing_secrets() {
    let backend =
        cachier::backend_from_url("s3://KEY:s3cret@bucket/prefix?endpoint=http://127.0.0.1:1")
            .expect("an s3 URL");
    assert_eq!(backend.name(), "s3");
    assert!(!format!("{backend:?}").contains("s3cret"));
    let err = cachier::backend_from_url("s3://KEY:s3cret@bucket?bogus=1").unwrap_err();
    assert!(
        err.to_string().contains("bogus") && !err.to_string().contains("s3cret"),
        "{err}"
    );
}
