//! Cases that change the global settings, per backend. Every test here holds the globals
//! lock, and no other test binary changes globals.

#[cfg(feature = "memory")]
mod memory {
    cachier_conformance::global_conformance_tests!(|| Some("memory".to_string()));
}

#[cfg(feature = "file")]
mod file {
    cachier_conformance::global_conformance_tests!(|| Some(format!(
        "file:{}",
        cachier_conformance::fresh_dir("globals-file")
            .join("cache")
            .display()
    )));
}

#[cfg(feature = "redis")]
mod redis {
    cachier_conformance::global_conformance_tests!(|| cachier_conformance::service_url(
        "CACHIER_TEST_REDIS_URL",
        "globals::redis"
    )
    .map(|url| format!("redis:{url}")));
}

#[cfg(feature = "redis")]
mod redis_cluster {
    cachier_conformance::global_conformance_tests!(|| cachier_conformance::service_url(
        "CACHIER_TEST_REDIS_CLUSTER_URL",
        "globals::redis_cluster"
    )
    .map(|url| format!("redis:{url}")));
}

#[cfg(feature = "sqlite")]
mod sqlite {
    cachier_conformance::global_conformance_tests!(|| Some(format!(
        "sqlite:{}",
        cachier_conformance::fresh_dir("globals-sqlite")
            .join("cache.db")
            .display()
    )));
}

#[cfg(feature = "postgres")]
mod postgres {
    cachier_conformance::global_conformance_tests!(|| cachier_conformance::service_url(
        "CACHIER_TEST_POSTGRES_URL",
        "globals::postgres"
    )
    .map(|url| format!("postgres:{url}")));
}

#[cfg(feature = "mongo")]
mod mongo {
    cachier_conformance::global_conformance_tests!(|| cachier_conformance::service_url(
        "CACHIER_TEST_MONGO_URL",
        "globals::mongo"
    )
    .map(|url| format!("mongo:{url}")));
}

#[cfg(feature = "s3")]
mod s3 {
    cachier_conformance::global_conformance_tests!(|| cachier_conformance::service_url(
        "CACHIER_TEST_S3_URL",
        "globals::s3"
    )
    .map(|url| format!("s3:{url}")));
}
