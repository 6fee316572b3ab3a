//! A server the backend cannot use, through blocking memoized functions: an unreachable one
//! (calls warn and compute uncached, concurrent callers share one failed attempt, strict calls
//! return the error) and one that refuses the credentials (its reason shown once, the password
//! never).

use std::time::{Duration, Instant};

use cachier_backend_mongo::MongoBackend;
use cachier_core::{memoize, Backend, CallOptions};
use cachier_testkit::{
    capture_logs, error_report, service_url, unique_name, with_user_info, Counter,
};

/// A closed port: by default every call warns and returns the right value uncached; strict
/// calls return the backend error. Each call gives up after the short server-selection
/// timeout. Needs no server.
#[test]
fn unreachable_server_degrades_to_uncached_calls() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // the listener is dropped: nothing listens on `port` now
    let backend =
        MongoBackend::builder(format!("mongodb://127.0.0.1:{port}/?directConnection=true"))
            .server_selection_timeout(Duration::from_millis(300))
            .connect_timeout(Duration::from_millis(300))
            .build()
            .expect("building never connects");
    let calls = Counter::new();
    let c = calls.clone();
    let f = memoize(&unique_name("mongo_down"), move |x: u64| {
        c.bump();
        x * 3
    })
    .backend(backend)
    .build()
    .expect("building a function never connects");
    let started = Instant::now();
    let logs = capture_logs(|| {
        assert_eq!(f.call(5), 15);
        assert_eq!(f.call(5), 15);
    });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "each call gave up quickly: {:?}",
        started.elapsed()
    );
    assert_eq!(calls.get(), 2, "computed uncached every time");
    assert!(f.backend_error_count() >= 2);
    assert!(logs.contains("cache unavailable"), "{logs}");
    assert!(logs.contains("mongo"), "{logs}");
    // Concurrent callers share one failed attempt instead of each waiting out the timeout
    // in turn behind a lock.
    let started = Instant::now();
    let threads: Vec<_> = (0..6u64)
        .map(|x| {
            let f = f.clone();
            std::thread::spawn(move || f.call(x))
        })
        .collect();
    for (x, thread) in threads.into_iter().enumerate() {
        assert_eq!(thread.join().unwrap(), x as u64 * 3);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1_200),
        "six concurrent calls took {took:?}"
    );
    let error = f.try_call(5).expect_err("strict mode surfaces the failure");
    assert!(error.is_backend(), "{error}");
    assert!(error.to_string().contains("mongo backend"), "{error}");
    assert!(
        f.try_call_with(5, &CallOptions::new().skip_cache(true))
            .is_ok(),
        "skip_cache never touches the store"
    );
    assert!(f.clear_cache().is_err());
}

/// Credentials the server refuses: the error names the server's reason, once, in its message
/// and in its whole chain of sources.
#[test]
fn refused_credentials_show_the_servers_message_once() {
    let Some(url) = service_url("CACHIER_TEST_MONGO_URL", "mongo::refused_credentials") else {
        return;
    };
    let url = with_user_info(&url, "nosuchuser:wrong-password");
    let backend = MongoBackend::from_url(&url).unwrap();
    let error = backend.namespaces().unwrap_err();
    let cause = "authentication failed";
    assert!(error.to_string().to_lowercase().contains(cause), "{error}");
    let report = error_report(&error).to_lowercase();
    assert_eq!(report.matches(cause).count(), 1, "{report}");
    assert!(!report.contains("wrong-password"), "{report}");
}
