//! The SQL backend: the conformance suite and the multi-process tests on SQLite (a file and
//! `sqlite::memory:`) and on PostgreSQL (the server in `CACHIER_TEST_POSTGRES_URL`), plus the
//! shared outage case on an unreachable server. The backend's own cases (garbage rows, table
//! names, schema versions, reconnecting, hidden credentials...) live in
//! `crates/backend-sql/tests/`.

#[cfg(feature = "sqlite")]
mod sqlite {
    use cachier_conformance::fresh_dir;

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
}

#[cfg(feature = "postgres")]
mod postgres {
    use cachier::backends::sql::SqlBackend;
    use cachier_conformance::service_url;

    fn postgres_spec() -> Option<String> {
        service_url("CACHIER_TEST_POSTGRES_URL", "sql::postgres")
            .map(|url| format!("postgres:{url}"))
    }

    cachier_conformance::conformance_tests!(postgres_spec);

    mod multiprocess {
        cachier_conformance::multiprocess_tests!(super::postgres_spec);
    }

    /// While no server answers, the callers of one process compute a key once and the
    /// failure is logged once. A case of the conformance crate (`cases.rs`, written against
    /// the facade and shared with the file and Redis backends), so it runs here.
    #[test]
    fn unreachable_server_computes_once_per_process() {
        let backend = SqlBackend::postgres("postgres://postgres@127.0.0.1:1/test").unwrap();
        cachier_conformance::cases::outage_computes_once_per_process(std::sync::Arc::new(backend));
    }
}

/// `sqlite::memory:`: a private in-memory database per backend.
#[cfg(feature = "sqlite")]
mod sqlite_memory {
    cachier_conformance::conformance_tests!(|| Some("sqlite::memory:".to_string()));
}
