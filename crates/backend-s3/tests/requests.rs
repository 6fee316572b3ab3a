//! What a call costs in requests: a hit is one GET, a miss three (GET, the claim's
//! `If-None-Match` PUT, the value's `If-Match` PUT), a miss on a stale value four.

use std::time::Duration;

use cachier_backend_s3::S3Backend;
use cachier_core::memoize;
use cachier_testkit::{service_url, unique_name};

#[test]
fn a_hit_is_one_request_and_a_miss_three() {
    let Some(url) = service_url(
        "CACHIER_TEST_S3_URL",
        "a_hit_is_one_request_and_a_miss_three",
    ) else {
        return;
    };
    // A backend of its own: no other test's requests in the count.
    let backend = S3Backend::from_url(&url).expect("s3 backend");
    let f = memoize(&unique_name("s3_requests"), |x: u64| x * 2)
        .backend(backend.clone())
        .build()
        .expect("memoized function");
    let cost = |x: u64| {
        let before = backend.requests_sent();
        assert_eq!(f.call(x), x * 2);
        backend.requests_sent() - before
    };
    assert_eq!(cost(1), 3, "a miss: GET, claim, put");
    assert_eq!(cost(1), 1, "a hit: one GET");
    assert_eq!(cost(2), 3);
    let stale = memoize(&unique_name("s3_requests_stale"), |x: u64| x + 1)
        .backend(backend.clone())
        .stale_after(Duration::ZERO)
        .build()
        .expect("memoized function");
    assert_eq!(stale.call(1), 2);
    let before = backend.requests_sent();
    assert_eq!(stale.call(1), 2);
    assert_eq!(
        backend.requests_sent() - before,
        4,
        "a stale value: GET, GET and claim, put"
    );
}
