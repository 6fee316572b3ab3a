//! The store contract against the SQL backend: an SQLite file, an in-memory SQLite database
//! (one process only) and the PostgreSQL server in `CACHIER_TEST_POSTGRES_URL`.
#![cfg(any(feature = "sqlite", feature = "postgres"))]

#[cfg(feature = "sqlite")]
mod sqlite_file {
    use std::path::Path;
    use std::sync::Arc;

    use cachier_backend_sql::SqlBackend;
    use cachier_core::Backend;

    fn open(dir: &Path) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(
            SqlBackend::sqlite(dir.join("cache.db")).expect("sqlite backend"),
        ))
    }

    cachier_testkit::store_contract_tests!(leased: open);
    cachier_testkit::store_contract_process_tests!(open);
}

/// `sqlite::memory:`: a database private to its backend, so no cross-process case.
#[cfg(feature = "sqlite")]
mod sqlite_memory {
    use std::path::Path;
    use std::sync::Arc;

    use cachier_backend_sql::SqlBackend;
    use cachier_core::Backend;

    fn open(_dir: &Path) -> Option<Arc<dyn Backend>> {
        Some(Arc::new(
            SqlBackend::from_url("sqlite::memory:").expect("sqlite backend"),
        ))
    }

    cachier_testkit::store_contract_tests!(leased: open);
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::path::Path;
    use std::sync::Arc;

    use cachier_backend_sql::SqlBackend;
    use cachier_core::Backend;

    fn open(_dir: &Path) -> Option<Arc<dyn Backend>> {
        let url = cachier_testkit::service_url("CACHIER_TEST_POSTGRES_URL", "postgres contract")?;
        Some(Arc::new(
            SqlBackend::postgres(&url).expect("postgres backend"),
        ))
    }

    cachier_testkit::store_contract_tests!(leased: open);
    cachier_testkit::store_contract_process_tests!(open);
}

/// Pushed changes between two PostgreSQL backend instances, with a fallback poll of 10 s: only
/// the notification can wake a waiter within the bound.
#[cfg(feature = "postgres")]
mod postgres_push {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use cachier_backend_sql::SqlBackend;
    use cachier_core::Backend;

    fn open(_dir: &Path) -> Option<Arc<dyn Backend>> {
        let url = cachier_testkit::service_url("CACHIER_TEST_POSTGRES_URL", "postgres push")?;
        Some(Arc::new(
            SqlBackend::builder(&url)
                .expect("postgres url")
                .wait_poll(Duration::from_secs(10))
                .build()
                .expect("postgres backend"),
        ))
    }

    cachier_testkit::store_push_tests!(open);
}
