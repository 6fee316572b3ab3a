//! Reaching the server: credentials (hidden from `Debug` output, errors and logs; refused
//! ones reported with the server's reason), `redis+unix://` sockets and `rediss://` (feature
//! `tls`). The shared server is `CACHIER_TEST_REDIS_URL`; the others are private
//! `redis-server` processes started on free loopback ports or sockets.

mod common;

use cachier_backend_redis::RedisBackend;
use cachier_core::{Backend, Error};
use cachier_testkit::private_redis::PrivateRedis;
use cachier_testkit::{
    capture_logs, error_report, fresh_dir, unique_name, with_user_info, Counter,
};
use common::{numbered, shared_url};

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
    let url = with_user_info(&url, "nosuchuser:wrong-password");
    let cause = "WRONGPASS invalid username-password pair or user is disabled";
    let check = |error: &Error| {
        assert!(error.to_string().contains(cause), "{error}");
        let report = error_report(error);
        assert_eq!(report.matches(cause).count(), 1, "{report}");
        assert!(!report.contains("wrong-password"), "{report}");
    };
    let backend = RedisBackend::from_url(&url).unwrap();
    check(&backend.namespaces().unwrap_err());
    #[cfg(feature = "async")]
    {
        let backend = RedisBackend::from_url(&url).unwrap();
        let namespace = cachier_core::Namespace::new("refused", None).unwrap();
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

/// `rediss://` (the `tls` feature) against a private TLS-only server with a
/// self-signed certificate (`#insecure` accepts it).
#[cfg(feature = "tls")]
#[test]
fn tls_urls_work() {
    if !PrivateRedis::available("tls_urls_work") {
        return;
    }
    let dir = fresh_dir("redis-tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
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
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
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
    let value = cachier_testkit::eventually(|| f.try_call(6).ok());
    assert_eq!(value, 6001);
    assert_eq!(f.try_call(6).unwrap(), 6001);
    assert_eq!(calls.get(), 1);
    // The entry is really on that server (its plain port sees it).
    let mut con = common::raw(&server.url());
    let size: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(size, 1);
}
