//! Backends chosen by URL (`backend_from_url`, `CACHIER_BACKEND_URL`), bad URLs
//! included: clear errors, no panics, no passwords in messages.

use cachier::{backend_from_url, Error};
use cachier_conformance::{fresh_dir, service_url, unique_name};

fn config_error(url: &str) -> String {
    match backend_from_url(url) {
        Err(Error::Config { param, message }) => {
            assert_eq!(param, "backend");
            message
        }
        Err(other) => panic!("{url}: expected a configuration error, got {other:?}"),
        Ok(backend) => panic!("{url}: expected an error, got {backend:?}"),
    }
}

/// A function on the backend `url` names, called twice: one computation.
fn works(url: &str) -> cachier::Memoized<u64, u64> {
    let backend = backend_from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    let f = cachier::memoize(&unique_name("url"), |x: u64| x + 1)
        .shared_backend(backend)
        .build()
        .unwrap();
    assert_eq!(f.call(1), 2);
    assert_eq!(f.call(1), 2);
    assert_eq!(f.stats().hits, 1);
    f
}

#[test]
fn local_urls() {
    let dir = fresh_dir("url-file");
    assert_eq!(
        works(&format!("file://{}", dir.display())).cache_dpath(),
        Some(dir.clone())
    );
    let separate = fresh_dir("url-file-separate");
    let f = works(&format!(
        "file://{}?separate_files=true",
        separate.display()
    ));
    assert_eq!(f.cache_dpath(), Some(separate));
    assert_eq!(works("memory:").cache_dpath(), None);
    works(&format!(
        "sqlite://{}",
        fresh_dir("url-sqlite").join("c.db").display()
    ));
    works("sqlite::memory:");
}

#[test]
fn server_urls() {
    for var in [
        "CACHIER_TEST_REDIS_URL",
        "CACHIER_TEST_POSTGRES_URL",
        "CACHIER_TEST_MONGO_URL",
        "CACHIER_TEST_S3_URL",
    ] {
        if let Some(url) = service_url(var, "urls::server_urls") {
            works(&url);
        }
    }
}

#[test]
fn bad_urls_are_configuration_errors() {
    assert!(config_error("").contains("no scheme"));
    assert!(config_error("just-a-name").contains("no scheme"));
    assert!(config_error("ftp://host/x").contains("unknown scheme"));
    assert!(config_error("file:relative/dir").contains("file:///"));
    assert!(config_error("file://relative").contains("absolute"));
    assert!(config_error("file:///tmp/x?colour=blue").contains("separate_files"));
    assert!(config_error("memory:/somewhere").contains("memory:"));
    let hidden = config_error("ftp://alice:s3cret@host/x");
    assert!(
        !hidden.contains("s3cret") && hidden.contains("alice:***@host"),
        "{hidden}"
    );
}

#[test]
fn broken_server_urls_fail_cleanly() {
    // Malformed URLs of compiled-in backends: an error, never a panic.
    for url in [
        "redis://",
        "postgres://:not-a-port",
        "mongodb://",
        "s3://",
        "s3://bucket?colour=blue",
        "sqlite:",
    ] {
        assert!(backend_from_url(url).is_err(), "{url} should not open");
    }
}

#[test]
fn credentials_never_show_in_debug() {
    let backend = backend_from_url("redis://user:s3cret@127.0.0.1:1/0").unwrap();
    let shown = format!("{backend:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    let backend = backend_from_url("postgres://user:s3cret@127.0.0.1:1/db").unwrap();
    assert!(!format!("{backend:?}").contains("s3cret"));
    let backend = backend_from_url("mongodb://user:s3cret@127.0.0.1:1/db").unwrap();
    assert!(!format!("{backend:?}").contains("s3cret"));
    let backend = backend_from_url("s3://KEY:s3cret@bucket?endpoint=http://127.0.0.1:1").unwrap();
    assert!(!format!("{backend:?}").contains("s3cret"));
}

/// The global default backend from `CACHIER_BACKEND_URL` (the only test of this binary that
/// touches the environment and the globals).
#[test]
fn global_default_from_environment() {
    std::env::set_var(cachier::BACKEND_URL_ENV, "memory:");
    cachier::reset_global_params();
    let f = cachier::memoize(&unique_name("url-default"), |x: u64| x * 3)
        .build()
        .unwrap();
    assert!(format!("{f:?}").contains("\"memory\""), "{f:?}");
    std::env::set_var(
        cachier::BACKEND_URL_ENV,
        format!(
            "sqlite://{}",
            fresh_dir("url-default").join("c.db").display()
        ),
    );
    cachier::reset_global_params();
    let g = cachier::memoize(&unique_name("url-default"), |x: u64| x * 3)
        .build()
        .unwrap();
    assert!(format!("{g:?}").contains("\"sqlite\""), "{g:?}");
    assert_eq!(g.call(2), 6);
    assert_eq!(g.call(2), 6);
    assert_eq!(g.stats().hits, 1);
    assert_eq!(f.call(2), 6);
    std::env::remove_var(cachier::BACKEND_URL_ENV);
    cachier::reset_global_params();
    assert_eq!(cachier::get_global_params().backend.as_str(), "pickle");
}

/// URLs whose password a careless parser shows (an unencoded `/`, `?`, `#` or `@` in it, no
/// scheme, several hosts, secrets in query parameters): neither the errors about them, nor the
/// backends' `Debug`, nor the errors of a first call on their unreachable servers show it.
#[test]
fn malformed_urls_never_show_their_password() {
    use cachier_conformance::{MALFORMED_URLS, MALFORMED_URL_SECRET as SECRET};
    for &url in MALFORMED_URLS {
        let shown = match backend_from_url(url) {
            Err(error) => format!("{error} {error:?}"),
            Ok(backend) => match backend.namespaces() {
                Err(error) => format!("{backend:?} {error} {error:?}"),
                Ok(_) => panic!("{url}: no server answers there"),
            },
        };
        assert!(!shown.contains(SECRET), "{url} shown as: {shown}");
        let spec = match cachier_settings::BackendSpec::parse(url) {
            Ok(spec) => format!("{spec} {spec:?}"),
            Err(error) => format!("{error} {error:?}"),
        };
        assert!(!spec.contains(SECRET), "{url} as a spec: {spec}");
    }
}
