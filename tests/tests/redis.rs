//! The conformance suite, the multi-process cases and the Redis-specific cases against real
//! Redis servers: the shared one at `CACHIER_TEST_REDIS_URL`, and private `redis-server`
//! processes this file starts on free loopback ports for the fault cases.
#![cfg(feature = "redis")]

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use cachier::{
    backends::redis::RedisBackend,
    store::{Backend, Claim, Key, Namespace},
    Error,
};
use cachier_conformance::cases::eventually;
use cachier_conformance::private_redis::PrivateRedis;
use cachier_conformance::{capture_logs, fresh_dir, service_url, unique_name, Counter};

cachier_conformance::conformance_tests!(|| spec("redis conformance"));
cachier_conformance::multiprocess_tests!(|| spec("redis multiprocess"));

const MS: fn(u64) -> Duration = Duration::from_millis;

fn spec(test: &str) -> Option<String> {
    service_url("CACHIER_TEST_REDIS_URL", test).map(|url| format!("redis:{url}"))
}

fn shared_url(test: &str) -> Option<String> {
    service_url("CACHIER_TEST_REDIS_URL", test)
}

fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("client")
        .get_connection()
        .expect("connect to the test server")
}

/// `f(x) = x * 1000 + n`, `n` counting computations, on `backend`.
fn numbered(backend: &RedisBackend, name: &str, calls: &Counter) -> cachier::Memoized<u64, u64> {
    let calls = calls.clone();
    cachier::memoize(name, move |x: u64| x * 1000 + calls.bump() as u64)
        .backend(backend.clone())
        .build()
        .expect("build")
}

/// Calls of one command so far, from `INFO commandstats` (0 when never called).
fn command_calls(con: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(con)
        .expect("INFO");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Private servers for the fault cases.

// ---------------------------------------------------------------------------------------
// Cases on the shared server.

/// The layout is cachier's: one hash per entry under `{prefix}:{namespace}:{key hex}`, with
/// the value, the time by the server's clock and the completion flag; no file directory.
#[test]
fn entries_are_hashes_under_the_documented_key() {
    let Some(url) = shared_url("entries_are_hashes_under_the_documented_key") else {
        return;
    };
    let backend = RedisBackend::builder(&url)
        .prefix("cachier-test")
        .build()
        .unwrap();
    let name = unique_name("layout");
    let calls = Counter::new();
    let f = numbered(&backend, &name, &calls);
    assert_eq!(f.call(4), 4001);
    assert_eq!(f.cache_dpath(), None);
    let key = f.key(&4).unwrap();
    let redis_key = backend.redis_key(f.namespace(), &key);
    assert_eq!(redis_key, format!("cachier-test:{name}:{}", key.to_hex()));
    let mut con = raw(&url);
    let kind: String = redis::cmd("TYPE").arg(&redis_key).query(&mut con).unwrap();
    assert_eq!(kind, "hash");
    let (completed, time, claim): (String, u64, Option<String>) = redis::cmd("HMGET")
        .arg(&redis_key)
        .arg("completed")
        .arg("time")
        .arg("claim")
        .query(&mut con)
        .unwrap();
    assert_eq!(completed, "1");
    assert_eq!(claim, None, "the claim went with the result write");
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut con).unwrap();
    let server_now = secs * 1_000_000 + micros;
    assert!(
        time <= server_now && server_now - time < 5_000_000,
        "time {time} vs server {server_now}"
    );
    let ttl: i64 = redis::cmd("PTTL").arg(&redis_key).query(&mut con).unwrap();
    assert_eq!(ttl, -1, "no TTL unless evict_after is set");
    f.clear_cache().unwrap();
}

/// A 100,000-entry namespace is counted and cleared with SCAN, never KEYS (checked in the
/// server's command statistics), and a neighbouring namespace whose name extends this one's
/// keeps its entries.
#[test]
fn clear_100k_entries_without_keys() {
    let Some(url) = shared_url("clear_100k_entries_without_keys") else {
        return;
    };
    let backend = RedisBackend::from_url(&url).unwrap();
    let name = unique_name("clear_100k");
    let ns = Namespace::new(&name, None).unwrap();
    let neighbour = Namespace::new(&format!("{name}:more"), None).unwrap();
    let core = backend.core(&ns).unwrap();
    let neighbour_core = backend.core(&neighbour).unwrap();
    let mut con = raw(&url);
    let filled = Instant::now();
    for chunk in (0u64..100_000).collect::<Vec<_>>().chunks(5_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let key = Key::of(i).unwrap();
            pipe.cmd("HSET")
                .arg(backend.redis_key(&ns, &key))
                .arg("value")
                .arg(b"v".as_slice())
                .arg("time")
                .arg(1u64)
                .arg("completed")
                .arg("1")
                .ignore();
        }
        pipe.query::<()>(&mut con).unwrap();
    }
    neighbour_core
        .put(&Key::of(&1u8).unwrap(), b"kept", None)
        .unwrap();
    eprintln!("filled 100,000 entries in {:?}", filled.elapsed());
    let keys_before = command_calls(&mut con, "keys");
    let scans_before = command_calls(&mut con, "scan");
    assert_eq!(core.len().unwrap(), 100_000);
    let started = Instant::now();
    core.clear_cache().unwrap();
    eprintln!("cleared 100,000 entries in {:?}", started.elapsed());
    assert_eq!(core.len().unwrap(), 0);
    assert_eq!(
        neighbour_core.len().unwrap(),
        1,
        "the neighbouring namespace is untouched"
    );
    assert_eq!(
        command_calls(&mut con, "keys"),
        keys_before,
        "KEYS was never called"
    );
    assert!(
        command_calls(&mut con, "scan") > scans_before,
        "SCAN did the work"
    );
    neighbour_core.clear_cache().unwrap();
}

/// Values that are not ours are misses, recomputed and overwritten: undecodable bytes, a
/// garbled hash, and a non-hash key at an entry's address.
#[test]
fn garbage_at_an_entry_is_recomputed() {
    let Some(url) = shared_url("garbage_at_an_entry_is_recomputed") else {
        return;
    };
    let backend = RedisBackend::from_url(&url).unwrap();
    let calls = Counter::new();
    let f = numbered(&backend, &unique_name("garbage"), &calls);
    let mut con = raw(&url);
    let address = |x: u64| backend.redis_key(f.namespace(), &f.key(&x).unwrap());
    let (secs, _): (u64, u64) = redis::cmd("TIME").query(&mut con).unwrap();
    // 1: bytes that do not decode, marked completed and fresh.
    redis::cmd("HSET")
        .arg(address(1))
        .arg("value")
        .arg(b"\xff\x00garbage".as_slice())
        .arg("time")
        .arg(secs * 1_000_000)
        .arg("completed")
        .arg("1")
        .query::<()>(&mut con)
        .unwrap();
    // 2: a hash whose fields make no sense.
    redis::cmd("HSET")
        .arg(address(2))
        .arg("time")
        .arg("yesterday")
        .arg("lease")
        .arg("soon")
        .arg("claim")
        .arg("nobody")
        .query::<()>(&mut con)
        .unwrap();
    // 3: a string, not a hash.
    redis::cmd("SET")
        .arg(address(3))
        .arg("not a hash")
        .query::<()>(&mut con)
        .unwrap();
    for x in 1..=3u64 {
        let first = f
            .try_call(x)
            .expect("a garbage entry is a miss, not an error");
        assert_eq!(first, x * 1000 + x);
        assert_eq!(
            f.try_call(x).unwrap(),
            first,
            "the recomputed value replaced the garbage"
        );
    }
    assert_eq!(calls.get(), 3);
    assert_eq!(f.backend_error_count(), 0);
    f.clear_cache().unwrap();
}

/// A claim is a lease by the server's clock: renewed, it holds; not renewed, it lapses, and
/// a claim-only placeholder disappears with it (a crashed holder leaves nothing behind).
#[test]
fn leases_renew_and_lapse() {
    let Some(url) = shared_url("leases_renew_and_lapse") else {
        return;
    };
    let backend = RedisBackend::from_url(&url).unwrap();
    let ns = Namespace::new(&unique_name("leases"), None).unwrap();
    let core = backend.core(&ns).unwrap();
    let key = Key::of(&1u8).unwrap();
    let lease = MS(400);
    let Claim::Claimed(token) = core.claim(&key, lease).unwrap() else {
        panic!("first claim")
    };
    assert_eq!(core.claim(&key, lease).unwrap(), Claim::Busy);
    let entry = core.get(&key).unwrap().expect("placeholder");
    assert!(entry.being_calculated() && !entry.is_completed() && entry.value.is_none());
    assert_eq!(entry.claim_owner(), Some(token.as_str()));
    for _ in 0..4 {
        thread::sleep(MS(200));
        assert!(core.renew(&key, &token, lease).unwrap());
    }
    assert_eq!(
        core.claim(&key, lease).unwrap(),
        Claim::Busy,
        "renewed 800 ms past a 400 ms lease"
    );
    thread::sleep(MS(500));
    assert!(
        core.get(&key).unwrap().is_none(),
        "the lapsed placeholder expired"
    );
    let mut con = raw(&url);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(backend.redis_key(&ns, &key))
        .query(&mut con)
        .unwrap();
    assert_eq!(exists, 0);
    let Claim::Claimed(second) = core.claim(&key, lease).unwrap() else {
        panic!("take-over")
    };
    assert!(
        !core.renew(&key, &token, lease).unwrap(),
        "the first holder lost its claim"
    );
    core.put(&key, b"v", Some(&token)).unwrap();
    assert!(
        core.get(&key).unwrap().unwrap().being_calculated(),
        "a stale token does not release"
    );
    core.put(&key, b"w", Some(&second)).unwrap();
    let entry = core.get(&key).unwrap().unwrap();
    assert!(!entry.being_calculated() && entry.is_completed());
    assert_eq!(entry.value.as_deref(), Some(b"w".as_slice()));
    core.clear_cache().unwrap();
}

/// `evict_after` sets a TTL on stored entries: the server deletes them.
#[test]
fn evict_after_expires_entries() {
    let Some(url) = shared_url("evict_after_expires_entries") else {
        return;
    };
    let backend = RedisBackend::builder(&url)
        .evict_after(MS(400))
        .build()
        .unwrap();
    let calls = Counter::new();
    let f = numbered(&backend, &unique_name("evict"), &calls);
    assert_eq!(f.call(1), 1001);
    assert_eq!(f.call(1), 1001);
    let mut con = raw(&url);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(backend.redis_key(f.namespace(), &f.key(&1).unwrap()))
        .query(&mut con)
        .unwrap();
    assert!(ttl > 0 && ttl <= 400, "PTTL {ttl}");
    thread::sleep(MS(600));
    assert_eq!(f.core().len().unwrap(), 0, "evicted by the server");
    assert_eq!(f.call(1), 1002);
}

/// Passwords never show in `Debug` output or in the warnings of failed calls.
#[test]
fn credentials_stay_hidden() {
    if !PrivateRedis::available("credentials_stay_hidden") {
        return;
    }
    let server = PrivateRedis::start("redis-auth", &["--requirepass", "s3cret-pw"]);
    let good = RedisBackend::from_url(&format!("redis://:s3cret-pw@127.0.0.1:{}/0", server.port()))
        .unwrap();
    let calls = Counter::new();
    let f = numbered(&good, &unique_name("auth"), &calls);
    assert_eq!(f.try_call(1).unwrap(), 1001);
    assert_eq!(f.try_call(1).unwrap(), 1001);
    assert!(!format!("{good:?}").contains("s3cret-pw"));
    let bad = RedisBackend::from_url(&format!(
        "redis://:wrong-s3cret@127.0.0.1:{}/0",
        server.port()
    ))
    .unwrap();
    let g = numbered(&bad, &unique_name("auth_bad"), &calls);
    let log = capture_logs(|| assert_eq!(g.call(2), 2002));
    assert!(log.contains("cache unavailable"), "{log}");
    let error = g.try_call(2).unwrap_err();
    for text in [
        log,
        format!("{bad:?}"),
        format!("{error:?}"),
        error.to_string(),
    ] {
        assert!(
            !text.contains("wrong-s3cret") && !text.contains("s3cret-pw"),
            "{text}"
        );
    }
}

/// Credentials the server refuses (an ACL user it does not have): the error names the
/// server's reason, once, in its message and in its whole chain of sources; on the async path
/// too.
#[test]
fn refused_credentials_show_the_servers_message_once() {
    let Some(url) = shared_url("redis::refused_credentials") else {
        return;
    };
    let url = cachier_conformance::with_user_info(&url, "nosuchuser:wrong-password");
    let cause = "WRONGPASS invalid username-password pair or user is disabled";
    let check = |error: &Error| {
        assert!(error.to_string().contains(cause), "{error}");
        let report = cachier_conformance::error_report(error);
        assert_eq!(report.matches(cause).count(), 1, "{report}");
        assert!(!report.contains("wrong-password"), "{report}");
    };
    let backend = RedisBackend::from_url(&url).unwrap();
    check(&backend.namespaces().unwrap_err());
    #[cfg(feature = "async")]
    {
        let backend = RedisBackend::from_url(&url).unwrap();
        let namespace = Namespace::new("refused", None).unwrap();
        let core = backend.core(&namespace).unwrap();
        let async_core = backend.async_core(&namespace, &core).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        check(&runtime.block_on(async_core.clear_cache()).unwrap_err());
    }
}

/// `redis+unix://` URLs connect over a Unix socket.
#[test]
fn unix_socket_urls_work() {
    if !PrivateRedis::available("unix_socket_urls_work") {
        return;
    }
    let dir = fresh_dir("redis-unix");
    let socket = dir.join("redis.sock");
    let socket_arg = socket.to_str().unwrap().to_owned();
    let _server = PrivateRedis::start(
        "redis-unix-server",
        &["--unixsocket", &socket_arg, "--unixsocketperm", "700"],
    );
    let backend = RedisBackend::from_url(&format!("redis+unix://{socket_arg}?db=1")).unwrap();
    let calls = Counter::new();
    let f = numbered(&backend, &unique_name("unix"), &calls);
    assert_eq!(f.try_call(5).unwrap(), 5001);
    assert_eq!(f.try_call(5).unwrap(), 5001);
    assert_eq!(calls.get(), 1);
    let mut con = redis::Client::open(format!("redis+unix://{socket_arg}?db=1"))
        .unwrap()
        .get_connection()
        .unwrap();
    let size: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(size, 1, "the entry is in database 1");
}

// ---------------------------------------------------------------------------------------
// Faults, on private servers.

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
    assert_eq!(error.kind(), cachier::ErrorKind::Timeout, "{error}");
    server.signal(libc::SIGCONT);
    let value = eventually(|| f.try_call(3).ok());
    assert_eq!(
        f.try_call(3).unwrap(),
        value,
        "cached again once the server answers"
    );
}

/// `rediss://` (the `redis-tls` feature) against a private TLS-only server with a
/// self-signed certificate (`#insecure` accepts it).
#[cfg(feature = "redis-tls")]
#[test]
fn tls_urls_work() {
    if !PrivateRedis::available("tls_urls_work") {
        return;
    }
    let dir = fresh_dir("redis-tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl to make a test certificate");
    assert!(made.success(), "openssl req failed");
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (cert, key, port) = (
        cert.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
        tls_port.to_string(),
    );
    let server = PrivateRedis::start(
        "redis-tls-server",
        &[
            "--tls-port",
            &port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-auth-clients",
            "no",
        ],
    );
    let backend =
        RedisBackend::from_url(&format!("rediss://127.0.0.1:{tls_port}/0#insecure")).unwrap();
    let calls = Counter::new();
    let f = numbered(&backend, &unique_name("tls"), &calls);
    let value = eventually(|| f.try_call(6).ok());
    assert_eq!(value, 6001);
    assert_eq!(f.try_call(6).unwrap(), 6001);
    assert_eq!(calls.get(), 1);
    // The entry is really on that server (its plain port sees it).
    let mut con = raw(&server.url());
    let size: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(size, 1);
}

/// Listing: namespaces come back whole from the keys, `:` and `@` included, under
/// a prefix with glob characters; a namespace that extends another's name is listed apart;
/// foreign keys under the prefix are ignored; `entries()` covers more than one SCAN batch,
/// sizes values with HSTRLEN, judges claims by the server's clock, and never uses KEYS.
#[test]
fn listing_namespaces_and_entries_on_the_server() {
    let Some(url) = shared_url("listing_namespaces_and_entries_on_the_server") else {
        return;
    };
    let prefix = format!("t[*]?{}", unique_name("listing").replace("::", "-"));
    let backend = RedisBackend::builder(&url).prefix(&prefix).build().unwrap();
    let base = Namespace::new("app::mod:fn", Some("v:2")).unwrap();
    let extended = Namespace::new(&format!("{base}:more"), None).unwrap();
    let core = backend.core(&base).unwrap();
    let extended_core = backend.core(&extended).unwrap();
    let mut con = raw(&url);
    let n = 2_500u64;
    let mut pipe = redis::pipe();
    for i in 0..n {
        let value = vec![b'v'; (i % 89) as usize];
        pipe.cmd("HSET")
            .arg(backend.redis_key(&base, &Key::of(&i).unwrap()))
            .arg("value")
            .arg(value)
            .arg("time")
            .arg(1u64)
            .arg("completed")
            .arg("1")
            .ignore();
    }
    pipe.query::<()>(&mut con).unwrap();
    extended_core
        .put(&Key::of(&1u8).unwrap(), b"other", None)
        .unwrap();
    // Not entries: a key without a key hex, and one of another prefix that starts alike.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:junk"))
        .arg("x")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}x:ns:{}", "0".repeat(64)))
        .arg("x")
        .query(&mut con)
        .unwrap();
    let keys_before = command_calls(&mut con, "keys");
    assert_eq!(
        backend.namespaces().unwrap(),
        vec![base.clone(), extended.clone()]
    );
    let entries = core.entries().unwrap();
    assert_eq!(entries.len() as u64, n, "exactly this namespace's entries");
    for e in &entries {
        assert!(
            e.completed && !e.being_calculated() && e.claim_owner().is_none(),
            "{e:?}"
        );
        assert!(
            e.age > Duration::from_secs(1_000_000),
            "stored at 1 µs after the epoch"
        );
    }
    for i in [0u64, 1, 88, 89, 2_499] {
        let key = Key::of(&i).unwrap();
        let e = entries.iter().find(|e| e.key == key).unwrap();
        assert_eq!(e.size, i % 89);
        let stored = core.get(&key).unwrap().unwrap();
        assert_eq!(e.size, stored.value.unwrap().len() as u64);
    }
    assert_eq!(extended_core.entries().unwrap().len(), 1);
    assert_eq!(
        command_calls(&mut con, "keys"),
        keys_before,
        "KEYS was never called"
    );

    // A live claim on a stored entry, then lapsed; a placeholder under a live claim.
    let key = Key::of(&5u64).unwrap();
    let fresh = Key::of(&(n + 1)).unwrap();
    let Claim::Claimed(token) = core.claim(&key, MS(300)).unwrap() else {
        panic!("claim")
    };
    let Claim::Claimed(placeholder) = core.claim(&fresh, Duration::from_secs(30)).unwrap() else {
        panic!("claim")
    };
    let listed = core.entries().unwrap();
    let find =
        |entries: &[cachier::store::EntryInfo], key| entries.iter().find(|e| e.key == key).cloned();
    let e = find(&listed, key).unwrap();
    assert!(e.being_calculated() && e.completed, "{e:?}");
    assert_eq!(e.claim_owner(), Some(token.as_str()));
    let p = find(&listed, fresh).unwrap();
    assert!(p.being_calculated() && !p.completed && p.size == 0, "{p:?}");
    assert_eq!(p.claim_owner(), Some(placeholder.as_str()));
    assert!(p.age < Duration::from_secs(60), "{p:?}");
    thread::sleep(MS(400));
    let e = find(&core.entries().unwrap(), key).unwrap();
    assert!(
        !e.being_calculated() && e.claim_owner().is_none(),
        "lapsed: {e:?}"
    );
    assert_eq!(
        e.being_calculated(),
        core.get(&key).unwrap().unwrap().being_calculated()
    );
    core.release(&fresh, &placeholder).unwrap();

    // Garbage at an entry's address is not listed (get reads it as a miss).
    let garbage = backend.redis_key(&base, &Key::of(&(n + 2)).unwrap());
    let _: () = redis::cmd("SET")
        .arg(&garbage)
        .arg("x")
        .query(&mut con)
        .unwrap();
    assert_eq!(core.entries().unwrap().len() as u64, n);

    core.clear_cache().unwrap();
    extended_core.clear_cache().unwrap();
    assert!(core.entries().unwrap().is_empty());
    assert_eq!(backend.namespaces().unwrap(), vec![]);
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:junk"))
        .arg(format!("{prefix}x:ns:{}", "0".repeat(64)))
        .query(&mut con)
        .unwrap();
}

/// While no server answers, the callers of one process compute a key once and the failure
/// is logged once.
#[test]
fn unreachable_server_computes_once_per_process() {
    // Port 1 on loopback: nothing listens there, connections are refused at once.
    let backend = RedisBackend::from_url("redis://127.0.0.1:1/0").unwrap();
    cachier_conformance::cases::outage_computes_once_per_process(std::sync::Arc::new(backend));
}

/// A value larger than the server takes (`proto-max-bulk-len`): returned uncached, and its
/// claim freed at once.
#[test]
fn oversized_value_releases_claim() {
    if !PrivateRedis::available("oversized_value_releases_claim") {
        return;
    }
    let server = PrivateRedis::start("redis-oversized", &["--proto-max-bulk-len", "1mb"]);
    let backend = RedisBackend::from_url(&server.url()).unwrap();
    cachier_conformance::cases::oversized_value_releases_claim(
        std::sync::Arc::new(backend),
        4 << 20,
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
    assert_eq!(error.kind(), cachier::ErrorKind::Unavailable, "{error}");
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
