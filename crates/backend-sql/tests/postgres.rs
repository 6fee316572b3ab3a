//! What only the PostgreSQL side of the SQL backend does, through blocking memoized functions,
//! against the server in `CACHIER_TEST_POSTGRES_URL` (or none at all): an unreachable server
//! (warned once, computed uncached, credentials hidden), the server's own error message, garbage
//! rows, table names, schema versions, reconnecting after its connections are terminated, a
//! pool of one connection, and entry times by the server's clock. The native async path is in
//! `postgres_async.rs`.
#![cfg(feature = "postgres")]

mod common;

use std::time::{Duration, Instant};

use cachier_backend_sql::SqlBackend;
use cachier_core::{Backend, Error};
use cachier_testkit::{capture_logs, error_report, service_url, with_user_info, Counter};
use common::{numbered, unique_table};

/// The server's URL, or `None` (a SKIPPED line; a failure when services are required).
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

#[test]
fn unreachable_server_warns_and_computes_uncached() {
    // Port 1 on loopback: nothing listens there, connections are refused at once.
    let backend = SqlBackend::postgres("postgres://cachier:s3cr3t-pw@127.0.0.1:1/test").unwrap();
    let calls = Counter::new();
    let f = numbered(backend, &calls);
    let started = Instant::now();
    let log = capture_logs(|| {
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
    let url = with_user_info(&url, "nosuchuser");
    let backend = SqlBackend::from_url(&url).unwrap();
    let error = backend.namespaces().unwrap_err();
    let cause = r#"role "nosuchuser" does not exist"#;
    assert!(error.to_string().contains(cause), "{error}");
    let report = error_report(&error);
    assert_eq!(report.matches(cause).count(), 1, "{report}");
}

#[test]
fn debug_output_hides_the_password() {
    let backend = SqlBackend::postgres("postgres://cachier:s3cr3t-pw@127.0.0.1:5432/test").unwrap();
    let debug = format!("{backend:?}");
    assert!(!debug.contains("s3cr3t-pw"), "{debug}");
    assert!(debug.contains("cachier@127.0.0.1:5432/test"), "{debug}");
    let builder = SqlBackend::builder("postgres://cachier:s3cr3t-pw@127.0.0.1:5432/test").unwrap();
    assert!(!format!("{builder:?}").contains("s3cr3t-pw"));
    let bad =
        SqlBackend::postgres("postgres://cachier:s3cr3t-pw@127.0.0.1:notaport/test").unwrap_err();
    assert!(!bad.to_string().contains("s3cr3t-pw"), "{bad}");
}

#[test]
fn garbage_rows_are_recomputed() {
    let Some(url) = url("sql::postgres::garbage_rows_are_recomputed") else {
        return;
    };
    let calls = Counter::new();
    let f = numbered(SqlBackend::postgres(&url).unwrap(), &calls);
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
    let table = unique_table();
    let backend = SqlBackend::builder(&url)
        .unwrap()
        .table(&table)
        .build()
        .unwrap();
    let calls = Counter::new();
    let f = numbered(backend, &calls);
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
    let table = unique_table();
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
    let f = numbered(backend, &calls);
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
    let app = unique_table();
    let backend =
        SqlBackend::postgres(&with_param(&url, &format!("application_name={app}"))).unwrap();
    let calls = Counter::new();
    let f = numbered(backend, &calls);
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
    let f = numbered(backend, &calls);
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
    let f = numbered(SqlBackend::postgres(&url).unwrap(), &Counter::new());
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
