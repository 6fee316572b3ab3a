//! The behaviour suite again, with a near cache in front of every store (the global
//! `near_cache` parameter, set for this whole test binary): a near cache changes how fast a
//! hit is, never what a call returns (`next_time`, `max_age`, `allow_none`, `skip_cache`,
//! `overwrite_cache`, invalidation...).

use std::sync::Once;

use cachier::{NearCache, ParamsUpdate};
use cachier_conformance::service_url;

/// Every function built in this binary keeps a near cache.
fn near_everywhere() {
    static SET: Once = Once::new();
    SET.call_once(|| {
        cachier::set_global_params(ParamsUpdate::new().near_cache(NearCache::default()))
            .expect("near_cache");
    });
}

#[cfg(feature = "memory")]
mod memory {
    cachier_conformance::conformance_tests!(|| {
        super::near_everywhere();
        Some("memory".to_string())
    });
}

#[cfg(feature = "file")]
mod file {
    cachier_conformance::conformance_tests!(|| {
        super::near_everywhere();
        Some(format!(
            "file:{}",
            cachier_conformance::fresh_dir("near-file")
                .join("cache")
                .display()
        ))
    });
    cachier_conformance::multiprocess_tests!(@cases || {
        super::near_everywhere();
        Some(format!(
            "file:{}",
            cachier_conformance::fresh_dir("near-file-mp").join("cache").display()
        ))
    }; near_cache_sees_other_processes_changes, stress_no_duplicate_computations);
}

#[cfg(feature = "mongo")]
mod mongo {
    fn spec() -> Option<String> {
        super::near_everywhere();
        super::service_url("CACHIER_TEST_MONGO_URL", "mongo near cache")
            .map(|url| format!("mongo:{url}"))
    }
    cachier_conformance::conformance_tests!(spec);
    cachier_conformance::multiprocess_tests!(@cases spec; near_cache_sees_other_processes_changes);
}

#[cfg(feature = "redis")]
mod redis {
    fn spec() -> Option<String> {
        super::near_everywhere();
        super::service_url("CACHIER_TEST_REDIS_URL", "redis near cache")
            .map(|url| format!("redis:{url}"))
    }
    cachier_conformance::conformance_tests!(spec);
    cachier_conformance::multiprocess_tests!(@cases spec;
        near_cache_sees_other_processes_changes, stress_no_duplicate_computations);
}

/// A cluster's writes are heard by a subscription on any one node.
#[cfg(feature = "redis")]
mod redis_cluster {
    fn spec() -> Option<String> {
        super::near_everywhere();
        super::service_url("CACHIER_TEST_REDIS_CLUSTER_URL", "redis cluster near cache")
            .map(|url| format!("redis:{url}"))
    }
    cachier_conformance::multiprocess_tests!(@cases spec; near_cache_sees_other_processes_changes);
}

#[cfg(feature = "postgres")]
mod postgres {
    fn spec() -> Option<String> {
        super::near_everywhere();
        super::service_url("CACHIER_TEST_POSTGRES_URL", "postgres near cache")
            .map(|url| format!("postgres:{url}"))
    }
    cachier_conformance::conformance_tests!(spec);
    cachier_conformance::multiprocess_tests!(@cases spec;
        near_cache_sees_other_processes_changes, stress_no_duplicate_computations);
}
