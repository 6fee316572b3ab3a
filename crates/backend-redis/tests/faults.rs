//! Faults, each on a private `redis-server` (or none at all): a server that dies and comes
//! back, one that hangs, a refused connection and scripts flushed from the server. Calls keep
//! returning correct values, uncached, and caching resumes once the server answers.

mod common;

use std::time::{Duration, Instant};

use cachier_backend_redis::RedisBackend;
use cachier_core::{Error, ErrorKind};
use cachier_testkit::eventually;
use cachier_testkit::private_redis::PrivateRedis;
use cachier_testkit::{capture_logs, unique_name, Counter};
use common::{numbered, raw, MS};

/// The server dies mid-run: calls keep returning correct values, uncached, with warnings
/// (strict calls get `Err`); it comes back on the same port: caching resumes in the same
/// program, on the same memoized function.
#[test]
fn server_outage_degrades_then_recovers() {
    if !PrivateRedis::available("server_outage_degrades_then_recovers") {
        return;
    }
    let mut server = PrivateRedis::start("redis-outage", &[]);
    let backend = RedisBackend::builder(server.url())
        .reconnect_backoff(MS(100))
        .build()
        .unwrap();
    let calls = Counter::new();
    let f = numbered(&backend, &unique_name("outage"), &calls);
    assert_eq!(f.call(1), 1001);
    assert_eq!(f.call(1), 1001);
    assert_eq!(calls.get(), 1);

    server.stop();
    let started = Instant::now();
    let log = capture_logs(|| {
        assert_eq!(f.call(1), 1002, "computed uncached");
        assert_eq!(f.call(1), 1003, "still uncached");
        assert_eq!(f.call(2), 2004);
    });
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a dead server does not hang calls: {:?}",
        started.elapsed()
    );
    assert!(
        log.contains("WARN") && log.contains("cache unavailable"),
        "{log}"
    );
    assert!(f.backend_error_count() >= 3);
    match f.try_call(1) {
        Err(error @ Error::Backend { .. }) => assert!(error.is_backend()),
        other => panic!("strict mode must return the store error, got {other:?}"),
    }

    server.resume(); // same port, empty (no persistence)
    let value = eventually(|| {
        let v = f.try_call(1).ok()?;
        (f.try_call(1).ok()? == v).then_some(v)
    });
    assert_eq!(
        f.call(1),
        value,
        "caching resumed without restarting anything"
    );
    let errors = f.backend_error_count();

    // A restart between calls costs no failed call: dead pooled connections are replaced.
    server.stop();
    server.resume();
    assert_eq!(
        f.try_call(7).expect("first call after a restart"),
        7000 + calls.get() as u64
    );
    assert_eq!(f.try_call(7).unwrap(), 7000 + calls.get() as u64);
    assert_eq!(f.backend_error_count(), errors);
}

/// A hung server (stopped with SIGSTOP) cannot hang a call: the response timeout fails the
/// request, and the call returns its value uncached.
#[test]
fn hung_server_times_out() {
    if !PrivateRedis::available("hung_server_times_out") {
        return;
    }
    let server = PrivateRedis::start("redis-hung", &[]);
    let backend = RedisBackend::builder(server.url())
        .response_timeout(MS(300))
        .connect_timeout(MS(300))
        .build()
        .unwrap();
    let calls = Counter::new();
    let f = numbered(&backend, &unique_name("hung"), &calls);
    assert_eq!(f.call(1), 1001);
    server.signal(libc::SIGSTOP);
    let started = Instant::now();
    assert_eq!(f.call(1), 1002, "computed uncached while the server hangs");
    let took = started.elapsed();
    assert!(
        took >= MS(250) && took < MS(1500),
        "the response timeout ended the wait: {took:?}"
    );
    let error = f.try_call(1).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    server.signal(libc::SIGCONT);
    let value = eventually(|| f.try_call(3).ok());
    assert_eq!(
        f.try_call(3).unwrap(),
        value,
        "cached again once the server answers"
    );
}

/// A refused connection is an unavailable store, and the error can be handed on (cloned)
/// whole.
#[test]
fn refused_connection_is_unavailable() {
    let backend = RedisBackend::from_url("redis://127.0.0.1:1/0").unwrap();
    let calls = Counter::new();
    let f = numbered(&backend, &unique_name("refused"), &calls);
    let error = f.try_call(1).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    let copy = error.clone();
    assert_eq!(copy.to_string(), error.to_string());
    assert_eq!(copy.kind(), error.kind());
}

/// Scripts flushed from the server (a restart, `SCRIPT FLUSH`): a miss, whose claim and read
/// go in one pipeline, loads the claim script again and computes once.
#[test]
fn flushed_scripts_are_loaded_again() {
    if !PrivateRedis::available("flushed_scripts_are_loaded_again") {
        return;
    }
    let server = PrivateRedis::start("redis-script-flush", &[]);
    let backend = RedisBackend::from_url(&server.url()).unwrap();
    let calls = Counter::new();
    let f = numbered(&backend, &unique_name("script_flush"), &calls);
    assert_eq!(f.try_call(1).unwrap(), 1001);
    let mut con = raw(&server.url());
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut con).unwrap();
    assert_eq!(f.try_call(2).unwrap(), 2002, "computed and stored");
    assert_eq!(f.try_call(2).unwrap(), 2002, "a hit");
    assert_eq!(calls.get(), 2);
    assert_eq!(f.backend_error_count(), 0);
}
