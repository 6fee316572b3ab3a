//! The SQL backend: the conformance suite and the multi-process tests on SQLite (a file) and
//! on PostgreSQL (the server in `CACHIER_TEST_POSTGRES_URL`), plus the SQL-specific cases:
//! unreachable server, garbage rows, invalid table names, schema versions, reconnecting.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use cachier_conformance::{unique_name, Counter};

/// `f(x) = x * 1000 + n` where `n` counts calls, on `backend`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn numbered(
    backend: cachier::backends::sql::SqlBackend,
    calls: &Counter,
) -> cachier::Memoized<u64, u64> {
    let calls = calls.clone();
    cachier::memoize(&unique_name("sql"), move |x: u64| {
        x * 1000 + calls.bump() as u64
    })
    .backend(backend)
    .build()
    .expect("build")
}

/// A table name no other test uses.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn unique_table() -> String {
    let id = unique_name("t");
    let id = id.rsplit("::").next().unwrap_or_default();
    format!(
        "cachier_test_{}",
        id.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::PathBuf;

    use cachier::{backends::sql::SqlBackend, Error};
    use cachier_conformance::{fresh_dir, Counter};

    fn sqlite_spec() -> Option<String> {
        Some(format!(
            "sqlite:{}",
            fresh_dir("sqlite").join("cache.db").display()
        ))
    }

    cachier_conformance::conformance_tests!(sqlite_spec);

    mod multiprocess {
        cachier_conformance::multiprocess_tests!(super::sqlite_spec);
    }

    fn db_file() -> PathBuf {
        fresh_dir("sqlite-own").join("cache.db")
    }

    #[test]
    fn file_path_is_available_and_cache_dpath_is_none() {
        let path = db_file();
        let backend = SqlBackend::sqlite(&path).unwrap();
        assert_eq!(backend.sqlite_path(), Some(path.as_path()));
        assert_eq!(backend.table(), "cachier_cache");
        let f = super::numbered(backend, &Counter::new());
        assert_eq!(f.call(1), 1001);
        assert_eq!(f.cache_dpath(), None);
        assert!(path.exists());
    }

    #[test]
    fn urls_open_the_same_file() {
        let path = db_file();
        let calls = Counter::new();
        let absolute = format!("sqlite://{}", path.display());
        assert!(absolute.starts_with("sqlite:///"), "{absolute}");
        let a = super::numbered(SqlBackend::from_url(&absolute).unwrap(), &calls);
        let value = a.call(3);
        let b = cachier::memoize(a.namespace().as_str(), |x: u64| x)
            .backend(SqlBackend::from_url(&format!("sqlite:{}", path.display())).unwrap())
            .build()
            .unwrap();
        assert_eq!(
            b.call(3),
            value,
            "the second URL form reads the first one's entry"
        );
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn file_is_in_wal_mode_with_a_schema_version() {
        let path = db_file();
        let f = super::numbered(SqlBackend::sqlite(&path).unwrap(), &Counter::new());
        f.call(1);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: String = conn
            .query_row(
                "SELECT value FROM cachier_cache_meta WHERE name = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(version, "1");
    }

    #[test]
    fn garbage_rows_are_recomputed() {
        let path = db_file();
        let calls = Counter::new();
        let f = super::numbered(SqlBackend::sqlite(&path).unwrap(), &calls);
        assert_eq!(f.call(1), 1001);
        assert_eq!(f.call(2), 2002);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let fid = f.namespace().as_str();
        // Bytes that do not decode, and a row whose columns hold the wrong types.
        let k1 = f.key(&1).unwrap().to_hex();
        let k2 = f.key(&2).unwrap().to_hex();
        conn.execute(
            "UPDATE cachier_cache SET value = X'FF00FF' WHERE function_id = ?1 AND key = ?2",
            (fid, &k1),
        )
        .unwrap();
        conn.execute(
            "UPDATE cachier_cache SET value = 'text, not bytes', stored_at = 'yesterday' WHERE function_id = ?1 AND key = ?2",
            (fid, &k2),
        )
        .unwrap();
        assert_eq!(f.call(1), 1003, "garbage bytes are a miss");
        assert_eq!(f.call(2), 2004, "an unreadable row is a miss");
        assert_eq!(
            f.call(1),
            1003,
            "the recomputed value overwrote the garbage"
        );
        assert_eq!(f.call(2), 2004);
        assert_eq!(calls.get(), 4);
    }

    #[test]
    fn invalid_table_name_is_a_config_error() {
        for bad in ["x; DROP TABLE y", "1abc", "a.b.c", "has space", ""] {
            let built = SqlBackend::builder(&format!("sqlite:{}", db_file().display()))
                .unwrap()
                .table(bad)
                .build();
            match built {
                Err(Error::Config { param: "table", .. }) => {}
                other => panic!("{bad:?}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn custom_table_is_used() {
        let path = db_file();
        let table = super::unique_table();
        let backend = SqlBackend::builder(&format!("sqlite:{}", path.display()))
            .unwrap()
            .table(&table)
            .build()
            .unwrap();
        assert_eq!(backend.table(), table);
        let f = super::numbered(backend, &Counter::new());
        f.call(5);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row(&format!("SELECT COUNT(*) FROM \"{table}\""), [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn newer_schema_version_is_refused() {
        let path = db_file();
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE cachier_cache_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO cachier_cache_meta VALUES ('schema_version', '999');",
        )
        .unwrap();
        drop(conn);
        let error = SqlBackend::sqlite(&path).unwrap_err().to_string();
        assert!(error.contains("newer cachier"), "{error}");
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for bad in ["sqlite:", "sqlite://", "mysql://h/db"] {
            match SqlBackend::from_url(bad) {
                Err(Error::Config { param: "url", .. }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn unopenable_file_is_a_backend_error() {
        let dir = fresh_dir("sqlite-missing");
        let error = SqlBackend::sqlite(dir.join("no").join("such").join("dir.db")).unwrap_err();
        assert!(error.is_backend(), "{error}");
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::time::{Duration, Instant};

    use cachier::{backends::sql::SqlBackend, Error};
    use cachier_conformance::{service_url, Counter};

    fn postgres_spec() -> Option<String> {
        service_url("CACHIER_TEST_POSTGRES_URL", "sql::postgres")
            .map(|url| format!("postgres:{url}"))
    }

    cachier_conformance::conformance_tests!(postgres_spec);

    mod multiprocess {
        cachier_conformance::multiprocess_tests!(super::postgres_spec);
    }

    fn url(test: &str) -> Option<String> {
        service_url("CACHIER_TEST_POSTGRES_URL", test)
    }

    fn raw(url: &str) -> postgres::Client {
        postgres::Client::connect(url, postgres::NoTls).expect("raw connection to the test server")
    }

    fn with_param(url: &str, param: &str) -> String {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{param}")
    }

    /// While no server answers, the callers of one process compute a key once and the
    /// failure is logged once.
    #[test]
    fn unreachable_server_computes_once_per_process() {
        let backend = SqlBackend::postgres("postgres://postgres@127.0.0.1:1/test").unwrap();
        cachier_conformance::cases::outage_computes_once_per_process(std::sync::Arc::new(backend));
    }

    #[test]
    fn unreachable_server_warns_and_computes_uncached() {
        // Port 1 on loopback: nothing listens there, connections are refused at once.
        let backend =
            SqlBackend::postgres("postgres://cachier:s3cr3t-pw@127.0.0.1:1/test").unwrap();
        let calls = Counter::new();
        let f = super::numbered(backend, &calls);
        let started = Instant::now();
        let log = cachier_conformance::capture_logs(|| {
            assert_eq!(f.call(1), 1001);
            assert_eq!(
                f.call(1),
                1002,
                "nothing is cached while the server is down"
            );
        });
        assert!(log.contains("cache unavailable"), "{log}");
        assert!(
            !log.contains("s3cr3t-pw"),
            "the password never reaches the log: {log}"
        );
        assert!(f.backend_error_count() >= 2);
        match f.try_call(1) {
            Err(Error::Backend {
                backend: "postgres",
                ..
            }) => {}
            other => panic!("strict mode: expected a backend error, got {other:?}"),
        }
        let error = f.try_call(2).unwrap_err().to_string();
        assert!(!error.contains("s3cr3t-pw"), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a refused connection fails fast"
        );
    }

    /// A role the server does not know: the error names the server's reason, once, in its
    /// message and in its whole chain of sources.
    #[test]
    fn unknown_role_shows_the_servers_message_once() {
        let Some(url) = url("sql::postgres::unknown_role") else {
            return;
        };
        use cachier::store::Backend;
        let url = cachier_conformance::with_user_info(&url, "nosuchuser");
        let backend = SqlBackend::from_url(&url).unwrap();
        let error = backend.namespaces().unwrap_err();
        let cause = r#"role "nosuchuser" does not exist"#;
        assert!(error.to_string().contains(cause), "{error}");
        let report = cachier_conformance::error_report(&error);
        assert_eq!(report.matches(cause).count(), 1, "{report}");
    }

    #[test]
    fn debug_output_hides_the_password() {
        let backend =
            SqlBackend::postgres("postgres://cachier:s3cr3t-pw@127.0.0.1:5432/test").unwrap();
        let debug = format!("{backend:?}");
        assert!(!debug.contains("s3cr3t-pw"), "{debug}");
        assert!(debug.contains("cachier@127.0.0.1:5432/test"), "{debug}");
        let builder =
            SqlBackend::builder("postgres://cachier:s3cr3t-pw@127.0.0.1:5432/test").unwrap();
        assert!(!format!("{builder:?}").contains("s3cr3t-pw"));
        let bad = SqlBackend::postgres("postgres://cachier:s3cr3t-pw@127.0.0.1:notaport/test")
            .unwrap_err();
        assert!(!bad.to_string().contains("s3cr3t-pw"), "{bad}");
    }

    #[test]
    fn garbage_rows_are_recomputed() {
        let Some(url) = url("sql::postgres::garbage_rows_are_recomputed") else {
            return;
        };
        let calls = Counter::new();
        let f = super::numbered(SqlBackend::postgres(&url).unwrap(), &calls);
        assert_eq!(f.call(1), 1001);
        let mut client = raw(&url);
        let changed = client
            .execute(
                "UPDATE cachier_cache SET value = '\\xff00ff'::bytea WHERE function_id = $1 AND key = $2",
                &[&f.namespace().as_str(), &f.key(&1).unwrap().to_hex()],
            )
            .unwrap();
        assert_eq!(changed, 1);
        assert_eq!(f.call(1), 1002, "garbage bytes are a miss");
        assert_eq!(
            f.call(1),
            1002,
            "the recomputed value overwrote the garbage"
        );
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn invalid_table_name_is_a_config_error() {
        for bad in ["x; DROP TABLE y", "1abc", "a.b.c", "quo\"te", ""] {
            let built = SqlBackend::builder("postgres://postgres@127.0.0.1:5432/test")
                .unwrap()
                .table(bad)
                .build();
            match built {
                Err(Error::Config { param: "table", .. }) => {}
                other => panic!("{bad:?}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn custom_table_is_created_with_a_schema_version() {
        let Some(url) = url("sql::postgres::custom_table") else {
            return;
        };
        let table = super::unique_table();
        let backend = SqlBackend::builder(&url)
            .unwrap()
            .table(&table)
            .build()
            .unwrap();
        let calls = Counter::new();
        let f = super::numbered(backend, &calls);
        assert_eq!(f.call(4), 4001);
        assert_eq!(f.call(4), 4001);
        let mut client = raw(&url);
        let rows: i64 = client
            .query_one(&format!("SELECT COUNT(*) FROM \"{table}\""), &[])
            .unwrap()
            .get(0);
        let version: String = client
            .query_one(
                &format!("SELECT value FROM \"{table}_meta\" WHERE name = 'schema_version'"),
                &[],
            )
            .unwrap()
            .get(0);
        client
            .batch_execute(&format!(
                "DROP TABLE \"{table}\"; DROP TABLE \"{table}_meta\""
            ))
            .unwrap();
        assert_eq!(rows, 1);
        assert_eq!(version, "1");
    }

    #[test]
    fn newer_schema_version_is_refused() {
        let Some(url) = url("sql::postgres::newer_schema") else {
            return;
        };
        let table = super::unique_table();
        let mut client = raw(&url);
        client
            .batch_execute(&format!(
                "CREATE TABLE \"{table}_meta\" (name TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO \"{table}_meta\" VALUES ('schema_version', '999');"
            ))
            .unwrap();
        let backend = SqlBackend::builder(&url)
            .unwrap()
            .table(&table)
            .build()
            .unwrap();
        let calls = Counter::new();
        let f = super::numbered(backend, &calls);
        let strict = f.try_call(1).map_err(|e| e.to_string());
        let lenient = f.call(1);
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS \"{table}\"; DROP TABLE \"{table}_meta\""
            ))
            .unwrap();
        match strict {
            Err(message) => assert!(message.contains("newer cachier"), "{message}"),
            Ok(v) => panic!("a table of a newer schema was used: {v}"),
        }
        assert_eq!(
            lenient, 1001,
            "lenient calls still compute (strict mode computed nothing)"
        );
    }

    #[test]
    fn reconnects_after_its_connections_are_terminated() {
        let Some(url) = url("sql::postgres::reconnect") else {
            return;
        };
        let app = super::unique_table();
        let backend =
            SqlBackend::postgres(&with_param(&url, &format!("application_name={app}"))).unwrap();
        let calls = Counter::new();
        let f = super::numbered(backend, &calls);
        assert_eq!(f.try_call(1).unwrap(), 1001);
        let mut admin = raw(&url);
        let terminated: i64 = admin
            .query_one(
                "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) t",
                &[&app],
            )
            .unwrap()
            .get(0);
        assert!(
            terminated >= 1,
            "the pool's connection was found and terminated"
        );
        // The pooled connection is dead now: the next call reconnects and still hits.
        assert_eq!(f.try_call(1).unwrap(), 1001);
        assert_eq!(f.try_call(2).unwrap(), 2002);
        assert_eq!(calls.get(), 2);
        assert_eq!(f.backend_error_count(), 0);
    }

    #[test]
    fn a_small_pool_serves_many_threads() {
        let Some(url) = url("sql::postgres::small_pool") else {
            return;
        };
        let backend = SqlBackend::builder(&url)
            .unwrap()
            .pool_size(1)
            .build()
            .unwrap();
        let calls = Counter::new();
        let f = super::numbered(backend, &calls);
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let f = f.clone();
                std::thread::spawn(move || {
                    (0..5u64)
                        .map(|k| f.try_call(t * 10 + k).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let values: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(values.len(), 40);
        assert_eq!(calls.get(), 40);
        for t in 0..8u64 {
            for k in 0..5u64 {
                let x = t * 10 + k;
                assert_eq!(f.try_call(x).unwrap() / 1000, x, "served from the cache");
            }
        }
        assert_eq!(
            calls.get(),
            40,
            "every value was cached through one connection"
        );
    }

    #[test]
    fn entry_times_come_from_the_server_clock() {
        let Some(url) = url("sql::postgres::server_clock") else {
            return;
        };
        let f = super::numbered(SqlBackend::postgres(&url).unwrap(), &Counter::new());
        f.call(1);
        let key = f.key(&1).unwrap();
        // Move the row one hour into the past by the server's clock: it is stale by age.
        let mut client = raw(&url);
        client
            .execute(
                "UPDATE cachier_cache SET stored_at = now() - interval '1 hour' WHERE function_id = $1 AND key = $2",
                &[&f.namespace().as_str(), &key.to_hex()],
            )
            .unwrap();
        let entry = f.core().get(&key).unwrap().unwrap();
        assert!(
            entry.age >= Duration::from_secs(3599) && entry.age < Duration::from_secs(3700),
            "{:?}",
            entry.age
        );
        assert_eq!(
            f.delete_stale_entries(Duration::from_secs(1800)).unwrap(),
            1
        );
    }
}

/// `sqlite::memory:`: a private in-memory database per backend.
#[cfg(feature = "sqlite")]
mod sqlite_memory {
    cachier_conformance::conformance_tests!(|| Some("sqlite::memory:".to_string()));

    #[test]
    fn in_memory_url_opens() {
        let backend = cachier::backends::sql::SqlBackend::from_url("sqlite::memory:").unwrap();
        assert_eq!(backend.sqlite_path(), None);
        let f = cachier::memoize(
            &cachier_conformance::unique_name("sqlite_memory"),
            |x: u64| x + 1,
        )
        .backend(backend)
        .build()
        .unwrap();
        assert_eq!(f.call(1), 2);
        assert_eq!(f.core().len().unwrap(), 1);
    }
}
