//! Backends chosen by URL, so that a deployed program moves from the local file cache to a
//! shared server by changing `CACHIER_BACKEND_URL`, not its code.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use cachier_settings::redact_url;

use crate::{store::Backend, Error, Result};

/// Opens the backend a URL names:
///
/// | URL | backend | cargo feature |
/// |---|---|---|
/// | `file:///dir` (`?separate_files=true`) | file backend in `dir` | `file` |
/// | `memory:` | the process-wide memory store | `memory` |
/// | `sqlite:///path/file.db`, `sqlite::memory:` | SQL on SQLite | `sql-sqlite` |
/// | `postgres://user@host/db` | SQL on PostgreSQL | `sql-postgres` |
/// | `redis://host/db`, `rediss://…`, `redis+unix:///path` | Redis | `redis` (`redis-tls`) |
/// | `redis+cluster://host1:port,host2:port/`, `rediss+cluster://…` | Redis Cluster (seed nodes) | `redis` (`redis-tls`) |
/// | `mongodb://host/db`, `mongodb+srv://…` | MongoDB | `mongo` |
/// | `s3://bucket/prefix?endpoint=…&region=…` | S3 | `s3` |
///
/// # Errors
/// [`Error::Config`] naming `backend` for an unknown scheme, a malformed URL, or a backend
/// whose cargo feature is not enabled (the message names the feature); the backend's own error
/// if it cannot connect. Passwords never appear in messages.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let store = cachier::backend_from_url(&format!("file://{}", dir.path().display()))?;
/// let square = cachier::memoize("docs::square", |x: u64| x * x)
///     .shared_backend(store)
///     .build()?;
/// assert_eq!(square.call(12), 144);
///
/// let typo = cachier::backend_from_url("redsi://cache.internal:6379/0").unwrap_err();
/// assert_eq!(typo.kind(), cachier::ErrorKind::Configuration);
/// # Ok::<(), cachier::Error>(())
/// ```
pub fn backend_from_url(url: &str) -> Result<Arc<dyn Backend>> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(bad(url, "it has no scheme"));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "memory" => memory(rest),
        "file" => file(url, rest),
        "sqlite" => sql(url, "sql-sqlite"),
        "postgres" | "postgresql" => sql(url, "sql-postgres"),
        "redis" | "redis+unix" | "redis+cluster" => redis(url, "redis"),
        "rediss" | "rediss+cluster" => redis(url, "redis-tls"),
        "mongodb" | "mongodb+srv" => mongo(url),
        "s3" => s3(url),
        other => Err(bad(
            url,
            &format!(
                "unknown scheme {other:?} (expected one of {})",
                cachier_settings::BACKEND_URL_SCHEMES.join(", ")
            ),
        )),
    }
}

/// [`backend_from_url`], opened once per URL and shared by every caller (what the global default
/// backend uses, so that all functions share one connection pool).
pub fn shared_backend_from_url(url: &str) -> Result<Arc<dyn Backend>> {
    static OPENED: LazyLock<Mutex<HashMap<String, Arc<dyn Backend>>>> =
        LazyLock::new(Default::default);
    if let Some(backend) = OPENED.lock().unwrap_or_else(|p| p.into_inner()).get(url) {
        return Ok(backend.clone());
    }
    let backend = backend_from_url(url)?;
    let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
    Ok(opened.entry(url.to_owned()).or_insert(backend).clone())
}

fn bad(url: &str, why: &str) -> Error {
    Error::config(
        "backend",
        format!("cannot use backend URL {:?}: {why}", redact_url(url)),
    )
}

#[allow(dead_code)] // used only by the arms whose feature is off
fn not_compiled(url: &str, feature: &str) -> Error {
    bad(
        url,
        &format!(
            "its backend is not compiled in; enable the `{feature}` cargo feature of `cachier`"
        ),
    )
}

#[cfg(feature = "memory")]
fn memory(rest: &str) -> Result<Arc<dyn Backend>> {
    if !rest.is_empty() && rest != "//" {
        return Err(bad(
            &format!("memory:{rest}"),
            "the memory backend takes no path (use `memory:`)",
        ));
    }
    Ok(Arc::new(crate::backends::memory::MemoryBackend::global()))
}
#[cfg(not(feature = "memory"))]
fn memory(rest: &str) -> Result<Arc<dyn Backend>> {
    Err(not_compiled(&format!("memory:{rest}"), "memory"))
}

#[cfg(feature = "file")]
fn file(url: &str, rest: &str) -> Result<Arc<dyn Backend>> {
    let (dir, separate_files) = file_url(url, rest)?;
    Ok(Arc::new(
        crate::backends::file::FileBackend::builder()
            .cache_dir(dir)
            .separate_files(separate_files)
            .build(),
    ))
}

/// The directory of a `file://` URL, if `url` is one.
#[cfg(feature = "file")]
pub(crate) fn file_url_dir(url: &str) -> Result<Option<std::path::PathBuf>> {
    let url = url.trim();
    match url.split_once(':') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("file") => {
            Ok(Some(file_url(url, rest)?.0.into()))
        }
        _ => Ok(None),
    }
}

/// `file:///dir?separate_files=...`, after the scheme: the directory and the layout.
#[cfg(feature = "file")]
fn file_url<'a>(url: &str, rest: &'a str) -> Result<(&'a str, bool)> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let Some(dir) = path.strip_prefix("//") else {
        return Err(bad(url, "expected file:///absolute/dir"));
    };
    // `file://localhost/dir` and `file:///dir` both name /dir.
    let dir = dir.strip_prefix("localhost").unwrap_or(dir);
    if !dir.starts_with('/') {
        return Err(bad(
            url,
            "expected an absolute directory: file:///absolute/dir",
        ));
    }
    let mut separate_files = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("separate_files", "true" | "1")) => separate_files = true,
            Some(("separate_files", "false" | "0")) => separate_files = false,
            _ => {
                return Err(bad(
                    url,
                    &format!("unknown option {pair:?} (file URLs take separate_files=true|false)"),
                ))
            }
        }
    }
    Ok((dir, separate_files))
}
#[cfg(not(feature = "file"))]
fn file(url: &str, _: &str) -> Result<Arc<dyn Backend>> {
    Err(not_compiled(url, "file"))
}

#[cfg(any(feature = "sql-sqlite", feature = "sql-postgres"))]
fn sql(url: &str, feature: &str) -> Result<Arc<dyn Backend>> {
    const COMPILED: &[&str] = &[
        #[cfg(feature = "sql-sqlite")]
        "sql-sqlite",
        #[cfg(feature = "sql-postgres")]
        "sql-postgres",
    ];
    if !COMPILED.contains(&feature) {
        return Err(not_compiled(url, feature));
    }
    Ok(Arc::new(crate::backends::sql::SqlBackend::from_url(url)?))
}
#[cfg(not(any(feature = "sql-sqlite", feature = "sql-postgres")))]
fn sql(url: &str, feature: &str) -> Result<Arc<dyn Backend>> {
    Err(not_compiled(url, feature))
}

#[cfg(feature = "redis")]
fn redis(url: &str, feature: &str) -> Result<Arc<dyn Backend>> {
    if feature == "redis-tls" && !cfg!(feature = "redis-tls") {
        return Err(not_compiled(url, feature));
    }
    Ok(Arc::new(crate::backends::redis::RedisBackend::from_url(
        url,
    )?))
}
#[cfg(not(feature = "redis"))]
fn redis(url: &str, feature: &str) -> Result<Arc<dyn Backend>> {
    Err(not_compiled(url, feature))
}

#[cfg(feature = "mongo")]
fn mongo(url: &str) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(crate::backends::mongo::MongoBackend::from_url(
        url,
    )?))
}
#[cfg(not(feature = "mongo"))]
fn mongo(url: &str) -> Result<Arc<dyn Backend>> {
    Err(not_compiled(url, "mongo"))
}

#[cfg(feature = "s3")]
fn s3(url: &str) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(crate::backends::s3::S3Backend::from_url(url)?))
}
#[cfg(not(feature = "s3"))]
fn s3(url: &str) -> Result<Arc<dyn Backend>> {
    Err(not_compiled(url, "s3"))
}
